//! One import run: work out the window(s), stage each window's items, map, convert and
//! import them, and close each window once every item is delivered or skipped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::email::{self, AttachmentBody, OmitReason, Options};
use crate::errors::ConnectorError;
use crate::graph::{FolderLookup, GraphClient, GraphError, ImportBody, UserRef};
use crate::mapping::{self, MappingFile};
use crate::model::Item;
use crate::progress::Progress;
use crate::provider::{ProviderClient, ProviderError, wire};
use crate::report::{
    Accounting, Failure, HeldItem, RunReport, Skip, Window as ReportWindow, WindowOutcome,
};
use crate::retry::RetryPolicy;
use crate::secret::Secret;
use crate::size;
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
    );
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

/// A mailbox an item goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    user: UserRef,
}

#[derive(Debug, Default)]
struct ItemResult {
    skips: Vec<Skip>,
    failures: Vec<Failure>,
    /// The item's share of the report's accounting.
    account: Accounting,
}

impl ItemResult {
    /// An item left out whole, for `reason`, in place of `deliveries` deliveries.
    fn left_out(&mut self, reason: &str, deliveries: u64) {
        *self.account.skipped.entry(reason.to_owned()).or_default() += deliveries;
    }
}

impl ItemResult {
    /// Every failure's error, in one line (what the held list keeps).
    fn error(&self) -> String {
        self.failures
            .iter()
            .map(|f| f.error.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Held while one item works with a staged file.
type FileLock = Arc<tokio::sync::Mutex<()>>;

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
    /// One staged file per (window, attachment id), which several items may share (two
    /// contents of an id, a file sent twice): it is read, downloaded and removed by one
    /// of them at a time.
    staged_files: Mutex<HashMap<(i64, String), FileLock>>,
    progress: Progress,
    latency: Latencies,
    /// Deliveries that failed in this run: tried again (a held item, an item listed
    /// again), each is looked up first, as its import may have landed.
    failed_here: Mutex<std::collections::HashSet<(String, String)>>,
}

/// When each staged item became ready to send, and how long its deliveries took from
/// then: measured from readiness, not from sending, so time spent queued counts.
#[derive(Debug)]
struct Latencies {
    /// When this run started: the readiness of items staged by an earlier run.
    run_started: Mutex<Instant>,
    ready: Mutex<HashMap<String, Instant>>,
    histogram: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            run_started: Mutex::new(Instant::now()),
            ready: Mutex::default(),
            // Milliseconds, 3 significant figures, growing as needed.
            histogram: Mutex::new(hdrhistogram::Histogram::new(3).expect("3 significant figures")),
        }
    }
}

impl Latencies {
    fn staged(&self, item_id: &str) {
        self.ready
            .lock()
            .expect("lock poisoned")
            .insert(item_id.to_owned(), Instant::now());
    }

    fn delivered(&self, item_id: &str) {
        let since = self
            .ready
            .lock()
            .expect("lock poisoned")
            .get(item_id)
            .copied()
            .unwrap_or_else(|| *self.run_started.lock().expect("lock poisoned"));
        let ms = since.elapsed().as_millis() as u64;
        let _ = self.histogram.lock().expect("lock poisoned").record(ms);
    }

