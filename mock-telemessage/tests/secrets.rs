//! Secrets never reach the logs: the log output of a login, a failed login, a lockout and
//! authenticated calls is captured and searched for the password and the token.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_password_or_token_appears_in_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
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
