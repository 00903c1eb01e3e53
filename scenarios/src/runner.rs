//! Runs a scenario: both fakes in-process on ports the OS picks, the connector library
//! for each of the scenario's runs, then the reconciliation.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use connector::{Connector, RunReport};

use crate::conformance::{self, Ended, Handover, UnderTest};
use crate::harness::{Crashes, Fakes, fixed_clock};
use crate::model::{CrashBy, RunSpec, Scenario};
use crate::oracle;
use crate::reconcile::{self, Landed, Reconciliation, ScenarioReport};

/// The connector's retry delays in scenarios (waits on `Retry-After` capped at the most).
const RETRY_BASE: Duration = Duration::from_millis(1);
const RETRY_MAX: Duration = Duration::from_millis(50);
/// With crash points, delivery records are committed every this many.
const COMMIT_EVERY: usize = 8;

/// Everything a scenario run produced.
#[derive(Debug)]
pub struct Outcome {
    pub report: ScenarioReport,
    /// The connector's run reports (a program under test that writes none gives none).
    pub runs: Vec<RunReport>,
    pub landed: Landed,
    /// Seeded faults the two fakes injected: (provider, mailbox).
    pub faults_injected: (u64, u64),
    /// Crash points reached (each stopped the connector dead; a new one resumed).
    pub crashes: u64,
    /// Requests the mailbox answered (or held back at a crash).
    pub requests: u64,
}

/// Runs `scenario` with its state under `work`; `replay` is the command that replays it.
/// The connector's concurrency is the scenario's own, else 8.
pub async fn run(scenario: &Scenario, work: &Path, replay: String) -> anyhow::Result<Outcome> {
    run_with(scenario, work, replay, scenario.concurrency.unwrap_or(8)).await
}

/// As [`run`], with the connector's concurrency given.
pub async fn run_with(
    scenario: &Scenario,
    work: &Path,
    replay: String,
    concurrency: usize,
) -> anyhow::Result<Outcome> {
    run_through(scenario, work, replay, concurrency, |r| r).await
}

/// As [`run`], with the connector under test given: ours, or any program
/// (`--connector-cmd`, judged under its rules).
pub async fn run_judged(
    scenario: &Scenario,
    work: &Path,
    replay: String,
    under: &UnderTest,
) -> anyhow::Result<Outcome> {
    let concurrency = scenario.concurrency.unwrap_or(8);
    run_inner(scenario, work, replay, concurrency, |r| r, under).await
}

/// As [`run_with`], with `wrap_mailbox` around the fake mailbox's router (inside the
/// crash points): for tests that change what reaches the mailbox and check that the
/// reconciliation sees it.
pub async fn run_through(
    scenario: &Scenario,
    work: &Path,
    replay: String,
    concurrency: usize,
    wrap_mailbox: impl FnOnce(axum::Router) -> axum::Router,
) -> anyhow::Result<Outcome> {
    run_inner(
        scenario,
        work,
        replay,
        concurrency,
        wrap_mailbox,
        &UnderTest::Ours,
    )
    .await
}

async fn run_inner(
    scenario: &Scenario,
    work: &Path,
    replay: String,
    concurrency: usize,
    wrap_mailbox: impl FnOnce(axum::Router) -> axum::Router,
    under: &UnderTest,
) -> anyhow::Result<Outcome> {
    let crashes = Crashes::new(&scenario.crashes);
    // Crash points count the mailbox's requests only: the connector lists and delivers at
    // once, so where the provider's requests fall among them varies with timing, while
    // the mailbox's requests come in the same order in every run (one at a time).
    let crash_layer = crashes.layer();
    let fakes =
        Fakes::for_scenario_wrapped(scenario, |r| r, move |r| crash_layer(wrap_mailbox(r))).await?;
    let state = work.join("state");
    std::fs::create_dir_all(&state)?;
    let mapping = crate::harness::write_mapping(scenario, work)?;
    let mut config = fakes.scenario_config(scenario, &state, mapping)?;
    config.concurrency = concurrency;
    config.page_size = 500;
    let binary = match scenario.crash_by {
        _ if matches!(under, UnderTest::Command { .. }) => None,
        CrashBy::Abort => None,
        CrashBy::Sigkill => {
            let bin = crate::harness::connector_binary(None)?;
            let toml = work.join("connector.toml");
            std::fs::write(
                &toml,
                crate::harness::connector_toml(&config, scenario.mapping_default_region.as_deref()),
            )?;
            Some((bin, toml))
        }
    };
    let mut runs = Vec::new();
    // Whether every run of the connector under test wrote a report (ours always does).
    let mut every_report = true;
    let own_dir = work.join("connector");
    std::fs::create_dir_all(&own_dir)?;
    for (n, spec) in scenario.runs.iter().enumerate() {
        // Both sides agree on the time: the provider lists what is visible by then.
        fakes.clock.set(spec.run_at());
        for attempt in 0.. {
            let finished = match (under, &binary) {
                (UnderTest::Command { command, .. }, _) => {
                    let handover = Handover::new(
                        &fakes,
                        scenario,
                        spec,
                        config.mapping_csv.clone(),
                        &own_dir,
                        work.join(format!("report-{n}.json")),
                        (RETRY_MAX.as_millis() as u64, concurrency),
                    );
                    let log = work.join(format!("run-{n}-{attempt}.log"));
                    match conformance::run_once(command, &handover, &log, &crashes).await? {
                        Ended::Killed => None,
                        Ended::Finished(report) => {
                            every_report &= report.is_some();
                            Some(report.map(|r| *r))
                        }
                    }
                }
                (UnderTest::Ours, None) => in_process(scenario, &config, spec, &crashes)
                    .await?
                    .map(Some),
                (UnderTest::Ours, Some((bin, toml))) => {
                    let report = work.join(format!("report-{n}.json"));
                    as_child(scenario, bin, toml, spec, &report, &crashes)
                        .await?
                        .map(Some)
                }
            };
            if let Some(report) = finished {
                runs.extend(report);
                break;
            }
        }
    }
    let gone = fakes
        .mailbox
        .gone_users()
        .into_iter()
        .map(|(upn, _)| upn.to_lowercase())
        .collect::<Vec<_>>();
    let expected = oracle::expected(scenario).with_gone(scenario, gone);
    let landed = reconcile::landed(scenario, &expected.long_ids, &fakes.mailbox)?;
    let mut reconciliation =
        Reconciliation::new(scenario, expected.gone.clone(), &landed, &runs, replay)
            .judged(under.rules(), every_report);
    reconciliation.check_part(&expected);
    let report = reconciliation.finish();
    Ok(Outcome {
        report,
        runs,
        landed,
        faults_injected: (
            fakes.provider.counters().faults_injected,
            fakes.mailbox.counters().faults_injected,
        ),
        crashes: crashes.hit(),
        requests: crashes.seen(),
    })
}

