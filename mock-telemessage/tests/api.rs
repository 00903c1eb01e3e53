//! The provider API through the router, without a socket: each endpoint's success and its
//! documented errors.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Duration;
use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};

const DAY: &str = "since=2026-11-22T00:00:00Z&until=2026-11-23T00:00:00Z";

#[tokio::test]
async fn health_is_open_and_bare() {
    let fake = fake(vec![]);
    let answer = fake.get("/health", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, b"ok");
}

#[tokio::test]
async fn login_issues_a_bearer_token_with_its_lifetime() {
    let fake = fake(vec![]);
    let answer = fake.login_as(USER, PASSWORD).await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["access_token"].as_str().unwrap().len() > 40);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let fake = fake(vec![]);
    let wrong = fake.login_as(USER, "nope").await;
    let unknown = fake.login_as("nobody", PASSWORD).await;
    for answer in [&wrong, &unknown] {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.error_code(), "invalid_credentials");
    }
    // Nothing tells an attacker whether the username exists.
    let message = wrong.json()["error"]["message"].clone();
    assert!(message.as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(unknown.json()["error"]["message"], message);
}

#[tokio::test]
async fn malformed_login_body_is_invalid_request() {
    let fake = fake(vec![]);
    let answer = fake
        .send(
            Request::post("/api/v1/auth/token")
                .header("content-type", "application/json")
                .body(Body::from("{\"username\": 1}"))
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "invalid_request");
}

