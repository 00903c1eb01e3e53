//! Bad input never stops the archive: a stale secret is sent once and never locks the
//! account, a mailbox that keeps failing holds back neither its window nor the next
//! days, and a resumed run reports what the interrupted one skipped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use connector::{Connector, ConnectorError};
use serde_json::json;
use tests::{Fakes, examples, fixed_clock, t, temp_dir};

const NOW: &str = "2026-11-23T01:00:00Z";
const UNTIL: &str = "2026-11-23T00:00:00Z";
/// Bob's Graph user id in docs/examples/mailbox-directory.json.
const BOB_ID: &str = "a1b2c3d4-0002-4000-8000-000000000002";

fn fast(c: Connector) -> Connector {
    c.with_retry_delays(Duration::from_millis(1), Duration::from_millis(5))
}

#[tokio::test]
async fn a_stale_password_is_sent_once_and_never_locks_the_account() {
    let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
    let state = temp_dir("stale-password");
    let mut config = fakes.config(&state, None);
    config.provider_password = connector::secret::Secret::new("last-quarters-password");
    config.provider_password_from = "provider.password_file (the file /etc/wa/provider)".into();
    // Six runs with the stale password: the provider locks an account after five refusals.
    for run in 1..=6 {
        let err = fast(Connector::new(config.clone(), fixed_clock(t(NOW))).unwrap())
            .run(t(UNTIL), None)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ConnectorError::SecretRefused { .. }),
            "run {run}: {text}"
        );
        assert_eq!(err.exit_code(), 3, "run {run}");
        assert!(
            text.contains("provider.password_file (the file /etc/wa/provider)"),
            "run {run} must name the setting to fix: {text}"
        );
        assert!(!text.contains("last-quarters-password"), "{text}");
        assert_eq!(
            text.contains("did not send it again"),
            run > 1,
            "run {run}: only the first run sends it: {text}"
        );
    }
    assert!(fakes.contents().is_empty());
    // The state keeps a digest, never the password.
    let db = std::fs::read(state.join("state.sqlite")).unwrap();
    assert!(
        !db.windows(b"last-quarters-password".len())
            .any(|w| w == b"last-quarters-password")
    );
    // The account is not locked: the right password works at once.
    let report = fast(Connector::new(fakes.config(&state, None), fixed_clock(t(NOW))).unwrap())
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert!(report.complete, "{}", report.summary());
    assert_eq!(report.items_fetched, 18);
    std::fs::remove_dir_all(&state).unwrap();
}

/// Counts the token requests that reach the fake identity platform.
fn count_token_requests(count: Arc<AtomicU64>) -> impl FnOnce(Router) -> Router {
    move |router: Router| {
        router.layer(middleware::from_fn(move |request: Request, next: Next| {
            let count = count.clone();
            async move {
                if request.uri().path().ends_with("/oauth2/v2.0/token") {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                next.run(request).await
            }
        }))
    }
}

#[tokio::test]
async fn a_refused_client_secret_is_not_sent_again_until_it_changes() {
    let tokens = Arc::new(AtomicU64::new(0));
    let fakes = Fakes::examples(t(NOW), count_token_requests(tokens.clone()))
        .await
        .unwrap();
    let state = temp_dir("stale-secret");
    let mut config = fakes.config(&state, None);
    config.client_secret = connector::secret::Secret::new("expired-client-secret");
    for _ in 0..6 {
        let err = fast(Connector::new(config.clone(), fixed_clock(t(NOW))).unwrap())
            .run(t(UNTIL), None)
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectorError::SecretRefused { .. }), "{err}");
        assert!(err.to_string().contains("microsoft365.client_secret_env"));
    }
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        1,
        "six runs sent the refused secret once"
    );
    let report = fast(Connector::new(fakes.config(&state, None), fixed_clock(t(NOW))).unwrap())
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert!(report.complete, "{}", report.summary());
    assert!(tokens.load(Ordering::SeqCst) >= 2);
    std::fs::remove_dir_all(&state).unwrap();
}

