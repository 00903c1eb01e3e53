//! Faults are drawn by what a request is about and its attempt number, never by arrival
//! order: the same scenario meets the same faults, and ends the same way, whatever the
//! connector's concurrency.

use scenarios::{Scenario, Verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_scenario_meets_the_same_faults_at_concurrency_1_and_16() {
    let file = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("recorded/faults-lost-answers.json");
    let scenario = Scenario::load(&file).unwrap();
    let mut seen = Vec::new();
    for concurrency in [1, 16] {
        let work = scenarios::harness::temp_dir(&format!("determinism-{concurrency}"));
        let outcome = scenarios::runner::run_with(&scenario, &work, String::new(), concurrency)
            .await
            .unwrap();
        std::fs::remove_dir_all(&work).unwrap();
        assert_eq!(
            outcome.report.verdict,
            Verdict::Pass,
            "concurrency {concurrency}"
        );
        let (provider, mailbox) = outcome.faults_injected;
        assert!(
            provider > 0 && mailbox > 0,
            "the scenario injects faults on both sides"
        );
        let accounting: Vec<String> = outcome.runs.iter().map(|r| r.accounting.line()).collect();
        seen.push((
            concurrency,
            outcome.faults_injected,
            accounting,
            outcome.runs.iter().map(|r| r.retries).sum::<u64>(),
            scenarios::reconcile::outcome_summary(&outcome.landed, &outcome.runs),
        ));
    }
    let (one, sixteen) = (&seen[0], &seen[1]);
    assert_eq!(one.1, sixteen.1, "faults injected (provider, mailbox)");
    assert_eq!(one.2, sixteen.2, "what the reports account for");
    assert_eq!(one.3, sixteen.3, "retries");
    assert_eq!(one.4, sixteen.4, "what landed where");
}
