//! Paging is exact: for any items, window and page size, the pages of one listing
//! concatenate to exactly the window's items in (archived_at, id) order.

mod common;

use axum::http::StatusCode;
use chrono::Duration;
use common::*;
use proptest::prelude::*;

fn scenario() -> impl Strategy<Value = (Vec<(u32, u8)>, u32, u32, usize)> {
    // Items as (minute of a two-day span, id suffix); minutes collide often on purpose.
    (
        proptest::collection::vec((0u32..120, 0u8..40), 0..60),
        0u32..120,
        1u32..120,
        1usize..12,
    )
}

proptest! {
    // Seeded, as every test here: the same 48 cases on every run and machine.
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED_0009),
        ..ProptestConfig::default()
    })]

    #[test]
    fn pages_concatenate_to_exactly_the_window((raw, start, length, page_size) in scenario()) {
        let base = t("2026-11-22T00:00:00Z");
        let mut ids = std::collections::BTreeSet::new();
        let items: Vec<_> = raw.iter().filter(|(_, s)| ids.insert(*s)).map(|(minute, suffix)| {
            let at = base + Duration::minutes(i64::from(*minute));
            (at, format!("wa-{suffix:02}"))
        }).collect();
        let since = base + Duration::minutes(i64::from(start));
        let until = since + Duration::minutes(i64::from(length));
        let mut expected: Vec<_> = items.iter().filter(|(at, _)| *at >= since && *at < until).cloned().collect();
        expected.sort();
        let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();

        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got = runtime.block_on(async {
            let fake = fake(items.iter().map(|(at, id)| text_item(id, &at.to_rfc3339())).collect());
            let token = fake.token().await;
            let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
            fake.list_all(&token, &fmt(since), &fmt(until), page_size).await
        });
        prop_assert_eq!(got, expected);
    }
}

/// Items kept in the temporary item file page exactly as items kept in memory: the same
/// items in the same order, each the same JSON text, whichever the page size.
#[tokio::test]
async fn items_kept_on_disk_are_listed_as_items_kept_in_memory() {
    let base = t("2026-11-22T00:00:00Z");
    let items: Vec<_> = (0..40u32)
        .map(|n| {
            // Collisions in time, ids out of order, text that needs escaping.
            let at = base + Duration::minutes(i64::from(n % 7));
            let mut item = text_item(&format!("wa-{:02}", 39 - n), &at.to_rfc3339());
            item["text"] = serde_json::json!(format!("line {n}\n\"quoted\" é 👍"));
            item
        })
        .collect();
    let in_memory = fake(items.clone());
    let on_disk = fake(Vec::new());
    on_disk.state.keep_items_on_disk().unwrap();
    // Its file has no name to leave behind, however the fake ends.
    let named = format!("mock-telemessage-items-{}-", std::process::id());
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&named))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // In two batches, as a load run loads its day part by part.
    on_disk.state.load_items(&items[..25]).unwrap();
    on_disk.state.load_items(&items[25..]).unwrap();
    for fake in [&in_memory, &on_disk] {
        assert_eq!(fake.state.counters().items_held, 40);
    }
    let (a, b) = (in_memory.token().await, on_disk.token().await);
    for page_size in [1, 7, 100] {
        let first = format!(
            "/api/v1/items?since=2026-11-22T00:00:00Z&until=2026-11-23T00:00:00Z&page_size={page_size}"
        );
        let (mut uri_x, mut uri_y) = (first.clone(), first);
        let mut pages = 0;
        loop {
            let (x, y) = (
                in_memory.get(&uri_x, Some(&a)).await,
                on_disk.get(&uri_y, Some(&b)).await,
            );
            assert_eq!((x.status, y.status), (StatusCode::OK, StatusCode::OK));
            let (x, y) = (x.json(), y.json());
            assert_eq!(
                x["items"], y["items"],
                "page size {page_size}, page {pages}"
            );
            assert!(!x["items"].as_array().unwrap().is_empty());
            pages += 1;
            // Each fake's own cursor (signed with its own key) leads on.
            match (x["next_cursor"].as_str(), y["next_cursor"].as_str()) {
                (Some(p), Some(q)) => {
                    uri_x = format!("/api/v1/items?cursor={p}");
                    uri_y = format!("/api/v1/items?cursor={q}");
                }
                (None, None) => break,
                other => panic!("one listing ended before the other: {other:?}"),
            }
        }
        assert_eq!(pages, 40usize.div_ceil(page_size));
    }
    // Forgotten (as a load run does after its import): nothing held or listed; items
    // loaded after are listed as before.
    on_disk.state.forget_items().unwrap();
    assert_eq!(on_disk.state.counters().items_held, 0);
    let first = "/api/v1/items?since=2026-11-22T00:00:00Z&until=2026-11-23T00:00:00Z";
    let listed = on_disk.get(first, Some(&b)).await.json();
    assert_eq!(listed["items"], serde_json::json!([]));
    on_disk.state.load_items(&items[..3]).unwrap();
    let listed = on_disk.get(first, Some(&b)).await.json();
    let mut ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["wa-37", "wa-38", "wa-39"]);
}
