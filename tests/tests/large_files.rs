//! Files larger than one Microsoft 365 request. Under the fake's `graph` profile (a 4 MiB
//! request cap, as Graph documents for MIME payloads and upload chunks) a message with a
//! file of a few MiB cannot go in one `importMime`: the connector imports it without the
//! file, then attaches the file by an upload session. Checked here in the mailboxes
//! themselves: every file byte for byte, once, whatever the crash; and what happens when
//! Microsoft 365 refuses attachments on imported messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use connector::Connector;
use tests::{Fakes, examples, fixed_clock, t, temp_dir};

const NOW: &str = "2026-11-23T01:00:00Z";
const UNTIL: &str = "2026-11-23T00:00:00Z";
const MIB: u64 = 1024 * 1024;
const ALICE: &str = "alice.archer@contoso.example";
const BOB: &str = "bob.baker@contoso.example";

/// A video from Alice to Bob (Bob's mailbox is on Litigation Hold).
fn video(id: &str, minute: u32, size: u64, seed: u64) -> serde_json::Value {
    serde_json::json!({
        "id": id, "type": "media", "capture_mode": "cloud_archiver",
        "archived_at": format!("2026-11-22T10:{minute:02}:00Z"),
        "sent_at": format!("2026-11-22T10:{minute:02}:00Z"),
        "conversation": {"id": "conv-ab", "type": "direct", "name": null},
        "from": {"phone": "+16174354634", "name": "Alice Archer", "user_email": ALICE},
        "to": [{"phone": "+12124325249", "name": "Bob Baker", "user_email": BOB}],
        "media": {"kind": "video", "caption": format!("clip {id}"),
                  "attachment": {"id": format!("att-{id}"), "file_name": format!("{id}.mp4"),
                                 "content_type": "video/mp4", "size": size, "seed": seed}}
    })
}

fn dataset(items: Vec<serde_json::Value>) -> mock_telemessage::Dataset {
    let dataset = serde_json::json!({
        "accounts": [{"username": tests::PROVIDER_USER, "password": tests::PROVIDER_PASSWORD}],
        "items": items,
    });
    mock_telemessage::Dataset::from_json(&dataset.to_string()).unwrap()
}

/// Graph's rules (4 MiB cap), no delays; attachments on imported messages allowed or not.
fn graph(attachments_on_non_drafts: bool) -> mock_mailbox::Config {
    mock_mailbox::Config {
        profile: mock_mailbox::profile::Profile::graph(None),
        attachments_on_non_drafts,
        ..mock_mailbox::Config::default()
    }
}

async fn fakes(
    items: Vec<serde_json::Value>,
    mailbox: mock_mailbox::Config,
    wrap: impl FnOnce(axum::Router) -> axum::Router,
) -> Fakes {
    Fakes::start_with_mailbox(
        &dataset(items),
        &mock_mailbox::Directory::from_file(&examples().join("mailbox-directory.json")).unwrap(),
        t(NOW),
        mailbox,
        |r| r,
        wrap,
    )
    .await
    .unwrap()
}

fn connector(fakes: &Fakes, state: &std::path::Path) -> Connector {
    connector_capped(fakes, state, 4 * MIB)
}

/// The connector with `import.max_request_bytes` at `cap`.
fn connector_capped(fakes: &Fakes, state: &std::path::Path, cap: u64) -> Connector {
    let mut config = fakes.config(state, Some(examples().join("mapping.csv")));
    config.max_request_bytes = cap;
    Connector::new(config, fixed_clock(t(NOW)))
        .unwrap()
        .with_retry_delays(Duration::from_millis(1), Duration::from_millis(20))
}

/// Each live message of `mailbox`: its Message-ID and its attachments' SHA-256s.
fn live(fakes: &Fakes, mailbox: &str) -> Vec<(String, Vec<String>)> {
    let mut all: Vec<_> = fakes
        .mailbox
        .inspect_messages(mailbox, false)
        .unwrap()
        .into_iter()
        .map(|m| {
            (
                m.internet_message_id.unwrap_or_default(),
                m.attachments.into_iter().map(|a| a.sha256).collect(),
            )
        })
        .collect();
    all.sort();
    all
}

