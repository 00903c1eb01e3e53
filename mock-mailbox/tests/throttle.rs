//! Throttling through the router, with time moved by a manual clock: a burst over the
//! concurrency limit on one mailbox gets 429 while another mailbox is served, and a client
//! that honours Retry-After gets everything through.

mod common;

use axum::http::StatusCode;
use chrono::Duration;
use common::*;
use mock_common::Clock;
use mock_mailbox::{Config, Limits};

#[tokio::test]
async fn a_burst_over_the_concurrency_limit_is_throttled_on_that_mailbox_only() {
    let fake = fake();
    let token = fake.token().await;
    // Four requests of the connector on Alice's mailbox are in flight.
    let held: Vec<_> = (0..4)
        .map(|_| {
            fake.state
                .throttle()
                .enter(APP, ALICE_ID, 0, fake.clock.now())
                .unwrap()
        })
        .collect();
    let fifth = fake
        .import(&token, ALICE, "inbox", &mime("5@x", "fifth"))
        .await;
    assert_eq!(fifth.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(fifth.graph_error(), "ApplicationThrottled");
    assert!(
        fifth.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MailboxConcurrency")
    );
    assert_eq!(fifth.headers["retry-after"], "1");
    // At the same moment Bob's mailbox is served.
    assert_eq!(
        fake.import(&token, BOB, "inbox", &mime("b@x", "bob"))
            .await
            .status,
        StatusCode::CREATED
    );
    drop(held);
    assert_eq!(
        fake.import(&token, ALICE, "inbox", &mime("5@x", "fifth"))
            .await
            .status,
        StatusCode::CREATED
    );
    let counters = fake.state.counters();
    assert_eq!(counters.throttled, 1);
}

#[tokio::test]
async fn a_client_that_honours_retry_after_gets_everything_through() {
    let limits = Limits {
        requests_per_window: 3,
        request_window: Duration::seconds(60),
        ..Limits::default()
    };
    let fake = fake_with(Config {
        limits,
        ..Config::default()
    });
    let token = fake.token().await;
    let mut throttled = 0;
    for i in 0..10 {
        // Bounded: a fake that never lets the import through fails the test, not hangs it.
        for attempt in 1.. {
            assert!(attempt <= 5, "import {i} still throttled after 4 waits");
            let answer = fake
                .import(&token, ALICE, "inbox", &mime(&format!("{i}@x"), "m"))
                .await;
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(answer.graph_error(), "TooManyRequests");
                let wait: i64 = answer.headers["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&wait));
                throttled += 1;
                fake.clock.advance(Duration::seconds(wait));
                continue;
            }
            assert_eq!(answer.status, StatusCode::CREATED);
            break;
        }
    }
    assert_eq!(fake.state.inspect_messages(ALICE, false).unwrap().len(), 10);
    assert_eq!(
        throttled, 3,
        "windows of 3: throttled before the 4th, 7th and 10th"
    );
}

#[tokio::test]
async fn the_upload_budget_counts_request_bytes() {
    let limits = Limits {
        upload_bytes_per_window: 2_000,
        ..Limits::default()
    };
    let fake = fake_with(Config {
        limits,
        ..Config::default()
    });
    let token = fake.token().await;
    let big = format!(
        "{}\r\n{}",
        String::from_utf8(mime("big@x", "big")).unwrap(),
        "x".repeat(900)
    );
    assert_eq!(
        fake.import(&token, ALICE, "inbox", big.as_bytes())
            .await
            .status,
        StatusCode::CREATED
    );
    let second = fake.import(&token, ALICE, "inbox", big.as_bytes()).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.headers["retry-after"], "300");
    assert_eq!(
        fake.import(&token, BOB, "inbox", big.as_bytes())
            .await
            .status,
        StatusCode::CREATED
    );
}
