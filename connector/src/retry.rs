//! When and how long to wait before trying a request again: `Retry-After` when the
//! server gives it (429, 503), else exponential backoff with equal jitter (a random wait in the upper half of the step), up to a number
//! of attempts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The retry settings and a count of the retries made, for the run report.
#[derive(Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` obeyed as given (longer ones are cut to this).
    pub retry_after_cap: Duration,
    retries: AtomicU64,
    throttled: AtomicU64,
    waited_ms: AtomicU64,
}

impl RetryPolicy {
    pub fn new(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            base_delay,
            max_delay,
            retry_after_cap: Duration::from_secs(600),
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            waited_ms: AtomicU64::new(0),
        }
    }

    /// Caps `Retry-After` too: for tests against fakes, which ask for whole seconds.
    pub fn with_retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// How long to wait before attempt `attempt + 1` (attempts count from 1), given the
    /// server's `Retry-After` if any.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.retry_after_cap);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        // Equal jitter: anywhere in [cap/2, cap], so that many clients do not retry together.
        let mut raw = [0u8; 8];
        let fraction = match getrandom::fill(&mut raw) {
            Ok(()) => (u64::from_le_bytes(raw) >> 11) as f64 / (1u64 << 53) as f64,
            Err(_) => 0.5,
        };
        cap.mul_f64(0.5 + fraction / 2.0)
    }

    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Counts a `429` and the wait it asked for.
    pub fn count_throttled(&self, wait: Duration) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        self.waited_ms
            .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
    }

    /// `429`s seen and milliseconds waited on them.
    pub fn throttled(&self) -> (u64, u64) {
        (
            self.throttled.load(Ordering::Relaxed),
            self.waited_ms.load(Ordering::Relaxed),
        )
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(6, Duration::from_millis(500), Duration::from_secs(60))
    }
}

/// Reads `Retry-After`: seconds, possibly fractional (Graph sends both). HTTP dates are
/// not used by the services we call and are ignored.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// Whether a status is worth another attempt.
pub fn transient(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_wins_and_backoff_grows_within_bounds() {
        let p = RetryPolicy::new(5, Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(1500))),
            Duration::from_millis(1500)
        );
        for attempt in 1..8 {
            let cap = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(2));
            let d = p.delay(attempt, None);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn reads_integer_and_fractional_retry_after() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", "0.25".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