/// One run of the connector library in this process: its report, or `None` when a crash
/// point stopped it dead (its task aborted, as SIGKILL would).
async fn in_process(
    scenario: &Scenario,
    config: &connector::Config,
    spec: &RunSpec,
    crashes: &Crashes,
) -> anyhow::Result<Option<RunReport>> {
    let mut connector = Connector::new(config.clone(), fixed_clock(spec.run_at()))?
        .with_retry_delays(RETRY_BASE, RETRY_MAX);
    if !scenario.crashes.is_empty() {
        // Deliveries committed by count, never by time: what a crash loses (and the
        // resumed run must look up) is then the same in every run.
        connector = connector.with_group_commit(connector::store::GroupCommit {
            max_records: COMMIT_EVERY,
            max_delay: Duration::MAX,
        });
    }
    let (until, since) = (spec.until, spec.since);
    let mut run = tokio::spawn(async move { connector.run(until, since).await });
    tokio::select! {
        () = crashes.crashed() => {
            run.abort();
            let _ = run.await;
            crashes.release();
            Ok(None)
        }
        finished = &mut run => Ok(Some(finished??)),
    }
}

/// One run of the `connector` binary as a child process, set up as [`in_process`] sets
/// up the library (the run's clock, retry delays, commits by count): its report, or
/// `None` when a crash point had it killed with SIGKILL.
async fn as_child(
    scenario: &Scenario,
    bin: &Path,
    toml: &Path,
    spec: &RunSpec,
    report: &Path,
    crashes: &Crashes,
) -> anyhow::Result<Option<RunReport>> {
    let log = report.with_extension("log");
    let mut command = tokio::process::Command::new(bin);
    command
        .arg("run")
        .arg("--config")
        .arg(toml)
        .arg("--until")
        .arg(spec.until.to_rfc3339())
        .arg("--report")
        .arg(report)
        .arg("--harness-now")
        .arg(spec.run_at().to_rfc3339())
        .arg("--harness-retry-ms")
        .arg(format!(
            "{},{}",
            RETRY_BASE.as_millis(),
            RETRY_MAX.as_millis()
        ))
        .env("TELEMESSAGE_PASSWORD", crate::harness::PROVIDER_PASSWORD)
        .env("M365_CLIENT_SECRET", crate::harness::CLIENT_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true);
    if let Some(since) = spec.since {
        command.arg("--since").arg(since.to_rfc3339());
    }
    if !scenario.crashes.is_empty() {
        command
            .arg("--harness-commit-every")
            .arg(COMMIT_EVERY.to_string());
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    tokio::select! {
        () = crashes.crashed() => {
            // SIGKILL: no destructor, no flush, no goodbye.
            child.start_kill()?;
            child.wait().await?;
            crashes.release();
            Ok(None)
        }
        status = child.wait() => {
            let status = status?;
            if !crate::harness::run_finished(status) {
                anyhow::bail!(
                    "the connector exited with {status}; its log ({}):\n{}",
                    log.display(),
                    crate::harness::log_tail(&log)
                );
            }
            let text = std::fs::read_to_string(report)
                .with_context(|| format!("reading the connector's report {}", report.display()))?;
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("reading the connector's report {}", report.display())
            })?))
        }
    }
}
