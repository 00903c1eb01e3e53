//! Runs a scenario: both fakes in-process on ports the OS picks, the connector library
//! for each of the scenario's runs, then the reconciliation.

use std::path::Path;
use std::time::Duration;

use connector::{Connector, RunReport};

use crate::harness::{Crashes, Fakes, fixed_clock};
use crate::model::Scenario;
use crate::oracle;
use crate::reconcile::{self, Landed, ScenarioReport};

/// Everything a scenario run produced.
#[derive(Debug)]
pub struct Outcome {
    pub report: ScenarioReport,
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
    let crashes = Crashes::new(&scenario.crashes);
    // Crash points count the mailbox's requests only: the connector lists and delivers at
    // once, so where the provider's requests fall among them varies with timing, while
    // the mailbox's requests come in the same order in every run (one at a time).
    let fakes = Fakes::for_scenario_wrapped(scenario, |r| r, crashes.layer()).await?;
    let state = work.join("state");
    std::fs::create_dir_all(&state)?;
    let mapping = crate::harness::write_mapping(scenario, work)?;
    let mut config = fakes.scenario_config(scenario, &state, mapping)?;
    config.concurrency = concurrency;
    config.page_size = 500;
    let mut runs = Vec::new();
    for spec in &scenario.runs {
        // Both sides agree on the time: the provider lists what is visible by then.
        fakes.clock.set(spec.run_at());
        loop {
            let mut connector = Connector::new(config.clone(), fixed_clock(spec.run_at()))?
                .with_retry_delays(Duration::from_millis(1), Duration::from_millis(50));
            if !scenario.crashes.is_empty() {
                // Deliveries committed by count, never by time: what a crash loses (and
                // the resumed run must look up) is then the same in every run.
                connector = connector.with_group_commit(connector::store::GroupCommit {
                    max_records: 8,
                    max_delay: Duration::MAX,
                });
            }
            let (until, since) = (spec.until, spec.since);
            let mut run = tokio::spawn(async move { connector.run(until, since).await });
            tokio::select! {
                () = crashes.crashed() => {
                    // Stopped dead, as by SIGKILL: a new connector resumes the same run.
                    run.abort();
                    let _ = run.await;
                    crashes.release();
                }
                finished = &mut run => {
                    runs.push(finished??);
                    break;
                }
            }
        }
    }
    let expected = oracle::expected(scenario);
    let landed = reconcile::landed(scenario, &fakes.mailbox)?;
    let report = reconcile::reconcile(scenario, &expected, &landed, &runs, replay);
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
