//! The reconciliation checks every copy on its own: one mailbox's copy of an item that
//! differs from the others' is found, however alike the copies usually are.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Changes the second copy of each item imported (`importMime` with a Message-ID seen):
/// its `X-WhatsApp-Capture-Mode` value gets a prefix.
fn tamper_second_copies(router: axum::Router) -> axum::Router {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let seen = seen.clone();
            async move {
                if request.method() != axum::http::Method::POST
                    || !request.uri().path().ends_with("/importMime")
                {
                    return next.run(request).await;
                }
                let (mut parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let mut body = body.to_vec();
                if let Ok(mime) = mock_mailbox::state::decode_base64(&body) {
                    let text = String::from_utf8_lossy(&mime).into_owned();
                    let id = text
                        .lines()
                        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                        .unwrap_or_default()
                        .to_owned();
                    if !seen.lock().unwrap().insert(id) {
                        let changed = text.replacen(
                            "X-WhatsApp-Capture-Mode: ",
                            "X-WhatsApp-Capture-Mode: altered-",
                            1,
                        );
                        body = STANDARD.encode(changed).into_bytes();
                        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
                    }
                }
                next.run(axum::extract::Request::from_parts(parts, Body::from(body)))
                    .await
            }
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_differs_from_the_items_other_copies_is_found() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("recorded/rule-capture-modes-and-kinds.json");
    let scenario = scenarios::model::Scenario::load(&path).unwrap();
    let work = scenarios::harness::temp_dir("tampered");
    // One delivery at a time: the second copy of an item is the one to the mailbox its
    // item reaches second.
    let outcome = scenarios::runner::run_through(
        &scenario,
        &work,
        "scenarios/tests/tampered.rs".into(),
        1,
        tamper_second_copies,
    )
    .await
    .unwrap();
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
        let copy = outcome.landed[&finding.item_id]
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
