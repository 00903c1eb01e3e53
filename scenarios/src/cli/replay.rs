//! `scenarios replay`: every recorded scenario, reconciled.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::reports::{check_writable, finish, run_files};

/// The arguments of `scenarios replay` (its help is on `super::Command`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of scenario files.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/recorded"))]
    pub dir: PathBuf,
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
        dir,
        report,
        html,
        keep_mail,
    } = args;
    check_writable(&[&report, &html])?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("no scenario files in {}", dir.display());
    }
    let reports = run_files(&files, keep_mail.as_deref()).await?;
    finish(&reports, report.as_deref(), html.as_deref())
}
