//! One import run: work out the window(s), stage each window's items, map, convert and
//! import them, and close each window once every item is delivered or skipped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::email::{self, AttachmentBody, OmitReason, Options};
use crate::errors::ConnectorError;
use crate::graph::{FolderLookup, GraphClient, GraphError, UserRef};
use crate::mapping::{self, MappingFile};
use crate::model::Item;
use crate::progress::Progress;
use crate::provider::{ProviderClient, ProviderError, wire};
use crate::report::{Failure, RunReport, Skip, Window as ReportWindow, WindowOutcome};
use crate::retry::RetryPolicy;
use crate::size;
use crate::stage::Staging;
use crate::store::{DeliveryState, Staged, Store, Window};

/// The longest window one pass takes; a longer gap (missed days) is caught up day by day.
pub const MAX_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);
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
    );
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
    delivered: u64,
    already: u64,
    skips: Vec<Skip>,
    failures: Vec<Failure>,
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
    progress: Progress,
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
                Some(MappingFile::parse(&path.display().to_string(), &bytes)?)
            }
            None => None,
        };
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
            progress: Progress::default(),
        })
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
    pub async fn run(
        &self,
        until: DateTime<Utc>,
        since: Option<DateTime<Utc>>,
    ) -> Result<RunReport, ConnectorError> {
        let started_at = (self.clock)();
        self.provider.login().await?;
        self.graph.sign_in().await?;
        let mut report = RunReport {
            window: None,
            windows: Vec::new(),
            items_fetched: 0,
            deliveries: 0,
            already_delivered: 0,
            skipped: Vec::new(),
            failed: Vec::new(),
            retries: 0,
            complete: true,
            started_at,
            finished_at: started_at,
        };
        let mut next_start = match since {
            Some(s) => s,
            None => self.store.last_until()?.unwrap_or(until - MAX_WINDOW),
        };
        // A window an earlier run left open is finished first, as it was.
        let mut pending = self.store.open_window()?;
        loop {
            let window = match pending.take() {
                Some(w) => w,
                None => {
                    if next_start >= until {
                        break;
                    }
                    let end = (next_start + MAX_WINDOW).min(until);
                    self.store.begin_window(next_start, end, (self.clock)())?
                }
            };
            next_start = next_start.max(window.until);
            tracing::info!(since = %window.since, until = %window.until, "window");
            let (items, closed) = self.process_window(&window, &mut report).await?;
            report.items_fetched += items;
            report.windows.push(WindowOutcome {
                since: window.since,
                until: window.until,
                items,
                closed,
            });
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
            if !closed {
                report.complete = false;
                break;
            }
        }
        self.progress.finish();
        report.retries = self.retry.retries();
        report.finished_at = (self.clock)();
        Ok(report)
    }

    async fn process_window(
        &self,
        window: &Window,
        report: &mut RunReport,
    ) -> Result<(u64, bool), ConnectorError> {
        // Items without an id are counted (and skipped) as they are fetched.
        let mut items = if window.fetched {
            0
        } else {
            self.fetch(window, report).await?
        };
        let mut after = 0;
        let mut failures = 0usize;
        loop {
            let batch = self.store.staged_after(window.id, after, BATCH)?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            let results: Vec<Result<ItemResult, ConnectorError>> =
                futures_util::stream::iter(batch)
                    .map(|staged| self.process_item(window, staged))
                    .buffer_unordered(self.config.concurrency)
                    .collect()
                    .await;
            for result in results {
                let r = result?;
                items += 1;
                report.deliveries += r.delivered;
                report.already_delivered += r.already;
                failures += r.failures.len();
                report.skipped.extend(r.skips);
                report.failed.extend(r.failures);
            }
        }
        let closed = failures == 0;
        if closed {
            self.staging.clear(window.id)?;
            self.store.finish_window(window, (self.clock)())?;
        }
        Ok((items, closed))
    }

    /// Lists the whole window and stages every item as received; answers how many items
    /// had no id (skipped at once, as they cannot be staged).
    async fn fetch(&self, window: &Window, report: &mut RunReport) -> Result<u64, ConnectorError> {
        let mut cursor: Option<String> = None;
        let mut staged = 0u64;
        let mut without_id = 0u64;
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
            for raw in page.items {
                position += 1;
                match raw
                    .get("id")
                    .and_then(serde_json::Value::as_str)
                    .filter(|id| !id.trim().is_empty())
                {
                    Some(id) => {
                        self.store.stage(window.id, id, &raw.to_string())?;
                        staged += 1;
                    }
                    None => {
                        let id = format!(
                            "(no id: item {position} of window {})",
                            window.since.to_rfc3339()
                        );
                        let skip = Skip {
                            item_id: id,
                            reason: "invalid_item".into(),
                            detail: "the item has no id".into(),
                        };
                        self.store.record_skip(
                            &skip.item_id,
                            &skip.reason,
                            &skip.detail,
                            window.id,
                            (self.clock)(),
                        )?;
                        report.skipped.push(skip);
                        without_id += 1;
                    }
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        self.store.mark_fetched(window.id)?;
        tracing::info!(items = staged, without_id, "window staged");
        Ok(without_id)
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
        self.progress
            .items
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.progress.tick();
        let raw: serde_json::Value =
            serde_json::from_str(&staged.json).unwrap_or(serde_json::Value::Null);
        let item = match wire::read_item(&raw) {
            Ok(item) => item,
            Err(reason) => {
                self.skip(window, &mut result, &staged.item_id, "invalid_item", reason)?;
                return Ok(result);
            }
        };
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
            return Ok(result);
        }
        let mut pending = Vec::new();
        for (key, target) in targets {
            match self.store.delivery(&item.id, &key)? {
                Some(DeliveryState::Delivered) => result.already += 1,
                state => pending.push((key, target, state)),
            }
        }
        if pending.is_empty() {
            return Ok(result);
        }
        // The message, with its attachment staged and verified (or left out, and why).
        let bytes = match self.attachment(window, &item).await {
            Ok(b) => b,
            Err(e) => {
                result.failures.push(Failure {
                    item_id: item.id.clone(),
                    mailbox: None,
                    error: e.to_string(),
                });
                return Ok(result);
            }
        };
        let body = match &bytes {
            Some(Ok(b)) => Some(AttachmentBody::Bytes(b)),
            Some(Err(reason)) => Some(AttachmentBody::Omitted(*reason)),
            None => None,
        };
        let message = email::convert(&item, body, &self.options, self.config.size_limit);
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
        for (key, target, state) in pending {
            match self.deliver(&item, &message, &key, &target, state).await {
                Ok(true) => {
                    result.delivered += 1;
                    self.progress
                        .deliveries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(false) => result.already += 1,
                Err(DeliverError::State(e)) => return Err(e),
                Err(DeliverError::Graph(e)) => {
                    tracing::warn!(item = %item.id, mailbox = %target.user.user_principal_name, error = %e, "delivery failed");
                    result.failures.push(Failure {
                        item_id: item.id.clone(),
                        mailbox: Some(target.user.user_principal_name.clone()),
                        error: e.to_string(),
                    });
                }
            }
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

    /// The mailbox a participant's copy goes to, by the mapping rule; `None` if none.
    async fn resolve(
        &self,
        participant: &crate::model::Participant,
    ) -> Result<Option<Target>, GraphError> {
        for (_, address) in mapping::candidates(
            Some(&participant.phone),
            participant.user_email.as_deref(),
            self.mapping.as_ref(),
            self.config.automatic_mapping,
        ) {
            if let Some(target) = self.target(&address).await? {
                return Ok(Some(target));
            }
        }
        Ok(None)
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
        item: &Item,
        message: &email::Email,
        key: &str,
        target: &Target,
        state: Option<DeliveryState>,
    ) -> Result<bool, DeliverError> {
        let user_id = &target.user.id;
        let folder = self
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
            .clone();
        let now = || (self.clock)();
        if state == Some(DeliveryState::Attempted)
            && self.found_in_mailbox(item, key, user_id, message).await?
        {
            return Ok(false);
        }
        for attempt in 1..=self.retry.max_attempts {
            self.store
                .mark_attempted(&item.id, key, &target.user.user_principal_name, now())
                .map_err(DeliverError::State)?;
            match self.graph.import(user_id, &folder, &message.mime).await {
                Ok(graph_id) => {
                    self.store
                        .mark_delivered(&item.id, key, &graph_id, now())
                        .map_err(DeliverError::State)?;
                    return Ok(true);
                }
                Err(e) if e.uncertain() && attempt < self.retry.max_attempts => {
                    // It may have landed: look before sending it again.
                    self.retry.count_retry();
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                    if self.found_in_mailbox(item, key, user_id, message).await? {
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
        item: &Item,
        key: &str,
        user_id: &str,
        message: &email::Email,
    ) -> Result<bool, DeliverError> {
        match self
            .graph
            .find_message(user_id, &message.message_id)
            .await?
        {
            Some(graph_id) => {
                self.store
                    .mark_delivered(&item.id, key, &graph_id, (self.clock)())
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
        self.provider.login().await?;
        lines.push(format!(
            "provider: logged in to {} as {}",
            self.config.provider_url, self.config.provider_username
        ));
        self.graph.sign_in().await?;
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
