//! `scenarios replay`: every recorded scenario, reconciled.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::reports::Outputs;

/// The arguments of `scenarios replay` (its help is on `super::Command`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of scenario files.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/recorded"))]
    pub dir: PathBuf,
    #[command(flatten)]
    pub outputs: Outputs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args { dir, outputs } = args;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("no scenario files in {}", dir.display());
    }
    outputs.run(&files).await
}
