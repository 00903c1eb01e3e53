//! Graph's mail throttling, per application *and* mailbox: a request budget per window,
//! a limit on requests in flight, and an upload-bytes budget per window. One mailbox's
//! budget never touches another's. Above them, one ceiling per application across every
//! mailbox and tenant (Microsoft documents 130,000 requests per 10 seconds).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// The limits; the defaults are Exchange Online's for Graph mail.
#[derive(Debug, Clone)]
pub struct Limits {
    pub requests_per_window: u64,
    pub request_window: Duration,
    pub concurrent_requests: u32,
    pub upload_bytes_per_window: u64,
    pub upload_window: Duration,
    /// Requests one application may make across all mailboxes and tenants per
    /// `application_window`.
    pub application_requests_per_window: u64,
    pub application_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests_per_window: 10_000,
            request_window: Duration::minutes(10),
            concurrent_requests: 4,
            upload_bytes_per_window: 150 * 1024 * 1024,
            upload_window: Duration::minutes(5),
            application_requests_per_window: 130_000,
            application_window: Duration::seconds(10),
        }
    }
}

impl Limits {
    /// No limit at all: what the machine can take (load tests' `--throttling off`).
    pub fn unlimited() -> Self {
        Self {
            requests_per_window: u64::MAX,
            request_window: Duration::minutes(10),
            concurrent_requests: u32::MAX,
            upload_bytes_per_window: u64::MAX,
            upload_window: Duration::minutes(5),
            application_requests_per_window: u64::MAX,
            application_window: Duration::seconds(10),
        }
    }
}

/// Which limit a request ran into, and how many seconds until it may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    Concurrency,
    Requests {
        retry_after: u64,
    },
    Upload {
        retry_after: u64,
    },
    /// The application's ceiling across all mailboxes.
    Application {
        retry_after: u64,
    },
}

/// What one (application, mailbox) pair has used.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Usage {
    pub requests: u64,
    pub throttled: u64,
    pub bytes_received: u64,
    /// The delays its admitted requests were answered after (the profile's latency and
    /// seeded slow answers), summed, in microseconds: the time they held its places in
    /// flight, from which a load run works out what Graph's limits allow.
    #[serde(default)]
    pub busy_micros: u64,
}

#[derive(Debug, Default)]
struct Budget {
    request_window_start: Option<DateTime<Utc>>,
    requests_in_window: u64,
    upload_window_start: Option<DateTime<Utc>>,
    bytes_in_window: u64,
    in_flight: u32,
    usage: Usage,
}

type Key = (String, String);

/// One application's requests in its current ceiling window.
#[derive(Debug, Default)]
struct Ceiling {
    window_start: Option<DateTime<Utc>>,
    requests: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Throttle {
    limits: Arc<Limits>,
    budgets: Arc<Mutex<HashMap<Key, Budget>>>,
    ceilings: Arc<Mutex<HashMap<String, Ceiling>>>,
}

/// A request in flight; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    budgets: Arc<Mutex<HashMap<Key, Budget>>>,
    key: Key,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut budgets) = self.budgets.lock()
            && let Some(b) = budgets.get_mut(&self.key)
        {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }
}