#[tokio::test]
async fn five_failures_lock_the_account_even_for_the_right_password_until_it_expires() {
    let fake = fake(vec![]);
    for _ in 0..5 {
        assert_eq!(
            fake.login_as(USER, "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = fake.login_as(USER, PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(locked.error_code(), "account_locked");
    assert_eq!(locked.headers["retry-after"], "900");

    fake.clock.advance(Duration::minutes(14));
    assert_eq!(
        fake.login_as(USER, PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    fake.clock.advance(Duration::minutes(1));
    assert_eq!(fake.login_as(USER, PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn failures_spread_over_more_than_the_window_do_not_lock() {
    let fake = fake(vec![]);
    for _ in 0..4 {
        fake.login_as(USER, "guess").await;
    }
    fake.clock.advance(Duration::minutes(16));
    for _ in 0..4 {
        fake.login_as(USER, "guess").await;
    }
    assert_eq!(fake.login_as(USER, PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_success_resets_the_failure_count() {
    let fake = fake(vec![]);
    for _ in 0..4 {
        fake.login_as(USER, "guess").await;
    }
    assert_eq!(fake.login_as(USER, PASSWORD).await.status, StatusCode::OK);
    for _ in 0..4 {
        fake.login_as(USER, "guess").await;
    }
    assert_eq!(fake.login_as(USER, PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn protected_paths_refuse_missing_invalid_and_expired_tokens() {
    let fake = fake(vec![text_item("wa-1", "2026-11-22T10:00:00Z")]);
    let token = fake.token().await;
    for path in [
        format!("/api/v1/items?{DAY}"),
        "/api/v1/attachments/att-1".to_owned(),
        "/api/v1/users".to_owned(),
    ] {
        let missing = fake.get(&path, None).await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(missing.error_code(), "missing_token");
        assert_eq!(
            missing.headers["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );

        let invalid = fake.get(&path, Some("tm_forged")).await;
        assert_eq!(invalid.error_code(), "invalid_token");
    }
    assert_eq!(
        fake.get(&format!("/api/v1/items?{DAY}"), Some(&token))
            .await
            .status,
        StatusCode::OK
    );
    fake.clock.advance(Duration::seconds(3600));
    let expired = fake
        .get(&format!("/api/v1/items?{DAY}"), Some(&token))
        .await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.error_code(), "token_expired");
}

#[tokio::test]
async fn listing_is_the_half_open_archive_time_window_in_order() {
    let fake = fake(vec![
        text_item("wa-c", "2026-11-22T10:00:00Z"),
        text_item("wa-b", "2026-11-22T10:00:00Z"),
        text_item("wa-before", "2026-11-21T23:59:59Z"),
        text_item("wa-first", "2026-11-22T00:00:00Z"),
        text_item("wa-at-until", "2026-11-23T00:00:00Z"),
        text_item("wa-a", "2026-11-22T23:59:59.999Z"),
    ]);
    let token = fake.token().await;
    let ids = fake
        .list_all(&token, "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", 100)
        .await;
    assert_eq!(ids, ["wa-first", "wa-b", "wa-c", "wa-a"]);
    let page = fake
        .get(&format!("/api/v1/items?{DAY}"), Some(&token))
        .await
        .json();
    assert_eq!(page["window"]["since"], "2026-11-22T00:00:00Z");
    assert_eq!(page["next_cursor"], serde_json::Value::Null);
}

#[tokio::test]
async fn bad_listing_parameters_get_documented_errors() {
    let fake = fake(vec![
        text_item("wa-1", "2026-11-22T10:00:00Z"),
        text_item("wa-2", "2026-11-22T11:00:00Z"),
    ]);
    let token = fake.token().await;
    let cases = [
        ("/api/v1/items", "invalid_request"),
        (
            "/api/v1/items?since=2026-11-22T00:00:00Z",
            "invalid_request",
        ),
        (
            "/api/v1/items?since=yesterday&until=2026-11-23T00:00:00Z",
            "invalid_request",
        ),
        (
            "/api/v1/items?since=2026-11-23T00:00:00Z&until=2026-11-22T00:00:00Z",
            "invalid_window",
        ),
        (
            "/api/v1/items?since=2026-11-22T00:00:00Z&until=2026-11-22T00:00:00Z",
            "invalid_window",
        ),
        (
            &format!("/api/v1/items?{DAY}&page_size=0"),
            "invalid_request",
        ),
        (
            &format!("/api/v1/items?{DAY}&page_size=1001"),
            "invalid_request",
        ),
        (
            &format!("/api/v1/items?{DAY}&page_size=ten"),
            "invalid_request",
        ),
        (
            "/api/v1/items?cursor=bm90LWEtY3Vyc29y.AAAA",
            "invalid_cursor",
        ),
    ];
    for (uri, code) in cases {
        let answer = fake.get(uri, Some(&token)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(answer.error_code(), code, "{uri}");
    }
    let first = fake
        .get(&format!("/api/v1/items?{DAY}&page_size=1"), Some(&token))
        .await
        .json();
    let cursor = first["next_cursor"].as_str().unwrap();
    let mixed = fake
        .get(
            &format!("/api/v1/items?{DAY}&cursor={cursor}"),
            Some(&token),
        )
        .await;
    assert_eq!(mixed.error_code(), "invalid_request");
    let mut altered = cursor.to_owned();
    altered.insert(3, 'x');
    let altered = fake
        .get(&format!("/api/v1/items?cursor={altered}"), Some(&token))
        .await;
    assert_eq!(altered.error_code(), "invalid_cursor");
}

#[tokio::test]
async fn items_archived_during_a_listing_do_not_shift_its_pages_but_a_new_listing_sees_them() {
    let items: Vec<_> = (0..6)
        .map(|i| text_item(&format!("wa-{i}"), &format!("2026-11-22T1{i}:00:00Z")))
        .collect();
    let fake = fake(items);
    let token = fake.token().await;
    let first = fake
        .get(&format!("/api/v1/items?{DAY}&page_size=2"), Some(&token))
        .await
        .json();
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first), ["wa-0", "wa-1"]);
    // Captured mid-listing: one before the cursor's position, one after it, both in the window.
    fake.state
        .append(
            vec![
                text_item("wa-early", "2026-11-22T09:00:00Z"),
                text_item("wa-late", "2026-11-22T12:30:00Z"),
            ],
            vec![],
        )
        .unwrap();
    let mut seen = ids(&first);
    let mut cursor = first["next_cursor"].as_str().unwrap().to_owned();
    loop {
        let page = fake
            .get(&format!("/api/v1/items?cursor={cursor}"), Some(&token))
            .await
            .json();
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["wa-0", "wa-1", "wa-2", "wa-3", "wa-4", "wa-5"]);
    let fresh = fake
        .list_all(&token, "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", 2)
        .await;
    assert_eq!(
        fresh,
        [
            "wa-early", "wa-0", "wa-1", "wa-2", "wa-late", "wa-3", "wa-4", "wa-5"
        ]
    );
}

#[tokio::test]
async fn a_later_page_may_take_a_new_page_size() {
    let items: Vec<_> = (0..5)
        .map(|i| text_item(&format!("wa-{i}"), &format!("2026-11-22T1{i}:00:00Z")))
        .collect();
    let fake = fake(items);
    let token = fake.token().await;
    let first = fake
        .get(&format!("/api/v1/items?{DAY}&page_size=1"), Some(&token))
        .await
        .json();
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = fake
        .get(
            &format!("/api/v1/items?cursor={cursor}&page_size=10"),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(second["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn attachment_downloads_stream_exactly_the_bytes_the_item_describes() {
    let size = 200_003;
    let fake = fake(vec![document_item(
        "wa-doc",
        "2026-11-22T10:00:00Z",
        "att-doc",
        size,
        99,
    )]);
    let token = fake.token().await;
    let page = fake
        .get(&format!("/api/v1/items?{DAY}"), Some(&token))
        .await
        .json();
    let described = &page["items"][0]["document"]["attachment"];
    assert!(
        described.get("seed").is_none(),
        "the seed is the dataset's, not the wire's"
    );
    let answer = fake.get("/api/v1/attachments/att-doc", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "application/pdf");
    assert_eq!(answer.headers["content-length"], size.to_string().as_str());
    assert_eq!(
        answer.headers["content-disposition"],
        "attachment; filename=\"report.pdf\""
    );
    assert_eq!(answer.body.len() as u64, size);
    assert_eq!(described["size"], size);
    let digest: String = Sha256::digest(&answer.body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(described["sha256"], digest.as_str());
    assert_eq!(fake.state.counters().bytes_served, size);

    let missing = fake.get("/api/v1/attachments/att-none", Some(&token)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "not_found");
}

#[tokio::test]
async fn users_lists_the_registered_employees() {
    let fake = fake(vec![]);
    let token = fake.token().await;
    let answer = fake.get("/api/v1/users", Some(&token)).await;
    assert_eq!(
        answer.json()["users"][0]["user_email"],
        "alice@contoso.example"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_the_error_shape() {
    let fake = fake(vec![]);
    let answer = fake.get("/api/v1/dump", None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error_code(), "not_found");
    let answer = fake.get("/api/v1/auth/token", None).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.error_code(), "invalid_request");
}

#[tokio::test]
async fn admin_api_needs_the_admin_token_not_a_user_token() {
    let fake = fake(vec![]);
    let user = fake.token().await;
    for token in [None, Some(user.as_str()), Some("wrong")] {
        let answer = fake.get("/admin/v1/counters", token).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.error_code(), "invalid_token");
    }
    let answer = fake.get("/admin/v1/counters", Some(ADMIN)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let counters = answer.json();
    assert_eq!(counters["logins_succeeded"], 1);
    assert_eq!(counters["requests"]["POST /api/v1/auth/token"], 1);
}

#[tokio::test]
async fn admin_append_stamps_capture_time_keeps_reused_ids_and_refuses_bad_items() {
    let fake = fake(vec![text_item("wa-1", "2026-11-22T10:00:00Z")]);
    let mut new = text_item("wa-live", "2026-11-23T00:29:58Z");
    new.as_object_mut().unwrap().remove("archived_at");
    let append = |body: serde_json::Value| {
        Request::post("/admin/v1/items")
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let answer = fake.send(append(json!({"items": [new]}))).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.json()["appended"], 1);
    let token = fake.token().await;
    let ids = fake
        .list_all(&token, "2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z", 10)
        .await;
    assert_eq!(
        ids,
        ["wa-live"],
        "stamped with the clock's now, 2026-11-23T00:30Z"
    );

    // A provider may send an id again (a repeat or a revision): both copies are listed,
    // in the order received.
    let mut revised = text_item("wa-1", "2026-11-22T11:00:00Z");
    revised["text"] = json!("revised text");
    let reused = fake.send(append(json!({"items": [revised]}))).await;
    assert_eq!(reused.status, StatusCode::CREATED);
    let ids = fake
        .list_all(&token, "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", 1)
        .await;
    assert_eq!(
        ids.iter().filter(|id| id.as_str() == "wa-1").count(),
        2,
        "both copies of wa-1 are listed: {ids:?}"
    );
    let mut broken = text_item("wa-broken", "2026-11-22T11:00:00Z");
    broken.as_object_mut().unwrap().remove("text");
    let bad = fake.send(append(json!({"items": [broken]}))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("items[0] (id wa-broken)")
    );
    assert_eq!(
        fake.state.counters().items_held,
        3,
        "nothing of a refused append is kept"
    );
}

#[tokio::test]
async fn raw_items_are_served_verbatim_for_clients_to_cope_with() {
    let ds = mock_telemessage::Dataset::from_json(
        &json!({"items": [], "raw_items": [{"id": "wa-odd", "archived_at": "2026-11-22T10:00:00Z", "type": "hologram"}],
                "accounts": [{"username": USER, "password": PASSWORD}]})
        .to_string(),
    )
    .unwrap();
    let fake = fake_from(&ds);
    let token = fake.token().await;
    let page = fake
        .get(&format!("/api/v1/items?{DAY}"), Some(&token))
        .await
        .json();
    assert_eq!(page["items"][0]["type"], "hologram");
}

/// Three items with a 1,000-byte document each (`wa-0`..`wa-2`, `att-0`..`att-2`).
fn three_documents() -> mock_telemessage::Dataset {
    dataset(
        (0..3)
            .map(|i| {
                document_item(
                    &format!("wa-{i}"),
                    "2026-11-22T10:00:00Z",
                    &format!("att-{i}"),
                    1000,
                    i,
                )
            })
            .collect(),
    )
}

#[tokio::test]
async fn seeded_faults_are_the_same_on_every_run() {
    let run = || async {
        let mut ds = three_documents();
        ds.faults = mock_telemessage::Faults {
            seed: 7,
            unavailable_rate: 0.3,
            corrupt_download_rate: 0.3,
            truncated_page_rate: 0.0,
            ..Default::default()
        };
        let fake = fake_from(&ds);
        let token = fake.token().await;
        let mut outcome = Vec::new();
        for i in 0..20 {
            let answer = fake
                .get(&format!("/api/v1/attachments/att-{}", i % 3), Some(&token))
                .await;
            // An error body carries a fresh request id; only the bytes of a 200 are compared.
            let digest: String = if answer.status == StatusCode::OK {
                Sha256::digest(&answer.body)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            } else {
                answer.error_code()
            };
            outcome.push((answer.status.as_u16(), digest));
        }
        outcome
    };
    let first = run().await;
    assert_eq!(first, run().await);
    assert!(
        first.iter().any(|(s, _)| *s == 503),
        "some downloads are unavailable"
    );
    let distinct: std::collections::HashSet<_> = first
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, d)| d)
        .collect();
    assert!(distinct.len() > 3, "some downloads are corrupted");
}

#[tokio::test]
async fn a_truncated_page_is_cut_in_the_middle_of_its_json_and_a_retry_may_get_it_whole() {
    let mut ds = dataset(
        (0..4)
            .map(|i| text_item(&format!("wa-{i}"), "2026-11-22T10:00:00Z"))
            .collect(),
    );
    ds.faults = mock_telemessage::Faults {
        seed: 3,
        unavailable_rate: 0.0,
        corrupt_download_rate: 0.0,
        truncated_page_rate: 0.5,
        ..Default::default()
    };
    let fake = fake_from(&ds);
    let token = fake.token().await;
    let uri = format!("/api/v1/items?{DAY}");
    let mut cut = 0;
    let mut whole = None;
    for _ in 0..12 {
        let answer = fake.get(&uri, Some(&token)).await;
        assert_eq!(answer.status, StatusCode::OK, "a cut page still says 200");
        match serde_json::from_slice::<serde_json::Value>(&answer.body) {
            Ok(page) => whole = Some((page, answer.body)),
            Err(_) => {
                cut += 1;
                if let Some((_, full)) = &whole {
                    assert!(full.starts_with(&answer.body) && answer.body.len() < full.len());
                }
            }
        }
    }
    assert!(cut > 0, "some answers are cut");
    let (page, _) = whole.expect("a retry gets the page whole");
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn listings_and_downloads_break_off_half_way_and_come_slowly_by_the_seed() {
    let mut ds = three_documents();
    ds.faults = mock_telemessage::Faults {
        seed: 4,
        reset_rate: 0.4,
        slow_rate: 0.3,
        slow_max_ms: 2,
        ..Default::default()
    };
    let run = || async {
        let fake = fake_from(&ds);
        let token = fake.token().await;
        let mut outcome = Vec::new();
        for i in 0..24 {
            let uri = if i % 2 == 0 {
                format!("/api/v1/items?{DAY}")
            } else {
                format!("/api/v1/attachments/att-{}", i % 3)
            };
            let answer = fake.get(&uri, Some(&token)).await;
            assert_eq!(answer.status, StatusCode::OK, "a cut answer began as a 200");
            if !answer.cut {
                assert!(!answer.body.is_empty());
            }
            outcome.push(answer.cut);
        }
        (outcome, fake.state.counters().faults_injected)
    };
    let (first, injected) = run().await;
    assert_eq!(
        run().await,
        (first.clone(), injected),
        "the same seed, the same faults"
    );
    let cut = first.iter().filter(|c| **c).count();
    assert!(cut > 0 && cut < first.len(), "{cut} of {} cut", first.len());
    assert!(injected as usize > cut, "slow answers are counted too");
}

#[tokio::test]
async fn an_item_is_listed_only_once_its_visibility_lag_has_passed() {
    let mut dataset = dataset(vec![
        text_item("wa-early", "2026-11-22T23:00:00Z"),
        text_item("wa-late", "2026-11-22T23:00:00Z"),
    ]);
    // The clock stands at 00:30; wa-late becomes visible at 01:00.
    dataset.visibility.items.insert("wa-late".into(), 7200);
    let fake = fake_from(&dataset);
    let token = fake.token().await;
    let first = fake
        .list_all(&token, "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", 1)
        .await;
    assert_eq!(first, ["wa-early"]);
    fake.clock.advance(Duration::minutes(30));
    let later = fake
        .list_all(&token, "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", 1)
        .await;
    assert_eq!(
        later,
        ["wa-early", "wa-late"],
        "the same window, listed again"
    );
}

#[test]
fn drawn_lags_depend_on_the_id_and_stay_within_the_bound() {
    let v = mock_telemessage::dataset::Visibility {
        seed: 7,
        rate: 0.3,
        max_lag_seconds: 600,
        items: Default::default(),
    };
    let lags: Vec<i64> = (0..1000)
        .map(|i| v.lag(&format!("wa-{i}")).num_seconds())
        .collect();
    let late = lags.iter().filter(|&&s| s > 0).count();
    assert!(
        (200..400).contains(&late),
        "{late} of 1000 late at rate 0.3"
    );
    assert!(lags.iter().all(|&s| (0..=600).contains(&s)));
    assert_eq!(v.lag("wa-17"), v.lag("wa-17"), "the same id, the same lag");
}

#[tokio::test]
async fn a_gateway_page_a_foreign_json_and_an_empty_download_come_with_a_200_by_the_seed() {
    let mut ds = three_documents();
    ds.faults = mock_telemessage::Faults {
        seed: 11,
        gateway_page_rate: 0.3,
        not_envelope_rate: 0.3,
        empty_download_rate: 0.3,
        ..Default::default()
    };
    let fake = fake_from(&ds);
    // Logins: some answered with the gateway's page, the others with a token; a wrong
    // password is refused as ever, never hidden behind a page.
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    let mut token = None;
    for _ in 0..12 {
        let answer = fake.login_as(USER, PASSWORD).await;
        assert_eq!(answer.status, StatusCode::OK);
        let kind = content_kind(&answer);
        if kind == "json" {
            token = answer.json()["access_token"].as_str().map(str::to_owned);
        }
        *kinds.entry(kind).or_default() += 1;
    }
    assert_eq!(kinds.keys().copied().collect::<Vec<_>>(), ["html", "json"]);
    let refused = fake.login_as(USER, "wrong").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let token = token.expect("some login got through");
    // Listings: the page, the gateway's page, or JSON without the envelope.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let answer = fake
            .get(&format!("/api/v1/items?{DAY}"), Some(&token))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        seen.insert(match content_kind(&answer) {
            "json" if answer.json().get("items").is_some() => "page",
            "json" => "not an envelope",
            other => other,
        });
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["html", "not an envelope", "page"]
    );
    // Downloads: the bytes, the gateway's page, or nothing at all.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let answer = fake
            .get(&format!("/api/v1/attachments/att-{}", i % 3), Some(&token))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        seen.insert(if answer.body.is_empty() {
            "empty"
        } else if content_kind(&answer) == "html" {
            "html"
        } else {
            "bytes"
        });
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["bytes", "empty", "html"]
    );
}

fn content_kind(answer: &common::Answer) -> &'static str {
    let ty = answer.headers["content-type"].to_str().unwrap();
    if ty.starts_with("text/html") {
        assert!(answer.body.starts_with(b"<!DOCTYPE html>"));
        "html"
    } else if ty.starts_with("application/json") {
        "json"
    } else {
        "other"
    }
}
