//! The `graph` profile through the router: Graph's request cap (413 one byte over it,
//! nothing stored; accepted at it) and its latency, served while the request holds its
//! place among its mailbox's four in flight.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use mock_mailbox::Config;
use mock_mailbox::profile::{Latency, LogNormal, Profile};
use tower::ServiceExt;

fn with_cap(cap: usize) -> Fake {
    let mut profile = Profile::graph(None);
    profile.max_request_bytes = cap;
    fake_with(Config {
        profile,
        ..Config::default()
    })
}

#[tokio::test]
async fn a_body_one_byte_over_the_cap_is_refused_whole_and_one_at_the_cap_is_imported() {
    let message = mime("cap@x", "at the cap");
    let body_len = b64(&message).len();
    let over = with_cap(body_len - 1);
    let token = over.token().await;
    let refused = over.import(&token, ALICE, "inbox", &message).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(refused.graph_error(), "RequestEntityTooLarge");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("at most {} bytes", body_len - 1))
    );
    let listed = over
        .get(&token, &format!("/v1.0/users/{ALICE}/messages"))
        .await;
    assert_eq!(
        listed.json()["value"],
        serde_json::json!([]),
        "nothing stored"
    );
    let at = with_cap(body_len);
    let token = at.token().await;
    assert_eq!(
        at.import(&token, ALICE, "inbox", &message).await.status,
        StatusCode::CREATED
    );
    // The default cap under `graph` is 4 MiB; under `lenient`, 48 MiB.
    assert_eq!(Profile::graph(None).max_request_bytes, 4 * 1024 * 1024);
    assert_eq!(Profile::lenient().max_request_bytes, 48 * 1024 * 1024);
}

/// Holds four imports of Alice's in their delay, then sends `others` more: answers the
/// status and code of the fifth and the `Retry-After` of each refused one.
async fn four_held_then(others: usize) -> (StatusCode, String, Vec<u64>) {
    // Every request takes ten seconds (of tokio's paused clock: nothing waits for them).
    let ten_seconds = LogNormal {
        median_ms: 10_000.0,
        sigma: 0.0,
    };
    let latency = Latency {
        read: ten_seconds,
        create: ten_seconds,
        import: ten_seconds,
        import_ms_per_mib: 0.0,
        other: ten_seconds,
        ..Latency::default()
    };
    let fake = fake_with(Config {
        profile: Profile::graph(Some(latency)),
        ..Config::default()
    });
    let token = fake.token().await;
    let import = |n: usize| {
        let (state, token) = (fake.state.clone(), token.clone());
        async move {
            let request =
                Request::post(format!("/beta/users/{ALICE}/mailFolders/inbox/importMime"))
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "text/plain")
                    .body(Body::from(b64(&mime(&format!("{n}@x"), "held"))))
                    .unwrap();
            mock_mailbox::router(state)
                .oneshot(request)
                .await
                .unwrap()
                .status()
        }
    };
    let held: Vec<_> = (0..4).map(|n| tokio::spawn(import(n))).collect();
    // Until all four are in their delay: each has its place, and the mailbox is full.
    for turn in 0.. {
        assert!(
            turn < 10_000,
            "the four requests in their delay never held their places in the throttle"
        );
        tokio::task::yield_now().await;
        match fake
            .state
            .throttle()
            .enter(APP, ALICE_ID, 0, mock_common::Clock::now(&fake.clock))
        {
            Err(_) => break,
            Ok(probe) => drop(probe),
        }
    }
    let fifth = fake
        .import(&token, ALICE, "inbox", &mime("5@x", "fifth"))
        .await;
    let code = fifth.graph_error();
    assert_eq!(
        fifth.json()["error"]["message"],
        "Application is over its MailboxConcurrency limit."
    );
    let mut retry_after = Vec::new();
    for n in 0..others {
        let refused = fake
            .import(
                &token,
                ALICE,
                "inbox",
                &mime(&format!("other{n}@x"), "other"),
            )
            .await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        retry_after.push(
            refused.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    // Their delay over, the four are imported.
    for request in held {
        assert_eq!(request.await.unwrap(), StatusCode::CREATED);
    }
    (fifth.status, code, retry_after)
}

#[tokio::test(start_paused = true)]
async fn a_fifth_request_is_throttled_while_four_are_held_in_their_delay() {
    let (status, code, _) = four_held_then(0).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code, "ApplicationThrottled");
}

#[tokio::test(start_paused = true)]
async fn the_retry_after_of_a_concurrency_429_is_spread_and_replays() {
    let (_, _, first) = four_held_then(40).await;
    let (_, _, again) = four_held_then(40).await;
    assert_eq!(first, again, "the same requests draw the same Retry-After");
    let distinct: std::collections::BTreeSet<_> = first.iter().collect();
    assert!(distinct.len() >= 3, "spread, not a constant: {first:?}");
    assert!(first.iter().all(|s| (1..=300).contains(s)), "{first:?}");
}

#[tokio::test(start_paused = true)]
async fn the_delay_a_request_held_its_place_for_is_counted_as_its_mailboxs_busy_time() {
    let three_seconds = LogNormal {
        median_ms: 3_000.0,
        sigma: 0.0,
    };
    let latency = Latency {
        read: three_seconds,
        import: three_seconds,
        import_ms_per_mib: 0.0,
        ..Latency::default()
    };
    let fake = fake_with(Config {
        profile: Profile::graph(Some(latency)),
        ..Config::default()
    });
    let token = fake.token().await;
    assert_eq!(
        fake.import(&token, ALICE, "inbox", &mime("busy@x", "busy"))
            .await
            .status,
        StatusCode::CREATED
    );
    let listed = fake
        .get(&token, &format!("/v1.0/users/{ALICE}/messages"))
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let counters = fake.state.counters();
    let alice: Vec<_> = counters
        .per_application_mailbox
        .iter()
        .filter(|u| u.mailbox == ALICE_ID)
        .collect();
    assert_eq!(alice.len(), 1);
    assert_eq!(
        alice[0].usage.busy_micros, 6_000_000,
        "two requests of 3 s each"
    );
}