/// While `broken` is set, every import into Bob's mailbox answers 503, and `imports`
/// counts the attempts.
fn bobs_mailbox_breaks(
    broken: Arc<AtomicBool>,
    imports: Arc<AtomicU64>,
) -> impl FnOnce(Router) -> Router {
    move |router: Router| {
        router.layer(middleware::from_fn(move |request: Request, next: Next| {
            let broken = broken.clone();
            let imports = imports.clone();
            async move {
                let path = request.uri().path().to_owned();
                if path.contains(BOB_ID) && path.ends_with("/importMime") {
                    imports.fetch_add(1, Ordering::SeqCst);
                    if broken.load(Ordering::SeqCst) {
                        let body = json!({"error": {"code": "ErrorInternalServerError",
                            "message": "The mailbox database is offline.",
                            "innerError": {"request-id": "test", "date": "2026-11-23T01:00:00"}}});
                        return Response::builder()
                            .status(503)
                            .header("content-type", "application/json")
                            .body(axum::body::Body::from(body.to_string()))
                            .unwrap()
                            .into_response();
                    }
                }
                next.run(request).await
            }
        }))
    }
}

fn ids_in(fakes: &Fakes, mailbox: &str) -> Vec<String> {
    fakes
        .contents()
        .into_iter()
        .filter(|(m, _, _)| m == mailbox)
        .map(|(_, _, id)| id)
        .collect()
}

#[tokio::test]
async fn a_mailbox_that_keeps_failing_never_holds_back_the_archive() {
    let broken = Arc::new(AtomicBool::new(true));
    let imports = Arc::new(AtomicU64::new(0));
    let fakes = Fakes::examples(t(NOW), bobs_mailbox_breaks(broken.clone(), imports.clone()))
        .await
        .unwrap();
    let state = temp_dir("held");
    let config = fakes.config(&state, Some(examples().join("mapping.csv")));
    let at = |day: u32| t(&format!("2026-11-{day}T01:00:00Z"));
    // The provider's time moves with the connector's: it lists what exists by then.
    let clock = fakes.clock.clone();
    let run = |day: u32| {
        let config = config.clone();
        clock.set(at(day));
        async move {
            fast(Connector::new(config, fixed_clock(at(day))).unwrap())
                .run(t(&format!("2026-11-{day}T00:00:00Z")), None)
                .await
                .unwrap()
        }
    };

    // Day one: Bob's copies fail; the window closes anyway and the items are held.
    let first = run(23).await;
    assert!(!first.complete);
    assert_eq!(first.windows.len(), 1);
    assert!(first.windows[0].closed);
    assert!(!first.failed.is_empty());
    assert!(
        first
            .failed
            .iter()
            .all(|f| f.mailbox.as_deref() == Some("bob.baker@contoso.example"))
    );
    let held: BTreeSet<String> = first.held.iter().map(|h| h.item_id.clone()).collect();
    assert!(!held.is_empty() && first.needs_person.is_empty());
    let alice_day_one = ids_in(&fakes, "alice.archer@contoso.example");
    assert!(
        !alice_day_one.is_empty(),
        "other mailboxes are not held back"
    );
    assert!(ids_in(&fakes, "bob.baker@contoso.example").is_empty());

    // The next day's item is fetched and delivered although Bob still fails.
    let next_day = json!({
        "id": "next-day-1", "capture_mode": "cloud_archiver",
        "archived_at": "2026-11-23T10:00:00Z", "sent_at": "2026-11-23T10:00:00Z",
        "conversation": {"id": "c-next", "type": "direct", "name": null},
        "from": {"phone": "+16174354634", "name": "Alice Archer", "user_email": "alice.archer@contoso.example"},
        "to": [{"phone": "+33612345678", "name": "Chloé Dubois", "user_email": "chloe.dubois@contoso.example"}],
        "type": "text", "text": "the archive moves on",
    });
    fakes.provider.append(vec![next_day], Vec::new()).unwrap();
    let second = run(24).await;
    assert_eq!(second.items_fetched, 1);
    assert_eq!(second.deliveries, 2, "{}", second.summary());
    assert!(
        ids_in(&fakes, "chloe.dubois@contoso.example")
            .contains(&"<next-day-1@whatsapp-archiver.invalid>".to_owned())
    );
    assert_eq!(
        second
            .held
            .iter()
            .map(|h| h.item_id.clone())
            .collect::<BTreeSet<_>>(),
        held,
        "the held items were tried again and are still held"
    );

    // After five runs in all, they need a person, loudly, and are no longer tried.
    for day in 25..=27 {
        let _ = run(day).await;
    }
    let fifth_and_after = run(28).await;
    assert!(fifth_and_after.held.is_empty());
    assert_eq!(
        fifth_and_after
            .needs_person
            .iter()
            .map(|h| h.item_id.clone())
            .collect::<BTreeSet<_>>(),
        held
    );
    assert!(fifth_and_after.needs_person.iter().all(|h| h.runs == 5));
    assert!(!fifth_and_after.complete);
    assert!(fifth_and_after.summary().contains("NEEDS A PERSON"));
    let tried = imports.load(Ordering::SeqCst);
    let again = run(29).await;
    assert_eq!(imports.load(Ordering::SeqCst), tried, "not tried by itself");
    assert_eq!(
        again.needs_person.len(),
        held.len(),
        "reported on every run"
    );

    // A person puts them back; Bob's mailbox works again; everything lands once.
    let store = connector::store::Store::open(&state.join("state.sqlite")).unwrap();
    for id in &held {
        assert!(store.retry_held(id, at(29)).unwrap());
    }
    broken.store(false, Ordering::SeqCst);
    let fixed = run(30).await;
    assert!(fixed.complete, "{}", fixed.summary());
    assert!(fixed.held.is_empty() && fixed.needs_person.is_empty());
    assert!(store.held().unwrap().is_empty());
    let contents = fakes.contents();
    let unique: BTreeSet<_> = contents.iter().collect();
    assert_eq!(unique.len(), contents.len(), "no duplicate anywhere");
    let bob: BTreeSet<String> = ids_in(&fakes, "bob.baker@contoso.example")
        .into_iter()
        .collect();
    let expected_bob: BTreeSet<String> = held
        .iter()
        .map(|id| format!("<{id}@whatsapp-archiver.invalid>"))
        .collect();
    assert_eq!(bob, expected_bob);
    std::fs::remove_dir_all(&state).unwrap();
}

