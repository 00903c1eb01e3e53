//! A window: its listing staged page by page, its staged items worked on while the
//! listing goes on, and its accounting.

use super::budget::{Budget, Share};
use super::item::{OpenItem, Planned};
use super::*;

/// An open item in a window's work: how many of its deliveries are left and going, the
/// bytes of its message if built, what it counts against the memory budget, and its
/// result so far.
struct Opened {
    item: Arc<OpenItem>,
    remaining: usize,
    started: usize,
    built: usize,
    share: Share,
    result: ItemResult,
}

impl Opened {
    /// Counts the item's share again after a change, against `budget`.
    fn recount(&mut self, budget: &mut Budget) {
        let now = Share::of(
            self.item.staged.json.len(),
            self.item.to_build,
            self.built,
            self.started,
        );
        budget.recount(self.share, now);
        self.share = now;
    }

    /// How much its share grows if one more of its deliveries starts.
    fn growth_to_start(&self) -> usize {
        let message = if self.started > 0 {
            0
        } else {
            self.item.to_build.saturating_sub(self.built)
        };
        message + super::budget::REQUEST_BYTES
    }
}

/// Drops the built messages of items none of whose deliveries goes (built again when
/// one goes). Answers how many were.
fn park_waiting(open: &mut HashMap<i64, Opened>, budget: &mut Budget) -> u64 {
    let mut parked = 0;
    for opened in open.values_mut().filter(|o| o.started == 0 && o.built > 0) {
        if opened.item.park() > 0 {
            opened.built = 0;
            opened.recount(budget);
            parked += 1;
        }
    }
    parked
}

impl Connector {
    /// Works through one window and closes it. Answers what became of its items.
    pub(super) async fn process_window(
        &self,
        window: &Window,
        again: bool,
        report: &mut RunReport,
    ) -> Result<Accounting, ConnectorError> {
        // The listing and the deliveries go on together: each page is staged (one
        // transaction) and its items can be sent at once. The fetcher says how far it got.
        let (listed, listing) = tokio::sync::watch::channel(window.fetched);
        let fetching = async {
            if window.fetched {
                // Items that could not be read were counted (and quarantined) as fetched.
                Ok(self.store.quarantine_of_window(window.id)?.len() as u64)
            } else {
                self.fetch(window, again, &listed).await
            }
        };
        let delivering = self.deliver_staged(window, listing, report);
        let (unreadable, (mut account, failed)) = tokio::try_join!(fetching, delivering)?;
        // An item that could not be read was worked on too: it is skipped whole.
        if unreadable > 0 {
            account.items += unreadable;
            account.planned += unreadable;
            *account
                .skipped
                .entry(SkipReason::InvalidItem.code().into())
                .or_default() += unreadable;
        }
        // The window closes whatever one item does: what failed is held for later runs.
        let now = (self.clock)();
        for (staged, error) in &failed {
            self.store
                .hold(&staged.item_id, &staged.json, window.id, error, now)?;
            self.maybe_needs_person(&staged.item_id, 1, now)?;
            tracing::warn!(item = %staged.item_id, %error, "held for the next runs");
        }
        self.staging.clear(window.id)?;
        self.store.finish_window(window, &account, now)?;
        self.report_recorded(window.id, report)?;
        Ok(account)
    }

    /// Puts a window's skips and quarantined items, as the state records them, in the
    /// report: those recorded by an earlier, interrupted run of the window are in it too.
    pub(super) fn report_recorded(
        &self,
        window_id: i64,
        report: &mut RunReport,
    ) -> Result<(), ConnectorError> {
        for s in self.store.skips_of_window(window_id)? {
            let skip = Skip {
                item_id: s.item_id,
                reason: s.reason,
                detail: s.detail,
            };
            if !report.skipped.contains(&skip) {
                report.skipped.push(skip);
            }
        }
        report
            .quarantined
            .extend(self.store.quarantine_of_window(window_id)?);
        Ok(())
    }

