//! Never twice, never given up: faults an operator meets that the seeded fakes did not
//! make. Two runs on one state, a state lost, emptied or damaged after a complete run,
//! an answer that fails on the last attempt after the message was stored. Each test
//! checks the mailboxes themselves: no copy twice, none missing.

use std::time::Duration;

use axum::response::IntoResponse;
use connector::errors::exit;
use connector::{Connector, ConnectorError};
use tests::{Fakes, examples, fixed_clock, t, temp_dir};

const NOW: &str = "2026-11-23T01:00:00Z";
const UNTIL: &str = "2026-11-23T00:00:00Z";

/// What a layer in front of a fake does with one request.
enum Intercept {
    Pass,
    Answer(axum::response::Response),
    /// Never answered: the client waits until it is stopped.
    Hang,
}

/// A layer that asks `decide` about each request.
fn intercept<F>(decide: F) -> impl FnOnce(axum::Router) -> axum::Router
where
    F: Fn(&axum::extract::Request) -> Intercept + Clone + Send + Sync + 'static,
{
    move |router| {
        router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let decide = decide.clone();
                async move {
                    match decide(&request) {
                        Intercept::Pass => next.run(request).await,
                        Intercept::Answer(answer) => answer,
                        Intercept::Hang => std::future::pending().await,
                    }
                }
            },
        ))
    }
}

/// Both fakes: the provider serving `dataset` behind `wrap_provider`, Microsoft 365 the
/// example directory.
async fn fakes_serving(
    dataset: &mock_telemessage::Dataset,
    wrap_provider: impl FnOnce(axum::Router) -> axum::Router,
) -> Fakes {
    Fakes::start_wrapped(
        dataset,
        &mock_mailbox::Directory::from_file(&examples().join("mailbox-directory.json")).unwrap(),
        t(NOW),
        wrap_provider,
        |r| r,
    )
    .await
    .unwrap()
}

/// A dataset of the example account and `items` (and `raw_items`, served unvalidated).
fn dataset_of(
    items: Vec<serde_json::Value>,
    raw_items: serde_json::Value,
) -> mock_telemessage::Dataset {
    let dataset = serde_json::json!({
        "accounts": [{"username": tests::PROVIDER_USER, "password": tests::PROVIDER_PASSWORD}],
        "items": items,
        "raw_items": raw_items,
    });
    mock_telemessage::Dataset::from_json(&dataset.to_string()).unwrap()
}

fn nth(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

fn connector(fakes: &Fakes, state: &std::path::Path) -> Result<Connector, ConnectorError> {
    let config = fakes.config(state, Some(examples().join("mapping.csv")));
    Ok(Connector::new(config, fixed_clock(t(NOW)))?
        .with_retry_delays(Duration::from_millis(1), Duration::from_millis(20)))
}

/// Every landed copy: (mailbox, folder, Message-ID and content digest), sorted; a
/// duplicate shows as a repeated entry.
fn landed(fakes: &Fakes) -> Vec<(String, String, String)> {
    let mut all = fakes.contents();
    all.sort();
    all
}

fn repeated(copies: &[(String, String, String)]) -> usize {
    copies.windows(2).filter(|w| w[0] == w[1]).count()
}

#[tokio::test]
async fn a_second_run_on_the_same_state_is_refused_and_nothing_is_imported_twice() {
    let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
    let state = temp_dir("two-runs");
    let first = connector(&fakes, &state).unwrap();
    // The second is refused before it opens the state or touches a staged file.
    let second = connector(&fakes, &state).unwrap_err();
    assert!(matches!(second, ConnectorError::Busy { .. }), "{second}");
    assert_eq!(second.exit_code(), exit::BUSY);
    let message = second.to_string();
    assert!(
        message.contains(&format!("process {}", std::process::id()))
            && message.contains("since 2026-11-23T01:00:00Z"),
        "says who holds the state: {message}"
    );
    let report = first.run(t(UNTIL), None).await.unwrap();
    assert!(report.deliveries > 0);
    drop(first);
    // Once the first is gone, the next run may go, and adds nothing.
    let again = connector(&fakes, &state)
        .unwrap()
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert_eq!(again.deliveries, 0);
    let copies = landed(&fakes);
    assert_eq!(copies.len() as u64, report.deliveries);
    assert_eq!(repeated(&copies), 0);
    std::fs::remove_dir_all(&state).unwrap();
}

/// How a state can be lost after a complete run.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// `state.sqlite` cut to zero bytes (a restore that went wrong).
    Emptied,
    /// The whole state directory deleted (a new machine, a wiped volume).
    Deleted,
    /// `state.sqlite` overwritten with bytes that are no database: refused as damaged,
    /// then set aside as the error says.
    Damaged,
}

