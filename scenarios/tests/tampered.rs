//! The reconciliation checks every copy on its own: one mailbox's copy of an item that
//! differs from the others' is found, however alike the copies usually are.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A layer that hands each `importMime`'s message to `change`, and imports what it
/// answers in its place (or the message as sent, for `None`).
fn alter_imports(
    router: axum::Router,
    change: impl Fn(&str) -> Option<String> + Clone + Send + Sync + 'static,
) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let change = change.clone();
            async move {
                if request.method() != axum::http::Method::POST
                    || !request.uri().path().ends_with("/importMime")
                {
                    return next.run(request).await;
                }
                let (mut parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let mut body = body.to_vec();
                if let Ok(mime) = mock_mailbox::state::decode_base64(&body)
                    && let Some(changed) = change(&String::from_utf8_lossy(&mime))
                {
                    body = STANDARD.encode(changed).into_bytes();
                    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
                }
                next.run(axum::extract::Request::from_parts(parts, Body::from(body)))
                    .await
            }
        },
    ))
}

/// Changes the second copy of each item imported (`importMime` with a Message-ID seen):
/// its `X-WhatsApp-Capture-Mode` value gets a prefix.
fn tamper_second_copies(router: axum::Router) -> axum::Router {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    alter_imports(router, move |text| {
        let id = text
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
            .unwrap_or_default()
            .to_owned();
        (!seen.lock().unwrap().insert(id)).then(|| {
            text.replacen(
                "X-WhatsApp-Capture-Mode: ",
                "X-WhatsApp-Capture-Mode: altered-",
                1,
            )
        })
    })
}

/// Changes the file a follow-up brings (a message with `X-WhatsApp-Completes`): the
/// first base64 character of its attachment part, so its bytes are no longer the
/// provider's.
fn tamper_follow_up_files(router: axum::Router) -> axum::Router {
    alter_imports(router, |text| {
        if !text.contains("X-WhatsApp-Completes:") {
            return None;
        }
        let part = text.find("Content-Disposition: attachment")?;
        let data = part + text[part..].find("\r\n\r\n")? + 4;
        let flipped = if text[data..].starts_with('A') {
            "B"
        } else {
            "A"
        };
        Some(format!("{}{flipped}{}", &text[..data], &text[data + 1..]))
    })
}

/// Runs the recorded scenario `name` behind `tamper`, one delivery at a time.
async fn run_tampered_by(
    name: &str,
    tamper: fn(axum::Router) -> axum::Router,
) -> (scenarios::model::Scenario, scenarios::runner::Outcome) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("recorded/{name}.json"));
    let scenario = scenarios::model::Scenario::load(&path).unwrap();
    let work = scenarios::harness::temp_dir("tampered");
    let outcome = scenarios::runner::run_through(
        &scenario,
        &work,
        "scenarios/tests/tampered.rs".into(),
        1,
        tamper,
    )
    .await
    .unwrap();
    std::fs::remove_dir_all(&work).ok();
    (scenario, outcome)
}

