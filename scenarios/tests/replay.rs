//! Every recorded scenario passes, and what lands is snapshot: per mailbox, the folder and
//! a stable summary of each message (for large scenarios, counts and a digest), so that
//! any change in what lands shows up in review.

use std::path::PathBuf;

use scenarios::{Scenario, Verdict};
use sha2::{Digest, Sha256};

fn recorded() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recorded");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_scenario_passes_and_its_outcome_is_snapshot() {
    let mut failures = Vec::new();
    for file in recorded() {
        let scenario = Scenario::load(&file).unwrap();
        let work = scenarios::harness::temp_dir(&format!("replay-{}", scenario.name));
        let replay = format!("cargo run --release -p scenarios -- run {}", file.display());
        let outcome = scenarios::runner::run(&scenario, &work, replay)
            .await
            .unwrap();
        std::fs::remove_dir_all(&work).unwrap();
        if outcome.report.verdict == Verdict::Fail {
            failures.push(serde_json::to_string_pretty(&outcome.report).unwrap());
        }
        let summary = scenarios::reconcile::outcome_summary(&outcome.landed);
        let snapshot = if summary.lines().count() > 400 {
            let digest: String = Sha256::digest(summary.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let mut counts: Vec<String> = summary
                .lines()
                .filter(|l| !l.starts_with("  "))
                .map(str::to_owned)
                .collect();
            counts.push(format!("digest of the full listing: {digest}"));
            counts.join("\n")
        } else {
            summary
        };
        let skips: Vec<String> = outcome
            .report
            .skipped_by_reason
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        insta::assert_snapshot!(
            scenario.name.clone(),
            format!("skipped: {}\n\n{snapshot}", skips.join(", "))
        );
    }
    assert!(
        failures.is_empty(),
        "failing scenarios:\n{}",
        failures.join("\n")
    );
}
