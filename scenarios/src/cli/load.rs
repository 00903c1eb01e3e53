//! `scenarios load`: the load test of the daily import (the work is in `crate::load`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::reports::check_writable;
use crate::Verdict;

/// The arguments of `scenarios load` (its help is on `super::Command`).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 200)]
    pub employees: usize,
    #[arg(long, default_value_t = 100)]
    pub external_contacts: usize,
    #[arg(long, default_value_t = 20_000)]
    pub items_per_day: usize,
    #[arg(long, default_value_t = 1)]
    pub days: u32,
    /// text: no attachments; realistic: the generator's mix of files.
    #[arg(long, value_enum, default_value = "realistic")]
    pub mix: crate::load::Mix,
    /// off: no limit; graph: Exchange Online's per-mailbox defaults; custom: the limits
    /// below. Default: graph under --profile graph, else off.
    #[arg(long, value_enum)]
    pub throttling: Option<crate::load::Throttling>,
    /// lenient: the fake Microsoft 365 answers at once and takes bodies up to 48 MiB
    /// (what the machine can do). graph: Graph's 4 MiB request cap and its seeded,
    /// long-tailed delays, each request holding its mailbox's place in flight; the report
    /// then gives the day's Graph bound (the least time Graph's limits allow) and the
    /// import's time against it.
    #[arg(long, value_enum, default_value = "lenient")]
    pub profile: crate::load::LoadProfile,
    /// The seed of the fake's delays under --profile graph.
    #[arg(long, default_value_t = 0)]
    pub latency_seed: u64,
    #[command(flatten)]
    pub limits: crate::load::Limits,
    /// With --throttling graph or custom: the connector does not pace its mailboxes to
    /// the budgets and only obeys 429s (to compare the two).
    #[arg(long)]
    pub no_pacing: bool,
    /// Share of Graph requests that fail (503, or a lost import answer), seeded.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// process: the connector binary as a child (its own memory and CPU figures).
    #[arg(long, value_enum, default_value = "process")]
    pub connector: crate::load::ConnectorMode,
    /// process: each fake a child process of this program (its own memory and CPU
    /// figures; the reconciliation runs in the fake mailbox's once its peak is read).
    #[arg(long, value_enum, default_value = "process")]
    pub fakes: crate::load::FakesMode,
    /// What the fake mailbox keeps of each message. auto: full bytes if the day fits on
    /// the disk with room to spare, else summary (the SHA-256 of each message and
    /// attachment, and what Graph lists; the reconciliation checks the same things).
    #[arg(long, value_enum, default_value = "auto")]
    pub retain: crate::load::Retain,
    /// The connector binary (default: the one beside this program, built if absent).
    #[arg(long, value_name = "PATH")]
    pub connector_bin: Option<PathBuf>,
    #[command(flatten)]
    pub connector_cmd: crate::conformance::ConnectorArgs,
    /// Requests in flight, for the connector and the raw client alike (the connector's
    /// own default).
    #[arg(long, default_value_t = connector::config::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Requests the raw client sends in phase 1 (default: one per item, 1,000 to 20,000).
    #[arg(long)]
    pub ceiling_requests: Option<u64>,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Midnight (UTC, RFC 3339) of the first day (default: days before today's).
    #[arg(long)]
    pub start: Option<DateTime<Utc>>,
    /// Write the report (JSON) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the report as a self-contained HTML page with charts to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let days = args.days;
    let start = args.start.unwrap_or_else(|| {
        let today = Utc::now()
            .date_naive()
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        today - chrono::TimeDelta::days(i64::from(days))
    });
    let params = crate::load::LoadParams {
        employees: args.employees,
        external_contacts: args.external_contacts,
        items_per_day: args.items_per_day,
        days,
        mix: args.mix,
        // Graph's delays mean little without Graph's four requests in flight per mailbox.
        throttling: args.throttling.unwrap_or(match args.profile {
            crate::load::LoadProfile::Graph => crate::load::Throttling::Graph,
            crate::load::LoadProfile::Lenient => crate::load::Throttling::Off,
        }),
        limits: args.limits,
        pacing: !args.no_pacing,
        fault_rate: args.fault_rate,
        connector: args.connector,
        retain: args.retain,
        connector_bin: args.connector_bin,
        under: args.connector_cmd.under_test(),
        fakes: args.fakes,
        fakes_program: None,
        concurrency: args.concurrency,
        seed: args.seed,
        profile: args.profile,
        latency_seed: args.latency_seed,
        ceiling_requests: args
            .ceiling_requests
            .unwrap_or((args.items_per_day as u64 * u64::from(days)).clamp(1_000, 20_000)),
        start,
    };
    params.check()?;
    // Refused now rather than after an hour of load.
    let (report, html) = (args.report, args.html);
    check_writable(&[&report, &html])?;
    let work = crate::harness::temp_dir("load");
    // Ctrl-C stops the run with everything it made removed: the fakes' temporary files
    // (a day's messages may take many GB) go with them as the program ends, the
    // connector child is killed, and the work directory is removed here.
    let outcome = tokio::select! {
        outcome = crate::load::run(&params, &work) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!(
            "interrupted: the load run stopped; its temporary files are removed"
        )),
    };
    let _ = std::fs::remove_dir_all(&work);
    let outcome = outcome?;
    println!("{}", outcome.table());
    if let Some(path) = &report {
        std::fs::write(path, serde_json::to_string_pretty(&outcome)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &html {
        std::fs::write(path, crate::load::html::page(&outcome)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if outcome.verdict == Verdict::Pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
