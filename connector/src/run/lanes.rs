//! Per-mailbox lanes: which delivery goes next. Pure bookkeeping, no I/O.
//!
//! Each mailbox has a lane: a queue of its deliveries (each a reference to a staged item
//! by its sequence number, never message bytes), at most [`PER_LANE`] of them started at
//! once. A lane whose mailbox may not send yet (its pacing, or a `429`'s `Retry-After`)
//! sleeps until then and is not looked at; a full or sleeping lane never holds back
//! another, and there is no barrier between items. Of the lanes that may start one, the
//! one with the most deliveries waiting goes first, and among equals the one whose next
//! delivery is of the oldest item: the busiest mailboxes bound the day (Graph lets each
//! have 4 requests in flight, no more), so they are kept full from the start rather than
//! left to drain alone at the end; within a lane items go in the order they were
//! staged.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Deliveries started at once per mailbox: Graph's 4 requests in flight per mailbox.
pub(super) const PER_LANE: usize = crate::graph::client::PER_MAILBOX;

#[derive(Debug)]
struct Lane {
    /// The mailbox, shared by the turn order and the sleepers (no copy per delivery).
    name: Arc<str>,
    queued: VecDeque<i64>,
    started: usize,
    /// Where the lane is: in the turn order, asleep until a time, or neither (no work
    /// it may start).
    at: Place,
    /// Its entry in the turn order that counts (older ones, listed before its queue
    /// grew, are passed over), and the queue's length it was listed with.
    listing: u64,
    listed_len: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Place {
    #[default]
    Idle,
    InTurn,
    Asleep,
}

/// A lane's entry in the turn order: its queue's length (longest first), the item of its
/// next delivery (oldest first), the listing's number, the mailbox.
type Listed = (Reverse<usize>, i64, u64, Arc<str>);

#[derive(Debug, Default)]
pub(super) struct Lanes {
    lanes: HashMap<Arc<str>, Lane>,
    /// Lanes that may start a delivery: the longest queue first, then the oldest item of
    /// their next delivery. A lane listed again as its queue grows leaves its older
    /// entry behind, passed over when it comes up (see `Lane::listing`).
    turn: BinaryHeap<Reverse<Listed>>,
    /// The number of the next listing, unique across lanes (a lane forgotten and made
    /// again never matches an entry of its former self).
    listings: u64,
    /// Lanes asleep, by when they wake.
    asleep: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    started: usize,
    queued: usize,
}

impl Lanes {
    /// Queues a delivery of staged item `seq` to `mailbox`.
    pub(super) fn push(&mut self, mailbox: &str, seq: i64) {
        if !self.lanes.contains_key(mailbox) {
            let name: Arc<str> = Arc::from(mailbox);
            let lane = Lane {
                name: name.clone(),
                queued: VecDeque::new(),
                started: 0,
                at: Place::Idle,
                listing: 0,
                listed_len: 0,
            };
            self.lanes.insert(name, lane);
        }
        let lane = self.lanes.get_mut(mailbox).expect("just made");
        lane.queued.push_back(seq);
        self.queued += 1;
        if lane.at == Place::InTurn && lane.queued.len() >= 2 * lane.listed_len {
            // Twice as long as when listed: listed again by its new length (only on
            // doubling, so that a lane leaves few entries behind however long it grows).
            lane.at = Place::Idle;
        }
        self.relist(mailbox);
    }

