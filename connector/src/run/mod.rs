//! One import run: work out the window(s), stage each window's items, map, convert and
//! import them, and close each window once every item is delivered or skipped.
//!
//! By what each part does: this module sets the connector up and runs the windows in
//! turn; `login` signs in; `held` tries the held list first; `window` stages a window
//! and works on its items while the listing goes on; `item` turns one staged item into
//! its deliveries; `lanes` decides which delivery starts next, per mailbox; `deliver` is
//! the exactly-once protocol with Microsoft 365.

mod budget;
mod deliver;
mod held;
mod item;
mod lanes;
mod login;
mod owed;
pub mod plan;
mod probe;
mod window;

use deliver::{DeliverError, Outcome, Target};
use item::{FileLocks, ItemResult};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::email::{self, OmitReason, Options};
use crate::errors::ConnectorError;
use crate::graph::{FolderLookup, GraphClient, GraphError, ImportBody, UserRef};
use crate::mapping::{self, MappingFile};
use crate::model::Item;
use crate::progress::Progress;
use crate::provider::{ProviderClient, ProviderError, wire};
use crate::report::{
    Accounting, Failure, HeldItem, RunReport, Skip, SkipReason, Window as ReportWindow,
    WindowOutcome,
};
use crate::retry::RetryPolicy;
use crate::secret::Secret;
use crate::stage::Staging;
use crate::store::{self as state, DeliveryState, Held, Quarantined, Staged, Store, Window};

/// The longest window one pass takes; a longer gap (missed days) is caught up day by day.
pub const MAX_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// Staged items read from the state at a time.
const BATCH: usize = 256;

/// Where the time comes from: the binary passes the wall clock, tests a fixed one.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The provider and Graph clients, sharing one HTTP client and one retry policy.
fn clients(
    config: &Config,
    http: &reqwest::Client,
    retry: &Arc<RetryPolicy>,
) -> (ProviderClient, GraphClient) {
    let provider = ProviderClient::new(
        http.clone(),
        &config.provider_url,
        &config.provider_username,
        config.provider_password.clone(),
        retry.clone(),
    )
    .with_max_page_bytes(config.max_page_bytes);
    let graph = GraphClient::new(
        http.clone(),
        &config.graph_url,
        &config.login_url,
        &config.tenant,
        &config.client_id,
        config.client_secret.clone(),
        retry.clone(),
    )
    .with_pacing(config.pacing)
    .with_concurrency(config.concurrency)
    .with_max_request(config.max_request_bytes);
    (provider, graph)
}

/// When the daily run after `now` starts, at `at` (UTC).
pub fn next_daily_run(now: DateTime<Utc>, at: chrono::NaiveTime) -> DateTime<Utc> {
    let today = now.date_naive().and_time(at).and_utc();
    if today > now {
        today
    } else {
        today + chrono::TimeDelta::days(1)
    }
}

/// The connector, set up from its configuration.
pub struct Connector {
    config: Config,
    http: reqwest::Client,
    provider: ProviderClient,
    graph: GraphClient,
    store: Store,
    staging: Staging,
    mapping: Option<MappingFile>,
    retry: Arc<RetryPolicy>,
    clock: Clock,
    options: Options,
    targets: Mutex<HashMap<String, Arc<OnceCell<Option<Target>>>>>,
    folders: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
    staged_files: FileLocks,
    progress: Progress,
    latency: Latencies,
    /// Deliveries that failed in this run: tried again (a held item, an item listed
    /// again), each is looked up first, as its import may have landed.
    failed_here: Mutex<std::collections::HashSet<(String, String)>>,
    /// One run at a time on this state directory, for as long as this value lives.
    _lock: crate::lock::RunLock,
}

/// When each staged item became ready to send, and how long its deliveries took from
/// then: measured from readiness, not from sending, so time spent queued counts.
/// Readiness is kept per staged page, not per item: items are staged a page at a time,
/// with growing sequence numbers, so a page's range of them says when each became
/// ready, and a day of a million items costs a thousand entries, not a million.
#[derive(Debug)]
struct Latencies {
    /// When this run started: the readiness of items staged by an earlier run.
    run_started: Mutex<Instant>,
    pages: Mutex<HashMap<i64, Pages>>,
    histogram: Mutex<hdrhistogram::Histogram<u64>>,
}

