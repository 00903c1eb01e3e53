//! `scenarios run`: the given scenario files, reconciled.

use std::path::PathBuf;
use std::process::ExitCode;

use super::reports::Outputs;

/// The arguments of `scenarios run` (its help is on `super::Command`).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub outputs: Outputs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args { files, outputs } = args;
    outputs.run(&files).await
}
