//! The connector against both fakes, in-process on ports the OS picks: every kind lands in
//! the right folder of the right mailboxes, a second run adds nothing, a run killed at
//! any request (provider or mailbox side) and resumed delivers exactly what the rules
//! say, faults are survived, missed days are caught up, and every omission is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use connector::Connector;
use serde_json::{Value, json};
use tests::{Fakes, examples, fixed_clock, t, temp_dir};

const NOW: &str = "2026-11-23T01:00:00Z";
const UNTIL: &str = "2026-11-23T00:00:00Z";

/// The expected mailboxes of each example item, by the mission's rule, computed here
/// without the connector's code: valid users are the directory's users with a mailbox;
/// the mapping file is tried first, then the email property.
fn expected_example_deliveries() -> BTreeMap<String, BTreeSet<String>> {
    let valid: BTreeSet<&str> = [
        "alice.archer@contoso.example",
        "bob.baker@contoso.example",
        "chloe.dubois@contoso.example",
        "d.ivanov@contoso.example",
        "chloe.martin@contoso.example",
    ]
    .into();
    let csv: BTreeMap<&str, &str> = [
        ("+447700900123", "d.ivanov@contoso.example"),
        ("+12124325249", "bob.b@contoso.example"),
        ("+33612345678", "chloe.dubois@contoso.example"),
    ]
    .into();
    let dataset: Value = serde_json::from_str(
        &std::fs::read_to_string(examples().join("telemessage-dataset.json")).unwrap(),
    )
    .unwrap();
    let mut expected = BTreeMap::new();
    for item in dataset["items"].as_array().unwrap() {
        let mut mailboxes = BTreeSet::new();
        let participants = std::iter::once(&item["from"]).chain(item["to"].as_array().unwrap());
        for p in participants {
            let by_csv = csv
                .get(p["phone"].as_str().unwrap())
                .filter(|a| valid.contains(**a))
                .map(|a| a.to_string());
            let by_email = p["user_email"]
                .as_str()
                .filter(|a| valid.contains(*a))
                .map(str::to_owned);
            if let Some(mailbox) = by_csv.or(by_email) {
                mailboxes.insert(mailbox);
            }
        }
        expected.insert(
            format!(
                "<{}@whatsapp-archiver.invalid>",
                item["id"].as_str().unwrap()
            ),
            mailboxes,
        );
    }
    expected
}

fn connector(fakes: &Fakes, state: &std::path::Path, concurrency: usize) -> Connector {
    let mut config = fakes.config(state, Some(examples().join("mapping.csv")));
    config.concurrency = concurrency;
    Connector::new(config, fixed_clock(t(NOW)))
        .unwrap()
        .with_retry_delays(Duration::from_millis(1), Duration::from_millis(20))
}