/// The pages staged in one window by this run.
#[derive(Debug, Default)]
struct Pages {
    /// `(after, last, at)`: sequence numbers above `after` up to `last` were staged at
    /// `at`; in staging order.
    staged: Vec<(i64, i64, Instant)>,
    /// The page being staged now: numbers above `after`, staged at `at` (recorded
    /// before its transaction, so a delivery that picks an item up at once finds it).
    staging: Option<(i64, Instant)>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            run_started: Mutex::new(Instant::now()),
            pages: Mutex::default(),
            // Milliseconds, 3 significant figures, growing as needed.
            histogram: Mutex::new(hdrhistogram::Histogram::new(3).expect("3 significant figures")),
        }
    }
}

impl Latencies {
    /// A page of `window` is about to be staged, after sequence number `after`, `at`
    /// (now).
    fn staging(&self, window: i64, after: i64, at: Instant) {
        let mut pages = self.pages.lock().expect("lock poisoned");
        pages.entry(window).or_default().staging = Some((after, at));
    }

    /// The page begun with [`Latencies::staging`] is staged, up to sequence number `last`.
    fn staged(&self, window: i64, last: i64) {
        let mut pages = self.pages.lock().expect("lock poisoned");
        let pages = pages.entry(window).or_default();
        if let Some((after, at)) = pages.staging.take()
            && last > after
        {
            pages.staged.push((after, last, at));
        }
    }

    /// When the staged item `seq` of `window` became ready: its page's time, or the
    /// run's start for an item staged before this run.
    fn ready_at(&self, window: i64, seq: i64) -> Instant {
        let pages = self.pages.lock().expect("lock poisoned");
        let found = pages.get(&window).and_then(|p| {
            let i = p.staged.partition_point(|(_, last, _)| *last < seq);
            match p.staged.get(i) {
                Some((after, _, at)) if seq > *after => Some(*at),
                _ => p
                    .staging
                    .filter(|(after, _)| seq > *after)
                    .map(|(_, at)| at),
            }
        });
        found.unwrap_or_else(|| *self.run_started.lock().expect("lock poisoned"))
    }

