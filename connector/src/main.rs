//! `connector`: the daily import of WhatsApp items into Microsoft 365 mailboxes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use connector::{Config, Connector, RunReport};

/// Imports WhatsApp items archived by TeleMessage into each participant's Microsoft 365
/// mailbox, in the folder `WhatsApp Archiver`.
///
/// Secrets are never given on the command line or in the configuration file: the
/// configuration names an environment variable or a file for each. Logs go to stderr
/// (RUST_LOG sets the level).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One import run: every item archived since the end of the last run (the previous
    /// 24 hours the first time), missed days included, day by day.
    ///
    /// Exit status: 0 when every item is delivered or skipped with a reason; 2 when some
    /// delivery failed (the window stays open and the next run finishes it); 1 on an error
    /// that stopped the run.
    Run {
        /// Configuration file (TOML); see docs/examples/connector.toml.
        #[arg(long)]
        config: PathBuf,
        /// End of the window (RFC 3339); default: now.
        #[arg(long, value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        /// Take the window again from this time (RFC 3339); deliveries already made are
        /// not repeated.
        #[arg(long, value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        /// Write the run report (JSON) to this file.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Logs in to both sides, checks the mapping file and says where each registered
    /// employee's items would go. Imports nothing.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Runs every day at the configured time (schedule.daily_at_utc), until stopped.
    Schedule {
        #[arg(long)]
        config: PathBuf,
        /// Directory for one JSON report per run.
        #[arg(long)]
        report_dir: Option<PathBuf>,
    },
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-23T00:00:00Z: {e}"))
}

fn connector(config: &std::path::Path) -> anyhow::Result<Connector> {
    let config = Config::load(config)?;
    Ok(Connector::new(config, Arc::new(Utc::now))?)
}

fn write_report(report: &RunReport, path: &std::path::Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(path, json + "\n")
        .with_context(|| format!("writing the report {}", path.display()))
}

async fn main_inner() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            until,
            since,
            report,
        } => {
            let connector = connector(&config)?;
            let outcome = connector.run(until.unwrap_or_else(Utc::now), since).await?;
            println!("{}", outcome.summary());
            if let Some(path) = report {
                write_report(&outcome, &path)?;
            }
            Ok(if outcome.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Check { config } => {
            let connector = connector(&config)?;
            for line in connector.check().await? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule { config, report_dir } => {
            let connector = connector(&config)?;
            let at = Config::load(&config)?.daily_at;
            loop {
                let now = Utc::now();
                let next = connector::run::next_daily_run(now, at);
                tracing::info!(next = %next, "waiting for the next daily run");
                tokio::select! {
                    () = tokio::time::sleep((next - now).to_std().unwrap_or_default()) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                }
                match connector.run(Utc::now(), None).await {
                    Ok(outcome) => {
                        tracing::info!("run finished:\n{}", outcome.summary());
                        if let Some(dir) = &report_dir {
                            let path = dir.join(format!(
                                "run-{}.json",
                                outcome.started_at.format("%Y%m%dT%H%M%SZ")
                            ));
                            if let Err(e) = write_report(&outcome, &path) {
                                tracing::error!("{e:#}");
                            }
                        }
                    }
                    // A failed run leaves its window open; tomorrow's run takes it again.
                    Err(e) => tracing::error!("run failed: {e}"),
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match main_inner().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