/// Counts the Graph answers of each status, the largest request body sent, and the most
/// requests of message imports and uploads in flight at once.
#[derive(Clone, Default)]
struct Watch {
    statuses: Arc<std::sync::Mutex<Vec<u16>>>,
    largest_body: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
    most_in_flight: Arc<AtomicU64>,
}

impl Watch {
    fn layer(&self) -> impl FnOnce(axum::Router) -> axum::Router + use<> {
        let watch = self.clone();
        move |router| {
            router.layer(middleware::from_fn(move |request: Request, next: Next| {
                let watch = watch.clone();
                async move {
                    let length = request
                        .headers()
                        .get("content-length")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    watch.largest_body.fetch_max(length, Ordering::SeqCst);
                    // Imports, attachment posts and chunks: what carries a file's bytes.
                    let carries = length > 0;
                    if carries {
                        let now = watch.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        watch.most_in_flight.fetch_max(now, Ordering::SeqCst);
                    }
                    let response = next.run(request).await;
                    if carries {
                        watch.in_flight.fetch_sub(1, Ordering::SeqCst);
                    }
                    watch
                        .statuses
                        .lock()
                        .unwrap()
                        .push(response.status().as_u16());
                    response
                }
            }))
        }
    }
}

#[tokio::test]
async fn files_of_3_to_7_mib_land_byte_for_byte_by_upload_session_and_a_9_mib_one_is_left_out_to_fit()
 {
    let files = [
        (3 * MIB, 31),
        (5 * MIB + 12_345, 32),
        (7 * MIB, 33),
        (9 * MIB, 34),
    ];
    let items: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(n, (size, seed))| video(&format!("big-{n}"), n as u32, *size, *seed))
        .collect();
    let watch = Watch::default();
    let fakes = fakes(items, graph(true), watch.layer()).await;
    let state = temp_dir("large-files");
    let (logs, guard) = mock_common::LogCapture::install();
    tracing::info!("large-files capture check");
    let report = connector(&fakes, &state).run(t(UNTIL), None).await.unwrap();
    drop(guard);
    assert!(report.complete, "{}", report.summary());
    // The upload URLs' credentials are in no log, on either side. (Whether a given
    // event of another crate reaches this thread's capture depends on tracing's
    // per-callsite cache, which tests on other threads share: only this test's own
    // event is asserted present.)
    let logged = logs.text();
    assert!(logged.contains("large-files capture check"), "{logged}");
    assert!(!logged.contains("authtoken"), "{logged}");
    let written = serde_json::to_string(&report).unwrap();
    assert!(!written.contains("authtoken"));
    assert!(
        !watch.statuses.lock().unwrap().contains(&413),
        "no request over Graph's cap was sent"
    );
    assert!(watch.largest_body.load(Ordering::SeqCst) <= 4 * MIB);
    for mailbox in [ALICE, BOB] {
        let copies = live(&fakes, mailbox);
        assert_eq!(
            copies.len(),
            4,
            "{mailbox}: one message per item: {copies:?}"
        );
        for (n, (size, seed)) in files.iter().enumerate() {
            let id = format!("<big-{n}@whatsapp-archiver.invalid>");
            let (_, attachments) = copies.iter().find(|c| c.0 == id).unwrap();
            if *size < 9 * MIB {
                assert_eq!(
                    attachments,
                    &vec![mock_telemessage::attachment::sha256_hex(*seed, *size)],
                    "{mailbox} {id}: the provider's very bytes, once"
                );
            } else {
                // The 10 MiB rule stays: with base64 the message would be above it.
                assert!(attachments.is_empty(), "{mailbox} {id}");
            }
        }
    }
    let counts = &report.skipped;
    assert!(
        counts
            .iter()
            .any(|s| s.item_id == "big-3" && s.reason == "attachment_omitted_to_fit"),
        "{counts:?}"
    );
    assert!(counts.iter().all(|s| s.item_id == "big-3"), "{counts:?}");
    // Nothing more, however often it runs.
    let again = connector(&fakes, &state).run(t(UNTIL), None).await.unwrap();
    assert_eq!(again.deliveries, 0, "{}", again.summary());
    assert_eq!(live(&fakes, ALICE).len(), 4);
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn a_memory_budget_smaller_than_one_build_still_delivers_every_file_one_item_at_a_time() {
    // Each 5 MiB file follows its message (above the 4 MiB cap) and is kept whole while
    // its deliveries go: with a budget of 6 MiB the items go one after another, each
    // whole to both mailboxes. (The configuration takes 16 MiB at least; the mechanism is
    // the same.)
    let files = [(5 * MIB, 51), (5 * MIB + 1, 52), (5 * MIB + 2, 53)];
    let items: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(n, (size, seed))| video(&format!("tight-{n}"), n as u32, *size, *seed))
        .collect();
    let watch = Watch::default();
    let fakes = fakes(items, graph(true), watch.layer()).await;
    let state = temp_dir("tight-budget");
    let mut config = fakes.config(&state, Some(examples().join("mapping.csv")));
    config.memory_budget = 6 * MIB as usize;
    assert!(
        config.concurrency >= 4,
        "room on the wire for two items at once"
    );
    let report = Connector::new(config, fixed_clock(t(NOW)))
        .unwrap()
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert!(report.complete, "{}", report.summary());
    assert_eq!(report.deliveries, 6, "{}", report.summary());
    for mailbox in [ALICE, BOB] {
        let copies = live(&fakes, mailbox);
        let expected: Vec<(String, Vec<String>)> = files
            .iter()
            .enumerate()
            .map(|(n, (size, seed))| {
                (
                    format!("<tight-{n}@whatsapp-archiver.invalid>"),
                    vec![mock_telemessage::attachment::sha256_hex(*seed, *size)],
                )
            })
            .collect();
        assert_eq!(copies, expected, "{mailbox}");
    }
    // One item at a time: its two deliveries (one per mailbox), never a second item's.
    let most = watch.most_in_flight.load(Ordering::SeqCst);
    assert!(most <= 2, "{most} requests with bodies in flight at once");
    std::fs::remove_dir_all(&state).unwrap();
}

