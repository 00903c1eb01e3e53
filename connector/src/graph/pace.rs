//! Pacing each mailbox to Graph's per-mailbox budgets. Exchange Online allows, per
//! application and mailbox, 10,000 requests per 10 minutes and 150 MB of uploads per
//! 5 minutes (and 4 requests in flight, which the client's per-mailbox gate keeps). Each
//! mailbox has its own schedule, so a throttled mailbox never holds back another. Above
//! them the application as a whole is paced to Graph's 130,000 requests per 10 seconds
//! ([`APPLICATION_REQUESTS`]).
//!
//! The schedule is the generic cell rate algorithm with a burst allowance of a whole
//! window: a mailbox that has been quiet may use its full budget at once (a day's burst
//! of files is not slowed down), and under sustained load it is held to [`SHARE`] of the
//! budgets' rate. A budget counted in fixed windows can still refuse the end of a burst
//! with `429`: the mailbox's schedule then moves past the `Retry-After` the answer gives
//! (the window's end), so the requests queued for it wait there instead of each running
//! into a `429` of its own, and the next window starts with a full burst again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The share of each budget's rate the schedule keeps to under sustained load.
pub const SHARE: f64 = 0.97;

/// Graph's ceiling for one application across every mailbox and tenant: 130,000
/// requests per 10 seconds. Paced like a mailbox's budgets (a burst of one window, then
/// [`SHARE`] of its rate), with every paced mailbox; a `429` that names the application
/// (`ApplicationThrottled`) holds every mailbox until its `Retry-After`.
pub const APPLICATION_REQUESTS: u64 = 130_000;
pub const APPLICATION_WINDOW: Duration = Duration::from_secs(10);

/// The key of the application's own lane: no mailbox is named by an empty string.
const APPLICATION: &str = "";

/// A mailbox's budgets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub requests: u64,
    pub request_window: Duration,
    pub upload_bytes: u64,
    pub upload_window: Duration,
}

impl Budget {
    /// Exchange Online's defaults for Graph mail.
    pub fn graph() -> Self {
        Self {
            requests: 10_000,
            request_window: Duration::from_secs(600),
            upload_bytes: 150 * 1024 * 1024,
            upload_window: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Default)]
struct Lane {
    /// When the request budget is used up to, and the upload budget.
    requests_until: Option<Instant>,
    bytes_until: Option<Instant>,
    /// A `429` said to send nothing before then.
    blocked_until: Option<Instant>,
}

/// Every mailbox's schedule.
#[derive(Debug)]
pub struct Pacer {
    per_request: Duration,
    /// The application's ceiling: the time one request takes of it, and its burst.
    app_per_request: Duration,
    app_burst: Duration,
    per_byte_ns: f64,
    /// How far ahead of its schedule a mailbox may be: one window of each budget.
    request_burst: Duration,
    upload_burst: Duration,
    lanes: Mutex<HashMap<String, Lane>>,
}

impl Pacer {
    pub fn new(budget: Budget) -> Self {
        let per_request = budget
            .request_window
            .div_f64(budget.requests.max(1) as f64 * SHARE);
        let per_byte_ns =
            budget.upload_window.as_nanos() as f64 / (budget.upload_bytes.max(1) as f64 * SHARE);
        Self {
            per_request,
            app_per_request: APPLICATION_WINDOW.div_f64(APPLICATION_REQUESTS as f64 * SHARE),
            app_burst: APPLICATION_WINDOW,
            per_byte_ns,
            request_burst: budget.request_window,
            upload_burst: budget.upload_window,
            lanes: Mutex::default(),
        }
    }

    /// No budgets: a mailbox waits only for the `Retry-After` of a `429` it was given.
    pub fn unpaced() -> Self {
        Self {
            per_request: Duration::ZERO,
            app_per_request: Duration::ZERO,
            app_burst: Duration::ZERO,
            per_byte_ns: 0.0,
            request_burst: Duration::ZERO,
            upload_burst: Duration::ZERO,
            lanes: Mutex::default(),
        }
    }

    /// When `mailbox` may send its next request, as far as its schedule and any
    /// `Retry-After` say (the bytes of that request aside), without reserving anything:
    /// what a caller asks before it starts work for the mailbox.
    pub fn ready_at(&self, mailbox: &str, now: Instant) -> Instant {
        let lanes = self.lanes.lock().expect("lock poisoned");
        let own = match lanes.get(&*lane_key(mailbox)) {
            Some(lane) => self.send_at(lane, Duration::ZERO, now),
            None => now,
        };
        match lanes.get(APPLICATION) {
            Some(app) => own.max(self.app_send_at(app, now)),
            None => own,
        }
    }

    /// When the application's ceiling lets one more request go (and no application-wide
    /// `Retry-After` holds it).
    fn app_send_at(&self, app: &Lane, now: Instant) -> Instant {
        let at = app.requests_until.map_or(now, |t| t.max(now));
        (at + self.app_per_request)
            .checked_sub(self.app_burst)
            .unwrap_or(now)
            .max(app.blocked_until.unwrap_or(now))
            .max(now)
    }

