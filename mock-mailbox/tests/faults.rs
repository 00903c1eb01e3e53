//! Seeded faults: the same seed gives the same faults, and a lost import response leaves
//! the message stored, so a client must look it up before sending it again.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::*;
use mock_common::{AdminToken, ManualClock};
use mock_mailbox::{Config, State};

fn faulty() -> Fake {
    let mut directory = directory();
    directory.faults = mock_mailbox::directory::Faults {
        seed: 11,
        unavailable_rate: 0.2,
        lost_import_response_rate: 0.3,
    };
    let clock = ManualClock::new(t("2026-11-23T01:00:00Z"));
    let state = State::new(
        &directory,
        Arc::new(clock.clone()),
        Config::default(),
        AdminToken::new(ADMIN),
    )
    .unwrap();
    Fake { state, clock }
}

async fn run() -> (Vec<u16>, usize) {
    let fake = faulty();
    let token = fake.token().await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        let answer = fake
            .import(&token, ALICE, "inbox", &mime(&format!("{i}@x"), "m"))
            .await;
        if answer.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(answer.graph_error(), "ServiceUnavailable");
            assert_eq!(answer.headers["retry-after"], "1");
        }
        statuses.push(answer.status.as_u16());
    }
    (
        statuses,
        fake.state.inspect_messages(ALICE, false).unwrap().len(),
    )
}

#[tokio::test]
async fn faults_repeat_with_the_seed_and_lost_responses_still_store() {
    let (statuses, stored) = run().await;
    assert_eq!(run().await, (statuses.clone(), stored));
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    assert!(
        count(503) > 0 && count(504) > 0 && count(201) > 0,
        "{statuses:?}"
    );
    assert_eq!(
        stored,
        count(201) + count(504),
        "a 504 import landed all the same"
    );
}