/// Stops the run at Graph request number `at`: before the fake sees it (`after` false),
/// or once the fake has done it and before its answer leaves (`after` true).
#[derive(Clone)]
struct CrashPoint {
    seen: Arc<AtomicU64>,
    at: Arc<AtomicU64>,
    after: bool,
    crashed: Arc<tokio::sync::Notify>,
}

impl CrashPoint {
    fn new(at: u64, after: bool) -> Self {
        Self {
            seen: Arc::default(),
            at: Arc::new(AtomicU64::new(at)),
            after,
            crashed: Arc::default(),
        }
    }

    fn layer(&self) -> impl FnOnce(axum::Router) -> axum::Router + use<> {
        let point = self.clone();
        move |router| {
            router.layer(middleware::from_fn(move |request: Request, next: Next| {
                let point = point.clone();
                async move {
                    let n = point.seen.fetch_add(1, Ordering::SeqCst) + 1;
                    let here = n == point.at.load(Ordering::SeqCst);
                    if here && !point.after {
                        point.crashed.notify_one();
                        std::future::pending::<()>().await;
                    }
                    let response = next.run(request).await;
                    if here {
                        point.crashed.notify_one();
                        std::future::pending::<()>().await;
                    }
                    response
                }
            }))
        }
    }
}

/// A cap of 256 KiB on both sides: the same flow as under 4 MiB (a message too large for
/// one request, its file in two chunks), with files small enough to stop a run at every
/// request quickly.
const SMALL_CAP: u64 = 256 * 1024;

fn graph_capped(cap: u64) -> mock_mailbox::Config {
    let mut config = graph(true);
    config.profile.max_request_bytes = cap as usize;
    config
}