#[tokio::test]
async fn every_kind_lands_in_the_archive_folder_of_exactly_the_right_mailboxes() {
    let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
    let state = temp_dir("kinds");
    let report = connector(&fakes, &state, 4)
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert!(report.complete, "{}", report.summary());
    assert_eq!(report.items_fetched, 18);
    assert!(
        report.skipped.is_empty() && report.failed.is_empty(),
        "{}",
        report.summary()
    );

    let expected = expected_example_deliveries();
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (mailbox, folder, message_id) in fakes.contents() {
        assert_eq!(folder, "WhatsApp Archiver", "{message_id} in {mailbox}");
        assert!(
            found
                .entry(message_id.clone())
                .or_default()
                .insert(mailbox.clone()),
            "{message_id} twice in {mailbox}"
        );
    }
    assert_eq!(found, expected);
    let total: usize = expected.values().map(BTreeSet::len).sum();
    assert_eq!(report.deliveries as usize, total);
    // Every mapping case of the example data: Dmitri is reached only through the mapping
    // file; Bob's file entry is not a user, so his email property is used; Chloé's file
    // entry and her email property (her former name) are both users, and the file wins;
    // Frank's mailbox is disabled and Erin has no address, so neither gets a copy.
    assert!(found.values().all(|m| !m.contains("bob.b@contoso.example")));
    assert!(
        found
            .values()
            .all(|m| !m.contains("chloe.martin@contoso.example"))
    );
    assert!(
        found
            .values()
            .all(|m| !m.contains("frank.former@contoso.example"))
    );
    let last = &found["<wa-0018@whatsapp-archiver.invalid>"];
    assert_eq!(
        last.iter().map(String::as_str).collect::<Vec<_>>(),
        ["chloe.dubois@contoso.example", "d.ivanov@contoso.example"]
    );
    assert!(
        found
            .values()
            .any(|m| m.contains("bob.baker@contoso.example"))
    );

    // Every imported message is a finished item carrying the attachment it should.
    let alice = fakes
        .mailbox
        .inspect_messages("alice.archer@contoso.example", false)
        .unwrap();
    let image = alice
        .iter()
        .find(|m| m.internet_message_id.as_deref() == Some("<wa-0005@whatsapp-archiver.invalid>"))
        .unwrap();
    assert!(!image.is_draft);
    assert_eq!(image.attachments[0].size, 48213);
    assert_eq!(image.attachments[0].content_type, "image/jpeg");
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn a_second_run_delivers_nothing_new_and_staging_is_emptied() {
    let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
    let state = temp_dir("rerun");
    let first = connector(&fakes, &state, 4)
        .run(t(UNTIL), None)
        .await
        .unwrap();
    let before = fakes.contents();
    let again = connector(&fakes, &state, 4)
        .run(t(UNTIL), None)
        .await
        .unwrap();
    assert!(again.window.is_none() && again.deliveries == 0);
    // The report adds up, and says plainly when nothing was imported.
    let a = &first.accounting;
    assert!(a.adds_up(), "{}", a.line());
    assert_eq!(
        (a.items, a.delivered + a.delivered_without_attachment),
        (first.items_fetched, first.deliveries)
    );
    assert_eq!(
        a.skipped.get("unmapped").copied().unwrap_or(0),
        first
            .skipped
            .iter()
            .filter(|s| s.reason == "unmapped")
            .count() as u64
    );
    assert!(
        first
            .summary()
            .contains(&format!("accounting: {}", a.line()))
    );
    assert!(
        again
            .summary()
            .contains("nothing imported: the provider listed no new item"),
        "{}",
        again.summary()
    );
    // Taking the same window again on purpose adds nothing either.
    let forced = connector(&fakes, &state, 4)
        .run(t(UNTIL), Some(t("2026-11-22T00:00:00Z")))
        .await
        .unwrap();
    assert_eq!(forced.deliveries, 0);
    assert_eq!(forced.already_delivered, first.deliveries);
    assert_eq!(fakes.contents(), before);
    let staged: Vec<_> = std::fs::read_dir(state.join("staging")).unwrap().collect();
    assert!(
        staged.is_empty(),
        "staged attachments are deleted once the window is closed"
    );
    std::fs::remove_dir_all(&state).unwrap();
}

/// Counts every request of both fakes in one sequence; the `crash_at`-th (provider or
/// mailbox) takes effect and is then never answered, and `crashed` is told: the client
/// dies not knowing whether its request landed.
#[derive(Clone)]
struct CrashPoint {
    seen: Arc<AtomicU64>,
    crash_at: Arc<AtomicU64>,
    crashed: Arc<tokio::sync::Notify>,
}

impl CrashPoint {
    fn new(crash_at: u64) -> Self {
        Self {
            seen: Arc::default(),
            crash_at: Arc::new(AtomicU64::new(crash_at)),
            crashed: Arc::default(),
        }
    }

    /// No crash from now on (for the run that resumes).
    fn disarm(&self) {
        self.crash_at.store(u64::MAX, Ordering::SeqCst);
    }

    fn layer(&self) -> impl FnOnce(Router) -> Router + use<> {
        let point = self.clone();
        move |router: Router| {
            router.layer(middleware::from_fn(move |request: Request, next: Next| {
                let point = point.clone();
                async move {
                    let n = point.seen.fetch_add(1, Ordering::SeqCst) + 1;
                    let response = next.run(request).await;
                    if n == point.crash_at.load(Ordering::SeqCst) {
                        point.crashed.notify_one();
                        std::future::pending::<()>().await;
                    }
                    response
                }
            }))
        }
    }
}

async fn example_fakes(point: &CrashPoint) -> Fakes {
    Fakes::start_wrapped(
        &mock_telemessage::Dataset::from_file(&examples().join("telemessage-dataset.json"))
            .unwrap(),
        &mock_mailbox::Directory::from_file(&examples().join("mailbox-directory.json")).unwrap(),
        t(NOW),
        point.layer(),
        point.layer(),
    )
    .await
    .unwrap()
}

/// What the rules say must be in the mailboxes: (mailbox, folder, Message-ID), sorted.
fn expected_contents() -> Vec<(String, String, String)> {
    let mut all: Vec<(String, String, String)> = expected_example_deliveries()
        .into_iter()
        .flat_map(|(id, mailboxes)| {
            mailboxes
                .into_iter()
                .map(move |m| (m, "WhatsApp Archiver".to_owned(), id.clone()))
        })
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn a_run_killed_at_any_request_and_resumed_delivers_exactly_what_the_rules_say() {
    let expected = expected_contents();
    for concurrency in [1usize, 4] {
        // How many requests an uninterrupted run makes, on both sides together.
        let counting = CrashPoint::new(u64::MAX);
        let fakes = example_fakes(&counting).await;
        let state = temp_dir(&format!("crash-count-{concurrency}"));
        let report = connector(&fakes, &state, concurrency)
            .run(t(UNTIL), None)
            .await
            .unwrap();
        assert!(report.complete, "{}", report.summary());
        assert_eq!(fakes.contents(), expected);
        std::fs::remove_dir_all(&state).unwrap();
        let requests = counting.seen.load(Ordering::SeqCst);
        assert!(requests > 40, "{requests}");
        // With more than one request in flight the order varies a little from run to run,
        // so a few more points than one run makes are tried.
        for at in 1..=requests + 3 {
            let point = CrashPoint::new(at);
            let fakes = example_fakes(&point).await;
            let state = temp_dir(&format!("crash-{concurrency}-{at}"));
            // Deliveries are committed in groups: every third one, or (odd points) not
            // before the window closes, so that the crash always loses some records and
            // the resumed run must look them up rather than send them again.
            let group = connector::store::GroupCommit {
                max_records: if at % 2 == 0 { 3 } else { usize::MAX },
                max_delay: Duration::MAX,
            };
            let doomed = connector(&fakes, &state, concurrency).with_group_commit(group);
            let mut run = tokio::spawn(async move { doomed.run(t(UNTIL), None).await });
            tokio::select! {
                () = point.crashed.notified() => {
                    run.abort();
                    let _ = run.await;
                }
                // A run that ends before its crash point must have ended well.
                finished = &mut run => {
                    let report = finished.unwrap().unwrap_or_else(|e| {
                        panic!("concurrency {concurrency}, crash at {at}: the run failed: {e}")
                    });
                    assert!(report.complete, "{}", report.summary());
                }
            }
            point.disarm();
            let resumed = connector(&fakes, &state, concurrency)
                .run(t(UNTIL), None)
                .await
                .unwrap_or_else(|e| {
                    panic!("concurrency {concurrency}, crash at {at}: the resumed run failed: {e}")
                });
            assert!(
                resumed.complete,
                "concurrency {concurrency}, crash at request {at}: {}",
                resumed.summary()
            );
            assert_eq!(
                fakes.contents(),
                expected,
                "concurrency {concurrency}: a crash at request {at} of {requests} changed what landed"
            );
            std::fs::remove_dir_all(&state).unwrap();
        }
    }
}

fn with_faults(path: &str, faults: Value) -> Value {
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(examples().join(path)).unwrap()).unwrap();
    v["faults"] = faults;
    v
}

#[tokio::test]
async fn seeded_faults_on_both_sides_are_survived_without_loss_or_duplicate() {
    let baseline = {
        let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
        let state = temp_dir("faults-baseline");
        connector(&fakes, &state, 4)
            .run(t(UNTIL), None)
            .await
            .unwrap();
        std::fs::remove_dir_all(&state).unwrap();
        fakes.contents()
    };
    // Rates of 10% with six attempts make a request fail for good about once in a million:
    // enough faults to exercise every retry path, too few to make the test flaky.
    for seed in [3u64, 17, 99] {
        let dataset = with_faults(
            "telemessage-dataset.json",
            json!({"seed": seed, "unavailable_rate": 0.1, "corrupt_download_rate": 0.1}),
        );
        let directory = with_faults(
            "mailbox-directory.json",
            json!({"seed": seed, "unavailable_rate": 0.1, "lost_import_response_rate": 0.25}),
        );
        let fakes = Fakes::start(
            &mock_telemessage::Dataset::from_json(&dataset.to_string()).unwrap(),
            &mock_mailbox::Directory::from_json(&directory.to_string()).unwrap(),
            t(NOW),
            |r| r,
        )
        .await
        .unwrap();
        let state = temp_dir(&format!("faults-{seed}"));
        let report = connector(&fakes, &state, 4)
            .run(t(UNTIL), None)
            .await
            .unwrap();
        assert!(report.complete, "seed {seed}: {}", report.summary());
        assert!(report.retries > 0, "seed {seed}: faults were injected");
        assert!(fakes.mailbox.counters().faults_injected > 0);
        assert_eq!(fakes.contents(), baseline, "seed {seed}");
        std::fs::remove_dir_all(&state).unwrap();
    }
}

fn participant(phone: &str, name: &str, email: Option<&str>) -> Value {
    json!({"phone": phone, "name": name, "user_email": email})
}

/// Both fakes: the provider with `dataset`, the example directory behind `wrap_mailbox`.
async fn fakes_of(dataset: &Value, wrap_mailbox: impl FnOnce(Router) -> Router) -> Fakes {
    let directory =
        mock_mailbox::Directory::from_file(&examples().join("mailbox-directory.json")).unwrap();
    Fakes::start(
        &mock_telemessage::Dataset::from_json(&dataset.to_string()).unwrap(),
        &directory,
        t(NOW),
        wrap_mailbox,
    )
    .await
    .unwrap()
}

/// People of the example directory (and one who is not in it).
fn alice() -> Value {
    participant(
        "+16174354634",
        "Alice Archer",
        Some("alice.archer@contoso.example"),
    )
}

fn bob() -> Value {
    participant(
        "+12124325249",
        "Bob Baker",
        Some("bob.baker@contoso.example"),
    )
}

fn outsider() -> Value {
    participant("+14155550123", "Erin Outside", None)
}

fn item(id: &str, archived_at: &str, from: Value, to: Vec<Value>, body: (&str, Value)) -> Value {
    let mut v = json!({
        "id": id, "capture_mode": "cloud_archiver", "archived_at": archived_at, "sent_at": archived_at,
        "conversation": {"id": "c-1", "type": "direct", "name": null},
        "from": from, "to": to, "type": body.0,
    });
    v[body.0] = body.1;
    v
}

#[tokio::test]
async fn omissions_are_reported_with_their_reasons_and_missed_days_are_caught_up() {
    let alice = alice();
    let bob = bob();
    let frank = participant(
        "+15550000005",
        "Frank Former",
        Some("frank.former@contoso.example"),
    );
    let outsider = outsider();
    let doc = |id: &str, size: u64, seed: u64| json!({"caption": null, "attachment": {"id": id, "file_name": "big.pdf", "content_type": "application/pdf", "size": size, "seed": seed}});
    let items = vec![
        item(
            "d1-ok",
            "2026-11-20T10:00:00Z",
            alice.clone(),
            vec![bob.clone()],
            ("text", json!("day one")),
        ),
        item(
            "d1-unmapped",
            "2026-11-20T11:00:00Z",
            outsider.clone(),
            vec![frank.clone()],
            ("text", json!("nobody archives this")),
        ),
        item(
            "d2-too-long",
            "2026-11-21T10:00:00Z",
            alice.clone(),
            vec![outsider.clone()],
            ("text", json!("x".repeat(20_000))),
        ),
        item(
            "d2-big-attachment",
            "2026-11-21T11:00:00Z",
            bob.clone(),
            vec![alice.clone()],
            ("document", doc("att-big", 9_000, 1)),
        ),
        item(
            "d3-fits",
            "2026-11-22T10:00:00Z",
            bob.clone(),
            vec![alice.clone()],
            ("document", doc("att-small", 900, 2)),
        ),
    ];
    let mut broken = item(
        "d3-bad-sha",
        "2026-11-22T11:00:00Z",
        alice.clone(),
        vec![bob.clone()],
        ("document", doc("att-bad", 500, 3)),
    );
    broken["document"]["attachment"]["sha256"] = json!("0".repeat(64));
    let dataset = json!({
        "accounts": [{"username": tests::PROVIDER_USER, "password": tests::PROVIDER_PASSWORD}],
        "items": items.into_iter().chain([broken]).collect::<Vec<_>>(),
        "raw_items": [{"id": "d3-garbage", "archived_at": "2026-11-22T12:00:00Z", "type": "hologram"}],
    });
    let fakes = fakes_of(&dataset, |r| r).await;
    let state = temp_dir("omissions");
    let mut config = fakes.config(&state, None);
    config.size_limit = 8_000;
    // Day one, then two missed days caught up in one run, window by window.
    let fast =
        |c: Connector| c.with_retry_delays(Duration::from_millis(1), Duration::from_millis(20));
    let first = fast(Connector::new(config.clone(), fixed_clock(t(NOW))).unwrap())
        .run(t("2026-11-21T00:00:00Z"), Some(t("2026-11-20T00:00:00Z")))
        .await
        .unwrap();
    assert_eq!(first.windows.len(), 1);
    let second = fast(Connector::new(config, fixed_clock(t(NOW))).unwrap())
        .run(t(UNTIL), None)
        .await
        .unwrap();
    let (looked_back, days): (Vec<_>, Vec<_>) = second.windows.iter().partition(|w| w.look_back);
    assert_eq!(days.len(), 2, "two missed days, one window each");
    assert_eq!(
        (
            looked_back.len(),
            looked_back[0].until,
            looked_back[0].items
        ),
        (1, t("2026-11-21T00:00:00Z"), 0),
        "the day before is listed once more, and nothing new was found in it"
    );
    assert!(second.windows.iter().all(|w| w.closed));
    let mut skipped: Vec<(String, String)> = first
        .skipped
        .iter()
        .chain(&second.skipped)
        .map(|s| (s.item_id.clone(), s.reason.clone()))
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            ("d1-unmapped".to_owned(), "unmapped".to_owned()),
            ("d2-big-attachment".into(), "attachment_too_large".into()),
            ("d2-too-long".into(), "item_too_large".into()),
            ("d3-bad-sha".into(), "attachment_unverifiable".into()),
            ("d3-garbage".into(), "invalid_item".into()),
        ]
    );
    let landed: BTreeSet<String> = fakes.contents().into_iter().map(|(_, _, id)| id).collect();
    for id in ["d1-ok", "d2-big-attachment", "d3-fits", "d3-bad-sha"] {
        assert!(
            landed.contains(&format!("<{id}@whatsapp-archiver.invalid>")),
            "{id} should have landed"
        );
    }
    for id in ["d1-unmapped", "d2-too-long", "d3-garbage"] {
        assert!(
            !landed.contains(&format!("<{id}@whatsapp-archiver.invalid>")),
            "{id} must not land"
        );
    }
    let alice = fakes
        .mailbox
        .inspect_messages("alice.archer@contoso.example", false)
        .unwrap();
    let big = alice
        .iter()
        .find(|m| {
            m.internet_message_id.as_deref()
                == Some("<d2-big-attachment@whatsapp-archiver.invalid>")
        })
        .unwrap();
    assert!(big.attachments.is_empty());
    assert!(
        big.headers
            .iter()
            .any(|(n, v)| n == "X-WhatsApp-Omitted-Attachment"
                && v.contains("reason=attachment_too_large"))
    );
    let fits = alice
        .iter()
        .find(|m| m.internet_message_id.as_deref() == Some("<d3-fits@whatsapp-archiver.invalid>"))
        .unwrap();
    assert_eq!(fits.attachments[0].size, 900);
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn check_says_where_each_employee_goes_and_imports_nothing() {
    let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
    let state = temp_dir("check");
    let lines = connector(&fakes, &state, 4).check().await.unwrap();
    let text = lines.join("\n");
    assert!(
        text.contains("+447700900123 Dmitri Ivanov -> d.ivanov@contoso.example"),
        "{text}"
    );
    assert!(
        text.contains("+12124325249 Bob Baker -> bob.baker@contoso.example"),
        "{text}"
    );
    assert!(
        text.contains(
            "catch-all mailbox: none (items no participant maps are skipped as unmapped)"
        ),
        "{text}"
    );
    // A catch-all that is a user, and one that is not: check says which.
    for (address, said) in [
        (
            "alice.archer@contoso.example",
            "takes items no participant maps",
        ),
        (
            "nobody@contoso.example",
            "is NOT a Microsoft 365 user with a mailbox",
        ),
    ] {
        let mut config = fakes.config(&state, Some(examples().join("mapping.csv")));
        config.unmapped_mailbox = Some(address.into());
        let text = Connector::new(config, fixed_clock(t(NOW)))
            .unwrap()
            .check()
            .await
            .unwrap()
            .join("\n");
        assert!(
            text.contains(&format!("catch-all mailbox: {address}")) && text.contains(said),
            "{text}"
        );
    }
    assert!(fakes.contents().is_empty());
    std::fs::remove_dir_all(&state).unwrap();
}

