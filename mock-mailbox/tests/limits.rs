//! What an attacker can make the fake do: nothing before it knows who is calling, bodies
//! refused as soon as they are over their limit (413 in the caller's error shape),
//! attacker-chosen strings bounded, and what Graph itself refuses refused here too.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use common::*;
use futures_util::StreamExt;
use mock_mailbox::routes::{ADMIN_BODY_LIMIT, BODY_LIMIT, TOKEN_BODY_LIMIT};
use serde_json::json;

/// A body of `chunks` chunks of 1 MiB that counts how many of them were read.
fn counted_body(chunks: usize) -> (Body, Arc<AtomicUsize>) {
    let read = Arc::new(AtomicUsize::new(0));
    let counter = read.clone();
    let stream = futures_util::stream::iter(0..chunks).map(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from(vec![b'A'; 1024 * 1024]))
    });
    (Body::from_stream(stream), read)
}

#[tokio::test]
async fn nothing_of_a_body_is_read_before_the_caller_is_known() {
    let fake = fake();
    for (uri, authorization) in [
        (
            format!("/beta/users/{ALICE}/mailFolders/inbox/importMime"),
            None,
        ),
        (
            format!("/beta/users/{ALICE}/mailFolders/inbox/importMime"),
            Some("Bearer forged"),
        ),
        (format!("/v1.0/users/{ALICE}/mailFolders"), None),
        ("/admin/v1/reset".to_owned(), Some("Bearer not-the-admin")),
    ] {
        let (body, read) = counted_body(64);
        let mut request = Request::post(&uri).header("content-type", "text/plain");
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        let answer = fake.send(request.body(body).unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri}");
        answer.graph_error();
        assert_eq!(read.load(Ordering::SeqCst), 0, "{uri}: body read");
    }
}

#[tokio::test]
async fn bodies_over_their_limit_get_413_in_each_surface_s_shape() {
    let fake = fake();
    let token = fake.token().await;
    let import = format!("/beta/users/{ALICE}/mailFolders/inbox/importMime");

    // Declared too large: refused from the header, nothing read.
    let (body, read) = counted_body(1);
    let answer = fake
        .send(
            Request::post(&import)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "text/plain")
                .header("content-length", (BODY_LIMIT + 1).to_string())
                .body(body)
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.graph_error(), "RequestEntityTooLarge");
    assert_eq!(read.load(Ordering::SeqCst), 0);

    // Streamed without a length: refused once over, not read to the end.
    let chunks = BODY_LIMIT / (1024 * 1024) + 16;
    let (body, read) = counted_body(chunks);
    let answer = fake
        .send(
            Request::post(&import)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "text/plain")
                .body(body)
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.graph_error(), "RequestEntityTooLarge");
    let n = read.load(Ordering::SeqCst);
    assert!(
        n <= BODY_LIMIT / (1024 * 1024) + 1 && n < chunks,
        "{n} MiB read"
    );
    assert!(
        fake.state
            .inspect_messages(ALICE, false)
            .unwrap()
            .is_empty()
    );

    // The token endpoint answers in the identity platform's shape.
    let answer = fake
        .send(
            Request::post(format!("/{TENANT}/oauth2/v2.0/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "client_id={APP}&client_secret={}",
                    "x".repeat(TOKEN_BODY_LIMIT)
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let body = answer.json();
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["error_codes"], json!([9002313]));

    // The inspection API, with the admin token, has its own small limit.
    let answer = fake
        .send(
            Request::post("/admin/v1/reset")
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::from(vec![b'x'; ADMIN_BODY_LIMIT + 1]))
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.graph_error(), "RequestEntityTooLarge");
}

#[tokio::test]
async fn what_graph_refuses_is_refused() {
    let fake = fake();
    let token = fake.token().await;

    // importMime takes base64 text only.
    let answer = fake
        .send(
            Request::post(format!("/beta/users/{ALICE}/mailFolders/inbox/importMime"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(b64(&mime("ct@x", "Typed"))))
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.graph_error(), "UnsupportedMediaType");
    let answer = fake
        .send(
            Request::post(format!("/beta/users/{ALICE}/mailFolders/inbox/importMime"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "Text/Plain; charset=us-ascii")
                .body(Body::from(b64(&mime("ct@x", "Typed"))))
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "parameters are fine");

    // Folder names: at most 255 characters, no control characters.
    let folders = format!("/v1.0/users/{ALICE}/mailFolders");
    for bad in [
        "x".repeat(256),
        "Archive\r\nX-Injected: 1".to_owned(),
        "Nul\0Name".to_owned(),
    ] {
        let answer = fake
            .post_json(&token, &folders, json!({"displayName": bad}))
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(answer.graph_error(), "ErrorInvalidRequest");
    }
    let longest = "é".repeat(255);
    let answer = fake
        .post_json(&token, &folders, json!({"displayName": longest}))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);

    // $skip is an Int32: past it, refused; at it, an empty page with no next link.
    let answer = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/messages?$skip=18446744073709551615"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let answer = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/messages?$skip=2147483647&$top=1000"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["value"], json!([]));
    assert!(answer.json().get("@odata.nextLink").is_none());
}

#[tokio::test]
async fn attacker_chosen_strings_come_back_bounded() {
    let fake = fake();
    let token = fake.token().await;
    let huge = "u".repeat(30_000);
    let answer = fake.get(&token, &format!("/v1.0/users/{huge}")).await;
    assert!(answer.body.len() < 2_000, "{} bytes", answer.body.len());
    let answer = fake
        .token_request(
            TENANT,
            &[
                ("client_id", &"c".repeat(50_000)),
                ("client_secret", "s"),
                ("scope", "https://graph.microsoft.com/.default"),
                ("grant_type", "client_credentials"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.len() < 2_000, "{} bytes", answer.body.len());
}