#[tokio::test]
async fn a_run_stopped_at_any_request_of_the_upload_flow_resumes_with_one_message_and_one_file() {
    // Two files of two chunks each, to two mailboxes.
    let (one, two) = (SMALL_CAP + 90_000, 2 * SMALL_CAP - 1);
    let items = vec![video("up-1", 1, one, 41), video("up-2", 2, two, 42)];
    let expected: Vec<(String, Vec<String>)> = vec![
        (
            "<up-1@whatsapp-archiver.invalid>".into(),
            vec![mock_telemessage::attachment::sha256_hex(41, one)],
        ),
        (
            "<up-2@whatsapp-archiver.invalid>".into(),
            vec![mock_telemessage::attachment::sha256_hex(42, two)],
        ),
    ];
    let counting = CrashPoint::new(u64::MAX, false);
    let reference = fakes(items.clone(), graph_capped(SMALL_CAP), counting.layer()).await;
    let state = temp_dir("upload-crash-count");
    let report = connector_capped(&reference, &state, SMALL_CAP)
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert!(report.complete, "{}", report.summary());
    assert_eq!(live(&reference, ALICE), expected);
    assert_eq!(live(&reference, BOB), expected);
    std::fs::remove_dir_all(&state).unwrap();
    let requests = counting.seen.load(Ordering::SeqCst);
    // Per mailbox: the user, its folder (found, created), then for each item an import,
    // a session and two chunks.
    assert!(requests >= 16, "imports, sessions and chunks: {requests}");
    eprintln!("the upload flow of two items to two mailboxes made {requests} requests");
    for at in 1..=requests {
        for after in [false, true] {
            let point = CrashPoint::new(at, after);
            let fakes = fakes(items.clone(), graph_capped(SMALL_CAP), point.layer()).await;
            let state = temp_dir(&format!("upload-crash-{at}-{after}"));
            let doomed = connector_capped(&fakes, &state, SMALL_CAP);
            let mut run = tokio::spawn(async move { doomed.run(t(UNTIL), None).await });
            tokio::select! {
                () = point.crashed.notified() => {
                    run.abort();
                    let _ = run.await;
                }
                finished = &mut run => {
                    let report = finished.unwrap().unwrap();
                    assert!(report.complete, "{}", report.summary());
                }
            }
            point.at.store(u64::MAX, Ordering::SeqCst);
            let resumed = connector_capped(&fakes, &state, SMALL_CAP)
                .run(t(UNTIL), None)
                .await
                .unwrap_or_else(|e| panic!("stopped at {at} (after: {after}): {e}"));
            assert!(
                resumed.complete,
                "stopped at {at} (after: {after}): {}",
                resumed.summary()
            );
            for mailbox in [ALICE, BOB] {
                assert_eq!(
                    live(&fakes, mailbox),
                    expected,
                    "{mailbox}: stopped at request {at} of {requests} (after: {after})"
                );
            }
            std::fs::remove_dir_all(&state).unwrap();
        }
    }
}

