//! Phase 1, the ceiling: a raw client with no connector logic posts `importMime` to the
//! fake mailbox, messages of the day's size mix, as many in flight as the connector may
//! have and at most 4 per mailbox (Graph's rule). Each message goes to as many mailboxes
//! as the day's items do on average (its fan-out), so the fake stores as many distinct
//! messages per request as it does for the connector. Its rate is what this machine gets
//! out of this fake, measured in the same run as the connector.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::LoadParams;
use super::day::attachment_of;
use super::usage::{Bucket, Sampler};
use crate::harness::{CLIENT_ID, CLIENT_SECRET, Fakes};
use crate::model::Scenario;

/// Graph's limit of requests in flight per mailbox.
pub const PER_MAILBOX: usize = 4;
/// How many distinct message shapes are sampled from the day.
const TEMPLATES: usize = 256;

/// What phase 1 measured.
#[derive(Debug, Clone, Serialize)]
pub struct CeilingFigures {
    pub requests: u64,
    pub stored: u64,
    pub failed: u64,
    pub wall_seconds: f64,
    pub per_second: f64,
    /// Mean size of a message as posted (base64 of the MIME).
    pub mean_posted_bytes: u64,
    pub latency: Option<connector::report::Latency>,
    pub throttled: u64,
    pub retry_after_wait_ms: u64,
    pub buckets: Vec<Bucket>,
}

/// The fake's capacity: the ceiling measured again with twice as many requests in
/// flight, until the rate stops rising (less than [`GAIN`] more) or every mailbox has
/// Graph's 4 in flight: then more in flight cannot help, and the fake (or this machine)
/// is what bounds the rate.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// Each measurement, the ceiling's own first.
    pub steps: Vec<CapacityStep>,
    /// The most stored per second, and at how many in flight.
    pub per_second: f64,
    pub concurrency: usize,
    /// Why more was not tried: the last doubling's gain, or the mailboxes' limit.
    pub saturated_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CapacityStep {
    pub concurrency: usize,
    pub per_second: f64,
    pub p50_ms: Option<u64>,
}

/// A doubling of the requests in flight that gains less than this is saturation.
const GAIN: f64 = 0.10;
/// At most this many doublings past the ceiling's own.
const DOUBLINGS: usize = 3;

/// What the raw client posts, and where: the fakes, the day, its messages (`templates`,
/// see [`Templates`]) and the day's mean number of mailboxes per item (`fanout`).
#[derive(Debug)]
pub struct Posting<'a> {
    pub fakes: &'a Fakes,
    pub mailbox: &'a super::mailbox::Mailbox,
    pub scenario: &'a Scenario,
    pub templates: Arc<Vec<Vec<u8>>>,
    pub p: &'a LoadParams,
    pub fanout: f64,
}

/// Measures the fake's capacity from the ceiling's own measurement `first` (see
/// [`Capacity`]), with the same messages and request count at each step.
pub async fn capacity(posting: &Posting<'_>, first: &CeilingFigures) -> anyhow::Result<Capacity> {
    let (scenario, p) = (posting.scenario, posting.p);
    let most_useful = PER_MAILBOX * scenario.users.iter().filter(|u| u.mailbox).count().max(1);
    let step = |concurrency: usize, c: &CeilingFigures| CapacityStep {
        concurrency,
        per_second: c.per_second,
        p50_ms: c.latency.as_ref().map(|l| l.p50_ms),
    };
    let mut steps = vec![step(p.concurrency, first)];
    let saturated_by = loop {
        let (last, best) = (
            steps.last().expect("one at least").concurrency,
            steps.iter().map(|s| s.per_second).fold(0.0, f64::max),
        );
        if last >= most_useful {
            break format!(
                "{last} in flight is every mailbox's {PER_MAILBOX} already ({most_useful})"
            );
        }
        if steps.len() > DOUBLINGS {
            break format!("{DOUBLINGS} doublings still gained (not saturated)");
        }
        let next = (last * 2).min(most_useful);
        eprintln!("load: the fake's capacity: the ceiling again at {next} in flight");
        let c = run(posting, next).await?;
        let gain = c.per_second / best.max(1e-9) - 1.0;
        steps.push(step(next, &c));
        if gain < GAIN {
            break format!(
                "{next} in flight gained {:.0} % over the best before",
                gain * 100.0
            );
        }
    };
    let best = steps
        .iter()
        .max_by(|a, b| a.per_second.total_cmp(&b.per_second))
        .expect("one at least");
    Ok(Capacity {
        per_second: best.per_second,
        concurrency: best.concurrency,
        steps,
        saturated_by,
    })
}

