//! The memory budget of a window's work: what the open items, their built messages and
//! the messages being built keep, in bytes. Pure bookkeeping, no I/O.
//!
//! An open item counts its staged JSON twice (the text as staged and as parsed), a fixed
//! amount for its mailboxes and bookkeeping, and one for each of its deliveries started
//! (its request's connection buffers), so the budget bounds the wire too. While one of
//! its deliveries is started it also counts the larger of its built message (import body
//! and following file) and what that message is expected to keep
//! ([`super::plan::bytes_to_build`]), since the first delivery fetches the file and
//! builds it; while none is, its built message if it is kept.
//!
//! New items are opened only while the open items themselves take at most half the
//! budget, so that what they wait for always has room. A delivery whose item would take
//! the budget past its limit does not start until others end, unless nothing is started
//! at all (one item larger than the budget still goes, alone). Built messages of items
//! with no delivery going are kept up to an eighth of the budget and dropped (built again
//! when sent) past it, or when a delivery is refused for room.

/// What an open item counts beside its text: its mailboxes, lanes' entries and
/// bookkeeping.
pub(super) const OPEN_ITEM_BYTES: usize = 2 * 1024;
/// What each started delivery counts for its request on the wire: the connection's read
/// and write buffers (and TLS's, against Microsoft 365), the request and its future.
/// Measured with heaptrack at 2,048 on the wire: about 39 KB per connection (hyper's read
/// buffer, its write buffer and its channel).
pub(super) const REQUEST_BYTES: usize = 40 * 1024;

/// What one open item counts now: in all, and of that its built message kept while none
/// of its deliveries goes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Share {
    pub(super) kept: usize,
    pub(super) waiting: usize,
    /// Of `kept`, what the open item itself counts (its text and bookkeeping).
    pub(super) item: usize,
}

impl Share {
    /// The share of an item whose staged JSON is `item_bytes` long, whose message may
    /// hold `to_build` while built, is kept at `built` bytes (0: not built), with
    /// `started` deliveries going.
    pub(super) fn of(item_bytes: usize, to_build: usize, built: usize, started: usize) -> Self {
        let message = if started > 0 {
            built.max(to_build)
        } else {
            built
        };
        let item = item_bytes.saturating_mul(2).saturating_add(OPEN_ITEM_BYTES);
        Self {
            kept: item
                .saturating_add(message)
                .saturating_add(started.saturating_mul(REQUEST_BYTES)),
            waiting: if started == 0 { built } else { 0 },
            item,
        }
    }
}

#[derive(Debug)]
pub(super) struct Budget {
    limit: usize,
    kept: usize,
    waiting: usize,
    /// What the open items themselves count, apart from messages and requests.
    items: usize,
    /// The most kept at once, for the run's log.
    peak: usize,
}

impl Budget {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            kept: 0,
            waiting: 0,
            items: 0,
            peak: 0,
        }
    }

    /// An item's share changes from `was` to `now` (an item opened has `was` default; an
    /// item closed has `now` default).
    pub(super) fn recount(&mut self, was: Share, now: Share) {
        self.kept = self.kept - was.kept + now.kept;
        self.waiting = self.waiting - was.waiting + now.waiting;
        self.items = self.items - was.item + now.item;
        self.peak = self.peak.max(self.kept);
    }

    /// Whether an item's share may grow by `growth` for a delivery to start: within the
    /// limit, or nothing else started (so that the work always goes on).
    pub(super) fn admits(&self, growth: usize, nothing_started: bool) -> bool {
        nothing_started || self.kept.saturating_add(growth) <= self.limit
    }

    /// Whether more items may be opened: the budget is not used up, and the open items
    /// themselves take at most half of it (the rest is for their messages and requests).
    pub(super) fn has_room(&self) -> bool {
        self.kept < self.limit && self.items < self.limit / 2
    }

    /// Whether the built messages of items with no delivery going are above their part
    /// of the budget (an eighth).
    pub(super) fn keeps_too_many_waiting(&self) -> bool {
        self.waiting > self.limit / 8
    }

    /// Bytes of built messages kept for items with no delivery going.
    pub(super) fn waiting(&self) -> usize {
        self.waiting
    }

    /// The most counted at once.
    pub(super) fn peak(&self) -> usize {
        self.peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_item_counts_what_building_it_may_hold_until_its_message_is_kept() {
        let base = 2 * 100 + OPEN_ITEM_BYTES;
        // Planned, nothing started: its text only.
        assert_eq!(
            Share::of(100, 5000, 0, 0),
            Share {
                kept: base,
                waiting: 0,
                item: base
            }
        );
        // Started and not built: the build's estimate, and the request.
        assert_eq!(Share::of(100, 5000, 0, 1).kept, base + 5000 + REQUEST_BYTES);
        // Built larger than estimated, still going: what it keeps, and both requests.
        assert_eq!(
            Share::of(100, 5000, 7000, 2).kept,
            base + 7000 + 2 * REQUEST_BYTES
        );
        // Built, nothing going: the message waits.
        assert_eq!(
            Share::of(100, 5000, 3000, 0),
            Share {
                kept: base + 3000,
                waiting: 3000,
                item: base
            }
        );
    }

    #[test]
    fn a_delivery_is_refused_past_the_limit_unless_nothing_is_started() {
        let mut budget = Budget::new(10_000 + REQUEST_BYTES);
        let item = Share::of(0, 6000, 0, 1);
        budget.recount(Share::default(), item);
        assert!(budget.has_room());
        assert!(!budget.admits(6000, false), "two builds do not fit");
        assert!(budget.admits(6000, true), "but one always goes");
        assert!(
            budget.admits(10_000 + REQUEST_BYTES - item.kept, false),
            "the limit itself is allowed"
        );
        // The item closes: all its bytes come back.
        budget.recount(item, Share::default());
        assert!(budget.admits(6000, false));
        assert_eq!(budget.peak(), item.kept);
    }

    #[test]
    fn built_messages_with_nothing_going_are_kept_up_to_an_eighth() {
        let mut budget = Budget::new(8000);
        budget.recount(
            Share::default(),
            Share {
                kept: 1000,
                waiting: 1000,
                item: 0,
            },
        );
        assert!(
            !budget.keeps_too_many_waiting(),
            "exactly an eighth is kept"
        );
        budget.recount(
            Share::default(),
            Share {
                kept: 1,
                waiting: 1,
                item: 0,
            },
        );
        assert!(budget.keeps_too_many_waiting());
        assert_eq!(budget.waiting(), 1001);
    }

    #[test]
    fn open_items_take_at_most_half_the_budget() {
        let mut budget = Budget::new(100_000);
        let one = Share::of(10_000, 0, 0, 0);
        budget.recount(Share::default(), one);
        assert!(budget.has_room());
        budget.recount(Share::default(), one);
        assert!(budget.has_room(), "{} of 50,000", 2 * one.item);
        budget.recount(Share::default(), one);
        assert!(!budget.has_room(), "three items' text is past half");
        // Messages and requests do not count against that half.
        budget.recount(one, Share::of(10_000, 20_000, 0, 1));
        budget.recount(Share::of(10_000, 20_000, 0, 1), one);
        assert!(!budget.has_room());
    }
}
