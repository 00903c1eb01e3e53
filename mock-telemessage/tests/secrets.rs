//! Secrets never reach the logs: the log output of a login, a failed login, a lockout and
//! authenticated calls is captured and searched for the password and the token.

mod common;

use common::*;

#[tokio::test]
async fn no_password_or_token_appears_in_the_logs() {
    let (capture, _guard) = mock_common::LogCapture::install();

    let fake = fake(vec![text_item("wa-1", "2026-11-22T10:00:00Z")]);
    let token = fake.token().await;
    fake.get(
        "/api/v1/items?since=2026-11-22T00:00:00Z&until=2026-11-23T00:00:00Z",
        Some(&token),
    )
    .await;
    for _ in 0..6 {
        fake.login_as(USER, "Wrong-Password-Typed").await;
    }
    fake.get("/api/v1/users", Some("tm_forged_token_value"))
        .await;

    let logs = capture.text();
    assert!(
        logs.contains("login succeeded"),
        "the capture works: {logs}"
    );
    assert!(logs.contains("account locked"));
    for secret in [
        PASSWORD,
        "Wrong-Password-Typed",
        token.as_str(),
        "tm_forged_token_value",
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    assert!(!format!("{:?}", fake.state).contains(PASSWORD));
}