/// Runs the ceiling phase: the raw client posts `posting`'s messages with `concurrency`
/// requests in flight.
pub async fn run(posting: &Posting<'_>, concurrency: usize) -> anyhow::Result<CeilingFigures> {
    let Posting {
        fakes,
        mailbox,
        scenario,
        p,
        ..
    } = posting;
    let templates = posting.templates.clone();
    let fanout = posting.fanout.max(1.0);
    anyhow::ensure!(
        !templates.is_empty(),
        "no item of the day makes a message the connector would send, to post in its place"
    );
    let mailboxes: Arc<Vec<(String, Semaphore)>> = Arc::new(
        scenario
            .users
            .iter()
            .filter(|u| u.mailbox)
            .map(|u| (u.upn.clone(), Semaphore::new(PER_MAILBOX)))
            .collect(),
    );
    anyhow::ensure!(!mailboxes.is_empty(), "the day has no mailbox to post to");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .build()?;
    let token = token(&http, &fakes.mailbox_url, &fakes.tenant).await?;
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        stored: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        throttled: AtomicU64::new(0),
        waited_ms: AtomicU64::new(0),
        posted_bytes: AtomicU64::new(0),
        recent: Default::default(),
        latency: std::sync::Mutex::new(
            hdrhistogram::Histogram::new(3).expect("3 significant figures"),
        ),
    });
    let sampler = Sampler::start(
        "ceiling",
        (*mailbox).clone(),
        p.ceiling_requests,
        Default::default(),
    );
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, token, templates, mailboxes, shared) = (
            http.clone(),
            token.clone(),
            templates.clone(),
            mailboxes.clone(),
            shared.clone(),
        );
        let base = fakes.mailbox_url.clone();
        let total = p.ceiling_requests;
        workers.push(tokio::spawn(async move {
            loop {
                let k = shared.next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    return;
                }
                let ready = Instant::now();
                let (upn, lane) = &mailboxes[(k % mailboxes.len() as u64) as usize];
                let _permit = lane.acquire().await.expect("never closed");
                // Consecutive requests carry the same message to different mailboxes.
                let m = (k as f64 / fanout) as u64;
                // Encoded once per message, as the connector does, whatever its fan-out.
                let body = shared.body_of(m, &templates);
                shared
                    .posted_bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                let url = format!("{base}/beta/users/{upn}/mailFolders/inbox/importMime");
                post(&http, &url, &token, body, &shared).await;
                let ms = ready.elapsed().as_millis() as u64;
                let _ = shared.latency.lock().expect("lock").record(ms);
            }
        }));
    }
    for w in workers {
        w.await.context("a ceiling worker")?;
    }
    let wall = started.elapsed().as_secs_f64();
    let buckets = sampler.finish().await;
    let stored = shared.stored.load(Ordering::Relaxed);
    Ok(CeilingFigures {
        requests: p.ceiling_requests,
        stored,
        failed: shared.failed.load(Ordering::Relaxed),
        wall_seconds: wall,
        per_second: stored as f64 / wall.max(1e-9),
        mean_posted_bytes: shared.posted_bytes.load(Ordering::Relaxed) / p.ceiling_requests.max(1),
        latency: connector::report::Latency::of(&shared.latency.lock().expect("lock")),
        throttled: shared.throttled.load(Ordering::Relaxed),
        retry_after_wait_ms: shared.waited_ms.load(Ordering::Relaxed),
        buckets,
    })
}

#[derive(Debug)]
struct Shared {
    next: AtomicU64,
    stored: AtomicU64,
    failed: AtomicU64,
    throttled: AtomicU64,
    waited_ms: AtomicU64,
    posted_bytes: AtomicU64,
    /// The last messages encoded, by number: consecutive requests share one.
    recent: std::sync::Mutex<std::collections::VecDeque<(u64, bytes::Bytes)>>,
    latency: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
}

impl Shared {
    /// Message `m` as posted (base64 of its MIME), encoded once.
    fn body_of(&self, m: u64, templates: &[Vec<u8>]) -> bytes::Bytes {
        if let Some((_, body)) = self
            .recent
            .lock()
            .expect("lock")
            .iter()
            .find(|(n, _)| *n == m)
        {
            return body.clone();
        }
        let template = &templates[(m % templates.len() as u64) as usize];
        let mut mime = format!("Message-ID: <ceiling-{m}@load.invalid>\r\n").into_bytes();
        mime.extend_from_slice(template);
        let body = bytes::Bytes::from(STANDARD.encode(&mime));
        let mut recent = self.recent.lock().expect("lock");
        recent.push_back((m, body.clone()));
        if recent.len() > 32 {
            recent.pop_front();
        }
        body
    }
}

/// Posts one import; waits as told on 429 and 503 and tries again, up to 10 times.
async fn post(http: &reqwest::Client, url: &str, token: &str, body: bytes::Bytes, shared: &Shared) {
    for _ in 0..10 {
        let answer = http
            .post(url)
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body(body.clone())
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => {
                shared.stored.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) if r.status() == 429 || r.status() == 503 => {
                let wait = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<f64>().ok())
                    .map_or(Duration::from_millis(100), Duration::from_secs_f64);
                if r.status() == 429 {
                    shared.throttled.fetch_add(1, Ordering::Relaxed);
                    shared
                        .waited_ms
                        .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(wait).await;
            }
            _ => break,
        }
    }
    shared.failed.fetch_add(1, Ordering::Relaxed);
}