    fn done_with(&self, item_id: &str) {
        self.ready.lock().expect("lock poisoned").remove(item_id);
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
        let store = Store::open(&config.state_dir.join("state.sqlite"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(32)
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
            staged_files: Mutex::default(),
            progress: Progress::default(),
            latency: Latencies::default(),
            failed_here: Mutex::default(),
        })
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
        self.report_unreported_windows(&mut report)?;
        self.retry_held(&mut report).await?;
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
        for held in self.store.held()? {
            let entry = HeldItem {
                // As `connector held` names it: a later content of an id says which.
                item_id: state::display_key(&held.item_id),
                runs: held.runs,
                first_failed_at: held.first_failed_at,
                last_error: held.last_error.clone(),
            };
            if held.needs_person {
                tracing::error!(
                    item = %state::display_key(&held.item_id),
                    runs = held.runs,
                    since = %held.first_failed_at,
                    error = %held.last_error,
                    "NEEDS A PERSON: this item could not be archived; see `connector held list`"
                );
                report.needs_person.push(entry);
            } else {
                report.held.push(entry);
            }
        }
        // Imported and already-there counts are the accounting's, windows and held items.
        report.deliveries =
            report.accounting.delivered + report.accounting.delivered_without_attachment;
        report.already_delivered = report.accounting.already_there;
        report.complete = report.failed.is_empty() && report.needs_person.is_empty();
        report.retries = self.retry.retries();
        (report.throttled, report.retry_after_wait_ms) = self.retry.throttled();
        report.delivery_latency =
            crate::report::Latency::of(&self.latency.histogram.lock().expect("lock poisoned"));
        report.peak_rss_bytes = crate::report::peak_rss_bytes();
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

    /// Logs in to both services. A secret the service refused before is not sent again
    /// (the provider locks an account after a few refusals) until the setting changes;
    /// a refusal now is remembered, as an argon2 digest only.
    async fn log_in(&self) -> Result<(), ConnectorError> {
        let c = &self.config;
        let provider = Credential {
            key: "provider.password",
            bound: Secret::new(format!(
                "{}\0{}\0{}",
                c.provider_url,
                c.provider_username,
                c.provider_password.expose()
            )),
            service: "the provider",
            what: "password",
            setting: &c.provider_password_from,
        };
        self.refused_before(&provider)?;
        match self.provider.login().await {
            Ok(_) => self.store.clear_refused_secret(provider.key)?,
            Err(ProviderError::Login { code, message, .. }) if code == "invalid_credentials" => {
                tracing::error!(username = %c.provider_username, %message, "the provider refused the password");
                return Err(self.refused_now(&provider, code)?);
            }
            Err(ProviderError::Login { code, message, .. }) if code == "account_locked" => {
                return Err(ConnectorError::Locked {
                    username: c.provider_username.clone(),
                    message,
                    setting: c.provider_password_from.clone(),
                });
            }
            Err(ProviderError::Transport(cause)) => {
                return Err(ConnectorError::Unreachable {
                    service: "the provider",
                    setting: "provider.url",
                    url: c.provider_url.clone(),
                    cause,
                });
            }
            Err(e) => return Err(e.into()),
        }
        let application = Credential {
            key: "microsoft365.client_secret",
            bound: Secret::new(format!(
                "{}\0{}\0{}\0{}",
                c.login_url,
                c.tenant,
                c.client_id,
                c.client_secret.expose()
            )),
            service: "Microsoft 365",
            what: "client secret",
            setting: &c.client_secret_from,
        };
        self.refused_before(&application)?;
        match self.graph.sign_in().await {
            Ok(()) => self.store.clear_refused_secret(application.key)?,
            Err(GraphError::Token { error, description })
                if matches!(error.as_str(), "invalid_client" | "unauthorized_client") =>
            {
                tracing::error!(client_id = %c.client_id, %description, "Microsoft 365 refused the application's sign-in");
                return Err(self.refused_now(&application, error)?);
            }
            Err(GraphError::Transport(cause)) => {
                return Err(ConnectorError::Unreachable {
                    service: "the Microsoft 365 sign-in",
                    setting: "microsoft365.login_url",
                    url: c.login_url.clone(),
                    cause,
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Stops before sending a secret that the service already refused.
    fn refused_before(&self, credential: &Credential<'_>) -> Result<(), ConnectorError> {
        if let Some((digest, code, at)) = self.store.refused_secret(credential.key)?
            && credential.bound.matches(&digest)
        {
            return Err(credential.refused(
                code,
                format!(
                    " on {}, and this run did not send it again",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ));
        }
        Ok(())
    }

    /// Remembers a refusal just received (as a digest) and answers the error to stop with.
    fn refused_now(
        &self,
        credential: &Credential<'_>,
        code: String,
    ) -> Result<ConnectorError, ConnectorError> {
        match credential.bound.digest() {
            Some(digest) => {
                self.store
                    .record_refused_secret(credential.key, &digest, &code, (self.clock)())?
            }
            None => {
                tracing::warn!("no randomness for a salt: the refused secret is not remembered")
            }
        }
        Ok(credential.refused(code, String::new()))
    }

    /// Tries again the items earlier runs could not deliver. One that is delivered or
    /// skipped with a reason leaves the list; one that fails again counts a run, and after
    /// `import.held_runs` runs or `import.held_days` days it needs a person.
    async fn retry_held(&self, report: &mut RunReport) -> Result<(), ConnectorError> {
        let held: Vec<Held> = self
            .store
            .held()?
            .into_iter()
            .filter(|h| !h.needs_person)
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        tracing::info!(items = held.len(), "trying held items again");
        let mut windows = std::collections::BTreeSet::new();
        for h in held {
            windows.insert(h.window_id);
            let window = Window {
                id: h.window_id,
                since: h.first_failed_at,
                until: h.first_failed_at,
                fetched: true,
                look_back: false,
                fresh: false,
            };
            let staged = Staged {
                seq: 0,
                item_id: h.item_id.clone(),
                json: h.json.clone(),
            };
            let mut r = self.process_item(&window, staged).await?;
            report.accounting.add(&r.account);
            report.skipped.extend(std::mem::take(&mut r.skips));
            if r.failures.is_empty() {
                self.store.release(&h.item_id)?;
                tracing::info!(item = %h.item_id, "held item archived");
                continue;
            }
            let error = r.error();
            self.store
                .hold(&h.item_id, &h.json, h.window_id, &error, (self.clock)())?;
            self.maybe_needs_person(&h.item_id, h.runs + 1, h.first_failed_at)?;
            report.failed.extend(r.failures);
        }
        for id in windows {
            self.staging.clear(id)?;
        }
        Ok(())
    }

    /// Marks a held item as needing a person once it has failed in enough runs or for
    /// long enough.
    fn maybe_needs_person(
        &self,
        item_id: &str,
        runs: u32,
        first_failed_at: DateTime<Utc>,
    ) -> Result<(), ConnectorError> {
        let age = (self.clock)() - first_failed_at;
        if runs >= self.config.held_runs
            || age >= chrono::TimeDelta::days(i64::from(self.config.held_days))
        {
            self.store.mark_needs_person(item_id)?;
        }
        Ok(())
    }

    /// Works through one window and closes it. Answers what became of its items.
    async fn process_window(
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
            *account.skipped.entry("invalid_item".into()).or_default() += unreadable;
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
    fn report_recorded(
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

    /// Works through the staged items of a window, as the listing stages them, at most
    /// `concurrency` at once, with no batch barrier: an item that waits (a mailbox's
    /// Retry-After) holds one place, never the others. Answers how many items it worked
    /// on and those that failed. `listing` turns true once the listing is complete.
    async fn deliver_staged(
        &self,
        window: &Window,
        mut listing: tokio::sync::watch::Receiver<bool>,
        report: &mut RunReport,
    ) -> Result<(Accounting, Vec<(Staged, String)>), ConnectorError> {
        let mut account = Accounting::default();
        let mut failed: Vec<(Staged, String)> = Vec::new();
        let mut queue = std::collections::VecDeque::new();
        let mut after = 0i64;
        let mut listed_all = false;
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        loop {
            while in_flight.len() < self.config.concurrency {
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
                    Some(staged) => in_flight.push(self.work_on(window, staged)),
                    None => break,
                }
            }
            if in_flight.is_empty() {
                if listed_all {
                    break;
                }
                // Nothing to do until the listing stages more (or ends: a closed channel
                // means the fetcher is done, and the next look settles it).
                let _ = listing.changed().await;
                continue;
            }
            let result = tokio::select! {
                Some(result) = in_flight.next() => result,
                _ = listing.changed(), if !listed_all && queue.is_empty() => continue,
            };
            let (staged, r) = result?;
            self.latency.done_with(&staged.item_id);
            account.add(&r.account);
            if !r.failures.is_empty() {
                failed.push((staged, r.error()));
            }
            report.failed.extend(r.failures);
        }
        Ok((account, failed))
    }

    async fn work_on(
        &self,
        window: &Window,
        staged: Staged,
    ) -> Result<(Staged, ItemResult), ConnectorError> {
        let r = self.process_item(window, staged.clone()).await?;
        Ok((staged, r))
    }

    /// Lists the whole window and stages every readable item as received, a page at a
    /// time (each page wakes the deliveries). An item that
    /// cannot be read (not JSON the parser accepts, no id, off the schema) is kept byte
    /// for byte in the quarantine and skipped as `invalid_item`. Answers how many were.
    async fn fetch(
        &self,
        window: &Window,
        again: bool,
        listed: &tokio::sync::watch::Sender<bool>,
    ) -> Result<u64, ConnectorError> {
        let mut cursor: Option<String> = None;
        let mut staged = 0u64;
        let mut unreadable = 0u64;
        let mut position = 0u64;
        loop {
            let page = self
                .provider
                .page(
                    window.since,
                    window.until,
                    cursor.as_deref(),
                    self.config.page_size,
                )
                .await?;
            let mut readable_items = Vec::with_capacity(page.items.len());
            for raw in &page.items {
                position += 1;
                let text = raw.get();
                match wire::read_item_with_digest(text) {
                    Ok((item, digest)) => readable_items.push((item.id, text, digest)),
                    Err(reason) => {
                        let id = wire::raw_item_id(text);
                        // Kept once: the same bytes listed again (a look-back, a window
                        // listed again after a crash) are not a second item.
                        let digest = format!("unreadable:{}", sha256_hex(text.as_bytes()));
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
            for (id, ..) in &readable_items {
                self.latency.staged(id);
            }
            let listing = if again {
                state::Listing::Again
            } else if window.look_back {
                state::Listing::LookBack
            } else {
                state::Listing::First
            };
            let new = self.store.stage_page(window.id, &readable_items, listing)?;
            for (id, ..) in &readable_items {
                if !again && !new.iter().any(|n| &n.key == id) {
                    self.latency.done_with(id);
                }
            }
            for n in new.iter().filter(|n| n.revision > 1) {
                self.latency.staged(&n.key);
            }
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
        Ok(unreadable)
    }

    /// Keeps an unreadable item's bytes in the quarantine and records it as skipped.
    fn quarantine(
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
            .record_skip(&item_id, "invalid_item", &detail, window.id, now)?;
        tracing::warn!(item = %email::cap(&item_id, 120), position, reason = %email::cap(reason, 300), "unreadable item quarantined");
        Ok(())
    }

    fn skip(
        &self,
        window: &Window,
        result: &mut ItemResult,
        item_id: &str,
        reason: &str,
        detail: String,
    ) -> Result<(), ConnectorError> {
        self.store
            .record_skip(item_id, reason, &detail, window.id, (self.clock)())?;
        self.progress
            .skips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(item = item_id, reason, %detail, "skipped");
        result.skips.push(Skip {
            item_id: item_id.to_owned(),
            reason: reason.to_owned(),
            detail,
        });
        Ok(())
    }

    async fn process_item(
        &self,
        window: &Window,
        staged: Staged,
    ) -> Result<ItemResult, ConnectorError> {
        let mut result = ItemResult::default();
        result.account.items = 1;
        self.progress
            .items
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.progress.tick();
        // The record key: the provider's id, and the revision of its content.
        let key_id = staged.item_id.as_str();
        let (provider_id, revision) = state::split_key(key_id);
        let mut item = match wire::read_item_text(&staged.json) {
            Ok(item) => item,
            Err(reason) => {
                self.skip(window, &mut result, provider_id, "invalid_item", reason)?;
                result.account.planned = 1;
                result.left_out("invalid_item", 1);
                return Ok(result);
            }
        };
        item.revision = revision;
        if revision > 1 {
            self.skip(
                window,
                &mut result,
                &item.id,
                "revised_item",
                format!(
                    "the provider sent this id again with different content: revision {revision} is imported as {}, referring to the first",
                    email::revision_message_id(&item.id, revision)
                ),
            )?;
        }
        if window.look_back {
            self.skip(
                window,
                &mut result,
                &item.id,
                "late_visible",
                format!(
                    "archived at {}, listed by the provider only after its window closed; imported now",
                    item.archived_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            )?;
        }
        // Where it goes: each participant's mailbox, distinct.
        let mut targets: BTreeMap<String, Target> = BTreeMap::new();
        for participant in item.participants() {
            match self.resolve(participant).await {
                Ok(Some(t)) => {
                    targets.entry(t.user.id.to_ascii_lowercase()).or_insert(t);
                }
                Ok(None) => {}
                Err(e) => {
                    result.failures.push(Failure {
                        item_id: item.id.clone(),
                        mailbox: None,
                        error: format!("mapping {}: {e}", participant.phone),
                    });
                    result.account.planned = 1;
                    result.account.failed = 1;
                    return Ok(result);
                }
            }
        }
        if targets.is_empty() {
            let who: Vec<String> = item.participants().map(|p| p.phone.clone()).collect();
            self.skip(
                window,
                &mut result,
                &item.id,
                "unmapped",
                format!(
                    "no participant maps to a Microsoft 365 user: {}",
                    who.join(", ")
                ),
            )?;
            result.account.planned = 1;
            result.left_out("unmapped", 1);
            return Ok(result);
        }
        result.account.planned = targets.len() as u64;
        let mut pending = Vec::new();
        for (key, target) in targets {
            match self.store.delivery(key_id, &key)? {
                Some(DeliveryState::Delivered) => {
                    result.account.already_there += 1;
                }
                state => pending.push((key, target, state)),
            }
        }
        if pending.is_empty() {
            return Ok(result);
        }
        // The size plan, before anything is downloaded: a file that fits on its own but
        // whose message could not (base64 makes it a third larger) is left out, and the
        // rest of the item is imported.
        let limit = self.config.size_limit;
        let carry = match item.content.attachment() {
            Some(att) if size::attachment_fits(att.size, limit) => {
                let frame = email::convert(
                    &item,
                    Some(AttachmentBody::Bytes(&[])),
                    &self.options,
                    limit,
                );
                let text_part = email::safe_content_type(&att.content_type).starts_with("text/");
                size::attachment_can_fit(frame.mime.len(), att.size, text_part, limit)
            }
            _ => true,
        };
        // The message, with its attachment staged and verified (or left out, and why).
        let fetched = if carry {
            self.attachment(window, &item).await
        } else {
            Ok(Some(Err(OmitReason::ToFit)))
        };
        let bytes = match fetched {
            Ok(b) => b,
            Err(e) => {
                result.failures.push(Failure {
                    item_id: item.id.clone(),
                    mailbox: None,
                    error: e.to_string(),
                });
                result.account.failed += pending.len() as u64;
                return Ok(result);
            }
        };
        let body = match &bytes {
            Some(Ok(b)) => Some(AttachmentBody::Bytes(b)),
            Some(Err(reason)) => Some(AttachmentBody::Omitted(*reason)),
            None => None,
        };
        let mut message = email::convert(&item, body, &self.options, limit);
        if !size::message_fits(message.mime.len(), limit)
            && matches!(body, Some(AttachmentBody::Bytes(_)))
        {
            // Only a text part can get here (its encoding was not known in advance).
            message = email::convert(
                &item,
                Some(AttachmentBody::Omitted(OmitReason::ToFit)),
                &self.options,
                limit,
            );
        }
        if !size::message_fits(message.mime.len(), self.config.size_limit) {
            self.skip(
                window,
                &mut result,
                &item.id,
                "item_too_large",
                format!(
                    "the message is {} bytes; the limit is {}",
                    message.mime.len(),
                    self.config.size_limit
                ),
            )?;
            result.left_out("item_too_large", pending.len() as u64);
            return Ok(result);
        }
        if let (Some(reason), Some(att)) = (message.omitted, item.content.attachment()) {
            self.skip(
                window,
                &mut result,
                &item.id,
                reason.code(),
                format!(
                    "{} ({} bytes) left out; the message is imported without it",
                    att.file_name, att.size
                ),
            )?;
        }
        // Encoded once, sent to every mailbox and on every attempt.
        let body = ImportBody::encode(&message.mime);
        for (key, target, state) in pending {
            // A delivery with no record is known never to have been sent only in a window
            // this run began; anywhere else (a window a crash left open, a held item) its
            // record may have been lost with an uncommitted group: look first.
            let look_first = state == Some(DeliveryState::Attempted)
                || !window.fresh
                || self
                    .failed_here
                    .lock()
                    .expect("lock poisoned")
                    .contains(&(key_id.to_owned(), key.clone()));
            match self
                .deliver(key_id, &message, &body, &key, &target, look_first)
                .await
            {
                Ok(true) => {
                    self.latency.delivered(key_id);
                    if message.omitted.is_some() {
                        result.account.delivered_without_attachment += 1;
                    } else {
                        result.account.delivered += 1;
                    }
                    self.progress
                        .deliveries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(false) => {
                    result.account.already_there += 1;
                }
                Err(DeliverError::State(e)) => return Err(e),
                Err(DeliverError::Graph(e)) => {
                    result.account.failed += 1;
                    tracing::warn!(item = %item.id, mailbox = %target.user.user_principal_name, error = %e, "delivery failed");
                    self.failed_here
                        .lock()
                        .expect("lock poisoned")
                        .insert((key_id.to_owned(), key.clone()));
                    result.failures.push(Failure {
                        item_id: item.id.clone(),
                        mailbox: Some(target.user.user_principal_name.clone()),
                        error: e.to_string(),
                    });
                }
            }
        }
        // Every mailbox has it: its file need not stay at rest until the window closes.
        if result.failures.is_empty()
            && let Some(att) = item.content.attachment()
        {
            let file = self.staged_file(window.id, &att.id);
            let _only_this_item = file.lock().await;
            self.staging.forget(window.id, &att.id)?;
        }
        Ok(result)
    }

    /// The attachment's bytes (staged and verified), the reason it is left out, or
    /// `None` if the item has none. An `Err` is a provider failure: the item waits.
    async fn attachment(
        &self,
        window: &Window,
        item: &Item,
    ) -> Result<Option<Result<Vec<u8>, OmitReason>>, ConnectorError> {
        let Some(att) = item.content.attachment() else {
            return Ok(None);
        };
        if !size::attachment_fits(att.size, self.config.size_limit) {
            return Ok(Some(Err(OmitReason::TooLarge)));
        }
        if att.id.len() > email::MAX_ATTACHMENT_ID {
            return Ok(Some(Err(OmitReason::Unreachable)));
        }
        let file = self.staged_file(window.id, &att.id);
        let _only_this_item = file.lock().await;
        let path = self.staging.attachment(window.id, &att.id)?;
        if let Ok(bytes) = tokio::fs::read(&path).await
            && bytes.len() as u64 == att.size
            && sha256_hex(&bytes) == att.sha256
        {
            return Ok(Some(Ok(bytes)));
        }
        match self
            .provider
            .download(&att.id, att.size, &att.sha256, &path)
            .await
        {
            Ok(()) => {
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| ConnectorError::Staging {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                Ok(Some(Ok(bytes)))
            }
            Err(ProviderError::Attachment { .. }) | Err(ProviderError::Api { status: 404, .. }) => {
                Ok(Some(Err(OmitReason::Unverifiable)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The lock of one staged file.
    fn staged_file(&self, window: i64, attachment_id: &str) -> FileLock {
        self.staged_files
            .lock()
            .expect("lock poisoned")
            .entry((window, attachment_id.to_owned()))
            .or_default()
            .clone()
    }

    /// The mailbox a participant's copy goes to, by the mapping rule; `None` if none.
    async fn resolve(
        &self,
        participant: &crate::model::Participant,
    ) -> Result<Option<Target>, GraphError> {
        let (_, target) = mapping::resolve(
            Some(&participant.phone),
            participant.user_email.as_deref(),
            self.mapping.as_ref(),
            self.config.automatic_mapping,
            |address: String| async move { self.target(&address).await },
        )
        .await?;
        Ok(target)
    }

    /// Whether an address is a valid Microsoft 365 user with a mailbox; asked of Graph
    /// once per run, even when several items ask at the same time.
    async fn target(&self, address: &str) -> Result<Option<Target>, GraphError> {
        let cell = self
            .targets
            .lock()
            .expect("lock poisoned")
            .entry(address.to_ascii_lowercase())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.look_up(address))
            .await
            .cloned()
    }

    async fn look_up(&self, address: &str) -> Result<Option<Target>, GraphError> {
        let found = match self.graph.user(address).await? {
            None => None,
            Some(user) => match self
                .graph
                .find_folder(&user.id, &self.config.folder)
                .await?
            {
                FolderLookup::NoMailbox => None,
                FolderLookup::Found(folder) => {
                    let _ = self.folder_cell(&user.id).set(folder);
                    Some(Target { user })
                }
                FolderLookup::Missing => Some(Target { user }),
            },
        };
        if found.is_none() {
            tracing::info!(address, "not a Microsoft 365 user with a mailbox");
        }
        Ok(found)
    }

    /// The archive folder's id in this mailbox: found or created once per run.
    async fn archive_folder(&self, user_id: &str) -> Result<String, DeliverError> {
        Ok(self
            .folder_cell(user_id)
            .get_or_try_init(|| async {
                match self
                    .graph
                    .ensure_folder(user_id, &self.config.folder)
                    .await?
                {
                    FolderLookup::Found(id) => Ok(id),
                    _ => Err(GraphError::Api {
                        status: 404,
                        code: "MailboxNotEnabledForRESTAPI".into(),
                        message: "the mailbox went away".into(),
                        request_id: String::new(),
                    }),
                }
            })
            .await?
            .clone())
    }

    /// Forgets the archive folder found in this mailbox, if it is still `stale`, so that
    /// the next delivery finds or creates it again.
    fn forget_folder(&self, user_id: &str, stale: &str) {
        let mut folders = self.folders.lock().expect("lock poisoned");
        let key = user_id.to_ascii_lowercase();
        if folders
            .get(&key)
            .and_then(|c| c.get())
            .is_some_and(|id| id == stale)
        {
            folders.remove(&key);
        }
    }

    fn folder_cell(&self, user_id: &str) -> Arc<OnceCell<String>> {
        self.folders
            .lock()
            .expect("lock poisoned")
            .entry(user_id.to_ascii_lowercase())
            .or_default()
            .clone()
    }

    /// Imports one message into one mailbox, exactly once: `Ok(false)` if it was found
    /// there already.
    async fn deliver(
        &self,
        key_id: &str,
        message: &email::Email,
        body: &ImportBody,
        key: &str,
        target: &Target,
        look_first: bool,
    ) -> Result<bool, DeliverError> {
        let user_id = &target.user.id;
        let mut folder = self.archive_folder(user_id).await?;
        let now = || (self.clock)();
        let address = &target.user.user_principal_name;
        if look_first && self.found_in_mailbox(key_id, key, target, message).await? {
            return Ok(false);
        }
        for attempt in 1..=self.retry.max_attempts {
            match self.graph.import(user_id, &folder, body).await {
                // The folder this run found is gone (deleted by a person since): find or
                // create it again and send once more. Nothing was stored.
                Err(e)
                    if e.code() == Some("ErrorItemNotFound")
                        && attempt < self.retry.max_attempts =>
                {
                    tracing::warn!(mailbox = %address, "the archive folder went away; finding it again");
                    self.retry.count_retry();
                    self.forget_folder(user_id, &folder);
                    folder = self.archive_folder(user_id).await?;
                }
                Ok(graph_id) => {
                    self.store
                        .mark_delivered(key_id, key, address, &graph_id, now())
                        .map_err(DeliverError::State)?;
                    return Ok(true);
                }
                Err(e) if e.uncertain() && attempt < self.retry.max_attempts => {
                    // It may have landed: look before sending it again.
                    self.retry.count_retry();
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                    if self.found_in_mailbox(key_id, key, target, message).await? {
                        return Ok(true);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Looks for the message by its Message-ID in the mailbox; if it is there, records
    /// the delivery.
    async fn found_in_mailbox(
        &self,
        key_id: &str,
        key: &str,
        target: &Target,
        message: &email::Email,
    ) -> Result<bool, DeliverError> {
        match self
            .graph
            .find_message(&target.user.id, &message.message_id)
            .await?
        {
            Some(graph_id) => {
                self.store
                    .mark_delivered(
                        key_id,
                        key,
                        &target.user.user_principal_name,
                        &graph_id,
                        (self.clock)(),
                    )
                    .map_err(DeliverError::State)?;
                Ok(true)
            }
            None => Ok(false),
        }
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

/// A secret as a refusal of it is remembered: the state key, the secret bound to what it
/// was for (service address, account), and what a person is told.
struct Credential<'a> {
    key: &'static str,
    bound: Secret,
    service: &'static str,
    what: &'static str,
    /// Where the value comes from: `provider.password_env (NAME)`, ...
    setting: &'a str,
}

impl Credential<'_> {
    fn refused(&self, code: String, when: String) -> ConnectorError {
        ConnectorError::SecretRefused {
            service: self.service,
            what: self.what,
            code,
            when,
            setting: self.setting.to_owned(),
        }
    }
}

#[derive(Debug)]
enum DeliverError {
    Graph(GraphError),
    State(ConnectorError),
}

impl From<GraphError> for DeliverError {
    fn from(e: GraphError) -> Self {
        Self::Graph(e)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
}
