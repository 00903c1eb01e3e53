//! When and how long to wait before trying a request again: `Retry-After` when the
//! server gives it (429, 503), else exponential backoff with equal jitter (a random wait
//! in the upper half of the step), up to a number of attempts. Every retry loop of the
//! two clients is [`RetryPolicy::run`] over a closure that says what one attempt came to
//! ([`Attempt`]).

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
    /// Retry warnings, and the run's other repeated lines, said once a second per kind.
    pub repeats: crate::quiet::Repeats,
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
            repeats: crate::quiet::Repeats::default(),
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

/// What one attempt of a request came to.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// It worked.
    Done(T),
    /// It was not done and is safe to send again: after `retry_after` if the server gave
    /// one (`throttled` for a 429), else after the backoff.
    Again {
        error: E,
        retry_after: Option<Duration>,
        throttled: bool,
    },
    /// It may have taken effect (a 5xx, a broken connection): sent again only when the
    /// request is safe to repeat, else handed to the caller to find out.
    Uncertain {
        error: E,
        retry_after: Option<Duration>,
    },
    /// It would fail the same way every time.
    Fatal(E),
}

impl<T, E> Attempt<T, E> {
    /// Not done, safe to send again, after the backoff.
    pub fn again(error: E) -> Self {
        Self::Again {
            error,
            retry_after: None,
            throttled: false,
        }
    }
}

impl RetryPolicy {
    /// Runs `attempt` (given its number, from 1) until it is done, fails for good, runs
    /// out of attempts (the last error), or is uncertain and `repeatable` is false (the
    /// caller must find out whether it took effect). Each retry is counted, a 429's wait
    /// too, and logged with `what`.
    ///
    /// `attempt` is a plain closure returning a future (not an async closure) so that the
    /// futures of the callers stay `Send` for the runtime's worker threads.
    pub async fn run<T, E, F, Fut>(
        &self,
        what: &str,
        repeatable: bool,
        mut attempt: F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Attempt<T, E>>,
    {
        let mut n = 0;
        loop {
            n += 1;
            let (error, retry_after, throttled) = match attempt(n).await {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Uncertain { error, .. } if !repeatable => return Err(error),
                Attempt::Uncertain { error, retry_after } => (error, retry_after, false),
                Attempt::Again {
                    error,
                    retry_after,
                    throttled,
                } => (error, retry_after, throttled),
            };
            if n >= self.max_attempts {
                return Err(error);
            }
            let wait = self.delay(n, retry_after);
            if throttled {
                tracing::debug!(%error, attempt = n, ?wait, "{what}: asked to wait; retrying");
                self.count_throttled(wait);
            } else if let Some(unsaid) = self.repeats.admit(what, std::time::Instant::now()) {
                tracing::warn!(%error, attempt = n, ?wait, unsaid, "{what}: retrying (unsaid: like lines left out in the last second)");
            }
            self.count_retry();
            tokio::time::sleep(wait).await;
        }
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

    #[tokio::test]
    async fn run_retries_what_is_safe_and_stops_where_it_must() {
        let p = RetryPolicy::new(4, Duration::ZERO, Duration::ZERO);
        // Again until the third attempt: done, two retries counted.
        let got = p
            .run("test", false, |n| async move {
                if n < 3 {
                    Attempt::again(format!("busy {n}"))
                } else {
                    Attempt::Done(n)
                }
            })
            .await;
        assert_eq!(got, Ok(3));
        assert_eq!(p.retries(), 2);
        // Out of attempts: the last error.
        let got: Result<(), String> = p
            .run("test", true, |n| async move {
                Attempt::again(format!("busy {n}"))
            })
            .await;
        assert_eq!(got, Err("busy 4".into()));
        // Uncertain: handed back at once unless the request is safe to repeat.
        for (repeatable, expected) in [(false, 1), (true, 4)] {
            let mut tries = 0;
            let got: Result<(), String> = p
                .run("test", repeatable, |_| {
                    tries += 1;
                    async {
                        Attempt::Uncertain {
                            error: "maybe".into(),
                            retry_after: None,
                        }
                    }
                })
                .await;
            assert_eq!((got, tries), (Err("maybe".into()), expected));
        }
        // Fatal: at once, no retry counted. A 429's wait is counted.
        let before = p.retries();
        let got: Result<(), String> = p
            .run("test", true, |_| async { Attempt::Fatal("no".into()) })
            .await;
        assert_eq!((got, p.retries()), (Err("no".into()), before));
        let _ = p
            .run("test", true, |n| async move {
                if n == 1 {
                    Attempt::Again {
                        error: "429".to_owned(),
                        retry_after: Some(Duration::from_millis(3)),
                        throttled: true,
                    }
                } else {
                    Attempt::Done(())
                }
            })
            .await;
        assert_eq!(p.throttled(), (1, 3));
    }

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
