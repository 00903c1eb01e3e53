//! Client secrets and tokens never reach the logs or the inspection API.

mod common;

use common::*;

#[tokio::test]
async fn no_secret_or_token_appears_in_logs_debug_or_inspection() {
    let (capture, _guard) = mock_common::LogCapture::install();

    let fake = fake();
    let token = fake.token().await;
    fake.folder(&token, ALICE, "WhatsApp Archiver").await;
    fake.token_request(
        TENANT,
        &[
            ("client_id", APP),
            ("client_secret", "Typo-In-Secret"),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    fake.get("forged-token-value", &format!("/v1.0/users/{ALICE}"))
        .await;
    let inspection = fake.get(ADMIN, "/admin/v1/tenants").await;
    // The viewer's sign-in, refused then accepted: neither token nor cookie is logged.
    let mut cookie = String::new();
    for tried in ["Wrong-Admin-Token", ADMIN] {
        let answer = fake
            .send(
                axum::http::Request::post("/ui/login")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(axum::body::Body::from(format!("token={tried}")))
                    .unwrap(),
            )
            .await;
        if let Some(set) = answer.headers.get("set-cookie") {
            cookie = set.to_str().unwrap().to_owned();
        }
    }
    let session = cookie
        .split(';')
        .next()
        .and_then(|c| c.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("a session cookie");

    let logs = capture.text();
    assert!(
        logs.contains("token issued")
            && logs.contains("client secret refused")
            && logs.contains("viewer login refused")
            && logs.contains("viewer login"),
        "the capture works: {logs}"
    );
    let debug = format!("{:?}", fake.state);
    let shown = String::from_utf8_lossy(&inspection.body);
    for secret in [
        SECRET,
        "Typo-In-Secret",
        token.as_str(),
        "forged-token-value",
        ADMIN,
        "Wrong-Admin-Token",
        session.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
        assert!(!debug.contains(secret), "a secret reached Debug");
        assert!(
            !shown.contains(secret),
            "a secret reached the inspection API"
        );
    }
}
