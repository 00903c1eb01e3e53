//! The connector against both fakes, in-process on ports the OS picks: every kind lands in
//! the right folder of the right mailboxes, a second run adds nothing, a run killed at a
//! random request and resumed ends exactly like an uninterrupted one, faults are
//! survived, missed days are caught up, and every omission is reported.

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
    ]
    .into();
    let csv: BTreeMap<&str, &str> = [
        ("+447700900123", "d.ivanov@contoso.example"),
        ("+12124325249", "bob.b@contoso.example"),
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
    assert_eq!(report.items_fetched, 17);
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
    // Dmitri is reached only through the mapping file; Bob's mapping points at a non-user,
    // so his email property is used instead.
    assert!(found.values().all(|m| !m.contains("bob.b@contoso.example")));

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

/// Lets the `crash_at`-th mailbox request take effect, then never answers it, and says so:
/// the client dies not knowing whether its request landed.
fn crash_at(
    crash_at: u64,
    seen: Arc<AtomicU64>,
    crashed: Arc<tokio::sync::Notify>,
) -> impl FnOnce(Router) -> Router {
    move |router: Router| {
        router.layer(middleware::from_fn(move |request: Request, next: Next| {
            let seen = seen.clone();
            let crashed = crashed.clone();
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                let response = next.run(request).await;
                if n == crash_at {
                    crashed.notify_one();
                    std::future::pending::<()>().await;
                }
                response
            }
        }))
    }
}

#[tokio::test]
async fn a_run_killed_at_a_random_request_and_resumed_ends_like_an_uninterrupted_one() {
    let counted = Arc::new(AtomicU64::new(0));
    let baseline = {
        let fakes = Fakes::examples(t(NOW), crash_at(u64::MAX, counted.clone(), Arc::default()))
            .await
            .unwrap();
        let state = temp_dir("baseline");
        assert!(
            connector(&fakes, &state, 1)
                .run(t(UNTIL), None)
                .await
                .unwrap()
                .complete
        );
        std::fs::remove_dir_all(&state).unwrap();
        fakes.contents()
    };
    let requests = counted.load(Ordering::SeqCst);
    assert!(requests > 40);
    for seed in [1u64, 2, 3, 4, 5, 6] {
        // The seed picks the request at which the connector dies.
        let at = 1 + (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) % requests;
        let crashed = Arc::new(tokio::sync::Notify::new());
        let fakes = Fakes::examples(t(NOW), crash_at(at, Arc::default(), crashed.clone()))
            .await
            .unwrap();
        let state = temp_dir(&format!("crash-{seed}"));
        let doomed = connector(&fakes, &state, 1);
        let mut run =
            tokio::spawn(async move { doomed.run(t(UNTIL), None).await.map(|r| r.complete) });
        tokio::select! {
            () = crashed.notified() => {
                run.abort();
                let _ = run.await;
            }
            // Should the run end before its crash point, the resume below still must hold.
            finished = &mut run => {
                let _ = finished;
            }
        }
        let resumed = connector(&fakes, &state, 1)
            .run(t(UNTIL), None)
            .await
            .unwrap();
        assert!(
            resumed.complete,
            "seed {seed}, crash at request {at}: {}",
            resumed.summary()
        );
        assert_eq!(
            fakes.contents(),
            baseline,
            "seed {seed}: crash at request {at} of {requests} changed what landed"
        );
        std::fs::remove_dir_all(&state).unwrap();
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
    let alice = participant(
        "+16174354634",
        "Alice Archer",
        Some("alice.archer@contoso.example"),
    );
    let bob = participant(
        "+12124325249",
        "Bob Baker",
        Some("bob.baker@contoso.example"),
    );
    let frank = participant(
        "+15550000005",
        "Frank Former",
        Some("frank.former@contoso.example"),
    );
    let outsider = participant("+14155550123", "Erin Outside", None);
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
    let directory =
        mock_mailbox::Directory::from_file(&examples().join("mailbox-directory.json")).unwrap();
    let fakes = Fakes::start(
        &mock_telemessage::Dataset::from_json(&dataset.to_string()).unwrap(),
        &directory,
        t(NOW),
        |r| r,
    )
    .await
    .unwrap();
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
    assert_eq!(second.windows.len(), 2, "two missed days, one window each");
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
    assert!(fakes.contents().is_empty());
    std::fs::remove_dir_all(&state).unwrap();
}