#[tokio::test]
async fn a_file_refused_on_an_imported_message_is_left_out_reported_and_not_tried_again() {
    let items = vec![video("no-1", 1, 5 * MIB, 51)];
    let watch = Watch::default();
    let fakes = fakes(items, graph(false), watch.layer()).await;
    let state = temp_dir("refused");
    let report = connector(&fakes, &state).run(t(UNTIL), None).await.unwrap();
    assert!(report.complete, "{}", report.summary());
    for mailbox in [ALICE, BOB] {
        let copies = live(&fakes, mailbox);
        assert_eq!(
            copies,
            vec![("<no-1@whatsapp-archiver.invalid>".to_owned(), vec![])],
            "{mailbox}: the message, without its file"
        );
    }
    let refused: Vec<_> = report
        .skipped
        .iter()
        .filter(|s| s.reason == "attachment_refused")
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", report.skipped);
    assert!(
        refused[0].detail.contains("no-1.mp4"),
        "{}",
        refused[0].detail
    );
    let message = fakes.mailbox.inspect_messages(ALICE, false).unwrap();
    assert!(
        message[0]
            .headers
            .iter()
            .any(|(k, v)| k == "X-WhatsApp-Attachment-Follows" && v.contains("no-1.mp4")),
        "the message names the file that was to follow"
    );
    let refusals = watch
        .statuses
        .lock()
        .unwrap()
        .iter()
        .filter(|s| **s == 403)
        .count();
    assert_eq!(refusals, 2, "one refusal per mailbox, not retried");
    // `connector check` says so.
    let said = connector(&fakes, &state).check().await.unwrap();
    assert!(
        said.iter()
            .any(|l| l.starts_with("files refused on imported messages: 1 item(s)")),
        "{said:?}"
    );
    assert!(
        said.iter().any(|l| l.starts_with(
            "on the wire: up to 4 requests at once, 4 per mailbox (import.concurrency); kept open: at most 128 MiB"
        )),
        "{said:?}"
    );
    // The next run sends nothing more.
    let again = connector(&fakes, &state).run(t(UNTIL), None).await.unwrap();
    assert_eq!(again.deliveries, 0);
    assert_eq!(
        watch
            .statuses
            .lock()
            .unwrap()
            .iter()
            .filter(|s| **s == 403)
            .count(),
        2
    );
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn an_owed_file_too_large_for_one_request_follows_by_upload_session_once() {
    use axum::response::IntoResponse;
    let items = vec![video("owed-1", 1, 5 * MIB, 61)];
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let gate = failing.clone();
    // The provider answers every download with an empty 200 until told otherwise.
    let fakes = Fakes::start_with_mailbox(
        &dataset(items),
        &mock_mailbox::Directory::from_file(&examples().join("mailbox-directory.json")).unwrap(),
        t(NOW),
        graph(true),
        move |router: axum::Router| {
            router.layer(middleware::from_fn(move |request: Request, next: Next| {
                let gate = gate.clone();
                async move {
                    if gate.load(Ordering::SeqCst)
                        && request.uri().path().starts_with("/api/v1/attachments/")
                    {
                        StatusCode::OK.into_response()
                    } else {
                        next.run(request).await
                    }
                }
            }))
        },
        |r| r,
    )
    .await
    .unwrap();
    let state = temp_dir("owed-large");
    let first = connector(&fakes, &state).run(t(UNTIL), None).await.unwrap();
    assert_eq!(first.owed_files.len(), 1, "{}", first.summary());
    failing.store(false, Ordering::SeqCst);
    let second = connector(&fakes, &state).run(t(UNTIL), None).await.unwrap();
    assert!(second.complete, "{}", second.summary());
    assert_eq!(second.files_delivered_later, 2, "one follow-up per mailbox");
    let sha = mock_telemessage::attachment::sha256_hex(61, 5 * MIB);
    for mailbox in [ALICE, BOB] {
        assert_eq!(
            live(&fakes, mailbox),
            vec![
                (
                    "<owed-1+file@whatsapp-archiver.invalid>".to_owned(),
                    vec![sha.clone()]
                ),
                ("<owed-1@whatsapp-archiver.invalid>".to_owned(), vec![]),
            ],
            "{mailbox}: the message without its file, then the follow-up with it, once"
        );
    }
    let third = connector(&fakes, &state).run(t(UNTIL), None).await.unwrap();
    assert_eq!((third.deliveries, third.files_delivered_later), (0, 0));
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn check_probe_says_what_the_tenant_takes_and_leaves_no_folder_or_message_behind() {
    let lenient = mock_mailbox::Config::default();
    // (the fake's configuration, what the above-cap import, the upload and the verdict say)
    let cases = [
        (
            graph(true),
            "(above the cap): refused (Graph answered 413",
            "upload session: taken",
            "attach larger files after import by an upload session",
        ),
        (
            graph(false),
            "(above the cap): refused (Graph answered 413",
            "imported message: refused (",
            "reported as attachment_refused",
        ),
        (
            lenient,
            "(above the cap): taken",
            "upload session: taken",
            "the tenant took more than the cap",
        ),
    ];
    for (mailbox_config, over, upload, verdict) in cases {
        let fakes = fakes(Vec::new(), mailbox_config, |r| r).await;
        let state = temp_dir("probe");
        let said = connector(&fakes, &state).probe(ALICE).await.unwrap();
        let text = said.join("\n");
        assert!(
            text.contains(&format!(
                "a message of {} bytes as sent (under import.max_request_bytes, {}): taken",
                4 * MIB - 64 * 1024,
                4 * MIB
            )),
            "{text}"
        );
        for expected in [over, upload, verdict, "removed"] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
        assert!(!text.contains("authtoken"), "{text}");
        // Nothing stays: the scratch folder and its messages are gone.
        let folders = fakes.mailbox.inspect_folders(ALICE).unwrap();
        assert!(
            folders.iter().all(|f| !f.display_name.contains("probe")),
            "{folders:?}"
        );
        assert!(live(&fakes, ALICE).is_empty(), "{:?}", live(&fakes, ALICE));
        std::fs::remove_dir_all(&state).unwrap();
    }
    // A mailbox the tenant does not know is named.
    let fakes = fakes(Vec::new(), graph(true), |r| r).await;
    let state = temp_dir("probe-nobody");
    let error = connector(&fakes, &state)
        .probe("nobody@contoso.example")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no such user"), "{error}");
    std::fs::remove_dir_all(&state).unwrap();
}