    /// The next delivery to start, `(mailbox, seq)`: the longest queue's first, skipping
    /// (and putting to sleep) each lane whose mailbox `ready_at` says may not send at
    /// `now`. `None` when no lane may start one now, or when `admit` refuses the item of
    /// the delivery that would go (the memory budget is full): that lane keeps its turn,
    /// and nothing starts before it.
    pub(super) fn next(
        &mut self,
        now: Instant,
        ready_at: impl Fn(&str) -> Instant,
        mut admit: impl FnMut(i64) -> bool,
    ) -> Option<(Arc<str>, i64)> {
        self.wake(now);
        while let Some(entry) = self.turn.pop() {
            let Reverse((_, _, listing, mailbox)) = &entry;
            let Some(lane) = self.lanes.get_mut(mailbox) else {
                continue;
            };
            if lane.at != Place::InTurn || lane.listing != *listing {
                continue;
            }
            let at = ready_at(mailbox);
            if at > now {
                lane.at = Place::Asleep;
                let Reverse((_, _, _, mailbox)) = entry;
                self.asleep.push(Reverse((at, mailbox)));
                continue;
            }
            let head = *lane.queued.front().expect("a listed lane has work");
            if !admit(head) {
                self.turn.push(entry);
                return None;
            }
            let Reverse((_, _, _, mailbox)) = entry;
            let lane = self.lanes.get_mut(&mailbox).expect("looked up above");
            let seq = lane.queued.pop_front().expect("a listed lane has work");
            lane.started += 1;
            lane.at = Place::Idle;
            self.started += 1;
            self.queued -= 1;
            self.relist(&mailbox);
            return Some((mailbox, seq));
        }
        None
    }

    /// A delivery to `mailbox` started by [`next`](Self::next) is over.
    pub(super) fn done(&mut self, mailbox: &str) {
        let lane = self.lanes.get_mut(mailbox).expect("a started lane exists");
        lane.started -= 1;
        self.started -= 1;
        self.relist(mailbox);
        self.forget_if_idle(mailbox);
    }

    /// A lane with nothing queued, started or scheduled goes (it comes back with its
    /// next delivery).
    fn forget_if_idle(&mut self, mailbox: &str) {
        if self.lanes.get(mailbox).is_some_and(|lane| {
            lane.started == 0 && lane.queued.is_empty() && lane.at == Place::Idle
        }) {
            self.lanes.remove(mailbox);
        }
    }

    /// When the first sleeping lane wakes, if any sleeps.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.asleep.peek().map(|Reverse((at, _))| *at)
    }

    /// Deliveries started and not yet over.
    pub(super) fn started(&self) -> usize {
        self.started
    }

    /// Deliveries waiting in a lane.
    pub(super) fn queued(&self) -> usize {
        self.queued
    }