/// Runs the recorded scenario `name` with [`tamper_second_copies`], one delivery at a
/// time: the second copy of an item is the one to the mailbox its item reaches second.
async fn run_tampered(name: &str) -> (scenarios::model::Scenario, scenarios::runner::Outcome) {
    run_tampered_by(name, tamper_second_copies).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_follow_up_without_the_providers_bytes_is_found_in_its_mailbox() {
    let (_, outcome) = run_tampered_by("rule-files-owed", tamper_follow_up_files).await;
    let report = &outcome.report;
    let follow_ups: usize = outcome
        .landed
        .iter()
        .filter(|(id, _)| id.ends_with(" (file follow-up)"))
        .map(|(_, copies)| copies.len())
        .sum();
    assert!(follow_ups > 0, "the scenario delivers owed files later");
    let found: Vec<_> = report
        .content_errors
        .iter()
        .filter(|f| f.detail.contains("does not carry the provider's file"))
        .collect();
    assert_eq!(found.len(), follow_ups, "{:#?}", report.content_errors);
    assert!(found.iter().all(|f| f.mailbox.is_some()));
    assert_eq!(
        report.problems(),
        follow_ups,
        "nothing else differs: {report:#?}"
    );
    assert_ne!(report.verdict, scenarios::Verdict::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_differs_from_the_items_other_copies_is_found() {
    let (_, outcome) = run_tampered("rule-capture-modes-and-kinds").await;
    let report = &outcome.report;
    let items_in_two = outcome
        .landed
        .values()
        .filter(|copies| copies.len() > 1)
        .count();
    assert!(items_in_two > 0, "the scenario has items in two mailboxes");
    let altered: Vec<_> = report
        .content_errors
        .iter()
        .filter(|f| {
            f.detail
                .contains("X-WhatsApp-Capture-Mode is Some(\"altered-")
        })
        .collect();
    assert_eq!(altered.len(), items_in_two, "{:#?}", report.content_errors);
    // Each finding names the mailbox whose copy was changed, not the other.
    for finding in altered {
        let copy = outcome.landed[finding.item_id.as_str()]
            .iter()
            .find(|c| Some(&*c.mailbox) == finding.mailbox.as_deref())
            .unwrap();
        let headers = copy.content().headers().unwrap();
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "X-WhatsApp-Capture-Mode" && v.starts_with("altered-")),
            "{finding:?}"
        );
    }
    assert_ne!(report.verdict, scenarios::Verdict::Pass);
}

/// The expected outcome split into `n` parts, each item in one (round-robin), its
/// notices and fallbacks with it; what belongs to the whole day (mailboxes gone, long
/// ids, the count of source items) in every part or the first.
fn in_parts(whole: &scenarios::oracle::Expected, n: usize) -> Vec<scenarios::oracle::Expected> {
    let mut parts: Vec<scenarios::oracle::Expected> = (0..n)
        .map(|_| scenarios::oracle::Expected {
            downloads_may_fail: whole.downloads_may_fail,
            gone: whole.gone.clone(),
            long_ids: whole.long_ids.clone(),
            ..Default::default()
        })
        .collect();
    parts[0].source_items = whole.source_items;
    let mut part_of = std::collections::BTreeMap::new();
    for (i, (id, outcome)) in whole.items.iter().enumerate() {
        let part = &mut parts[i % n];
        part.items.insert(id.clone(), outcome.clone());
        if let Some(fallback) = whole.gone_fallback.get(id) {
            part.gone_fallback.insert(id.clone(), fallback.clone());
        }
        let provider_id = id.split(" (revision ").next().unwrap_or(id);
        part_of.entry(provider_id.to_owned()).or_insert(i % n);
    }
    for (id, notices) in &whole.notices {
        let part = part_of.get(id).copied().unwrap_or(0);
        parts[part].notices.insert(id.clone(), notices.clone());
    }
    parts
}

/// A report's findings and counts, each list sorted: parts find the same things, in
/// another order.
fn sorted(r: &scenarios::reconcile::ScenarioReport) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap();
    for (_, list) in v.as_object_mut().unwrap().iter_mut() {
        if let Some(list) = list.as_array_mut() {
            list.sort_by_key(|f| f.to_string());
        }
    }
    v
}

