//! Crash points stop the connector dead in both ways the runner knows: its task aborted
//! in the runner's process, or the `connector` binary killed with SIGKILL. Either way the
//! resumed runs end exactly like an uninterrupted run.

use scenarios::model::CrashBy;
use scenarios::{Scenario, Verdict};

/// Runs `scenario` and answers what landed where, the crash points reached and the run
/// reports the binary wrote (none when the library ran in-process).
async fn run(scenario: &Scenario, tag: &str) -> (String, u64, usize) {
    let work = scenarios::harness::temp_dir(tag);
    let outcome = scenarios::runner::run(scenario, &work, String::new())
        .await
        .unwrap();
    let reports = std::fs::read_dir(&work)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with("report-") && name.ends_with(".json")
        })
        .count();
    std::fs::remove_dir_all(&work).unwrap();
    assert_eq!(
        outcome.report.verdict,
        Verdict::Pass,
        "{tag}: {:#?}",
        outcome.report
    );
    (
        scenarios::reconcile::outcome_summary(&outcome.landed, &outcome.runs),
        outcome.crashes,
        reports,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_killed_with_sigkill_resumes_like_an_uninterrupted_run() {
    // Three generated days with a missed run and items listed late: crash points early,
    // mid-window and late, one request at a time so that each point is the same request.
    let mut scenario = Scenario::parse(
        r#"{"name": "sigkill", "runs": [], "generate": {"seed": 11,
            "start": "2026-11-22T00:00:00Z", "days": 3, "employees": 12,
            "external_contacts": 6, "items_per_day": 70, "missed_runs": [2],
            "boundary_cases": false, "late_rate": 0.05}}"#,
    )
    .unwrap();
    scenario.concurrency = Some(1);
    let (clean, none, _) = run(&scenario, "sigkill-clean").await;
    assert_eq!(none, 0);
    scenario.crashes = vec![3, 40, 41, 150, 300];
    scenario.crash_by = CrashBy::Sigkill;
    let (killed, hit, reports) = run(&scenario, "sigkill").await;
    assert_eq!(
        hit, 5,
        "every crash point was reached and killed the binary"
    );
    assert_eq!(
        reports,
        scenario.runs.len(),
        "each run's report came from the binary"
    );
    assert_eq!(killed, clean, "what landed, and what the reports say");
}
