//! Phase 2, the import: the connector takes the day from the fake provider into the fake
//! mailbox, one run per scheduled daily run, as a child process (its own memory and CPU)
//! or in this process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use connector::RunReport;
use serde::Serialize;

use super::usage::{Bucket, Rusage, Sampler};
use super::{ConnectorMode, LoadParams};
use crate::conformance::{self, Ended, Handover, UnderTest};
use crate::harness::{CLIENT_SECRET, Fakes, PROVIDER_PASSWORD};
use crate::model::Scenario;

/// What phase 2 measured.
#[derive(Debug, Clone, Serialize)]
pub struct ImportFigures {
    pub runs: usize,
    pub wall_seconds: f64,
    pub items_fetched: u64,
    pub deliveries: u64,
    pub already_delivered: u64,
    pub per_second: f64,
    pub skipped_by_reason: BTreeMap<String, u64>,
    pub failed: u64,
    pub retries: u64,
    pub throttled: u64,
    pub retry_after_wait_ms: u64,
    /// Per connector run: from an item being staged (ready to send) to its mailbox's
    /// answer, so that time spent queued counts.
    pub latency: Vec<connector::report::Latency>,
    /// The connector's own CPU (getrusage of the child) and peak memory (VmHWM, from its
    /// report); `None` when it ran in this process, whose figures are the fakes'.
    pub connector: Option<Rusage>,
    pub buckets: Vec<Bucket>,
    /// The connector's state directory once the day is imported (its SQLite state and
    /// what is left staged): the disk the connector keeps between runs.
    pub state_bytes: u64,
    /// Whether every run wrote a report (a program under test may not): without them
    /// the figures above that come from reports are zero, `deliveries` excepted.
    pub reported: bool,
    #[serde(skip)]
    pub reports: Vec<RunReport>,
}

impl ImportFigures {
    /// The connector's run reports, as the reconciliation reads them.
    pub fn runs(&self) -> &[RunReport] {
        &self.reports
    }
}

/// Runs the connector for each of the day's runs. `expected` is a rough count of
/// deliveries, for progress lines.
pub async fn run(
    fakes: &Fakes,
    mailbox: &super::mailbox::Mailbox,
    scenario: &Scenario,
    p: &LoadParams,
    work: &Path,
    expected: usize,
) -> anyhow::Result<ImportFigures> {
    let state = work.join("state");
    std::fs::create_dir_all(&state)?;
    let mapping = crate::harness::write_mapping(scenario, work)?;
    // The binary and its configuration file (the same for every run).
    let binary = match p.connector {
        _ if matches!(p.under, UnderTest::Command { .. }) => None,
        ConnectorMode::Process => Some((
            crate::harness::connector_binary(p.connector_bin.as_deref())?,
            write_config(fakes, scenario, p, work, &state, mapping.as_deref())?,
        )),
        ConnectorMode::InProcess => None,
    };
    let child = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let sampler = Sampler::start("import", mailbox.clone(), expected as u64, child.clone());
    let foreign = matches!(p.under, UnderTest::Command { .. });
    let started = Instant::now();
    let mut runs_without_report = 0;
    let mut reports = Vec::new();
    let own_dir = work.join("connector");
    std::fs::create_dir_all(&own_dir)?;
    for (n, spec) in scenario.runs.iter().enumerate() {
        let report = match &binary {
            _ if let UnderTest::Command { command, .. } = &p.under => {
                // Time passes for real in a load run: waits on Retry-After are not cut.
                let handover = Handover::new(
                    fakes,
                    scenario,
                    spec,
                    mapping.clone(),
                    &own_dir,
                    work.join(format!("report-{n}.json")),
                    (3_600_000, p.concurrency),
                );
                let log = work.join(format!("connector-{n}.log"));
                let none = crate::harness::Crashes::default();
                match conformance::run_once(command, &handover, &log, &none).await? {
                    Ended::Finished(Some(report)) => *report,
                    Ended::Finished(None) => {
                        runs_without_report += 1;
                        continue;
                    }
                    Ended::Killed => unreachable!("a load run has no crash points"),
                }
            }
            Some((bin, config)) => {
                let out = work.join(format!("report-{n}.json"));
                spawn(bin, config, spec.until, &out, work, &child).await?
            }
            None => {
                let config = import_config(fakes, scenario, p, &state, mapping.clone())?;
                // The clock the scenario runner gives a run: half an hour after its
                // window ends (`RunSpec::run_at`), not the wall clock, so that the same
                // day reads the same whenever it is loaded.
                connector::Connector::new(config, crate::harness::fixed_clock(spec.run_at()))?
                    .run(spec.until, spec.since)
                    .await?
            }
        };
        reports.push(report);
    }
    let wall = started.elapsed().as_secs_f64();
    let buckets = sampler.finish().await;
    let mut skipped_by_reason = BTreeMap::new();
    for s in reports.iter().flat_map(|r| &r.skipped) {
        *skipped_by_reason.entry(s.reason.clone()).or_insert(0) += 1;
    }
    let sum = |f: fn(&RunReport) -> u64| reports.iter().map(f).sum::<u64>();
    // A program under test that writes no report is counted by what the fake mailbox
    // stored (its counters were reset before this phase).
    let deliveries = if runs_without_report > 0 {
        mailbox.figures().await?.counters.imports
    } else {
        sum(|r| r.deliveries)
    };
    Ok(ImportFigures {
        runs: reports.len() + runs_without_report,
        wall_seconds: wall,
        items_fetched: sum(|r| r.items_fetched),
        deliveries,
        already_delivered: sum(|r| r.already_delivered),
        per_second: deliveries as f64 / wall.max(1e-9),
        skipped_by_reason,
        failed: sum(|r| r.failed.len() as u64),
        retries: sum(|r| r.retries),
        throttled: sum(|r| r.throttled),
        retry_after_wait_ms: sum(|r| r.retry_after_wait_ms),
        latency: reports
            .iter()
            .filter_map(|r| r.delivery_latency.clone())
            .collect(),
        // CPU from getrusage. Peak memory from the connector's own report: a child's
        // getrusage peak also counts the copy of this process it was forked from.
        // A program under test that reports no peak has none here (0): a child's
        // getrusage peak would count the copy of this process it was forked from.
        connector: (binary.is_some() || foreign).then(|| Rusage {
            max_rss_bytes: reports
                .iter()
                .filter_map(|r| r.peak_rss_bytes)
                .max()
                .unwrap_or(0),
            ..Rusage::children()
        }),
        buckets,
        state_bytes: dir_bytes(if foreign { &own_dir } else { &state }),
        reported: runs_without_report == 0,
        reports,
    })
}