    fn wake(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.asleep.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, mailbox)) = self.asleep.pop().expect("peeked");
            if let Some(lane) = self.lanes.get_mut(&mailbox) {
                lane.at = Place::Idle;
                self.relist(&mailbox);
                self.forget_if_idle(&mailbox);
            }
        }
    }

    /// Puts a lane in the turn order if it may start a delivery and is not there (nor
    /// asleep) already.
    fn relist(&mut self, mailbox: &str) {
        let lane = self.lanes.get_mut(mailbox).expect("the lane exists");
        if lane.at == Place::Idle && !lane.queued.is_empty() && lane.started < PER_LANE {
            lane.at = Place::InTurn;
            let head = *lane.queued.front().expect("not empty");
            self.listings += 1;
            lane.listing = self.listings;
            lane.listed_len = lane.queued.len();
            self.turn.push(Reverse((
                Reverse(lane.queued.len()),
                head,
                self.listings,
                lane.name.clone(),
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn drain(lanes: &mut Lanes, now: Instant, ready: impl Fn(&str) -> Instant) -> Vec<String> {
        let mut started = Vec::new();
        while let Some((mailbox, _)) = lanes.next(now, &ready, |_| true) {
            started.push(mailbox.to_string());
        }
        started
    }

    #[test]
    fn a_full_lane_never_holds_back_another_and_the_oldest_item_goes_first() {
        let now = Instant::now();
        let mut lanes = Lanes::default();
        for seq in 0..10 {
            lanes.push("busy", seq);
        }
        lanes.push("quiet", 100);
        lanes.push("quiet", 101);
        let started = drain(&mut lanes, now, |_| now);
        assert_eq!(
            started,
            ["busy", "busy", "busy", "busy", "quiet", "quiet"],
            "the oldest first, four at most for one mailbox"
        );
        assert_eq!((lanes.started(), lanes.queued()), (6, 6));
        // One of the busy mailbox's four ends: one more of its deliveries may start.
        lanes.done("busy");
        assert_eq!(drain(&mut lanes, now, |_| now), ["busy"]);
        // A late item for the quiet mailbox starts at once, whatever waits for the busy one.
        lanes.push("quiet", 102);
        assert_eq!(
            lanes.next(now, |_| now, |_| true),
            Some(("quiet".into(), 102))
        );
    }

    #[test]
    fn the_longest_queue_goes_first_so_the_busiest_mailbox_is_never_left_to_the_end() {
        let now = Instant::now();
        let mut lanes = Lanes::default();
        // Older items for small mailboxes, then many for one mailbox.
        lanes.push("small-1", 0);
        lanes.push("small-2", 1);
        for seq in 2..20 {
            lanes.push("busiest", seq);
        }
        let first: Vec<String> = std::iter::from_fn(|| lanes.next(now, |_| now, |_| true))
            .take(4)
            .map(|(m, _)| m.to_string())
            .collect();
        assert_eq!(first, ["busiest"; 4], "its four places first");
        assert_eq!(
            drain(&mut lanes, now, |_| now),
            ["small-1", "small-2"],
            "then the others, oldest first"
        );
    }

    #[test]
    fn a_mailbox_that_may_not_send_sleeps_and_the_others_go_on() {
        let now = Instant::now();
        let later = now + Duration::from_secs(300);
        let mut lanes = Lanes::default();
        for seq in 0..3 {
            lanes.push("throttled", seq);
            lanes.push("fine", seq);
        }
        let ready = |m: &str| if m == "throttled" { later } else { now };
        assert_eq!(drain(&mut lanes, now, ready), ["fine", "fine", "fine"]);
        assert_eq!(lanes.next_wake(), Some(later));
        // Nothing for it before its time, even when asked again.
        lanes.push("fine", 3);
        assert_eq!(drain(&mut lanes, now, ready), ["fine"]);
        // Once the time comes, it goes, in order.
        let order: Vec<i64> = std::iter::from_fn(|| lanes.next(later, |_| later, |_| true))
            .map(|(_, seq)| seq)
            .collect();
        assert_eq!(order, [0, 1, 2]);
        assert_eq!(lanes.next_wake(), None);
    }

    #[test]
    fn a_lane_goes_once_nothing_is_queued_or_started_and_comes_back_with_work() {
        let now = Instant::now();
        let mut lanes = Lanes::default();
        lanes.push("a", 1);
        lanes.push("a", 2);
        assert_eq!(lanes.next(now, |_| now, |_| true), Some(("a".into(), 1)));
        assert_eq!(lanes.next(now, |_| now, |_| true), Some(("a".into(), 2)));
        lanes.done("a");
        assert_eq!(lanes.lanes.len(), 1, "one still going");
        lanes.done("a");
        assert_eq!((lanes.started(), lanes.queued()), (0, 0));
        assert!(lanes.lanes.is_empty(), "{:?}", lanes.lanes);
        lanes.push("a", 3);
        assert_eq!(lanes.next(now, |_| now, |_| true), Some(("a".into(), 3)));
    }

    #[test]
    fn a_refused_delivery_keeps_its_lanes_turn_and_goes_once_admitted() {
        let now = Instant::now();
        let mut lanes = Lanes::default();
        for seq in 0..3 {
            lanes.push("busiest", seq);
        }
        lanes.push("small", 10);
        // The budget refuses item 0: nothing starts, the small lane does not jump ahead.
        assert_eq!(lanes.next(now, |_| now, |seq| seq != 0), None);
        assert_eq!((lanes.started(), lanes.queued()), (0, 4));
        // Admitted later: the busiest lane's turn was kept, item 0 first.
        assert_eq!(
            lanes.next(now, |_| now, |_| true),
            Some(("busiest".into(), 0))
        );
        assert_eq!(
            drain(&mut lanes, now, |_| now),
            ["busiest", "busiest", "small"]
        );
    }
}
