//! No secret reaches the connector's logs, its report or its Debug output during a whole
//! run. In a test binary of its own: the log capture is a thread-local subscriber, and
//! tests running beside it on other threads could register log call sites before it.

use std::time::Duration;

use connector::Connector;
use tests::{Fakes, examples, fixed_clock, t, temp_dir};

const NOW: &str = "2026-11-23T01:00:00Z";
const UNTIL: &str = "2026-11-23T00:00:00Z";

#[tokio::test]
async fn no_secret_reaches_the_logs_the_report_or_debug_output() {
    let (capture, _guard) = mock_common::LogCapture::install();
    let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
    let state = temp_dir("secrets");
    let config = fakes.config(&state, Some(examples().join("mapping.csv")));
    let connector = Connector::new(config, fixed_clock(t(NOW)))
        .unwrap()
        .with_retry_delays(Duration::from_millis(1), Duration::from_millis(20));
    let report = connector.run(t(UNTIL), None).await.unwrap();
    let logs = capture.text();
    assert!(
        logs.contains("logged in to the provider") && logs.contains("signed in to Microsoft 365"),
        "the capture works"
    );
    let report_json = serde_json::to_string(&report).unwrap();
    let debug = format!("{connector:?}");
    for secret in [
        tests::PROVIDER_PASSWORD,
        tests::CLIENT_SECRET,
        "eyJ0eXAiOiJKV1Qi",
        "tm_",
    ] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
        assert!(!report_json.contains(secret), "{secret} reached the report");
        assert!(!debug.contains(secret), "{secret} reached Debug");
    }
    std::fs::remove_dir_all(&state).unwrap();
}
