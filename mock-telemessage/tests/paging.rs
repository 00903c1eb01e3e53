//! Paging is exact: for any items, window and page size, the pages of one listing
//! concatenate to exactly the window's items in (archived_at, id) order.

mod common;

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
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

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