    /// When a request costing `cost` of upload time may go on `lane`: once both budgets
    /// allow (the time each is used up to, after this request, may be at most one window
    /// ahead) and no `Retry-After` holds it. Unpaced, every cost and burst is zero, so
    /// only the `Retry-After` counts.
    fn send_at(&self, lane: &Lane, cost: Duration, now: Instant) -> Instant {
        let requests_at = lane.requests_until.map_or(now, |t| t.max(now));
        let bytes_at = lane.bytes_until.map_or(now, |t| t.max(now));
        (requests_at + self.per_request)
            .checked_sub(self.request_burst)
            .unwrap_or(now)
            .max(
                (bytes_at + cost)
                    .checked_sub(self.upload_burst)
                    .unwrap_or(now),
            )
            .max(lane.blocked_until.unwrap_or(now))
            .max(now)
    }

    /// Reserves one request carrying `bytes` on `mailbox` at `now`: how long to wait
    /// before sending it.
    pub fn reserve(&self, mailbox: &str, bytes: u64, now: Instant) -> Duration {
        let mut lanes = self.lanes.lock().expect("lock poisoned");
        let app = lane_of(&mut lanes, APPLICATION);
        let app_at = self.app_send_at(app, now);
        let app_until = app.requests_until.map_or(now, |t| t.max(now));
        app.requests_until = Some(app_until + self.app_per_request);
        let lane = lane_of(&mut lanes, mailbox);
        let cost = Duration::from_nanos((bytes as f64 * self.per_byte_ns) as u64);
        let send_at = self.send_at(lane, cost, now).max(app_at);
        let requests_at = lane.requests_until.map_or(now, |t| t.max(now));
        let bytes_at = lane.bytes_until.map_or(now, |t| t.max(now));
        lane.requests_until = Some(requests_at + self.per_request);
        lane.bytes_until = Some(bytes_at + cost);
        send_at - now
    }

    /// Waits for the mailbox's schedule, then the request may go.
    pub async fn wait(&self, mailbox: &str, bytes: u64) {
        let wait = self.reserve(mailbox, bytes, Instant::now());
        if !wait.is_zero() {
            tracing::debug!(mailbox, ?wait, "pacing to the mailbox's budget");
            tokio::time::sleep(wait).await;
        }
    }

    /// Graph refused the application as a whole (`429 ApplicationThrottled`): nothing
    /// more goes to any mailbox before `retry_after`.
    pub fn application_throttled(&self, retry_after: Duration, now: Instant) {
        self.throttled(APPLICATION, retry_after, now);
    }

    /// The mailbox answered `429` anyway: nothing more goes to it before `retry_after`.
    pub fn throttled(&self, mailbox: &str, retry_after: Duration, now: Instant) {
        let mut lanes = self.lanes.lock().expect("lock poisoned");
        let lane = lane_of(&mut lanes, mailbox);
        let until = now + retry_after;
        lane.blocked_until = Some(lane.blocked_until.map_or(until, |t| t.max(until)));
    }
}

/// A mailbox's key: lower case, copied only when it is not already (asked per request).
pub(super) fn lane_key(mailbox: &str) -> std::borrow::Cow<'_, str> {
    if mailbox.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(mailbox.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(mailbox)
    }
}

