//! Customer data at rest: an item's staged file goes as soon as every one of its
//! mailboxes has it, so one item at a time never keeps more than its own file.

use scenarios::{Scenario, Verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_items_file_is_not_kept_until_the_window_closes() {
    let file = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("recorded/rule-capture-modes-and-kinds.json");
    let scenario = Scenario::load(&file).unwrap();
    let sizes: Vec<u64> = scenario
        .items
        .iter()
        .filter_map(|i| {
            let kind = i["type"].as_str()?;
            i[kind]["attachment"]["size"].as_u64()
        })
        .collect();
    let (largest, all) = (*sizes.iter().max().unwrap(), sizes.iter().sum::<u64>());
    assert!(sizes.len() > 3 && all > largest);
    let work = scenarios::harness::temp_dir("staging-peak");
    let outcome = scenarios::runner::run_with(&scenario, &work, String::new(), 1)
        .await
        .unwrap();
    std::fs::remove_dir_all(&work).unwrap();
    assert_eq!(outcome.report.verdict, Verdict::Pass);
    let peak = outcome
        .runs
        .iter()
        .map(|r| r.peak_staging_bytes)
        .max()
        .unwrap();
    assert!(
        peak > 0 && peak <= largest,
        "{peak} bytes at rest at once; one item at a time keeps at most its own file ({largest} of {all})"
    );
}