    /// A delivery of the staged item `seq` of `window` is done.
    fn delivered(&self, window: i64, seq: i64) {
        let ms = self.ready_at(window, seq).elapsed().as_millis() as u64;
        let _ = self.histogram.lock().expect("lock poisoned").record(ms);
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Reads the mapping file (refusing it whole if a line is bad), opens the state.
    pub fn new(config: Config, clock: Clock) -> Result<Self, ConnectorError> {
        let mapping = match &config.mapping_csv {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| ConnectorError::Config {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                Some(MappingFile::parse(
                    &path.display().to_string(),
                    &bytes,
                    config.mapping_region,
                )?)
            }
            None => None,
        };
        for w in mapping.iter().flat_map(|m| &m.warnings) {
            tracing::warn!(line = w.line, "mapping file: {}", w.reason);
        }
        let staging = Staging::new(&config.state_dir)?;
        // Before the state is opened or a staged file touched: another run may be at work.
        let lock = crate::lock::RunLock::acquire(&config.state_dir, clock())?;
        let store = Store::open(&config.state_dir.join("state.sqlite"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            // As many idle connections as requests on the wire: fewer made each request
            // beyond them open a new connection (against Microsoft, a new TLS handshake)
            // and leave the old one in TIME-WAIT.
            .pool_max_idle_per_host(config.concurrency.max(1))
            .user_agent(concat!(
                "whatsapp-archive-connector/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| ConnectorError::Config {
                path: "http client".into(),
                reason: e.to_string(),
            })?;
        let retry = Arc::new(RetryPolicy::new(
            config.max_attempts,
            Duration::from_millis(500),
            Duration::from_secs(60),
        ));
        let (provider, graph) = clients(&config, &http, &retry);
        let options = Options {
            phone_address_domain: config.phone_address_domain.clone(),
        };
        Ok(Self {
            config,
            http,
            provider,
            graph,
            store,
            staging,
            mapping,
            retry,
            clock,
            options,
            targets: Mutex::default(),
            folders: Mutex::default(),
            staged_files: FileLocks::default(),
            progress: Progress::default(),
            latency: Latencies::default(),
            failed_here: Mutex::default(),
            _lock: lock,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How deliveries are grouped into transactions (tests commit rarely, so that a
    /// crash loses as much as it can).
    pub fn with_group_commit(mut self, group: crate::store::GroupCommit) -> Self {
        self.store = self.store.with_group_commit(group);
        self
    }

    /// Faster retries, for tests against fakes that inject faults: backoff and
    /// `Retry-After` are both cut to `max`.
    pub fn with_retry_delays(mut self, base: Duration, max: Duration) -> Self {
        let retry = Arc::new(
            RetryPolicy::new(self.config.max_attempts, base, max).with_retry_after_cap(max),
        );
        (self.provider, self.graph) = clients(&self.config, &self.http, &retry);
        self.retry = retry;
        self
    }

    /// Imports everything archived up to `until`, from the end of the last window (or
    /// `since`, to take a window again; deliveries already made are not repeated).
    ///
    /// Items an earlier run could not deliver (the held list) are tried first. Every
    /// window then closes whatever one item does: an item that fails is held for the
    /// next runs, so the next days are always fetched.
    pub async fn run(
        &self,
        until: DateTime<Utc>,
        since: Option<DateTime<Utc>>,
    ) -> Result<RunReport, ConnectorError> {
        let started_at = (self.clock)();
        if until > started_at {
            return Err(ConnectorError::Usage(format!(
                "--until {} is in the future (now is {}): a window can only close on items that exist",
                until.to_rfc3339(),
                started_at.to_rfc3339()
            )));
        }
        // A window closes only once it has settled: the provider lists items some time
        // after their archive time.
        let settled = started_at - self.config.settle_delay;
        let until = if until > settled {
            tracing::info!(
                asked = %until.to_rfc3339(),
                until = %settled.to_rfc3339(),
                settle_delay_minutes = self.config.settle_delay.num_minutes(),
                "the window ends at now minus the settle delay, so that late-listed items are in it"
            );
            settled
        } else {
            until
        };
        if let Some(since) = since
            && since >= until
        {
            return Err(ConnectorError::Usage(format!(
                "--since {} is not before --until {}",
                since.to_rfc3339(),
                until.to_rfc3339()
            )));
        }
        *self.latency.run_started.lock().expect("lock poisoned") = Instant::now();
        self.log_in().await?;
        let mut report = RunReport::new(started_at);
        if self.store.history_from()?.is_none() {
            let note = "this state has no history (a first run, or a state that was emptied, deleted or set aside): every message of this run is looked up in its mailbox by Message-ID before it is sent, so nothing an earlier state imported is imported again. If an earlier state's last window ended before this run's start, run with --since that time to catch up what it had not imported";
            tracing::warn!("{note}");
            report.state_without_history = Some(note.to_owned());
        }
        self.report_unreported_windows(&mut report)?;
        self.retry_held(&mut report).await?;
        self.pay_owed_files(&mut report).await?;
        let last_until = self.store.last_until()?;
        let mut next_start = match since {
            Some(s) => s,
            None => last_until.unwrap_or(until - MAX_WINDOW),
        };
        // A window an earlier run left open (a crash) is finished first, as it was.
        let mut pending = self.store.open_window()?;
        // Then the look-back: the time before where this run starts is listed once more,
        // for items the provider listed only after their window closed. Not when a window
        // is taken again by hand (--since), nor twice in one run.
        let mut look_back = match last_until {
            Some(last)
                if since.is_none()
                    && self.config.look_back > chrono::TimeDelta::zero()
                    && pending.as_ref().is_none_or(|w| !w.look_back) =>
            {
                Some((last - self.config.look_back, last))
            }
            _ => None,
        };
        loop {
            let window = match (pending.take(), look_back.take()) {
                (Some(w), later) => {
                    look_back = later;
                    w
                }
                (None, Some((from, to))) => {
                    self.store.begin_window(from, to, (self.clock)(), true)?
                }
                (None, None) => {
                    if next_start >= until {
                        break;
                    }
                    let end = (next_start + MAX_WINDOW).min(until);
                    self.store
                        .begin_window(next_start, end, (self.clock)(), false)?
                }
            };
            tracing::info!(since = %window.since, until = %window.until, look_back = window.look_back, "window");
            // A window taken again by hand (--since) works on every item once more.
            let again = since.is_some() && window.fresh && !window.look_back;
            let account = self.process_window(&window, again, &mut report).await?;
            let items = account.items;
            report.items_fetched += items;
            report.accounting.add(&account);
            report.windows.push(WindowOutcome {
                since: window.since,
                until: window.until,
                items,
                closed: true,
                look_back: window.look_back,
                accounting: account,
            });
            if window.look_back {
                continue;
            }
            next_start = next_start.max(window.until);
            report.window = Some(ReportWindow {
                since: report
                    .window
                    .as_ref()
                    .map_or(window.since, |w| w.since.min(window.since)),
                until: report
                    .window
                    .as_ref()
                    .map_or(window.until, |w| w.until.max(window.until)),
            });
        }
        self.progress.finish();
        (report.held, report.needs_person) = waiting(
            self.store.held()?,
            "NEEDS A PERSON: this item could not be archived; see `connector held list`",
        );
        (report.owed_files, report.owed_files_need_person) = waiting(
            self.store.owed_files()?,
            "NEEDS A PERSON: this item's file could not be fetched; its message is archived without it; see `connector held list`",
        );
        // Imported and already-there counts are the accounting's, windows and held items.
        report.deliveries =
            report.accounting.delivered + report.accounting.delivered_without_attachment;
        report.already_delivered = report.accounting.already_there;
        report.complete = report.failed.is_empty()
            && report.needs_person.is_empty()
            && report.owed_files.is_empty()
            && report.owed_files_need_person.is_empty();
        report.retries = self.retry.retries();
        (report.throttled, report.retry_after_wait_ms) = self.retry.throttled();
        report.delivery_latency =
            crate::report::Latency::of(&self.latency.histogram.lock().expect("lock poisoned"));
        report.peak_rss_bytes = crate::report::peak_rss_bytes();
        report.peak_staging_bytes = self.staging.peak_bytes();
        report.finished_at = (self.clock)();
        // From here every window closed so far is in a report: this one.
        self.store.mark_reported()?;
        Ok(report)
    }

    /// Windows an earlier run closed but never reported (it was stopped dead after
    /// closing them): their accounting, skips and quarantined items go in this run's
    /// report, so that nothing a window did is left out of every report.
    fn report_unreported_windows(&self, report: &mut RunReport) -> Result<(), ConnectorError> {
        for w in self.store.unreported_windows()? {
            tracing::warn!(
                since = %w.since.to_rfc3339(),
                until = %w.until.to_rfc3339(),
                items = w.accounting.items,
                "a window closed by a run that stopped before its report: reported here"
            );
            self.report_recorded(w.id, report)?;
            report.items_fetched += w.accounting.items;
            report.accounting.add(&w.accounting);
            report.windows.push(WindowOutcome {
                since: w.since,
                until: w.until,
                items: w.accounting.items,
                closed: true,
                look_back: w.look_back,
                accounting: w.accounting,
            });
        }
        Ok(())
    }

    /// `connector check`: logs in to both sides and says where each registered employee's
    /// copies would go, importing nothing.
    pub async fn check(&self) -> Result<Vec<String>, ConnectorError> {
        let mut lines = Vec::new();
        self.log_in().await?;
        lines.push(format!(
            "provider: logged in to {} as {}",
            self.config.provider_url, self.config.provider_username
        ));
        lines.push(format!(
            "Microsoft 365: signed in to tenant {} as application {}",
            self.config.tenant, self.config.client_id
        ));
        match &self.mapping {
            Some(m) => lines.push(format!("mapping file: {} numbers", m.len())),
            None => lines.push("mapping file: none (automatic mapping only)".into()),
        }
        lines.push(format!(
            "automatic mapping: {}",
            if self.config.automatic_mapping {
                "on"
            } else {
                "off"
            }
        ));
        match &self.config.unmapped_mailbox {
            None => lines.push(
                "catch-all mailbox: none (items no participant maps are skipped as unmapped)"
                    .into(),
            ),
            Some(address) => match self.target(address).await? {
                Some(t) => lines.push(format!(
                    "catch-all mailbox: {address} (user {}) takes items no participant maps",
                    t.user.id
                )),
                None => lines.push(format!(
                    "catch-all mailbox: {address} is NOT a Microsoft 365 user with a mailbox: items no participant maps will be skipped as unmapped until it is"
                )),
            },
        }
        let users = self.provider.users().await?;
        let mut unmapped = 0;
        for user in users {
            let participant: crate::model::Participant = user.into();
            match self.resolve(&participant).await? {
                Some(t) => {
                    let folder = match self.folder_cell(&t.user.id).get() {
                        Some(_) => "folder exists",
                        None => "folder would be created",
                    };
                    lines.push(format!(
                        "  {} {} -> {} ({folder})",
                        participant.phone, participant.name, t.user.user_principal_name
                    ));
                }
                None => {
                    unmapped += 1;
                    lines.push(format!("  {} {} -> NO MAILBOX: their items go nowhere unless another participant maps", participant.phone, participant.name));
                }
            }
        }
        lines.push(format!(
            "Microsoft 365 request cap: {} bytes (import.max_request_bytes): a message whose base64 is larger goes without its file, which is attached to it after import by an upload session (the application needs Mail.ReadWrite)",
            self.config.max_request_bytes
        ));
        lines.push(format!(
            "on the wire: up to {} requests at once, 4 per mailbox (import.concurrency); kept open: at most {} MiB of items, messages and request buffers (import.memory_budget_bytes)",
            self.config.concurrency,
            self.config.memory_budget / (1024 * 1024)
        ));
        let refused = self.store.skips_for(SkipReason::AttachmentRefused)?;
        if refused > 0 {
            lines.push(format!(
                "files refused on imported messages: {refused} item(s) so far (attachment_refused): this tenant does not let the application attach files to imported messages, so messages above the request cap arrive without their files; see docs/email-format.md"
            ));
        }
        let from = self
            .store
            .last_until()?
            .map_or("the previous 24 hours".to_owned(), |t| t.to_rfc3339());
        lines.push(format!(
            "next run starts at: {from}; registered employees without a mailbox: {unmapped}"
        ));
        Ok(lines)
    }
}

/// Things waiting for a later run (held items, owed files) as the report lists them:
/// those still tried by themselves, and those that need a person, each of which is
/// logged as an error with `needs_person`.
fn waiting(rows: Vec<Held>, needs_person: &str) -> (Vec<HeldItem>, Vec<HeldItem>) {
    let (mut tried, mut stuck) = (Vec::new(), Vec::new());
    for row in rows {
        let entry = HeldItem {
            // As `connector held` names it: a later content of an id says which.
            item_id: state::display_key(&row.item_id),
            runs: row.runs,
            first_failed_at: row.first_failed_at,
            last_error: row.last_error,
        };
        if row.needs_person {
            tracing::error!(
                item = %entry.item_id,
                runs = entry.runs,
                since = %entry.first_failed_at,
                error = %entry.last_error,
                "{needs_person}"
            );
            stuck.push(entry);
        } else {
            tried.push(entry);
        }
    }
    (tried, stuck)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_run_is_today_if_still_ahead_else_tomorrow() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let at = chrono::NaiveTime::from_hms_opt(2, 0, 0).unwrap();
        assert_eq!(
            next_daily_run(t("2026-11-23T01:59:59Z"), at),
            t("2026-11-23T02:00:00Z")
        );
        assert_eq!(
            next_daily_run(t("2026-11-23T02:00:00Z"), at),
            t("2026-11-24T02:00:00Z")
        );
        assert_eq!(
            next_daily_run(t("2026-12-31T23:00:00Z"), at),
            t("2027-01-01T02:00:00Z")
        );
    }

    #[test]
    fn an_item_is_ready_from_when_its_page_was_staged_and_earlier_ones_from_the_run_start() {
        let latency = Latencies::default();
        let started = *latency.run_started.lock().unwrap();
        let (first, second, third) = (
            started + Duration::from_secs(1),
            started + Duration::from_secs(2),
            started + Duration::from_secs(3),
        );
        // Window 7: items 1-3 staged by an earlier run; this run stages 4-10, then 11-12,
        // and is staging 13 on.
        latency.staging(7, 3, first);
        latency.staged(7, 10);
        latency.staging(7, 10, second);
        latency.staged(7, 12);
        latency.staging(7, 12, third);
        for (seq, expected) in [
            (1, started),
            (3, started),
            (4, first),
            (10, first),
            (11, second),
            (12, second),
            (13, third),
            (99, third),
        ] {
            assert_eq!(latency.ready_at(7, seq), expected, "item {seq}");
        }
        assert_eq!(latency.ready_at(8, 4), started, "another window's items");
        // A page that staged nothing new (all seen before) leaves no range.
        latency.staged(7, 12);
        latency.staging(7, 12, third);
        latency.staged(7, 12);
        assert_eq!(latency.pages.lock().unwrap()[&7].staged.len(), 2);
    }
}
