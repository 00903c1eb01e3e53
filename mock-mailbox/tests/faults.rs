//! Seeded faults: the same seed gives the same faults, and a lost import response leaves
//! the message stored, so a client must look it up before sending it again.

mod common;

use axum::http::StatusCode;
use common::*;
use mock_common::AdminToken;
use mock_mailbox::Config;

fn faulty() -> Fake {
    let mut directory = directory();
    directory.faults = mock_mailbox::directory::Faults {
        seed: 11,
        unavailable_rate: 0.2,
        lost_import_response_rate: 0.3,
        revoked_token_rate: 0.0,
        ..Default::default()
    };
    fake_from(&directory, Config::default(), AdminToken::new(ADMIN))
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

#[tokio::test]
async fn a_revoked_token_is_refused_from_then_on_and_a_new_one_works() {
    let mut directory = directory();
    directory.faults = mock_mailbox::directory::Faults {
        seed: 5,
        unavailable_rate: 0.0,
        lost_import_response_rate: 0.0,
        revoked_token_rate: 0.3,
        ..Default::default()
    };
    let fake = fake_from(&directory, Config::default(), AdminToken::new(ADMIN));
    let mut token = fake.token().await;
    let (mut revoked, mut stored) = (0, 0);
    for i in 0..30 {
        let message = mime(&format!("r{i}@x"), "m");
        let answer = fake.import(&token, ALICE, "inbox", &message).await;
        if answer.status == StatusCode::UNAUTHORIZED {
            assert_eq!(answer.graph_error(), "InvalidAuthenticationToken");
            revoked += 1;
            // Refused from then on, though its lifetime is not over.
            let again = fake.get(&token, &format!("/v1.0/users/{ALICE}")).await;
            assert_eq!(again.status, StatusCode::UNAUTHORIZED);
            token = fake.token().await;
        } else {
            assert_eq!(answer.status, StatusCode::CREATED);
            stored += 1;
        }
    }
    assert!(
        revoked > 0 && stored > 0,
        "{revoked} revoked, {stored} stored"
    );
    assert_eq!(
        fake.state.inspect_messages(ALICE, false).unwrap().len(),
        stored,
        "a refused request stored nothing"
    );
}

#[tokio::test]
async fn storms_refuse_with_retry_after_and_cut_bodies_still_store() {
    let mut directory = directory();
    directory.faults = mock_mailbox::directory::Faults {
        seed: 9,
        throttle_storm_rate: 0.3,
        reset_rate: 0.3,
        slow_rate: 0.3,
        slow_max_ms: 2,
        ..Default::default()
    };
    let fake = fake_from(&directory, Config::default(), AdminToken::new(ADMIN));
    let token = fake.token().await;
    let (mut storms, mut cut, mut whole) = (0, 0, 0);
    for i in 0..40 {
        let answer = fake
            .import(&token, ALICE, "inbox", &mime(&format!("s{i}@x"), "m"))
            .await;
        match answer.status {
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(answer.graph_error(), "TooManyRequests");
                let wait: u64 = answer.headers["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=10).contains(&wait), "Retry-After {wait}");
                storms += 1;
            }
            StatusCode::CREATED if answer.cut => cut += 1,
            StatusCode::CREATED => {
                assert!(answer.json()["id"].is_string());
                whole += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        storms > 0 && cut > 0 && whole > 0,
        "{storms} storms, {cut} cut, {whole} whole"
    );
    assert_eq!(
        fake.state.inspect_messages(ALICE, false).unwrap().len(),
        cut + whole,
        "a cut answer's import landed; a storm's did not"
    );
}

#[tokio::test]
async fn a_folder_deleted_for_good_takes_its_messages_to_recoverable_items() {
    let mut directory = directory();
    directory.faults = mock_mailbox::directory::Faults {
        seed: 2,
        folder_deleted_rate: 0.2,
        ..Default::default()
    };
    let fake = fake_from(&directory, Config::default(), AdminToken::new(ADMIN));
    let token = fake.token().await;
    let mut folder = fake.folder(&token, ALICE, "WhatsApp Archiver").await;
    let (mut stored, mut deletions) = (0, 0);
    for i in 0..30 {
        let answer = fake
            .import(&token, ALICE, &folder, &mime(&format!("d{i}@x"), "m"))
            .await;
        if answer.status == StatusCode::NOT_FOUND {
            assert_eq!(answer.graph_error(), "ErrorItemNotFound");
            deletions += 1;
            // The folder is gone from the root's children and by its id.
            let listed = fake
                .get(&token, &format!("/v1.0/users/{ALICE}/mailFolders?$top=100"))
                .await
                .json();
            assert!(
                listed["value"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|f| f["displayName"] != "WhatsApp Archiver")
            );
            let by_id = fake
                .get(&token, &format!("/v1.0/users/{ALICE}/mailFolders/{folder}"))
                .await;
            assert_eq!(by_id.status, StatusCode::NOT_FOUND);
            folder = fake.folder(&token, ALICE, "WhatsApp Archiver").await;
        } else {
            assert_eq!(answer.status, StatusCode::CREATED);
            stored += 1;
        }
    }
    assert!(
        deletions > 0 && stored > 0,
        "{deletions} deletions, {stored} stored"
    );
    let all = fake.state.inspect_messages(ALICE, true).unwrap();
    assert_eq!(
        all.len(),
        stored,
        "nothing stored by a refused import, nothing lost"
    );
    let deleted = all.iter().filter(|m| m.recoverable).count();
    assert!(deleted > 0);
    assert!(
        all.iter()
            .filter(|m| m.recoverable)
            .all(|m| m.deleted_with.as_deref() == Some("WhatsApp Archiver"))
    );
}

#[tokio::test]
async fn a_mailbox_disabled_or_a_user_deleted_answers_404_from_then_on() {
    let mut codes = std::collections::BTreeSet::new();
    for seed in 1..=6 {
        let mut directory = directory();
        directory.faults = mock_mailbox::directory::Faults {
            seed,
            mailbox_disabled_rate: 0.3,
            ..Default::default()
        };
        let fake = fake_from(&directory, Config::default(), AdminToken::new(ADMIN));
        let token = fake.token().await;
        let mut stored = 0;
        let mut first = None;
        for i in 0..20 {
            let answer = fake
                .import(&token, ALICE, "inbox", &mime(&format!("g{i}@x"), "m"))
                .await;
            match answer.status {
                StatusCode::CREATED => {
                    assert!(first.is_none(), "nothing lands once the mailbox is gone");
                    stored += 1;
                }
                StatusCode::NOT_FOUND => {
                    first.get_or_insert(answer.graph_error());
                }
                other => panic!("unexpected {other}"),
            }
        }
        let Some(first) = first else {
            panic!("seed {seed}: the mailbox never went away");
        };
        let user = fake.get(&token, &format!("/v1.0/users/{ALICE}")).await;
        if first == "ErrorInvalidUser" {
            assert_eq!(
                user.status,
                StatusCode::NOT_FOUND,
                "a deleted user is not found"
            );
        } else {
            assert_eq!(
                user.status,
                StatusCode::OK,
                "a disabled mailbox's user still exists"
            );
        }
        assert_eq!(fake.state.gone_users().len(), 1);
        assert_eq!(
            fake.state.inspect_messages(ALICE, false).unwrap().len(),
            stored,
            "what landed before stays for the inspection API"
        );
        codes.insert(first);
    }
    assert_eq!(
        codes.into_iter().collect::<Vec<_>>(),
        ["ErrorInvalidUser", "MailboxNotEnabledForRESTAPI"],
        "both ways a mailbox goes away"
    );
}
