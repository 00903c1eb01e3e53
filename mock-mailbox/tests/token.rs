//! The token endpoint: the client-credentials grant and each documented refusal, in the
//! identity platform's error shape.

mod common;

use axum::http::StatusCode;
use chrono::Duration;
use common::*;

const SCOPE: &str = "https://graph.microsoft.com/.default";

fn assert_aad_error(answer: &Answer, status: StatusCode, error: &str, aadsts: u64) {
    assert_eq!(answer.status, status);
    let body = answer.json();
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"][0], aadsts);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with(&format!("AADSTS{aadsts}:"))
    );
    for field in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[field].is_string(), "{field} missing: {body}");
    }
}

#[tokio::test]
async fn client_credentials_get_a_bearer_token_with_the_real_shape() {
    let fake = fake();
    let answer = fake
        .token_request(
            TENANT,
            &[
                ("client_id", APP),
                ("client_secret", SECRET),
                ("scope", SCOPE),
                ("grant_type", "client_credentials"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(body["access_token"].as_str().unwrap().len() > 40);
}

#[tokio::test]
async fn the_tenant_may_be_named_by_its_domain() {
    let fake = fake();
    fake.token_for("contoso.example", APP, SECRET).await;
}

#[tokio::test]
async fn each_bad_request_gets_its_aadsts_code() {
    let fake = fake();
    let good = [
        ("client_id", APP),
        ("client_secret", SECRET),
        ("scope", SCOPE),
        ("grant_type", "client_credentials"),
    ];
    let without = |name: &str| {
        good.iter()
            .filter(|(k, _)| *k != name)
            .copied()
            .collect::<Vec<_>>()
    };
    let with = |name: &str, value: &'static str| {
        good.iter()
            .map(|(k, v)| if *k == name { (*k, value) } else { (*k, *v) })
            .collect::<Vec<_>>()
    };
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Form, StatusCode, &str, u64)> = vec![
        (
            "no-such-tenant",
            good.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
        ),
        (
            TENANT,
            without("grant_type"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
        ),
        (
            TENANT,
            with("grant_type", "password"),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
        ),
        (
            TENANT,
            without("client_id"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
        ),
        (
            TENANT,
            without("scope"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
        ),
        (
            TENANT,
            with("scope", "Mail.ReadWrite"),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
        ),
        (
            TENANT,
            without("client_secret"),
            StatusCode::BAD_REQUEST,
            "invalid_client",
            7000218,
        ),
        (
            TENANT,
            with("client_id", "00000000-0000-0000-0000-000000000000"),
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
        ),
        (
            TENANT,
            with("client_secret", "wrong"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
        ),
        // An application is known only in its own tenant.
        (
            OTHER_TENANT,
            good.to_vec(),
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
        ),
    ];
    for (tenant, form, status, error, code) in cases {
        let answer = fake.token_request(tenant, &form).await;
        assert_aad_error(&answer, status, error, code);
    }
    assert!(fake.state.counters().token_failures >= 10);
}

#[tokio::test]
async fn graph_refuses_missing_forged_and_expired_tokens() {
    let fake = fake();
    let token = fake.token().await;
    let uri = format!("/v1.0/users/{ALICE}");
    let missing = fake
        .send(
            axum::http::Request::get(&uri)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.graph_error(), "InvalidAuthenticationToken");
    assert!(missing.headers.contains_key("www-authenticate"));
    let forged = fake.get("forged", &uri).await;
    assert_eq!(forged.graph_error(), "InvalidAuthenticationToken");
    assert_eq!(fake.get(&token, &uri).await.status, StatusCode::OK);
    fake.clock.advance(Duration::seconds(3599));
    let expired = fake.get(&token, &uri).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert!(
        expired.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn token_lifetime_is_configurable_so_tests_can_force_a_refresh() {
    let fake = fake_with(mock_mailbox::Config {
        token_lifetime: Duration::seconds(30),
        ..Default::default()
    });
    let answer = fake
        .token_request(
            TENANT,
            &[
                ("client_id", APP),
                ("client_secret", SECRET),
                ("scope", SCOPE),
                ("grant_type", "client_credentials"),
            ],
        )
        .await;
    assert_eq!(answer.json()["expires_in"], 30);
}
