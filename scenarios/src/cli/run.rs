//! `scenarios run`: the given scenario files, reconciled.

use std::path::PathBuf;
use std::process::ExitCode;

use super::reports::{check_writable, finish, run_files};

/// The arguments of `scenarios run` (its help is on `super::Command`).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write the scenario reports (JSON) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the scenario reports as one self-contained HTML page to this file:
    /// verdicts, counts, skips by reason, every finding by kind, replay commands.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write every delivered message as an .eml file (exact bytes) under
    /// DIR/<scenario>/<mailbox>/.
    #[arg(long, value_name = "DIR")]
    pub keep_mail: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        files,
        report,
        html,
        keep_mail,
    } = args;
    check_writable(&[&report, &html])?;
    let reports = run_files(&files, keep_mail.as_deref()).await?;
    finish(&reports, report.as_deref(), html.as_deref())
}