/// Bytes of the files under `dir`, at any depth (0 for what cannot be read).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// The connector's configuration file for the fakes: the settings the in-process run
/// gets. Secrets go by environment only.
fn write_config(
    fakes: &Fakes,
    scenario: &Scenario,
    p: &LoadParams,
    work: &Path,
    state: &Path,
    mapping: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let config = import_config(fakes, scenario, p, state, mapping.map(Path::to_path_buf))?;
    let text = crate::harness::connector_toml(&config, scenario.mapping_default_region.as_deref());
    let path = work.join("connector.toml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The connector's settings for a load run.
fn import_config(
    fakes: &Fakes,
    scenario: &Scenario,
    p: &LoadParams,
    state: &Path,
    mapping: Option<PathBuf>,
) -> anyhow::Result<connector::Config> {
    let mut config = fakes.scenario_config(scenario, state, mapping)?;
    config.concurrency = p.concurrency;
    config.page_size = 1000;
    config.pacing = p.limits.for_pacing(p.throttling).filter(|_| p.pacing);
    Ok(config)
}

/// Runs `connector run` as a child and reads its report. Its log goes to a file in the
/// work directory; the end of it is shown if the run fails.
async fn spawn(
    bin: &Path,
    config: &Path,
    until: chrono::DateTime<chrono::Utc>,
    report: &Path,
    work: &Path,
    pid: &std::sync::atomic::AtomicU32,
) -> anyhow::Result<RunReport> {
    let log_path = work.join("connector.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut child = tokio::process::Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--until")
        .arg(until.to_rfc3339())
        .arg("--report")
        .arg(report)
        .env("TELEMESSAGE_PASSWORD", PROVIDER_PASSWORD)
        .env("M365_CLIENT_SECRET", CLIENT_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        // Not left running when the load run stops early (Ctrl-C).
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    pid.store(
        child.id().unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    let status = child.wait().await;
    pid.store(0, std::sync::atomic::Ordering::Relaxed);
    let status = status.with_context(|| format!("waiting for {}", bin.display()))?;
    if !crate::harness::run_finished(status) {
        anyhow::bail!(
            "the connector exited with {status}; the end of its log ({}):\n{}",
            log_path.display(),
            crate::harness::log_tail(&log_path)
        );
    }
    let text = std::fs::read_to_string(report)
        .with_context(|| format!("reading the connector's report {}", report.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("reading the connector's report {}", report.display()))
}