fn lane_of<'a>(lanes: &'a mut HashMap<String, Lane>, mailbox: &str) -> &'a mut Lane {
    let key = lane_key(mailbox);
    if !lanes.contains_key(&*key) {
        lanes.insert(key.clone().into_owned(), Lane::default());
    }
    lanes.get_mut(&*key).expect("just made")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mailbox under sustained load, against a budget counted in fixed windows from
    /// the first request (as the fake mailbox counts it): requests go as the pacer says;
    /// one over its window's budget is answered 429 with the window's end as
    /// Retry-After. Answers (sent, refused, windows elapsed).
    fn sustained(budget: Budget, n: usize, bytes: u64) -> (u64, u64, f64) {
        let pacer = Pacer::new(budget);
        let start = Instant::now();
        let mut now = start;
        let (mut sent, mut refused) = (0u64, 0u64);
        let (mut req_window, mut req_used) = (start, 0u64);
        let (mut up_window, mut up_used) = (start, 0u64);
        while (sent as usize) < n {
            now += pacer.reserve("a@x", bytes, now);
            if now >= req_window + budget.request_window {
                (req_window, req_used) = (now, 0);
            }
            if now >= up_window + budget.upload_window {
                (up_window, up_used) = (now, 0);
            }
            if req_used < budget.requests && up_used + bytes <= budget.upload_bytes {
                req_used += 1;
                up_used += bytes;
                sent += 1;
            } else {
                refused += 1;
                // Retry-After: the end of the window whose budget is used up.
                let mut ends = now;
                if req_used >= budget.requests {
                    ends = ends.max(req_window + budget.request_window);
                }
                if up_used + bytes > budget.upload_bytes {
                    ends = ends.max(up_window + budget.upload_window);
                }
                pacer.throttled("a@x", ends - now, now);
            }
        }
        let windows = (now - start).as_secs_f64();
        (sent, refused, windows)
    }

    /// The targets: at least 95 % of the allowed rate, at most 1 % refused.
    fn reaches_the_budget(sent: u64, refused: u64, allowed: f64) {
        assert!(
            sent as f64 >= allowed * 0.95,
            "{sent} sent of {allowed:.0} allowed"
        );
        assert!(
            refused as f64 <= sent as f64 * 0.01,
            "{refused} refused of {sent}"
        );
    }

    #[test]
    fn sustained_small_requests_reach_the_request_budget_with_few_429s() {
        let budget = Budget::graph();
        let (sent, refused, seconds) = sustained(budget, 60_000, 100);
        let allowed = budget.requests as f64 * seconds / budget.request_window.as_secs_f64();
        reaches_the_budget(sent, refused, allowed);
    }

    #[test]
    fn sustained_big_uploads_reach_the_upload_budget_with_few_429s() {
        let budget = Budget::graph();
        let bytes = 150_000;
        let (sent, refused, seconds) = sustained(budget, 30_000, bytes);
        let allowed = budget.upload_bytes as f64 * seconds
            / budget.upload_window.as_secs_f64()
            / bytes as f64;
        reaches_the_budget(sent, refused, allowed);
    }

    #[test]
    fn a_quiet_mailbox_takes_a_burst_at_once_and_mailboxes_are_paced_apart() {
        let pacer = Pacer::new(Budget::graph());
        let now = Instant::now();
        // Ten 10 MB files at once: within one window's upload budget, no wait.
        for _ in 0..10 {
            assert_eq!(pacer.reserve("a@x", 10 * 1024 * 1024, now), Duration::ZERO);
        }
        // Past the budget, the mailbox waits; another does not.
        assert!(pacer.reserve("a@x", 100 * 1024 * 1024, now) > Duration::ZERO);
        assert_eq!(
            pacer.reserve("b@x", 0, now),
            Duration::ZERO,
            "another mailbox"
        );
        pacer.throttled("b@x", Duration::from_secs(30), now);
        assert!(pacer.reserve("b@x", 0, now) >= Duration::from_secs(30));
        assert!(pacer.reserve("c@x", 0, now).is_zero());
    }

    #[test]
    fn readiness_is_told_without_reserving_and_a_429_holds_an_unpaced_mailbox_too() {
        let now = Instant::now();
        let pacer = Pacer::new(Budget {
            requests: 10,
            request_window: Duration::from_secs(10),
            upload_bytes: 1 << 30,
            upload_window: Duration::from_secs(10),
        });
        assert_eq!(pacer.ready_at("a@x", now), now, "never seen");
        // 97 % of ten in a window's burst: the ninth may go at once, the tenth not.
        for _ in 0..8 {
            pacer.reserve("a@x", 0, now);
        }
        assert_eq!(pacer.ready_at("a@x", now), now, "eight of ten used");
        assert_eq!(pacer.ready_at("a@x", now), now, "asking reserves nothing");
        pacer.reserve("a@x", 0, now);
        assert!(
            pacer.ready_at("a@x", now) > now,
            "the window's budget is used"
        );
        assert_eq!(pacer.ready_at("b@x", now), now, "per mailbox");

        let unpaced = Pacer::unpaced();
        for _ in 0..1000 {
            assert!(unpaced.reserve("a@x", 1 << 30, now).is_zero());
        }
        assert_eq!(unpaced.ready_at("a@x", now), now);
        unpaced.throttled("a@x", Duration::from_secs(30), now);
        assert_eq!(unpaced.ready_at("a@x", now), now + Duration::from_secs(30));
        assert_eq!(unpaced.reserve("a@x", 0, now), Duration::from_secs(30));
        assert_eq!(unpaced.ready_at("b@x", now), now);
    }

    #[test]
    fn the_applications_ceiling_spans_every_mailbox_and_its_429_holds_them_all() {
        let pacer = Pacer::new(Budget::graph());
        let now = Instant::now();
        // A burst of one window of the application's ceiling, spread over 2,000 mailboxes
        // (65 each, far within each mailbox's own budget), goes at once...
        let burst = (APPLICATION_REQUESTS as f64 * SHARE) as u64 - 10;
        for n in 0..burst {
            let wait = pacer.reserve(&format!("m{}@x", n % 2000), 100, now);
            assert_eq!(wait, Duration::ZERO, "request {n}");
        }
        // ...then a mailbox that sent nothing yet waits for the application's ceiling.
        let mut waited = Duration::ZERO;
        for _ in 0..100 {
            waited = pacer.reserve("quiet@x", 100, now);
        }
        let per_request = APPLICATION_WINDOW.div_f64(APPLICATION_REQUESTS as f64 * SHARE);
        assert!(waited >= per_request * 50, "{waited:?}");
        assert!(pacer.ready_at("other@x", now) > now);
        // An ApplicationThrottled 429 holds every mailbox, paced or not.
        let unpaced = Pacer::unpaced();
        unpaced.application_throttled(Duration::from_secs(7), now);
        assert_eq!(unpaced.ready_at("any@x", now), now + Duration::from_secs(7));
        assert_eq!(unpaced.reserve("any@x", 0, now), Duration::from_secs(7));
    }
}