    /// Works through the staged items of a window as the listing stages them. Items are
    /// planned (read, mapped, their skips recorded) `concurrency` at a time; each of
    /// their deliveries waits in its mailbox's lane (see `lanes`), and a lane starts one
    /// when its mailbox may send and the memory budget has room (see `budget`). A
    /// throttled or paced mailbox holds back only its own deliveries, and there is no
    /// barrier between items. An item is settled when its last delivery is over. At
    /// concurrency 1 items go one at a time, in order. Answers the window's accounting
    /// and the items that failed.
    /// `listing` turns true once the listing is complete.
    pub(super) async fn deliver_staged(
        &self,
        window: &Window,
        mut listing: tokio::sync::watch::Receiver<bool>,
        report: &mut RunReport,
    ) -> Result<(Accounting, Vec<(Staged, String)>), ConnectorError> {
        let concurrency = self.config.concurrency;
        // Items open at once (planned, deliveries not all over): enough that the lanes of
        // other mailboxes stay fed while one mailbox waits out a long Retry-After, and an
        // open item without its message is small (about 3 KB). At most 16,384 whatever the
        // concurrency, and within the memory budget with everything else kept.
        let open_max = (concurrency * 64).clamp(4096, 16_384);
        let mut budget = Budget::new(self.config.memory_budget);
        // Deliveries started at once. Only `concurrency` requests are on the wire at a
        // time (the Graph client's bound); the others wait for a slot with their message.
        // At concurrency 1 one item is worked on at a time, start to end, and one request
        // goes at a time: the requests come in one order, which replays rely on.
        let sequential = concurrency == 1;
        // Each started delivery holds its item's built message (a file's base64 and all)
        // while it waits for the wire: beyond the wire's own count only a margin is
        // started, or a day with files held close to a gigabyte at 512 (2,048 started).
        let started_max = if sequential {
            1
        } else {
            (concurrency * lanes::PER_LANE).min(concurrency + 128)
        };
        let room = |open: usize, planning: usize| {
            if sequential {
                open == 0 && planning == 0
            } else {
                planning < concurrency && open + planning < open_max
            }
        };
        let has_room = |budget: &Budget| sequential || budget.has_room();
        let mut account = Accounting::default();
        let mut failed: Vec<(Staged, String)> = Vec::new();
        let mut queue = std::collections::VecDeque::new();
        let mut after = 0i64;
        let mut listed_all = false;
        let mut open: HashMap<i64, Opened> = HashMap::new();
        let mut lanes = lanes::Lanes::default();
        let mut parked = 0u64;
        let mut refused = 0u64;
        let mut planning = futures_util::stream::FuturesUnordered::new();
        let mut sending = futures_util::stream::FuturesUnordered::new();
        // Items whose last delivery is over, being settled (their staged file forgotten,
        // under its lock: awaited here, beside the deliveries, which may hold that lock).
        let mut settling = futures_util::stream::FuturesUnordered::new();
        loop {
            // Plan more items while there is room.
            while room(open.len() + settling.len(), planning.len()) && has_room(&budget) {
                if queue.is_empty() && !listed_all {
                    // Read before looking: a listing complete before an empty look means
                    // nothing more will come.
                    let complete = *listing.borrow_and_update();
                    let page = self.store.staged_after(window.id, after, BATCH)?;
                    match page.last() {
                        Some(last) => after = last.seq,
                        None if complete => listed_all = true,
                        None => {}
                    }
                    queue.extend(page);
                }
                match queue.pop_front() {
                    Some(staged) => planning.push(self.plan_item(window, staged)),
                    None => break,
                }
            }
            // Start what the lanes and the memory budget allow.
            let now = Instant::now();
            let mut swept = false;
            while lanes.started() < started_max {
                let nothing_started = lanes.started() == 0;
                let mut full = false;
                let next = lanes.next(
                    now,
                    |mailbox| self.graph.ready_at(mailbox, now),
                    |seq| {
                        let growth = open.get(&seq).map_or(0, Opened::growth_to_start);
                        full = !budget.admits(growth, nothing_started);
                        !full
                    },
                );
                let Some((key, seq)) = next else {
                    if full {
                        // No room: messages kept for items that wait make some, once.
                        if !swept && budget.waiting() > 0 {
                            swept = true;
                            parked += park_waiting(&mut open, &mut budget);
                            continue;
                        }
                        refused += 1;
                    }
                    break;
                };
                let opened = open
                    .get_mut(&seq)
                    .expect("a queued delivery's item is open");
                opened.started += 1;
                opened.recount(&mut budget);
                let item = opened.item.clone();
                sending.push(async move {
                    let r = self.deliver_one(window, &item, &key).await;
                    (seq, key, r)
                });
            }
            if planning.is_empty()
                && sending.is_empty()
                && settling.is_empty()
                && lanes.queued() == 0
            {
                if listed_all && queue.is_empty() {
                    break;
                }
                if !queue.is_empty() {
                    continue;
                }
                // Nothing to do until the listing stages more (or ends: a closed channel
                // means the fetcher is done, and the next look settles it).
                let _ = listing.changed().await;
                continue;
            }
            let wake = lanes.next_wake();
            let may_plan = queue.is_empty()
                && !listed_all
                && room(open.len() + settling.len(), planning.len());
            tokio::select! {
                Some(planned) = planning.next(), if !planning.is_empty() => {
                    match planned? {
                        Planned::Settled(staged, r) => {
                            account.add(&r.account);
                            // Failed before any delivery (a mailbox could not be looked
                            // up): held, like any item that failed.
                            if !r.failures.is_empty() {
                                failed.push((staged, r.error()));
                            }
                            report.failed.extend(r.failures);
                        }
                        Planned::Open(item, result) => {
                            let seq = item.staged.seq;
                            for key in item.pending.keys() {
                                lanes.push(key, seq);
                            }
                            let remaining = item.pending.len();
                            let mut opened = Opened { item, remaining, started: 0, built: 0, share: Share::default(), result };
                            opened.recount(&mut budget);
                            open.insert(seq, opened);
                        }
                    }
                }
                Some((seq, key, r)) = sending.next(), if !sending.is_empty() => {
                    lanes.done(&key);
                    let (r, built) = r?;
                    let opened = open.get_mut(&seq).expect("a started delivery's item is open");
                    opened.started -= 1;
                    opened.remaining -= 1;
                    if let Some(bytes) = built {
                        opened.built = bytes;
                    }
                    opened.result.merge(r);
                    opened.recount(&mut budget);
                    if opened.remaining == 0 {
                        let opened = open.remove(&seq).expect("just seen");
                        budget.recount(opened.share, Share::default());
                        settling.push(async move {
                            self.settle_item(window, &opened.item, &opened.result).await?;
                            Ok::<_, ConnectorError>(opened)
                        });
                    } else if budget.keeps_too_many_waiting() {
                        // Messages of items waiting only on sleeping or busy lanes are
                        // dropped, and built again when one of their deliveries goes.
                        parked += park_waiting(&mut open, &mut budget);
                    }
                }
                Some(settled) = settling.next(), if !settling.is_empty() => {
                    let Opened { item, result, .. } = settled?;
                    account.add(&result.account);
                    if !result.failures.is_empty() {
                        let error = result.error();
                        failed.push((item.staged.clone(), error));
                    }
                    report.failed.extend(result.failures);
                }
                _ = tokio::time::sleep_until(wake.unwrap_or(now).into()), if wake.is_some() && lanes.started() < started_max => {}
                _ = listing.changed(), if may_plan => {}
            }
        }
        if parked > 0 {
            tracing::info!(
                parked,
                "messages dropped while their items waited on busy or throttled mailboxes, built again when sent"
            );
        }
        tracing::info!(
            peak_bytes = budget.peak(),
            budget_bytes = self.config.memory_budget,
            waits_for_room = refused,
            "the window's work kept within its memory budget"
        );
        Ok((account, failed))
    }

