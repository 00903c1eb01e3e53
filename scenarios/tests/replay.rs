//! Every recorded scenario passes, and what happens to each item is snapshot, one line per
//! item (where it landed and what it carried, or why it was skipped), so that any change
//! in what lands shows up in review as lines a person can read.
//!
//! One test per scenario, so that one failure does not hide another; a failing scenario
//! prints its findings before any snapshot is compared.

use std::path::PathBuf;

use scenarios::{Scenario, Verdict};

fn recorded_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recorded")
}

async fn replay(name: &str) {
    let file = recorded_dir().join(format!("{name}.json"));
    let scenario = Scenario::load(&file).unwrap();
    let work = scenarios::harness::temp_dir(&format!("replay-{name}"));
    let replay = format!("cargo run --release -p scenarios -- run scenarios/recorded/{name}.json");
    let outcome = scenarios::runner::run(&scenario, &work, replay)
        .await
        .unwrap();
    std::fs::remove_dir_all(&work).unwrap();
    assert!(
        outcome.report.verdict == Verdict::Pass,
        "{name} fails:\n{}",
        serde_json::to_string_pretty(&outcome.report).unwrap()
    );
    let summary = scenarios::reconcile::outcome_summary(&outcome.landed, &outcome.runs);
    let skips: Vec<String> = outcome
        .report
        .skipped_by_reason
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    // What each run's report says it did (seeded faults are drawn by request, not by
    // arrival, so this does not vary between replays either).
    let accounting: String = outcome
        .runs
        .iter()
        .enumerate()
        .map(|(n, r)| format!("run {}: {}\n", n + 1, r.accounting.line()))
        .collect();
    insta::assert_snapshot!(
        scenario.name.clone(),
        format!("skipped: {}\n{accounting}\n{summary}", skips.join(", "))
    );
}

macro_rules! replays {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                replay($name).await;
            }
        )*

        /// A scenario file without a test here would never be replayed.
        #[test]
        fn every_recorded_file_has_its_test() {
            let listed: std::collections::BTreeSet<&str> = [$($name),*].into();
            let mut on_disk = std::collections::BTreeSet::new();
            for entry in std::fs::read_dir(recorded_dir()).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|x| x == "json") {
                    on_disk.insert(path.file_stem().unwrap().to_string_lossy().into_owned());
                }
            }
            let on_disk: std::collections::BTreeSet<&str> =
                on_disk.iter().map(String::as_str).collect();
            assert_eq!(on_disk, listed, "add a line to `replays!` for each recorded scenario");
        }
    };
}

replays! {
    day_50_employees => "day-50-employees",
    faults_lost_answers => "faults-lost-answers",
    hostile_provider_data => "hostile-provider-data",
    missed_day => "missed-day",
    rule_answers_cut_short => "rule-answers-cut-short",
    rule_archive_folder_deleted => "rule-archive-folder-deleted",
    rule_automatic_mapping_off => "rule-automatic-mapping-off",
    rule_calls => "rule-calls",
    rule_crash_after_a_window_closes => "rule-crash-after-a-window-closes",
    rule_capture_modes_and_kinds => "rule-capture-modes-and-kinds",
    rule_deletions_edits_reactions => "rule-deletions-edits-reactions",
    rule_distinct_mailboxes_and_folder => "rule-distinct-mailboxes-and-folder",
    rule_fallback_mailbox_gone_too => "rule-fallback-mailbox-gone-too",
    rule_invalid_items => "rule-invalid-items",
    rule_files_owed => "rule-files-owed",
    rule_files_above_one_request => "rule-files-above-one-request",
    rule_last_answer_looked_up => "rule-last-answer-looked-up",
    rule_late_visible => "rule-late-visible",
    rule_mailbox_gone_mid_run => "rule-mailbox-gone-mid-run",
    rule_mapping_numbers => "rule-mapping-numbers",
    rule_mapping_precedence => "rule-mapping-precedence",
    rule_names_are_data => "rule-names-are-data",
    rule_page_cut_short => "rule-page-cut-short",
    rule_report_adds_up => "rule-report-adds-up",
    rule_revised_items => "rule-revised-items",
    rule_shared_attachment_revised => "rule-shared-attachment-revised",
    rule_size_boundaries => "rule-size-boundaries",
    rule_token_revoked_twice => "rule-token-revoked-twice",
    rule_unmapped_catch_all => "rule-unmapped-catch-all",
    rule_unmapped_catch_all_not_a_user => "rule-unmapped-catch-all-not-a-user",
}

/// A scenario that cannot be run is reported as failed, with why, and the scenarios
/// after it still run: one error must not hide what the rest would find.
#[test]
fn replay_reports_a_scenario_it_cannot_run_and_goes_on_with_the_others() {
    let dir = scenarios::harness::temp_dir("replay-goes-on");
    std::fs::write(dir.join("a-broken.json"), "{ \"name\": \"a-broken\", ").unwrap();
    std::fs::copy(
        recorded_dir().join("rule-mapping-precedence.json"),
        dir.join("b-rule-mapping-precedence.json"),
    )
    .unwrap();
    let report = dir.join("report.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scenarios"))
        .args(["replay", "--dir"])
        .arg(&dir)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let reports: Vec<scenarios::ScenarioReport> =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let verdicts: Vec<(&str, Verdict, bool)> = reports
        .iter()
        .map(|r| (r.name.as_str(), r.verdict, r.error.is_some()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("a-broken", Verdict::Fail, true),
            ("rule-mapping-precedence", Verdict::Pass, false),
        ]
    );
    assert!(stdout.contains("could not be run to its end"), "{stdout}");
    assert!(
        stdout.contains("2 scenario(s): 1 passed, 1 failed"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