/// An item from Alice to Bob, archived on the example day.
fn alice_to_bob(id: &str, body: (&str, Value)) -> Value {
    item(
        id,
        "2026-11-22T10:00:00Z",
        participant(
            "+16174354634",
            "Alice Archer",
            Some("alice.archer@contoso.example"),
        ),
        vec![participant(
            "+12124325249",
            "Bob Baker",
            Some("bob.baker@contoso.example"),
        )],
        body,
    )
}

/// Both fakes: the provider serving one item (its router wrapped by `wrap_provider`),
/// Microsoft 365 the example directory.
async fn fakes_serving(item: Value, wrap_provider: impl FnOnce(Router) -> Router) -> Fakes {
    let dataset = json!({
        "accounts": [{"username": tests::PROVIDER_USER, "password": tests::PROVIDER_PASSWORD}],
        "items": [item],
    });
    Fakes::start_wrapped(
        &mock_telemessage::Dataset::from_json(&dataset.to_string()).unwrap(),
        &mock_mailbox::Directory::from_file(&examples().join("mailbox-directory.json")).unwrap(),
        t(NOW),
        wrap_provider,
        |r| r,
    )
    .await
    .unwrap()
}

/// One run of the example day with the size limit set to `limit`.
async fn run_with_limit(
    fakes: &Fakes,
    state: &std::path::Path,
    limit: u64,
) -> connector::RunReport {
    let mut config = fakes.config(state, None);
    config.size_limit = limit;
    Connector::new(config, fixed_clock(t(NOW)))
        .unwrap()
        .run(t(UNTIL), None)
        .await
        .unwrap()
}

