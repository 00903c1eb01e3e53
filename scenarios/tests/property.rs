//! Random small scenarios through the whole pipeline (generator model → fakes → connector
//! → reconciliation), with a fixed seed and a bounded number of cases. A failure is shrunk
//! by proptest and saved as an explicit scenario under scenarios/recorded/, so it is
//! replayed forever after.

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use scenarios::Verdict;

#[test]
fn random_scenarios_reconcile() {
    let config = Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7u8; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = runner.run(&scenarios::strategy::scenario(), |scenario| {
        let work = scenarios::harness::temp_dir("property");
        let outcome = runtime.block_on(scenarios::runner::run(
            &scenario,
            &work,
            "scenarios/tests/property.rs".into(),
        ));
        let _ = std::fs::remove_dir_all(&work);
        let outcome = outcome.map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        if outcome.report.verdict == Verdict::Fail {
            return Err(TestCaseError::fail(
                serde_json::to_string_pretty(&outcome.report).unwrap(),
            ));
        }
        Ok(())
    });
    if let Err(TestError::Fail(reason, mut minimal)) = result {
        let name = format!("found-by-property-{}", std::process::id());
        minimal.name = name.clone();
        minimal.description = format!("shrunk by the property test from a failure: {reason}");
        // Written outside the source tree: a test never changes the repository. A person
        // who wants to keep the case copies it into scenarios/recorded/ (and adds it to
        // the replay test's list).
        let path = std::env::temp_dir().join(format!("{name}.json"));
        std::fs::write(&path, minimal.to_file_json()).unwrap();
        panic!(
            "a random scenario failed; the shrunk case is saved as {} (replay: cargo run --release -p scenarios -- run {0}; to keep it, copy it into scenarios/recorded/)\n{reason}",
            path.display()
        );
    }
    result.unwrap();
}