fn seconds_left(start: DateTime<Utc>, window: Duration, now: DateTime<Utc>) -> u64 {
    let left = (start + window - now).num_milliseconds();
    u64::try_from((left + 999) / 1000).unwrap_or(1).max(1)
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: Arc::new(limits),
            budgets: Arc::default(),
            ceilings: Arc::default(),
        }
    }

    /// Admits one request of `client_id` on `mailbox` carrying `upload_bytes`, or says
    /// which limit it hit. A refused request uses no budget.
    pub fn enter(
        &self,
        client_id: &str,
        mailbox: &str,
        upload_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<Permit, Throttled> {
        let limits = &self.limits;
        let key = (client_id.to_owned(), mailbox.to_ascii_lowercase());
        let mut budgets = self.budgets.lock().expect("throttle lock poisoned");
        let mut ceilings = self.ceilings.lock().expect("throttle lock poisoned");
        let ceiling = ceilings.entry(key.0.clone()).or_default();
        if ceiling
            .window_start
            .is_none_or(|s| now >= s + limits.application_window)
        {
            ceiling.window_start = Some(now);
            ceiling.requests = 0;
        }
        let b = budgets.entry(key.clone()).or_default();
        if b.request_window_start
            .is_none_or(|s| now >= s + limits.request_window)
        {
            b.request_window_start = Some(now);
            b.requests_in_window = 0;
        }
        if b.upload_window_start
            .is_none_or(|s| now >= s + limits.upload_window)
        {
            b.upload_window_start = Some(now);
            b.bytes_in_window = 0;
        }
        let refusal = if ceiling.requests >= limits.application_requests_per_window {
            Some(Throttled::Application {
                retry_after: seconds_left(
                    ceiling.window_start.unwrap_or(now),
                    limits.application_window,
                    now,
                ),
            })
        } else if b.in_flight >= limits.concurrent_requests {
            Some(Throttled::Concurrency)
        } else if b.requests_in_window >= limits.requests_per_window {
            Some(Throttled::Requests {
                retry_after: seconds_left(
                    b.request_window_start.unwrap_or(now),
                    limits.request_window,
                    now,
                ),
            })
        } else if upload_bytes > 0
            && b.bytes_in_window + upload_bytes > limits.upload_bytes_per_window
        {
            Some(Throttled::Upload {
                retry_after: seconds_left(
                    b.upload_window_start.unwrap_or(now),
                    limits.upload_window,
                    now,
                ),
            })
        } else {
            None
        };
        b.usage.requests += 1;
        if let Some(refusal) = refusal {
            b.usage.throttled += 1;
            return Err(refusal);
        }
        ceiling.requests += 1;
        b.requests_in_window += 1;
        b.bytes_in_window += upload_bytes;
        b.usage.bytes_received += upload_bytes;
        b.in_flight += 1;
        Ok(Permit {
            budgets: self.budgets.clone(),
            key,
        })
    }

    /// Adds the delay an admitted request of `client_id` on `mailbox` was answered after.
    pub fn add_busy(&self, client_id: &str, mailbox: &str, micros: u64) {
        let key = (client_id.to_owned(), mailbox.to_ascii_lowercase());
        if let Some(b) = self
            .budgets
            .lock()
            .expect("throttle lock poisoned")
            .get_mut(&key)
        {
            b.usage.busy_micros += micros;
        }
    }

    /// Usage per (application, mailbox), sorted.
    pub fn usage(&self) -> BTreeMap<(String, String), Usage> {
        self.budgets
            .lock()
            .expect("throttle lock poisoned")
            .iter()
            .map(|(k, b)| (k.clone(), b.usage.clone()))
            .collect()
    }

    pub fn reset(&self) {
        self.budgets.lock().expect("throttle lock poisoned").clear();
        self.ceilings
            .lock()
            .expect("throttle lock poisoned")
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn concurrency_is_per_application_and_mailbox() {
        let throttle = Throttle::new(Limits::default());
        let held: Vec<_> = (0..4)
            .map(|_| throttle.enter("app", "a@x", 0, t0()).unwrap())
            .collect();
        assert_eq!(
            throttle.enter("app", "A@x", 0, t0()).unwrap_err(),
            Throttled::Concurrency
        );
        assert!(
            throttle.enter("app", "b@x", 0, t0()).is_ok(),
            "another mailbox is served"
        );
        assert!(
            throttle.enter("other-app", "a@x", 0, t0()).is_ok(),
            "another application is served"
        );
        drop(held);
        assert!(throttle.enter("app", "a@x", 0, t0()).is_ok());
    }

    #[test]
    fn request_budget_refills_when_the_window_ends() {
        let limits = Limits {
            requests_per_window: 3,
            ..Limits::default()
        };
        let throttle = Throttle::new(limits);
        for _ in 0..3 {
            drop(throttle.enter("app", "a@x", 0, t0()).unwrap());
        }
        let later = t0() + Duration::seconds(90);
        assert_eq!(
            throttle.enter("app", "a@x", 0, later).unwrap_err(),
            Throttled::Requests { retry_after: 510 }
        );
        assert!(
            throttle
                .enter("app", "a@x", 0, t0() + Duration::minutes(10))
                .is_ok()
        );
        let usage = &throttle.usage()[&("app".to_owned(), "a@x".to_owned())];
        assert_eq!((usage.requests, usage.throttled), (5, 1));
    }

    #[test]
    fn the_application_ceiling_spans_every_mailbox() {
        let limits = Limits {
            application_requests_per_window: 3,
            ..Limits::default()
        };
        let throttle = Throttle::new(limits);
        for mailbox in ["a@x", "b@x", "c@y"] {
            drop(throttle.enter("app", mailbox, 0, t0()).unwrap());
        }
        let later = t0() + Duration::milliseconds(2500);
        assert_eq!(
            throttle.enter("app", "d@z", 0, later).unwrap_err(),
            Throttled::Application { retry_after: 8 },
            "a fourth mailbox is refused: the ceiling is the application's"
        );
        assert!(
            throttle.enter("other-app", "d@z", 0, later).is_ok(),
            "another application has its own ceiling"
        );
        assert!(
            throttle
                .enter("app", "d@z", 0, t0() + Duration::seconds(10))
                .is_ok(),
            "the next window admits again"
        );
    }

    #[test]
    fn upload_budget_counts_bytes() {
        let limits = Limits {
            upload_bytes_per_window: 100,
            ..Limits::default()
        };
        let throttle = Throttle::new(limits);
        drop(throttle.enter("app", "a@x", 60, t0()).unwrap());
        assert_eq!(
            throttle.enter("app", "a@x", 41, t0()).unwrap_err(),
            Throttled::Upload { retry_after: 300 }
        );
        drop(throttle.enter("app", "a@x", 40, t0()).unwrap());
        assert!(
            throttle
                .enter("app", "a@x", 1, t0() + Duration::minutes(5))
                .is_ok()
        );
    }
}