/// The exact length of the message the connector makes of `item` (as the provider lists
/// it), carrying `file`: from the connector's own conversion.
fn converted_len(item: &Value, file: Option<&[u8]>) -> u64 {
    let parsed = connector::provider::wire::read_item(item).unwrap();
    connector::email::convert(
        &parsed,
        file.map(connector::email::AttachmentBody::Bytes),
        &connector::email::Options::default(),
        connector::size::DEFAULT_LIMIT,
    )
    .mime
    .len() as u64
}

/// The whole-message limit holds to the byte, through a real run: a limit equal to the
/// message's exact converted length imports it; one byte less skips it as item_too_large.
#[tokio::test]
async fn the_whole_message_limit_holds_to_the_byte() {
    let text = "A long message that sits exactly at the limit. ".repeat(200);
    let raw = alice_to_bob("at-the-limit", ("text", json!(text)));
    let length = converted_len(&raw, None);
    for (limit, lands) in [(length, true), (length - 1, false)] {
        let fakes = fakes_serving(raw.clone(), |r| r).await;
        let state = temp_dir(&format!("limit-{limit}"));
        let report = run_with_limit(&fakes, &state, limit).await;
        let skipped: Vec<&str> = report.skipped.iter().map(|s| s.reason.as_str()).collect();
        if lands {
            assert_eq!(report.deliveries, 2, "limit {limit} = the message's length");
            assert!(skipped.is_empty(), "{skipped:?}");
            let alice = fakes
                .mailbox
                .inspect_messages("alice.archer@contoso.example", false)
                .unwrap();
            assert_eq!(alice[0].size as u64, length, "imported byte for byte");
        } else {
            assert_eq!(report.deliveries, 0, "limit {limit} = one byte short");
            assert_eq!(skipped, ["item_too_large"]);
            assert!(fakes.contents().is_empty());
        }
        std::fs::remove_dir_all(&state).unwrap();
    }
}

