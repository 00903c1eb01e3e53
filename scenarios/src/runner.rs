//! Runs a scenario: both fakes in-process on ports the OS picks, the connector library
//! for each of the scenario's runs, then the reconciliation.

use std::path::Path;
use std::time::Duration;

use connector::{Connector, RunReport};

use crate::harness::{Fakes, fixed_clock};
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
}

/// Runs `scenario` with its state under `work`; `replay` is the command that replays it.
pub async fn run(scenario: &Scenario, work: &Path, replay: String) -> anyhow::Result<Outcome> {
    run_with(scenario, work, replay, 8).await
}

/// As [`run`], with the connector's concurrency given.
pub async fn run_with(
    scenario: &Scenario,
    work: &Path,
    replay: String,
    concurrency: usize,
) -> anyhow::Result<Outcome> {
    let fakes = Fakes::for_scenario(scenario, |r| r).await?;
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
        let connector = Connector::new(config.clone(), fixed_clock(spec.run_at()))?
            .with_retry_delays(Duration::from_millis(1), Duration::from_millis(50));
        runs.push(connector.run(spec.until, spec.since).await?);
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
    })
}
