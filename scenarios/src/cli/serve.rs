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
    /// The fake Microsoft 365's profile, in place of the file's: lenient (bodies up to
    /// 48 MiB, answers at once) or graph (Graph's 4 MiB request cap, and its latency:
    /// each request answered after a seeded, long-tailed delay; docs/mailbox-api.md).
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
}

/// A profile of the fake Microsoft 365, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileArg {
    Lenient,
    Graph,
}

impl ProfileArg {
    /// The profile a person asks for: under `graph`, Graph's delays too.
    pub fn spec(self) -> crate::model::MailboxProfile {
        use mock_mailbox::profile::{Latency, ProfileName};
        match self {
            Self::Lenient => crate::model::MailboxProfile {
                name: ProfileName::Lenient,
                max_request_bytes: None,
                latency: None,
            },
            Self::Graph => crate::model::MailboxProfile {
                name: ProfileName::Graph,
                max_request_bytes: None,
                latency: Some(Latency::default()),
            },
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args { file, profile } = args;
    let mut scenario = Scenario::load(&file)?;
    if let Some(profile) = profile {
        scenario.mailbox_profile = Some(profile.spec());
    }
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
    let profile = fakes.mailbox.profile();
    println!(
        "  its profile: {} (Graph request bodies up to {} bytes{})",
        match profile.name {
            mock_mailbox::profile::ProfileName::Lenient => "lenient",
            mock_mailbox::profile::ProfileName::Graph => "graph",
        },
        profile.max_request_bytes,
        if profile.latency.is_some() {
            "; each request answered after Graph's seeded delay"
        } else {
            "; answers at once"
        }
    );
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