/// `scenarios load` reconciles its day part by part (the day drawn again), so that no
/// expected outcome is held for the whole day: what it finds must be what the whole
/// day's reconciliation finds, problems included. Tampered copies (content errors), an
/// item taken out of the expected outcome (its copies land as no source item), a notice
/// and a skip taken out of a report and a notice for no item added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_reconciled_in_parts_finds_what_the_whole_day_finds() {
    use scenarios::reconcile::{Reconciliation, reconcile};
    for name in [
        "rule-capture-modes-and-kinds",
        "rule-size-boundaries",
        "rule-fallback-mailbox-gone-too",
        "rule-late-visible",
        "rule-revised-items",
        "rule-invalid-items",
        "rule-mailbox-gone-mid-run",
    ] {
        let (scenario, outcome) = run_tampered(name).await;
        let mut runs = outcome.runs.clone();
        let mut expected = scenarios::oracle::expected(&scenario)
            .with_gone(&scenario, outcome.report.gone_mailboxes.clone());
        // Problems on purpose, so that both ways have something to find.
        let delivered = outcome.landed.keys().next().unwrap().to_owned();
        expected.items.remove(&delivered);
        let last = runs.last_mut().unwrap();
        last.skipped.pop();
        last.skipped.push(connector::report::Skip {
            item_id: "no-such-item".into(),
            reason: "late_visible".into(),
            detail: String::new(),
        });
        // The notices of one item taken out of every report.
        let unnoticed = expected.notices.keys().next().cloned();
        if let Some(id) = &unnoticed {
            for run in &mut runs {
                run.skipped.retain(|s| &s.item_id != id);
            }
        }
        let last = runs.last_mut().unwrap();
        // Every item held by the last run: those that wait only for mailboxes gone away
        // are not the connector's failures, the rest are.
        last.held.extend(
            expected
                .items
                .keys()
                .chain([&"held-for-no-item".to_owned()])
                .map(|id| connector::report::HeldItem {
                    item_id: id.clone(),
                    runs: 1,
                    first_failed_at: scenarios::harness::t("2026-11-20T00:00:00Z"),
                    last_error: String::new(),
                }),
        );
        let whole = reconcile(&scenario, &expected, &outcome.landed, &runs, "r".into());
        // The problems made on purpose are found.
        assert!(whole.connector_failures > 0, "{name}");
        let no_source: Vec<_> = whole
            .unexpected
            .iter()
            .filter(|f| f.detail == "no such source item")
            .map(|f| f.item_id.as_str())
            .collect();
        assert_eq!(
            no_source,
            vec![delivered.as_str(); outcome.landed[delivered.as_str()].len()],
            "{name}"
        );
        if let Some(id) = &unnoticed {
            assert!(
                whole
                    .wrongly_skipped
                    .iter()
                    .any(|f| &f.item_id == id
                        && f.detail.contains("the report gives the notices {}")),
                "{name}: {:#?}",
                whole.wrongly_skipped
            );
        }
        assert!(
            whole
                .wrongly_skipped
                .iter()
                .any(|f| f.item_id == "no-such-item" && f.detail.contains("late_visible")),
            "{name}: {:#?}",
            whole.wrongly_skipped
        );
        for n in [1, 3] {
            let mut by_parts = Reconciliation::new(
                &scenario,
                expected.gone.clone(),
                &outcome.landed,
                &runs,
                "r".into(),
            );
            for part in in_parts(&expected, n) {
                by_parts.check_part(&part);
            }
            let by_parts = by_parts.finish();
            assert_eq!(
                sorted(&by_parts),
                sorted(&whole),
                "{name} in {n} part(s) finds what the whole day finds"
            );
        }
    }
}

/// What the tampering layer does to one `importMime`.
#[derive(Clone, Copy, Debug)]
enum Wrong {
    /// Answers `201` as Graph would, and stores nothing.
    Lost,
    /// Imports it twice.
    Twice,
    /// Imports it into the Inbox instead of the archive folder.
    Inbox,
    /// Imports it, and a copy of it with another Message-ID beside it.
    Extra,
}

/// The item of the message the layer tampered with (its Message-ID's local part).
type Tampered = Arc<Mutex<Option<String>>>;

/// A layer that does `wrong` to the `nth` `importMime` (counted from 1) and notes whose
/// item it was.
fn wrong_import(
    router: axum::Router,
    nth: usize,
    wrong: Wrong,
    tampered: Tampered,
) -> axum::Router {
    use tower::ServiceExt;
    let fake = router.clone();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let (fake, seen, tampered) = (fake.clone(), seen.clone(), tampered.clone());
            async move {
                if request.method() != axum::http::Method::POST
                    || !request.uri().path().ends_with("/importMime")
                    || seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 != nth
                {
                    return next.run(request).await;
                }
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let mime = mock_mailbox::state::decode_base64(&body).unwrap();
                let text = String::from_utf8_lossy(&mime).into_owned();
                let id = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Message-ID: <"))
                    .and_then(|l| l.split('@').next())
                    .unwrap()
                    .to_owned();
                *tampered.lock().unwrap() = Some(id);
                // A request of its own for the fake's router (not the routed one, whose
                // extensions hold this route's matched path).
                let again = |uri: &axum::http::Uri, body: Vec<u8>| {
                    let mut request = axum::extract::Request::post(uri.clone())
                        .body(Body::from(body))
                        .unwrap();
                    for (name, value) in &parts.headers {
                        if name != axum::http::header::CONTENT_LENGTH {
                            request.headers_mut().insert(name, value.clone());
                        }
                    }
                    request
                };
                let send = |request| fake.clone().oneshot(request);
                match wrong {
                    Wrong::Lost => axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::CREATED,
                        axum::Json(serde_json::json!({"id": "AAMkAGxvc3Q-never-stored"})),
                    )),
                    Wrong::Twice => {
                        let first = send(again(&parts.uri, body.to_vec())).await.unwrap();
                        assert!(first.status().is_success(), "{}", first.status());
                        send(again(&parts.uri, body.to_vec())).await.unwrap()
                    }
                    Wrong::Inbox => {
                        let path = parts.uri.path().to_owned();
                        let folder_at = path.find("/mailFolders/").unwrap() + "/mailFolders/".len();
                        let rest = &path[folder_at..];
                        let rewritten = format!(
                            "{}inbox{}",
                            &path[..folder_at],
                            &rest[rest.find('/').unwrap()..]
                        );
                        send(again(&rewritten.parse().unwrap(), body.to_vec()))
                            .await
                            .unwrap()
                    }
                    Wrong::Extra => {
                        // Another item id altogether: a message of no item in the day.
                        let twin = text
                            .replacen("Message-ID: <", "Message-ID: <extra-", 1)
                            .replacen("X-WhatsApp-Item-Id: ", "X-WhatsApp-Item-Id: extra-", 1);
                        let extra = send(again(&parts.uri, STANDARD.encode(twin).into_bytes()))
                            .await
                            .unwrap();
                        assert!(extra.status().is_success(), "{}", extra.status());
                        next.run(axum::extract::Request::from_parts(parts, Body::from(body)))
                            .await
                    }
                }
            }
        },
    ))
}