    /// Lists the whole window and stages every readable item as received, a page at a
    /// time (each page wakes the deliveries). An item that
    /// cannot be read (not JSON the parser accepts, no id, off the schema) is kept byte
    /// for byte in the quarantine and skipped as `invalid_item`. Answers how many were.
    pub(super) async fn fetch(
        &self,
        window: &Window,
        again: bool,
        listed: &tokio::sync::watch::Sender<bool>,
    ) -> Result<u64, ConnectorError> {
        let mut cursor: Option<String> = None;
        let mut staged = 0u64;
        let mut unreadable = 0u64;
        let mut position = 0u64;
        // A page above the page bound is asked for again, from the same cursor, with
        // half as many items, down to one; each page that fits lets the size grow back.
        let mut page_size = self.config.page_size;
        loop {
            let page = match self
                .provider
                .page(window.since, window.until, cursor.as_deref(), page_size)
                .await
            {
                Ok(page) => {
                    page_size = page_size.saturating_mul(2).min(self.config.page_size);
                    page
                }
                Err(ProviderError::PageTooLarge { limit }) if page_size > 1 => {
                    page_size /= 2;
                    tracing::info!(
                        limit,
                        page_size,
                        "a listing page is above import.max_page_bytes; asking for fewer items"
                    );
                    continue;
                }
                Err(ProviderError::PageTooLarge { .. }) => {
                    position += 1;
                    let (next, new) = self
                        .skip_oversized(window, position, cursor.as_deref())
                        .await?;
                    unreadable += u64::from(new);
                    match next {
                        Some(next) => {
                            cursor = Some(next);
                            continue;
                        }
                        None => break,
                    }
                }
                Err(e) => return Err(e.into()),
            };
            // Reading a page's items and their digests is most of the listing's CPU: it
            // is done on a blocking thread, and the deliveries go on meanwhile on this one
            // (docs/load-testing.md, "One thread").
            let (page, read) = match tokio::task::spawn_blocking(move || {
                let read: Vec<_> = page
                    .items
                    .iter()
                    .map(|raw| wire::read_item_with_digest(raw.get()))
                    .collect();
                (page, read)
            })
            .await
            {
                Ok(done) => done,
                // Only a panic ends it early: the runtime is not shut down while the run
                // awaits it. The panic goes on here, as when the page was read in place.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            let mut readable_items = Vec::with_capacity(page.items.len());
            for (raw, read) in page.items.iter().zip(read) {
                position += 1;
                let text = raw.get();
                match read {
                    Ok((item, digest)) => readable_items.push((item.id, text, digest)),
                    Err(reason) => {
                        let id = wire::raw_item_id(text);
                        // Kept once: the same bytes listed again (a look-back, a window
                        // listed again after a crash) are not a second item.
                        let digest =
                            format!("unreadable:{}", crate::digest::sha256_hex(text.as_bytes()));
                        let key = id.clone().unwrap_or_default();
                        if self.store.seen(&key, &digest)? {
                            continue;
                        }
                        self.quarantine(window, position, id, &reason, text)?;
                        self.store.mark_seen(&key, &digest, window.id)?;
                        unreadable += 1;
                    }
                }
            }
            // Ready from now (marked first: a delivery may pick an item up as soon as it
            // is staged). One transaction a page; content seen before is not staged again.
            let listing = if again {
                state::Listing::Again
            } else if window.look_back {
                state::Listing::LookBack
            } else {
                state::Listing::First
            };
            self.latency.staging(
                window.id,
                self.store.last_staged_seq(window.id)?,
                std::time::Instant::now(),
            );
            let new = self.store.stage_page(window.id, &readable_items, listing)?;
            self.latency
                .staged(window.id, self.store.last_staged_seq(window.id)?);
            staged += new.len() as u64;
            // Wakes the deliveries waiting for more.
            listed.send_modify(|_| {});
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        self.store.mark_fetched(window.id)?;
        listed.send_replace(true);
        tracing::info!(items = staged, unreadable, "window staged");
        // Every unreadable item of this window, those an interrupted run of it already
        // quarantined included (listed again, they are not quarantined twice): each is
        // one item worked on, in this window's accounting.
        Ok(self.store.quarantine_of_window(window.id)?.len() as u64)
    }

    /// An item larger than any page may be (`import.max_page_bytes`) alone: its first
    /// bytes up to that bound are quarantined, it is skipped as unreadable with its
    /// place in the listing, and the listing goes on after it. Answers the next cursor,
    /// and whether the item was new (not quarantined by an earlier listing).
    async fn skip_oversized(
        &self,
        window: &Window,
        position: u64,
        cursor: Option<&str>,
    ) -> Result<(Option<String>, bool), ConnectorError> {
        let found = self
            .provider
            .oversized_item(window.since, window.until, cursor)
            .await?;
        let kept = String::from_utf8_lossy(&found.kept);
        // Kept once: the same item listed again (a look-back, a window listed again
        // after a crash) is not a second one.
        let digest = format!(
            "oversized:{}:{}",
            found.total_bytes,
            crate::digest::sha256_hex(&found.kept)
        );
        let id = oversized_id(&kept);
        let key = id.clone().unwrap_or_default();
        let new = !self.store.seen(&key, &digest)?;
        if new {
            let reason = format!(
                "the item alone is {} bytes, above import.max_page_bytes ({} bytes): it cannot be read; its first {} bytes are kept. Raise import.max_page_bytes and take the window again with --since to import it",
                found.total_bytes,
                self.config.max_page_bytes,
                found.kept.len()
            );
            self.quarantine(window, position, id, &reason, &kept)?;
            self.store.mark_seen(&key, &digest, window.id)?;
        }
        Ok((found.next_cursor, new))
    }

    /// Keeps an unreadable item's bytes in the quarantine and records it as skipped.
    pub(super) fn quarantine(
        &self,
        window: &Window,
        position: u64,
        id: Option<String>,
        reason: &str,
        raw: &str,
    ) -> Result<(), ConnectorError> {
        let file = self
            .staging
            .quarantine(window.since, position, raw.as_bytes())?;
        let now = (self.clock)();
        let record = Quarantined {
            window_id: window.id,
            position,
            item_id: id.clone(),
            reason: reason.to_owned(),
            file: file.display().to_string(),
        };
        self.store.record_quarantine(&record, now)?;
        let item_id = id.unwrap_or_else(|| {
            format!(
                "(unreadable: item {position} of window {})",
                window.since.to_rfc3339()
            )
        });
        // Bounded: an enormous reason (the parser quotes what it read) is cut.
        let detail = format!("{}; kept as {}", email::cap(reason, 300), file.display());
        self.store
            .record_skip(&item_id, SkipReason::InvalidItem, &detail, window.id, now)?;
        tracing::warn!(item = %email::cap(&item_id, 120), position, reason = %email::cap(reason, 300), "unreadable item quarantined");
        Ok(())
    }

    pub(super) fn skip(
        &self,
        window: &Window,
        result: &mut ItemResult,
        item_id: &str,
        reason: SkipReason,
        detail: String,
    ) -> Result<(), ConnectorError> {
        self.store
            .record_skip(item_id, reason, &detail, window.id, (self.clock)())?;
        self.progress
            .skips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(item = item_id, reason = reason.code(), %detail, "skipped");
        result.skips.push(Skip {
            item_id: item_id.to_owned(),
            reason: reason.code().to_owned(),
            detail,
        });
        Ok(())
    }
}

/// The id of an item cut short, when its top-level `"id"` comes before the cut. Read
/// by following the JSON's strings and nesting, never by guessing.
fn oversized_id(kept: &str) -> Option<String> {
    let b = kept.as_bytes();
    let (mut i, mut depth, mut expect_key) = (0usize, 0u32, false);
    while i < b.len() {
        match b[i] {
            b'"' => {
                let end = string_end(b, i)?;
                if depth == 1 && expect_key && &b[i..=end] == b"\"id\"" {
                    let rest = kept[end + 1..].trim_start().strip_prefix(':')?.trim_start();
                    let close = string_end(rest.as_bytes(), 0)?;
                    return serde_json::from_str::<String>(&rest[..=close])
                        .ok()
                        .filter(|id| !id.is_empty());
                }
                expect_key = false;
                i = end;
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = b[i] == b'{' && depth == 1;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => expect_key = depth == 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where the JSON string that opens at `start` (a quote) closes, if it does.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    if b.get(start) != Some(&b'"') {
        return None;
    }
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod oversized_tests {
    #[test]
    fn the_id_of_a_cut_item_is_read_only_at_its_top_level() {
        let id = |s: &str| super::oversized_id(s);
        assert_eq!(
            id(r#"{"archived_at":"x","id":"wa-7","text":"abc"#).as_deref(),
            Some("wa-7")
        );
        assert_eq!(
            id(r#"{"a":{"id":"inner"},"text":"\"id\":\"no\"","id":"wa-8""#).as_deref(),
            Some("wa-8")
        );
        assert_eq!(id(r#"{"text":"\"id\":\"not-this\", long"#), None);
        assert_eq!(id(r#"{"archived_at":"x","text":"cut before the id"#), None);
        assert_eq!(id(r#"{"id":"wa-9"#), None, "the id itself cut short");
    }
}