/// Hangs, for ever, the `nth` import the mailbox receives: the client dies not knowing.
fn hang_at_import(nth: u64, crashed: Arc<tokio::sync::Notify>) -> impl FnOnce(Router) -> Router {
    let seen = Arc::new(AtomicU64::new(0));
    move |router: Router| {
        router.layer(middleware::from_fn(move |request: Request, next: Next| {
            let seen = seen.clone();
            let crashed = crashed.clone();
            async move {
                if request.uri().path().ends_with("/importMime")
                    && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth
                {
                    crashed.notify_one();
                    std::future::pending::<()>().await;
                }
                next.run(request).await
            }
        }))
    }
}

#[tokio::test]
async fn a_resumed_run_reports_the_skips_of_the_interrupted_one() {
    let alice = json!({"phone": "+16174354634", "name": "Alice Archer", "user_email": "alice.archer@contoso.example"});
    let bob = json!({"phone": "+12124325249", "name": "Bob Baker", "user_email": "bob.baker@contoso.example"});
    let item = |id: &str, at: &str, body: serde_json::Value| {
        let mut v = json!({"id": id, "capture_mode": "cloud_archiver", "archived_at": at, "sent_at": at,
            "conversation": {"id": "c-1", "type": "direct", "name": null},
            "from": alice, "to": [bob]});
        for (k, val) in body.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    let dataset = json!({
        "accounts": [{"username": tests::PROVIDER_USER, "password": tests::PROVIDER_PASSWORD}],
        "items": [
            item("big-first", "2026-11-22T10:00:00Z", json!({"type": "document", "document": {"caption": "too big to carry",
                "attachment": {"id": "att-big", "file_name": "big.pdf", "content_type": "application/pdf", "size": 9000, "seed": 1}}})),
            item("after", "2026-11-22T11:00:00Z", json!({"type": "text", "text": "after the big one"})),
        ],
    });
    let crashed = Arc::new(tokio::sync::Notify::new());
    let fakes = Fakes::start(
        &mock_telemessage::Dataset::from_json(&dataset.to_string()).unwrap(),
        &mock_mailbox::Directory::from_file(&examples().join("mailbox-directory.json")).unwrap(),
        t(NOW),
        // big-first lands in two mailboxes (imports 1 and 2); the run dies on the third.
        hang_at_import(3, crashed.clone()),
    )
    .await
    .unwrap();
    let state = temp_dir("resume-report");
    let mut config = fakes.config(&state, None);
    config.size_limit = 8_000;
    config.concurrency = 1;
    let doomed = fast(Connector::new(config.clone(), fixed_clock(t(NOW))).unwrap());
    let run = tokio::spawn(async move { doomed.run(t(UNTIL), None).await });
    crashed.notified().await;
    run.abort();
    let _ = run.await;
    let resumed = fast(Connector::new(config, fixed_clock(t(NOW))).unwrap())
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert!(resumed.complete, "{}", resumed.summary());
    let skipped: Vec<(&str, &str)> = resumed
        .skipped
        .iter()
        .map(|s| (s.item_id.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [("big-first", "attachment_too_large")],
        "the resumed window's report has the skip the crashed run recorded"
    );
    std::fs::remove_dir_all(&state).unwrap();
}
