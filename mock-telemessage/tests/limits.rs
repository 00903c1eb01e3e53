//! What an attacker can make the fake provider do: the admin API reads nothing before
//! its token is checked, bodies are refused as soon as they are over their limit, login
//! fields are bounded, and a flood of made-up names costs bounded memory and no log line
//! with the caller's text.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use common::*;
use futures_util::StreamExt;
use mock_common::{AdminToken, ManualClock};
use mock_telemessage::routes::LOGIN_BODY_LIMIT;
use mock_telemessage::{Config, State};

/// A body of `chunks` chunks of 1 MiB that counts how many of them were read.
fn counted_body(chunks: usize) -> (Body, Arc<AtomicUsize>) {
    let read = Arc::new(AtomicUsize::new(0));
    let counter = read.clone();
    let stream = futures_util::stream::iter(0..chunks).map(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 1024 * 1024]))
    });
    (Body::from_stream(stream), read)
}

#[tokio::test]
async fn the_admin_api_reads_no_body_before_its_token_and_bodies_have_limits() {
    let fake = fake(vec![]);
    for authorization in [None, Some("Bearer not-the-admin-token")] {
        let (body, read) = counted_body(64);
        let mut request =
            Request::post("/admin/v1/items").header("content-type", "application/json");
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        let answer = fake.send(request.body(body).unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.error_code(), "invalid_token");
        assert_eq!(read.load(Ordering::SeqCst), 0, "body read before the token");
    }

    // A login body over its limit: 413 in the provider's shape, declared or streamed.
    let (body, read) = counted_body(1);
    let answer = fake
        .send(
            Request::post("/api/v1/auth/token")
                .header("content-type", "application/json")
                .header("content-length", (LOGIN_BODY_LIMIT + 1).to_string())
                .body(body)
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "request_too_large");
    assert_eq!(read.load(Ordering::SeqCst), 0);
    let (body, read) = counted_body(64);
    let answer = fake
        .send(
            Request::post("/api/v1/auth/token")
                .header("content-type", "application/json")
                .body(body)
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "request_too_large");
    assert!(read.load(Ordering::SeqCst) <= 2, "stopped once over");
}

#[tokio::test]
async fn login_fields_are_bounded_and_made_up_names_are_neither_kept_without_bound_nor_logged() {
    let (capture, _guard) = mock_common::LogCapture::install();
    let clock = ManualClock::new(t("2026-11-23T00:30:00Z"));
    let state = State::new(
        &dataset(vec![]),
        Arc::new(clock.clone()),
        Config {
            max_tracked_names: 2,
            ..Config::default()
        },
        AdminToken::new(ADMIN),
    )
    .unwrap();
    let fake = Fake { state, clock };

    let long = "n".repeat(257);
    let answer = fake.login_as(&long, "x").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "invalid_request");
    let answer = fake.login_as(USER, &"p".repeat(1025)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.len() < 1_000);

    // Two made-up names fill the table; a third is never tracked, so never locked.
    for name in ["made-up-one", "made-up-two"] {
        assert_eq!(
            fake.login_as(name, "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    for _ in 0..6 {
        let answer = fake.login_as("made-up-three", "guess").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    // The real account is always tracked: five failures lock it.
    for _ in 0..5 {
        fake.login_as(USER, "wrong").await;
    }
    let answer = fake.login_as(USER, PASSWORD).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.error_code(), "account_locked");

    let logs = capture.text();
    assert!(
        logs.contains("login failed for a username that is not an account"),
        "{logs}"
    );
    for text in ["made-up-one", "made-up-three", long.as_str()] {
        assert!(!logs.contains(text), "{text} reached the logs");
    }
}