/// An application token from the fake's token endpoint.
async fn token(http: &reqwest::Client, base: &str, tenant: &str) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Token {
        access_token: String,
    }
    let answer = http
        .post(format!("{base}/{tenant}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await?
        .error_for_status()
        .context("the fake mailbox refused the ceiling client's token request")?;
    Ok(answer.json::<Token>().await?.access_token)
}

/// The connector's own messages for items sampled evenly across the day as it streams
/// by (`connector::run::plan`, with the item's file as the provider serves it), without
/// their Message-ID line: each request gets one of its own. Items the connector cannot
/// read or would not send are passed over.
#[derive(Debug)]
pub struct Templates {
    wanted: usize,
    step: usize,
    seen: usize,
    limit: u64,
    pub messages: Vec<Vec<u8>>,
}

impl Templates {
    /// For a day of `total` items and the size limit `limit`.
    pub fn new(total: usize, limit: u64) -> Self {
        let wanted = total.clamp(1, TEMPLATES);
        Self {
            wanted,
            step: (total / wanted).max(1),
            seen: 0,
            limit,
            messages: Vec::new(),
        }
    }

    /// The day's next item.
    pub fn offer(&mut self, item: &serde_json::Value) {
        if self.seen.is_multiple_of(self.step)
            && self.messages.len() < self.wanted
            && let Some(message) = template(item, self.limit)
        {
            self.messages.push(message);
        }
        self.seen += 1;
    }
}

fn template(item: &serde_json::Value, limit: u64) -> Option<Vec<u8>> {
    use connector::run::plan::{Planned, message_when_all_goes_well};
    let read = connector::provider::wire::read_item(item).ok()?;
    let file = || {
        let (seed, size) = attachment_of(item).unwrap_or_default();
        mock_telemessage::attachment::bytes(seed, size)
    };
    let options = connector::email::Options::default();
    // Whole messages, as one import each (the raw client attaches nothing after).
    let Planned::Send(message) = message_when_all_goes_well(&read, file, &options, limit, u64::MAX)
    else {
        return None;
    };
    Some(without_message_id(&message.mime))
}

/// A message's header section and body without its `Message-ID` line.
fn without_message_id(mime: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mime.len());
    let mut rest = mime;
    let mut in_header = true;
    let mut dropping = false;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(rest.len(), |at| at + 2);
        let (line, tail) = rest.split_at(end);
        if in_header && line == b"\r\n" {
            in_header = false;
        }
        if in_header {
            // A folded header goes on in lines that start with white space.
            let continued = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
            if !continued {
                dropping = line.len() >= 11 && line[..11].eq_ignore_ascii_case(b"message-id:");
            }
        } else {
            dropping = false;
        }
        if !dropping {
            out.extend_from_slice(line);
        }
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_loses_its_message_id_and_nothing_else() {
        let mime = b"From: a@b.example\r\nmessage-ID:\r\n <long@x.invalid>\r\nSubject: s\r\n\r\nMessage-ID: in the body stays\r\n";
        assert_eq!(
            without_message_id(mime),
            b"From: a@b.example\r\nSubject: s\r\n\r\nMessage-ID: in the body stays\r\n"
        );
    }

    /// The raw client posts what the connector would send for the item: its metadata
    /// headers, its text and html parts, and the item's file as the provider serves it.
    #[test]
    fn a_template_is_the_connectors_message_for_the_item() {
        let mut item = serde_json::json!({"id": "wa-7", "capture_mode": "cloud_archiver",
            "archived_at": "2026-11-22T09:00:05Z", "sent_at": "2026-11-22T09:00:01Z",
            "conversation": {"id": "c-1", "type": "direct", "name": null},
            "from": {"phone": "+33612345678", "name": "Chloé", "user_email": "chloe@contoso.example"},
            "to": [{"phone": "+14155550100", "name": "Bob", "user_email": "bob@contoso.example"}],
            "type": "text", "text": "the words of the item"});
        let text = String::from_utf8(template(&item, 4 * 1024 * 1024).unwrap()).unwrap();
        assert!(!text.to_ascii_lowercase().contains("message-id:"), "{text}");
        for part in [
            "X-WhatsApp-Item-Id: wa-7",
            "the words of the item",
            "text/html",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        let bytes = mock_telemessage::attachment::bytes(11, 3000);
        assert_eq!(
            connector::digest::sha256_hex(&bytes),
            mock_telemessage::attachment::sha256_hex(11, 3000),
            "the bytes the provider serves"
        );
        item["type"] = "document".into();
        item["document"] = serde_json::json!({"caption": "a file", "attachment": {"id": "att-1",
            "file_name": "f.bin", "content_type": "application/octet-stream", "size": 3000,
            "seed": 11, "sha256": mock_telemessage::attachment::sha256_hex(11, 3000)}});
        let text = String::from_utf8(template(&item, 4 * 1024 * 1024).unwrap()).unwrap();
        let encoded: String = STANDARD
            .encode(&bytes)
            .as_bytes()
            .chunks(76)
            .map(|l| format!("{}\r\n", std::str::from_utf8(l).unwrap()))
            .collect();
        assert!(
            text.contains(&encoded),
            "the file's bytes, base64 in 76-column lines"
        );
    }
}
