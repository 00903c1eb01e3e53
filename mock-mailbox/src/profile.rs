//! How strict and how slow the fake is: `lenient` (what the fake always was: bodies up
//! to 48 MiB, answers at once) or `graph` (as Microsoft Graph is documented and seen: a
//! 4 MiB request cap, and each request answered after a seeded, long-tailed delay that
//! counts against its mailbox's four requests in flight). `docs/mailbox-api.md` has the
//! table of limits, where Microsoft documents each, and which are assumptions.

use std::time::Duration;

use serde::Deserialize;

use mock_common::seeded::IdentityDraws;

/// The largest Graph request body under `lenient`: the base64 of a 35 MB message
/// (Exchange Online's default largest message) and a little more.
pub const LENIENT_MAX_REQUEST_BYTES: usize = 48 * 1024 * 1024;
/// The largest Graph request body under `graph`: the 4 MB Microsoft documents for MIME
/// payloads and upload chunks (read as 4 MiB). The `importMime` page itself states no
/// limit: an assumption, and a setting (`--max-request-bytes`).
pub const GRAPH_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The profile's name, as the command line and scenario files give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileName {
    #[default]
    Lenient,
    Graph,
}

/// What the fake enforces and how long it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: ProfileName,
    /// Graph request bodies above this are answered 413 `RequestEntityTooLarge`, read no
    /// further, and nothing is stored.
    pub max_request_bytes: usize,
    /// Seeded delays per kind of request; `None` answers at once.
    pub latency: Option<Latency>,
}

impl Default for Profile {
    fn default() -> Self {
        Self::lenient()
    }
}

impl Profile {
    pub fn lenient() -> Self {
        Self {
            name: ProfileName::Lenient,
            max_request_bytes: LENIENT_MAX_REQUEST_BYTES,
            latency: None,
        }
    }

    /// Graph's rules, and its latency when `latency` is given (tests that need no time
    /// keep the rules and leave the delays out).
    pub fn graph(latency: Option<Latency>) -> Self {
        Self {
            name: ProfileName::Graph,
            max_request_bytes: GRAPH_MAX_REQUEST_BYTES,
            latency,
        }
    }

    pub fn named(name: ProfileName) -> Self {
        match name {
            ProfileName::Lenient => Self::lenient(),
            ProfileName::Graph => Self::graph(Some(Latency::default())),
        }
    }
}

/// A log-normal delay: `median_ms` is its median, `sigma` the spread of its logarithm
/// (0.5 puts the 99th percentile at about 3.2 times the median).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogNormal {
    pub median_ms: f64,
    pub sigma: f64,
}

/// What a request is, for its delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A GET: a user, a folder, a list or a search, a message by id or filter.
    Read,
    /// A folder created (a POST of JSON).
    Create,
    /// `importMime`, or any request whose cost grows with its body (an upload).
    Import,
    /// Anything else (a DELETE, a PATCH).
    Other,
}

impl RequestKind {
    pub fn of(method: &axum::http::Method, path: &str) -> Self {
        if method == axum::http::Method::GET {
            Self::Read
        } else if path.ends_with("/importMime") || method == axum::http::Method::PUT {
            Self::Import
        } else if method == axum::http::Method::POST {
            Self::Create
        } else {
            Self::Other
        }
    }
}

/// Seeded delays per kind of request, drawn by what a request is and its attempt number
/// (never by arrival order), log-normal: most answers near the median, a long tail.
///
/// The defaults are read from what Microsoft and others publish rather than measured
/// against a tenant (`scenarios parity` is how to correct them): reads answer in tens of
/// milliseconds, writes in a few hundred, an import in about a quarter of a second plus
/// the time to take its body in, with a tail to seconds.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Latency {
    pub seed: u64,
    pub read: LogNormal,
    pub create: LogNormal,
    pub import: LogNormal,
    /// Added to an import's delay for each MiB of its body.
    pub import_ms_per_mib: f64,
    pub other: LogNormal,
    /// No delay is longer (the tail is cut here).
    pub max_ms: u64,
    /// The `Retry-After` of a 429 for too many requests in flight, in milliseconds before
    /// it is rounded up to whole seconds (at least one).
    pub concurrency_retry_after: LogNormal,
    /// No `Retry-After` drawn is longer, in seconds.
    pub retry_after_max_s: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            seed: 0,
            read: LogNormal {
                median_ms: 60.0,
                sigma: 0.5,
            },
            create: LogNormal {
                median_ms: 150.0,
                sigma: 0.5,
            },
            import: LogNormal {
                median_ms: 220.0,
                sigma: 0.5,
            },
            import_ms_per_mib: 60.0,
            other: LogNormal {
                median_ms: 100.0,
                sigma: 0.5,
            },
            max_ms: 10_000,
            concurrency_retry_after: LogNormal {
                median_ms: 1_500.0,
                sigma: 0.8,
            },
            retry_after_max_s: 300,
        }
    }
}

