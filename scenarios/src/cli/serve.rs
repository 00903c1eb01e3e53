//! `scenarios serve`: both fakes loaded with a scenario, for a connector run by hand.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::Scenario;
use crate::harness::Fakes;

/// The arguments of `scenarios serve` (its help is on `super::Command`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scenario file.
    pub file: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args { file } = args;
    let scenario = Scenario::load(&file)?;
    let work = crate::harness::temp_dir(&format!("serve-{}", scenario.name));
    // A fresh admin token for the viewer, in a file only this user can read: the
    // token itself is never printed.
    let admin_token = mock_common::new_token("adm_");
    let token_path = work.join("viewer-admin-token");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&token_path)
            .and_then(|mut f| f.write_all(admin_token.as_bytes()))
            .with_context(|| format!("writing {}", token_path.display()))?;
    }
    let fakes = Fakes::for_scenario_with_viewer(&scenario, &admin_token).await?;
    drop(admin_token);
    // The connector's defaults, on these fakes; paths relative to the configuration file.
    let mapping = match &scenario.mapping_csv {
        Some(text) => {
            std::fs::write(work.join("mapping.csv"), text)?;
            Some(PathBuf::from("mapping.csv"))
        }
        None => None,
    };
    let mut config = fakes.scenario_config(&scenario, std::path::Path::new("state"), mapping)?;
    config.concurrency = 8;
    config.page_size = 500;
    let config =
        crate::harness::connector_toml(&config, scenario.mapping_default_region.as_deref());
    let config_path = work.join("connector.toml");
    std::fs::write(&config_path, config)?;
    println!("provider (TeleMessage fake): {}", fakes.provider_url);
    println!("Microsoft 365 fake:          {}", fakes.mailbox_url);
    println!("connector configuration:     {}", config_path.display());
    println!("mailbox viewer:              {}/ui/", fakes.mailbox_url);
    println!(
        "viewer admin token file:     {} (paste its content on the viewer's sign-in page)",
        token_path.display()
    );
    println!("\nIn another shell:");
    println!(
        "  export TELEMESSAGE_PASSWORD={} M365_CLIENT_SECRET={}",
        crate::harness::PROVIDER_PASSWORD,
        crate::harness::CLIENT_SECRET
    );
    for run in &scenario.runs {
        println!(
            "  cargo run -p connector -- run --config {} --until {}",
            config_path.display(),
            run.until.to_rfc3339()
        );
    }
    println!("\nCtrl-C stops both fakes.");
    tokio::signal::ctrl_c().await?;
    drop(fakes);
    let _ = std::fs::remove_dir_all(&work);
    Ok(ExitCode::SUCCESS)
}