fn lose(state: &std::path::Path, loss: Loss) {
    let db = state.join("state.sqlite");
    match loss {
        Loss::Emptied => {
            for journal in ["state.sqlite-wal", "state.sqlite-shm"] {
                let _ = std::fs::remove_file(state.join(journal));
            }
            std::fs::write(&db, b"").unwrap();
        }
        Loss::Deleted => std::fs::remove_dir_all(state).unwrap(),
        Loss::Damaged => {
            for journal in ["state.sqlite-wal", "state.sqlite-shm"] {
                let _ = std::fs::remove_file(state.join(journal));
            }
            std::fs::write(&db, vec![0x5a; 8192]).unwrap();
        }
    }
}

#[tokio::test]
async fn a_lost_emptied_or_damaged_state_after_a_complete_run_duplicates_nothing() {
    for loss in [Loss::Emptied, Loss::Deleted, Loss::Damaged] {
        let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
        let state = temp_dir("lost-state");
        let first = connector(&fakes, &state)
            .unwrap()
            .run(t(UNTIL), None)
            .await
            .unwrap();
        assert!(
            first.state_without_history.is_some(),
            "{loss:?}: a new state says so"
        );
        let before = landed(&fakes);
        assert_eq!(before.len() as u64, first.deliveries, "{loss:?}");
        lose(&state, loss);
        if let Loss::Damaged = loss {
            let refused = connector(&fakes, &state).unwrap_err();
            let message = refused.to_string();
            assert!(
                matches!(refused, ConnectorError::StateDamaged { .. })
                    && message.contains("damaged")
                    && message.contains("connector state set-aside"),
                "names the damage and the way on: {message}"
            );
            assert_eq!(refused.exit_code(), exit::INTERNAL);
            let aside = connector::store::set_aside(&state.join("state.sqlite"), t(NOW)).unwrap();
            assert!(aside.is_some_and(|p| p.exists()), "kept for a person");
        }
        let again = connector(&fakes, &state)
            .unwrap()
            .run(t(UNTIL), None)
            .await
            .unwrap();
        assert!(
            again.state_without_history.is_some(),
            "{loss:?}: the run says why it looks first"
        );
        assert_eq!(
            (again.deliveries, again.already_delivered),
            (0, first.deliveries),
            "{loss:?}: every message found in its mailbox, none sent again"
        );
        assert_eq!(
            landed(&fakes),
            before,
            "{loss:?}: the mailboxes are unchanged"
        );
        // The state has its history again: the next run does not look first.
        let third = connector(&fakes, &state)
            .unwrap()
            .run(t(UNTIL), None)
            .await
            .unwrap();
        assert!(third.state_without_history.is_none(), "{loss:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.join("state.sqlite"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "{loss:?}: the state is its owner's only"
            );
        }
        std::fs::remove_dir_all(&state).unwrap();
    }
}