impl Latency {
    /// The delay of the next attempt of the request `identity`, of `kind`, with a body of
    /// `body_bytes`.
    pub fn delay(
        &self,
        draws: &IdentityDraws,
        identity: &str,
        kind: RequestKind,
        body_bytes: usize,
    ) -> Duration {
        let shape = match kind {
            RequestKind::Read => self.read,
            RequestKind::Create => self.create,
            RequestKind::Import => self.import,
            RequestKind::Other => self.other,
        };
        let mut ms = self.draw(draws, "latency", identity, shape);
        if kind == RequestKind::Import {
            ms += self.import_ms_per_mib * body_bytes as f64 / (1024.0 * 1024.0);
        }
        Duration::from_secs_f64(ms.clamp(0.0, self.max_ms as f64) / 1000.0)
    }

    /// The `Retry-After` (whole seconds, at least one) of the next concurrency refusal
    /// of the request `identity`.
    pub fn retry_after(&self, draws: &IdentityDraws, identity: &str) -> u64 {
        let ms = self.draw(draws, "retry-after", identity, self.concurrency_retry_after);
        ((ms / 1000.0).ceil() as u64).clamp(1, self.retry_after_max_s.max(1))
    }

    /// One log-normal draw of `shape` in milliseconds, for the next attempt of what
    /// `purpose` and `identity` name: two uniform draws, then Box-Muller for one normal.
    fn draw(&self, draws: &IdentityDraws, purpose: &str, identity: &str, shape: LogNormal) -> f64 {
        let u1 = draws.draw(self.seed, &format!("{purpose} {identity}"));
        let u2 = draws.draw(self.seed, &format!("{purpose}-angle {identity}"));
        let normal = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        shape.median_ms * (shape.sigma * normal).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_long_tailed_around_their_median_and_replay_by_request() {
        let latency = Latency::default();
        let draws = IdentityDraws::default();
        let mut ms: Vec<f64> = (0..4000)
            .map(|n| {
                latency
                    .delay(&draws, &format!("r{n}"), RequestKind::Import, 0)
                    .as_secs_f64()
                    * 1000.0
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let (p50, p99) = (ms[2000], ms[3960]);
        assert!((190.0..250.0).contains(&p50), "median {p50}");
        assert!(p99 > 2.5 * p50, "a long tail: p99 {p99}, median {p50}");
        // Bigger bodies take longer; the same request's first attempt replays exactly.
        let fresh = IdentityDraws::default();
        let small = latency.delay(&fresh, "x", RequestKind::Import, 0);
        let again = IdentityDraws::default();
        assert_eq!(latency.delay(&again, "x", RequestKind::Import, 0), small);
        let other = IdentityDraws::default();
        let big = latency.delay(&other, "x", RequestKind::Import, 8 * 1024 * 1024);
        assert!(
            ((big - small).as_secs_f64() - 0.48).abs() < 1e-6,
            "{big:?} {small:?}"
        );
        // A retry is a new draw.
        assert_ne!(latency.delay(&fresh, "x", RequestKind::Import, 0), small);
    }

    #[test]
    fn retry_after_is_spread_whole_seconds_and_replays() {
        let latency = Latency::default();
        let draws = IdentityDraws::default();
        let seconds: Vec<u64> = (0..2000)
            .map(|n| latency.retry_after(&draws, &format!("r{n}")))
            .collect();
        let distinct: std::collections::BTreeSet<_> = seconds.iter().collect();
        assert!(distinct.len() >= 5, "spread: {distinct:?}");
        assert!(seconds.iter().all(|&s| (1..=300).contains(&s)));
        let median = {
            let mut sorted = seconds.clone();
            sorted.sort_unstable();
            sorted[1000]
        };
        assert_eq!(median, 2, "a median of 1.5 s rounds up to 2");
        let replay = IdentityDraws::default();
        let again: Vec<u64> = (0..2000)
            .map(|n| latency.retry_after(&replay, &format!("r{n}")))
            .collect();
        assert_eq!(seconds, again, "the same requests draw the same values");
    }
}
