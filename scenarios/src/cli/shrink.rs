//! `scenarios shrink`: a failing scenario made smaller while it still fails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::reports::check_writable;
use crate::Scenario;

/// The arguments of `scenarios shrink` (its help is on `super::Command`).
#[derive(Debug, clap::Args)]
pub struct Args {
    pub file: PathBuf,
    /// Where the smaller scenario goes.
    #[arg(long)]
    pub out: PathBuf,
    /// At most this many runs of the scenario.
    #[arg(long, default_value_t = 300)]
    pub budget: usize,
    #[command(flatten)]
    pub connector: crate::conformance::ConnectorArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        file,
        out,
        budget,
        connector,
    } = args;
    let under = connector.under_test();
    check_writable(&[&Some(out.clone())])?;
    let scenario = Scenario::load(&file)?;
    if !crate::chaos::fails(&scenario, &under).await {
        anyhow::bail!(
            "{} does not fail: there is nothing to shrink",
            file.display()
        );
    }
    let (items, crashes) = (scenario.source_items(), scenario.crashes.len());
    let (small, tries) = crate::chaos::shrink(scenario, budget, &under).await;
    std::fs::write(&out, small.to_file_json())
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{} -> {}: {items} items and {crashes} crash point(s) down to {} and {}, in {tries} runs",
        file.display(),
        out.display(),
        small.source_items(),
        small.crashes.len()
    );
    Ok(ExitCode::SUCCESS)
}