#[tokio::test]
async fn a_window_taken_again_from_before_the_states_history_looks_first() {
    let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
    // A state that began with a later window (its history starts at 23:00) ...
    let state = temp_dir("before-history");
    let late = connector(&fakes, &state)
        .unwrap()
        .run(t(UNTIL), Some(t("2026-11-22T23:00:00Z")))
        .await
        .unwrap();
    // ... while another state, now lost, had imported the whole day.
    let other = temp_dir("before-history-other");
    let whole = connector(&fakes, &other)
        .unwrap()
        .run(t(UNTIL), None)
        .await
        .unwrap();
    let before = landed(&fakes);
    assert!(
        whole.deliveries > late.deliveries,
        "the day has earlier items"
    );
    // Taking the day again from before the first state's history sends nothing twice.
    let again = connector(&fakes, &state)
        .unwrap()
        .run(t(UNTIL), Some(t("2026-11-22T00:00:00Z")))
        .await
        .unwrap();
    assert_eq!(again.deliveries, 0, "{}", again.summary());
    assert_eq!(landed(&fakes), before);
    assert_eq!(repeated(&before), 0);
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

/// The `connector` binary, run in a mount namespace of its own where a 64 KiB tmpfs lies
/// over the staging directory: the first file of any size fills it, and the write fails
/// with ENOSPC as on a full disk. `unshare` maps this user to root inside the namespace,
/// so no privilege is needed; the tmpfs ends with the process, and the space is back.
fn run_on_a_full_disk(state: &std::path::Path, toml: &std::path::Path) -> std::process::Output {
    std::fs::create_dir_all(state.join("staging")).unwrap();
    let bin = tests::connector_binary(None).unwrap();
    let script = r#"mount -t tmpfs -o size=64k,mode=0700 tmpfs "$1/staging" && exec "$2" run --config "$3" --until "$4" --harness-now "$5" --harness-retry-ms 1,20"#;
    std::process::Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(state)
        .arg(bin)
        .arg(toml)
        .args([UNTIL, NOW])
        .env("TELEMESSAGE_PASSWORD", tests::PROVIDER_PASSWORD)
        .env("M365_CLIENT_SECRET", tests::CLIENT_SECRET)
        .env("RUST_LOG", "warn")
        .output()
        .expect("unshare (util-linux) runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_while_staging_stops_the_run_with_status_1_and_loses_nothing() {
    // What the day should land: the same fakes, a run with room to spare.
    let reference = Fakes::examples(t(NOW), |r| r).await.unwrap();
    let spare = temp_dir("disk-full-reference");
    connector(&reference, &spare)
        .unwrap()
        .run(t(UNTIL), None)
        .await
        .unwrap();
    let expected = landed(&reference);

    let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
    let state = temp_dir("disk-full");
    let config = fakes.config(&state, Some(examples().join("mapping.csv")));
    let toml = state.with_extension("toml");
    std::fs::write(&toml, tests::connector_toml(&config, None)).unwrap();
    let out = tokio::task::spawn_blocking({
        let (state, toml) = (state.clone(), toml.clone());
        move || run_on_a_full_disk(&state, &toml)
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("staging directory")
            && said.contains("no space left on the device")
            && said.contains("nothing is lost"),
        "names the full disk and the way on: {said}"
    );
    assert!(
        !said.contains("provider:"),
        "not blamed on the provider: {said}"
    );
    let before = landed(&fakes);
    assert!(before.len() < expected.len(), "the run stopped part-way");
    // Space again: the next run finishes the window, and nothing lands twice.
    let again = connector(&fakes, &state)
        .unwrap()
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert!(again.complete, "{}", again.summary());
    assert_eq!(landed(&fakes), expected);
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::remove_file(&toml).unwrap();
    std::fs::remove_dir_all(&spare).unwrap();
}

fn text_item(id: &str, archived_at: &str, text: &str) -> serde_json::Value {
    let person = |phone: &str, name: &str, email: &str| serde_json::json!({"phone": phone, "name": name, "user_email": email});
    serde_json::json!({
        "id": id, "capture_mode": "cloud_archiver", "archived_at": archived_at,
        "sent_at": archived_at, "type": "text", "text": text,
        "conversation": {"id": "c-1", "type": "direct", "name": null},
        "from": person("+16174354634", "Alice Archer", "alice.archer@contoso.example"),
        "to": [person("+12124325249", "Bob Baker", "bob.baker@contoso.example")],
    })
}

#[tokio::test]
async fn a_page_above_the_bound_is_asked_for_smaller_and_an_item_above_it_alone_is_skipped() {
    // Two days; on the first, among small texts, one of 70,000 CJK characters (within
    // WhatsApp's limit, 210,000 bytes of JSON) where the page bound is 64 KiB.
    let mut items: Vec<_> = (0..12)
        .map(|i| {
            let at = format!("2026-11-21T{:02}:00:00Z", i + 1);
            text_item(&format!("wa-d1-{i:02}"), &at, &"議事録".repeat(4000))
        })
        .collect();
    items.insert(
        5,
        text_item("wa-huge", "2026-11-21T05:30:00Z", &"長".repeat(70_000)),
    );
    items.extend((0..3).map(|i| {
        let at = format!("2026-11-22T{:02}:00:00Z", i + 1);
        text_item(&format!("wa-d2-{i}"), &at, "next day")
    }));
    let fakes = fakes_serving(&dataset_of(items, serde_json::json!([])), |r| r).await;
    let state = temp_dir("oversized-page");
    let run = || async {
        let mut config = fakes.config(&state, None);
        config.max_page_bytes = 64 * 1024;
        Connector::new(config, fixed_clock(t(NOW)))
            .unwrap()
            .with_retry_delays(Duration::from_millis(1), Duration::from_millis(20))
            .run(t(UNTIL), Some(t("2026-11-21T00:00:00Z")))
            .await
            .unwrap()
    };
    let report = run().await;
    assert!(report.complete, "{}", report.summary());
    assert_eq!(report.windows.len(), 2, "both days' windows closed");
    // Every other item, on both days, to both mailboxes; the huge one skipped, named.
    let delivered: std::collections::BTreeSet<String> = landed(&fakes)
        .into_iter()
        .map(|(_, _, message_id)| message_id)
        .collect();
    assert_eq!(delivered.len(), 15, "{delivered:?}");
    assert!(!delivered.iter().any(|m| m.contains("wa-huge")));
    assert_eq!(report.deliveries, 30);
    let skip = report
        .skipped
        .iter()
        .find(|s| s.reason == "invalid_item")
        .expect("the huge item is reported");
    assert_eq!(skip.item_id, "wa-huge");
    assert!(
        skip.detail
            .contains("above import.max_page_bytes (65536 bytes)"),
        "{}",
        skip.detail
    );
    let quarantined = &report.quarantined[0];
    assert_eq!(
        (quarantined.position, quarantined.item_id.as_deref()),
        (6, Some("wa-huge"))
    );
    let kept = std::fs::read(&quarantined.file).unwrap();
    assert_eq!(kept.len(), 64 * 1024, "kept up to the bound");
    assert!(kept.starts_with(br#"{"archived_at":"2026-11-21T05:30:00Z""#));
    // Listed again: nothing new, and the huge item is not quarantined twice.
    let again = run().await;
    assert_eq!((again.deliveries, again.quarantined.len()), (0, 0));
    std::fs::remove_dir_all(&state).unwrap();
}

/// Every copy of every mailbox, by Message-ID: its attachments' SHA-256s and what it
/// answers.
fn copies_by_id(fakes: &Fakes) -> Vec<(String, String, Vec<String>, Vec<String>)> {
    let mut all = Vec::new();
    for tenant in fakes.mailbox.tenants() {
        for user in tenant.users.iter().filter(|u| u.mailbox_enabled) {
            for m in fakes
                .mailbox
                .inspect_messages(&user.user_principal_name, false)
                .unwrap()
            {
                all.push((
                    user.user_principal_name.clone(),
                    m.internet_message_id.clone().unwrap_or_default(),
                    m.attachments.iter().map(|a| a.sha256.clone()).collect(),
                    m.in_reply_to.clone(),
                ));
            }
        }
    }
    all.sort();
    all
}

#[tokio::test]
async fn files_that_cannot_be_fetched_are_owed_and_follow_their_messages_once() {
    // What lands when every file comes whole.
    let reference = Fakes::examples(t(NOW), |r| r).await.unwrap();
    let spare = temp_dir("owed-reference");
    connector(&reference, &spare)
        .unwrap()
        .run(t(UNTIL), None)
        .await
        .unwrap();
    let whole = copies_by_id(&reference);
    // The items with a file in the provider's archive (a contact card's vCard is made
    // by the connector, and owes nothing).
    let dataset: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(examples().join("telemessage-dataset.json")).unwrap(),
    )
    .unwrap();
    let items_with_files: std::collections::BTreeSet<String> = dataset["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i.as_object()
                .unwrap()
                .values()
                .any(|v| v.get("attachment").is_some())
        })
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let with_files: Vec<_> = whole
        .iter()
        .filter(|c| {
            items_with_files.contains(c.1.trim_start_matches('<').split('@').next().unwrap())
        })
        .collect();
    assert!(with_files.len() >= 3, "the example day has files");
    assert!(with_files.iter().all(|c| c.2.len() == 1));

    // The provider answers every download with an empty 200 until told otherwise.
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let gate = failing.clone();
    let fakes = fakes_serving(
        &mock_telemessage::Dataset::from_file(&examples().join("telemessage-dataset.json"))
            .unwrap(),
        intercept(move |request| {
            if gate.load(std::sync::atomic::Ordering::SeqCst)
                && request.uri().path().starts_with("/api/v1/attachments/")
            {
                Intercept::Answer(axum::http::StatusCode::OK.into_response())
            } else {
                Intercept::Pass
            }
        }),
    )
    .await;
    let state = temp_dir("owed");
    let first = connector(&fakes, &state)
        .unwrap()
        .run(t(UNTIL), None)
        .await
        .unwrap();
    // The text went now, every message of the day, without its file.
    assert_eq!(landed(&fakes).len(), whole.len(), "{}", first.summary());
    let owed: std::collections::BTreeSet<_> =
        first.owed_files.iter().map(|o| o.item_id.clone()).collect();
    assert_eq!(owed, items_with_files, "each file is owed, by its item");
    assert!(!first.complete, "owed files are not a complete run");
    assert!(
        first.summary().contains("files owed 3"),
        "{}",
        first.summary()
    );

    // The provider recovers: the next run delivers each file as a follow-up.
    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    let second = connector(&fakes, &state)
        .unwrap()
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert!(second.complete, "{}", second.summary());
    assert!(second.owed_files.is_empty());
    assert_eq!(second.files_delivered_later as usize, with_files.len());
    let now = copies_by_id(&fakes);
    for (mailbox, id, files, _) in &with_files {
        let follow_up = id.replace('@', "+file@");
        let found: Vec<_> = now
            .iter()
            .filter(|c| &c.0 == mailbox && c.1 == follow_up)
            .collect();
        assert_eq!(found.len(), 1, "{mailbox}: one follow-up {follow_up}");
        assert_eq!(&found[0].2, files, "{mailbox}: the provider's very bytes");
        assert!(
            found[0]
                .3
                .iter()
                .any(|r| id.contains(r.trim_matches(['<', '>']))),
            "{mailbox}: it answers {id}: {:?}",
            found[0].3
        );
        let first_copy = now.iter().find(|c| &c.0 == mailbox && &c.1 == id).unwrap();
        assert!(
            first_copy.2.is_empty(),
            "the archived message is not changed"
        );
    }
    // Nothing more, however often it runs.
    let third = connector(&fakes, &state)
        .unwrap()
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert_eq!((third.deliveries, third.files_delivered_later), (0, 0));
    assert_eq!(copies_by_id(&fakes), now);
    assert_eq!(now.len(), whole.len() + with_files.len());
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::remove_dir_all(&spare).unwrap();
}

#[tokio::test]
async fn a_resumed_window_counts_the_items_its_interrupted_run_quarantined() {
    let mut items: Vec<_> = (0..3)
        .map(|i| text_item(&format!("wa-{i}"), &format!("2026-11-22T0{i}:00:00Z"), "hi"))
        .collect();
    items.push(text_item(
        "wa-late",
        "2026-11-22T20:00:00Z",
        "after the bad ones",
    ));
    let raw = serde_json::json!([
        {"id": "bad-1", "archived_at": "2026-11-22T10:00:00Z", "type": "hologram"},
        {"id": "bad-2", "archived_at": "2026-11-22T11:00:00Z", "type": 7},
    ]);
    // Pages of two items: [wa-0, wa-1], [wa-2, bad-1], [bad-2, wa-late]. The third page
    // is never answered: the run is stopped dead in its listing, after it quarantined
    // bad-1 and before it saw bad-2.
    let reached = std::sync::Arc::new(tokio::sync::Notify::new());
    let pages = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let hang = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (signal, gate) = (reached.clone(), hang.clone());
    let fakes = fakes_serving(
        &dataset_of(items, raw),
        intercept(move |request| {
            if request.uri().path() == "/api/v1/items"
                && gate.load(std::sync::atomic::Ordering::SeqCst)
                && nth(&pages) == 2
            {
                signal.notify_one();
                Intercept::Hang
            } else {
                Intercept::Pass
            }
        }),
    )
    .await;
    let state = temp_dir("resumed-quarantine");
    let mut config = fakes.config(&state, None);
    config.page_size = 2;
    let first = Connector::new(config, fixed_clock(t(NOW))).unwrap();
    let run = tokio::spawn(async move { first.run(t(UNTIL), None).await });
    reached.notified().await;
    run.abort();
    let _ = run.await;
    hang.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        std::fs::read_dir(state.join("quarantine")).unwrap().count(),
        1,
        "the interrupted run quarantined bad-1 only"
    );
    let resumed = connector(&fakes, &state)
        .unwrap()
        .run(t(UNTIL), None)
        .await
        .unwrap();
    let a = &resumed.accounting;
    assert_eq!(
        a.items,
        6,
        "four texts and two unreadable items: {}",
        a.line()
    );
    assert_eq!(a.skipped.get("invalid_item"), Some(&2), "{}", a.line());
    assert!(a.adds_up(), "{}", a.line());
    assert_eq!(resumed.quarantined.len(), 2);
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn a_gateway_page_on_the_login_and_on_the_third_listing_is_retried_and_the_day_completes() {
    let items: Vec<_> = (0..7)
        .map(|i| text_item(&format!("wa-{i}"), &format!("2026-11-22T0{i}:00:00Z"), "hi"))
        .collect();
    // The first login and the third listing request get a gateway's page, with a 200.
    let logins = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let listings = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = logins.clone();
    let fakes = fakes_serving(
        &dataset_of(items, serde_json::json!([])),
        intercept(move |request| {
            let path = request.uri().path();
            if (path == "/api/v1/auth/token" && nth(&counted) == 0)
                || (path == "/api/v1/items" && nth(&listings) == 2)
            {
                Intercept::Answer(
                    (
                        [("content-type", "text/html")],
                        "<html><body><h1>502 Bad Gateway</h1></body></html>",
                    )
                        .into_response(),
                )
            } else {
                Intercept::Pass
            }
        }),
    )
    .await;
    let state = temp_dir("gateway-page");
    let mut config = fakes.config(&state, None);
    config.page_size = 2;
    let report = Connector::new(config, fixed_clock(t(NOW)))
        .unwrap()
        .with_retry_delays(Duration::from_millis(1), Duration::from_millis(20))
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert!(report.complete, "{}", report.summary());
    assert_eq!(report.deliveries, 14, "seven items, two mailboxes each");
    assert!(
        report.retries >= 2,
        "the login and the page were tried again"
    );
    assert_eq!(landed(&fakes).len(), 14);
    assert!(logins.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn a_file_owed_for_held_runs_runs_needs_a_person_and_is_listed_until_then() {
    // Every download fails, for good.
    let fakes = fakes_serving(
        &mock_telemessage::Dataset::from_file(&examples().join("telemessage-dataset.json"))
            .unwrap(),
        intercept(|request| {
            if request.uri().path().starts_with("/api/v1/attachments/") {
                Intercept::Answer(axum::http::StatusCode::OK.into_response())
            } else {
                Intercept::Pass
            }
        }),
    )
    .await;
    let state = temp_dir("owed-needs-person");
    let run = || async {
        let mut config = fakes.config(&state, Some(examples().join("mapping.csv")));
        config.held_runs = 2;
        Connector::new(config, fixed_clock(t(NOW)))
            .unwrap()
            .with_retry_delays(Duration::from_millis(1), Duration::from_millis(20))
            .run(t(UNTIL), None)
            .await
            .unwrap()
    };
    let first = run().await;
    assert_eq!(
        (first.owed_files.len(), first.owed_files_need_person.len()),
        (3, 0)
    );
    assert!(first.owed_files.iter().all(|o| o.runs == 1));
    // The second run that cannot fetch them is the last that tries by itself.
    let second = run().await;
    assert_eq!(
        (second.owed_files.len(), second.owed_files_need_person.len()),
        (0, 3),
        "{}",
        second.summary()
    );
    assert!(!second.complete);
    assert!(second.summary().contains("FILE OWED, NEEDS A PERSON"));
    // Listed on every run until a person acts; not fetched again by itself.
    let third = run().await;
    assert_eq!(third.owed_files_need_person.len(), 3);
    assert_eq!(third.owed_files_need_person[0].runs, 2);
    std::fs::remove_dir_all(&state).unwrap();
}