/// The file-fits rule holds to the byte as the whole-message rule does: with the limit at
/// the exact length of the message carrying its file, the file is carried; one byte less
/// and it is left out to fit, and the rest of the item still lands.
#[tokio::test]
async fn the_file_fits_rule_holds_to_the_byte() {
    let (size, seed) = (50_000u64, 17u64);
    let doc = json!({"caption": "Board pack",
        "attachment": {"id": "att-board", "file_name": "board.pdf", "content_type": "application/pdf", "size": size, "seed": seed}});
    let raw = alice_to_bob("file-at-the-limit", ("document", doc));
    // The file as the fake provider serves it; the item as the provider lists it (the
    // file's SHA-256 in place of the fake's seed).
    let file = mock_telemessage::attachment::bytes(seed, size);
    let mut served = raw.clone();
    let attachment = &mut served["document"]["attachment"];
    attachment["sha256"] = json!(connector::digest::sha256_hex(&file));
    attachment.as_object_mut().unwrap().remove("seed");
    let length = converted_len(&served, Some(&file));
    for (limit, carried) in [(length, true), (length - 1, false)] {
        let fakes = fakes_serving(raw.clone(), |r| r).await;
        let state = temp_dir(&format!("file-limit-{limit}"));
        let report = run_with_limit(&fakes, &state, limit).await;
        assert!(report.complete, "{}", report.summary());
        assert_eq!(
            report.deliveries, 2,
            "limit {limit}: the item lands either way"
        );
        let reasons: Vec<&str> = report.skipped.iter().map(|s| s.reason.as_str()).collect();
        let alice = &fakes
            .mailbox
            .inspect_messages("alice.archer@contoso.example", false)
            .unwrap()[0];
        if carried {
            assert!(
                reasons.is_empty(),
                "limit {limit} = the message's length: {reasons:?}"
            );
            assert_eq!(alice.size as u64, length, "imported byte for byte");
            assert_eq!(alice.attachments.len(), 1);
        } else {
            assert_eq!(
                reasons,
                ["attachment_omitted_to_fit"],
                "limit {limit}: one byte short"
            );
            assert!(alice.attachments.is_empty());
            assert!((alice.size as u64) <= limit);
        }
        std::fs::remove_dir_all(&state).unwrap();
    }
}