/// Runs `rule-capture-modes-and-kinds` one delivery at a time with its third import made
/// wrong in the way `wrong` says; answers the outcome and the item tampered with.
async fn run_with_wrong_import(wrong: Wrong) -> (scenarios::runner::Outcome, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("recorded/rule-capture-modes-and-kinds.json");
    let scenario = scenarios::model::Scenario::load(&path).unwrap();
    let work = scenarios::harness::temp_dir("wrong-import");
    let tampered = Tampered::default();
    let layer_tampered = tampered.clone();
    let outcome = scenarios::runner::run_through(
        &scenario,
        &work,
        "scenarios/tests/tampered.rs".into(),
        1,
        move |router| wrong_import(router, 3, wrong, layer_tampered),
    )
    .await
    .unwrap();
    std::fs::remove_dir_all(&work).ok();
    let item = tampered
        .lock()
        .unwrap()
        .clone()
        .expect("a third import was made");
    (outcome, item)
}

/// The one finding of `kind` in `report`, with nothing else found.
fn the_only_finding<'r>(
    report: &'r scenarios::reconcile::ScenarioReport,
    kind: &str,
) -> &'r scenarios::reconcile::Finding {
    let (_, list) = report
        .findings()
        .into_iter()
        .find(|(name, _)| *name == kind)
        .unwrap();
    assert_eq!(list.len(), 1, "{kind}: {report:#?}");
    assert_eq!(report.problems(), 1, "nothing but the {kind}: {report:#?}");
    assert_ne!(report.verdict, scenarios::Verdict::Pass);
    &list[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_answered_but_never_stored_is_found_missing_in_its_mailbox() {
    let (outcome, item) = run_with_wrong_import(Wrong::Lost).await;
    let finding = the_only_finding(&outcome.report, "missing");
    assert_eq!(finding.item_id, item);
    let mailbox = finding.mailbox.as_deref().unwrap();
    assert!(
        outcome.landed[item.as_str()]
            .iter()
            .all(|c| &*c.mailbox != mailbox),
        "{mailbox} has no copy of {item}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_stored_twice_is_found_duplicate_in_its_mailbox() {
    let (outcome, item) = run_with_wrong_import(Wrong::Twice).await;
    let finding = the_only_finding(&outcome.report, "duplicate");
    assert_eq!(finding.item_id, item);
    let mailbox = finding.mailbox.as_deref().unwrap();
    let copies = outcome.landed[item.as_str()]
        .iter()
        .filter(|c| &*c.mailbox == mailbox)
        .count();
    assert_eq!(copies, 2, "{finding:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_another_folder_is_found_misplaced() {
    let (outcome, item) = run_with_wrong_import(Wrong::Inbox).await;
    let finding = the_only_finding(&outcome.report, "misplaced");
    assert_eq!(finding.item_id, item);
    assert!(finding.detail.contains("\"Inbox\""), "{finding:?}");
    let mailbox = finding.mailbox.as_deref().unwrap();
    assert!(
        outcome.landed[item.as_str()]
            .iter()
            .any(|c| &*c.mailbox == mailbox && &*c.folder == "Inbox"),
        "{finding:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_no_source_item_is_found_unexpected() {
    let (outcome, item) = run_with_wrong_import(Wrong::Extra).await;
    let finding = the_only_finding(&outcome.report, "unexpected");
    assert_eq!(finding.item_id, format!("extra-{item}"));
    assert_eq!(finding.detail, "no such source item");
    assert!(finding.mailbox.is_some());
}