/// A file that fits the limit on its own but not in its message is left out, never
/// downloaded, and the rest of the item (its caption, who, when) is imported with a note.
#[tokio::test]
async fn a_file_too_big_for_its_message_is_left_out_and_the_text_is_kept() {
    let downloads = Arc::new(AtomicU64::new(0));
    let count = downloads.clone();
    let count_downloads = move |router: Router| {
        router.layer(middleware::from_fn(move |request: Request, next: Next| {
            let count = count.clone();
            async move {
                if request.uri().path().starts_with("/api/v1/attachments/") {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                next.run(request).await
            }
        }))
    };
    let limit = 100_000u64;
    let doc = json!({"caption": "Signed contract attached, please countersign today",
        "attachment": {"id": "att-90k", "file_name": "contract.pdf", "content_type": "application/pdf", "size": 90_000, "seed": 5}});
    let raw = alice_to_bob("fits-alone", ("document", doc));
    let fakes = fakes_serving(raw, count_downloads).await;
    let state = temp_dir("omitted-to-fit");
    let report = run_with_limit(&fakes, &state, limit).await;
    assert!(report.complete, "{}", report.summary());
    assert_eq!(report.deliveries, 2);
    let reasons: Vec<&str> = report.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(reasons, ["attachment_omitted_to_fit"]);
    assert_eq!(
        downloads.load(Ordering::SeqCst),
        0,
        "a file that cannot fit is not downloaded"
    );
    for mailbox in ["alice.archer@contoso.example", "bob.baker@contoso.example"] {
        let m = &fakes.mailbox.inspect_messages(mailbox, false).unwrap()[0];
        assert!(m.attachments.is_empty());
        assert!((m.size as u64) <= limit);
        assert!(
            m.body_text
                .contains("Signed contract attached, please countersign today")
        );
        assert!(
            m.body_text
                .contains("[Attachment left out: contract.pdf (90000 bytes)")
        );
        assert!(
            m.headers
                .iter()
                .any(|(n, v)| n == "X-WhatsApp-Omitted-Attachment"
                    && v.contains("reason=attachment_omitted_to_fit"))
        );
    }
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn a_window_closes_only_once_it_has_settled() {
    // The provider lists items some time after their archive time: a run at 01:00 asked
    // for everything up to 01:00 stops at 00:45 (the settle delay, 15 minutes), and the
    // next run starts there.
    let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
    let state = temp_dir("settle");
    let report = connector(&fakes, &state, 4)
        .run(t(NOW), None)
        .await
        .unwrap();
    let window = report.window.expect("a window was taken");
    assert_eq!(window.until, t("2026-11-23T00:45:00Z"));
    let future = connector(&fakes, &state, 4)
        .run(t("2026-11-23T01:00:01Z"), None)
        .await;
    assert!(
        future.is_err(),
        "a window that ends in the future is refused, not closed early"
    );
    std::fs::remove_dir_all(&state).unwrap();
}

/// One mailbox stops answering its imports for as long as the test likes: every other
/// mailbox's deliveries still go (a mailbox holds back only its own lane), and once it
/// answers again, everything lands exactly once.
#[tokio::test]
async fn a_mailbox_that_stops_answering_holds_back_only_its_own_deliveries() {
    const ALICE_ID: &str = "a1b2c3d4-0001-4000-8000-000000000001";
    const BOB_ID: &str = "a1b2c3d4-0002-4000-8000-000000000002";
    const BOBS: u64 = 20;
    // Alice's items come first, more of them than the connector has places.
    let to_outsider = |who: &'static str, from: Value, hour: u32, n: u64| {
        (0..n).map(move |i| {
            let at = format!("2026-11-20T{hour}:{i:02}:00Z");
            let text = json!(format!("to {who}, {i}"));
            let id = format!("{}-{i:02}", who.to_lowercase());
            item(&id, &at, from.clone(), vec![outsider()], ("text", text))
        })
    };
    let items: Vec<Value> = to_outsider("Alice", alice(), 10, 40)
        .chain(to_outsider("Bob", bob(), 11, BOBS))
        .collect();
    let dataset = json!({
        "accounts": [{"username": tests::PROVIDER_USER, "password": tests::PROVIDER_PASSWORD}],
        "items": items,
    });
    let (release, released) = tokio::sync::watch::channel(false);
    let bob_landed = Arc::new(AtomicU64::new(0));
    let landed = Arc::new(tokio::sync::Notify::new());
    let hold_alice = {
        let (bob_landed, landed) = (bob_landed.clone(), landed.clone());
        move |router: Router| {
            router.layer(middleware::from_fn(move |request: Request, next: Next| {
                let path = request.uri().path().to_owned();
                let mut released = released.clone();
                let (bob_landed, landed) = (bob_landed.clone(), landed.clone());
                async move {
                    let import = path.ends_with("/importMime");
                    if import && path.contains(ALICE_ID) {
                        released
                            .wait_for(|r| *r)
                            .await
                            .expect("the test holds the sender");
                    }
                    let response = next.run(request).await;
                    if import && path.contains(BOB_ID) && response.status().is_success() {
                        bob_landed.fetch_add(1, Ordering::SeqCst);
                        landed.notify_one();
                    }
                    response
                }
            }))
        }
    };
    let fakes = fakes_of(&dataset, hold_alice).await;
    let state = temp_dir("lanes");
    let mut config = fakes.config(&state, None);
    // More places than one mailbox may use (four), so that its stuck requests leave some.
    config.concurrency = 8;
    let connector = Connector::new(config, fixed_clock(t(NOW))).unwrap();
    let run = connector.run(t("2026-11-21T00:00:00Z"), Some(t("2026-11-20T00:00:00Z")));
    let bob_first = async {
        // A guard against a hang, not a measure of time: with a shared barrier, Bob's
        // deliveries would wait behind Alice's for ever.
        tokio::time::timeout(Duration::from_secs(120), async {
            while bob_landed.load(Ordering::SeqCst) < BOBS {
                landed.notified().await;
            }
        })
        .await
        .expect("Bob's deliveries waited behind Alice's stuck mailbox");
        release.send(true).unwrap();
    };
    let (report, ()) = tokio::join!(run, bob_first);
    let report = report.unwrap();
    let a = &report.accounting;
    assert_eq!(
        (a.items, a.delivered, a.failed),
        (60, 60, 0),
        "{}",
        a.line()
    );
    assert!(a.adds_up(), "{}", a.line());
    let mut ids: Vec<String> = fakes.contents().into_iter().map(|(_, _, id)| id).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!((before, ids.len()), (60, 60), "each landed once");
    std::fs::remove_dir_all(&state).unwrap();
}

/// A participant whose mailbox cannot be looked up (Graph keeps failing) fails the item
/// before any delivery: it is held, not lost, and the next run delivers it.
#[tokio::test]
async fn an_item_whose_mailbox_cannot_be_looked_up_is_held_and_delivered_later() {
    let items = vec![
        item(
            "to-alice",
            "2026-11-20T10:00:00Z",
            outsider(),
            vec![alice()],
            ("text", json!("for Alice")),
        ),
        item(
            "to-bob",
            "2026-11-20T10:01:00Z",
            outsider(),
            vec![bob()],
            ("text", json!("for Bob")),
        ),
    ];
    let dataset = json!({
        "accounts": [{"username": tests::PROVIDER_USER, "password": tests::PROVIDER_PASSWORD}],
        "items": items,
    });
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let bob_unreachable = {
        let failing = failing.clone();
        move |router: Router| {
            router.layer(middleware::from_fn(move |request: Request, next: Next| {
                let failing = failing.load(Ordering::SeqCst)
                    && request.uri().path().starts_with("/v1.0/users/bob.baker");
                async move {
                    if failing {
                        return axum::response::IntoResponse::into_response(
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        );
                    }
                    next.run(request).await
                }
            }))
        }
    };
    for concurrency in [1, 4] {
        let fakes = fakes_of(&dataset, bob_unreachable.clone()).await;
        let state = temp_dir(&format!("unmappable-now-{concurrency}"));
        failing.store(true, Ordering::SeqCst);
        let run = |since: Option<&str>| {
            let mut config = fakes.config(&state, None);
            config.concurrency = concurrency;
            let connector = Connector::new(config, fixed_clock(t(NOW)))
                .unwrap()
                .with_retry_delays(Duration::from_millis(1), Duration::from_millis(5));
            let (until, since) = (t("2026-11-21T00:00:00Z"), since.map(t));
            async move { connector.run(until, since).await.unwrap() }
        };
        let first = run(Some("2026-11-20T00:00:00Z")).await;
        let a = &first.accounting;
        assert!(a.adds_up(), "{}", a.line());
        assert_eq!((a.delivered, a.failed), (1, 1), "{}", a.line());
        let held: Vec<&str> = first.held.iter().map(|h| h.item_id.as_str()).collect();
        assert_eq!(
            held,
            ["to-bob"],
            "concurrency {concurrency}: held, not lost"
        );
        // Graph answers again: the next run delivers it from the held list.
        failing.store(false, Ordering::SeqCst);
        let second = run(None).await;
        assert!(second.held.is_empty(), "{:?}", second.held);
        let mut landed: Vec<(String, String)> = fakes
            .contents()
            .into_iter()
            .map(|(mailbox, _, id)| (mailbox, id))
            .collect();
        landed.sort();
        assert_eq!(
            landed,
            [
                (
                    "alice.archer@contoso.example".to_owned(),
                    "<to-alice@whatsapp-archiver.invalid>".to_owned()
                ),
                (
                    "bob.baker@contoso.example".to_owned(),
                    "<to-bob@whatsapp-archiver.invalid>".to_owned()
                ),
            ],
            "concurrency {concurrency}: each once"
        );
        std::fs::remove_dir_all(&state).unwrap();
    }
}
