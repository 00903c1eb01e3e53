//! The fake provider's state: accounts with lockout, sessions kept as token digests, the
//! item store with snapshot listings, attachment sources, seeded faults and counters.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::cursor::Cursor;
use crate::dataset::{
    Account, AttachmentSource, Dataset, DatasetError, Faults, Prepared, Visibility, prepare_items,
};
use crate::error::ApiError;
use crate::wire::{Participant, Window};
use mock_common::{AdminToken, Lookup, PasswordHash, Sessions, SharedClock, new_token};

/// Server settings that are not data.
#[derive(Debug, Clone)]
pub struct Config {
    pub token_lifetime: Duration,
    pub lockout_threshold: u32,
    pub lockout_window: Duration,
    pub lockout_duration: Duration,
    pub default_page_size: usize,
    pub max_page_size: usize,
    /// Most names whose failed logins are counted at once (accounts always are).
    pub max_tracked_names: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            token_lifetime: Duration::hours(1),
            lockout_threshold: 5,
            lockout_window: Duration::minutes(15),
            lockout_duration: Duration::minutes(15),
            default_page_size: 100,
            max_page_size: 1000,
            max_tracked_names: 10_000,
        }
    }
}

/// Cheap to clone: every clone is the same server.
#[derive(Debug, Clone)]
pub struct State(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    clock: SharedClock,
    config: Config,
    admin: AdminToken,
    cursor_key: [u8; 32],
    faults: Faults,
    visibility: Visibility,
    employees: Vec<Participant>,
    accounts: HashMap<String, Account>,
    /// Verified against when the user is unknown, so both cases take the same time.
    decoy: PasswordHash,
    failures: Mutex<HashMap<String, Failures>>,
    /// Where passwords are checked (argon2): bounded, refusing at once when full.
    checks: mock_common::CheckPool,
    sessions: Sessions<String>,
    store: RwLock<Store>,
    counters: Counters,
}

/// Longest username and password a login takes, in characters.
pub const MAX_USERNAME: usize = 256;
pub const MAX_PASSWORD: usize = 1024;

#[derive(Debug, Default, Clone)]
struct Failures {
    count: u32,
    first: Option<DateTime<Utc>>,
    locked_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct Store {
    /// By listing key: archive time, id, and the order received (an id may come twice).
    items: BTreeMap<Key, Stored>,
    attachments: BTreeMap<String, AttachmentSource>,
    next_seq: u64,
    /// Where items' JSON goes from [`State::keep_items_on_disk`] on.
    file: Option<ItemFile>,
}

/// An append-only file of items' JSON text, readable by this user only. Its name is
/// removed as soon as it is made: the open file is all the fake uses, and the kernel
/// frees it with the fake, however the fake ends (killed included).
#[derive(Debug)]
struct ItemFile {
    file: std::fs::File,
    end: u64,
}

/// An item's JSON as it goes on the wire: in memory, or at a place in the item file.
#[derive(Debug)]
enum Json {
    Memory(Box<RawValue>),
    File { offset: u64, len: u32 },
}

impl Store {
    /// An item's JSON text, read back from the item file if it is there.
    fn json_of<'a>(
        &'a self,
        stored: &'a Stored,
    ) -> std::io::Result<std::borrow::Cow<'a, RawValue>> {
        match (&stored.json, &self.file) {
            (Json::Memory(json), _) => Ok(std::borrow::Cow::Borrowed(json.as_ref())),
            (Json::File { offset, len }, Some(file)) => {
                use std::os::unix::fs::FileExt;
                let mut text = vec![0u8; *len as usize];
                file.file.read_exact_at(&mut text, *offset)?;
                let text = String::from_utf8(text)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                RawValue::from_string(text)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            }
            (Json::File { .. }, None) => Err(std::io::Error::other("the item file is gone")),
        }
    }
}

/// An item's place in the listing order: (archive time, id, sequence number).
pub type Key = (DateTime<Utc>, String, u64);

#[derive(Debug)]
struct Stored {
    seq: u64,
    /// From when it is listed (its archive time plus the provider's visibility lag).
    visible_at: DateTime<Utc>,
    json: Json,
}

#[derive(Debug, Default)]
struct Counters {
    requests: Mutex<BTreeMap<String, u64>>,
    bytes_served: AtomicU64,
    logins_succeeded: AtomicU64,
    logins_failed: AtomicU64,
    faults_injected: AtomicU64,
    items_appended: AtomicU64,
    fault_draws: mock_common::seeded::IdentityDraws,
}

/// What `GET /admin/v1/counters` shows.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub requests: BTreeMap<String, u64>,
    pub bytes_served: u64,
    pub logins_succeeded: u64,
    pub logins_failed: u64,
    pub faults_injected: u64,
    pub items_appended: u64,
    pub items_held: u64,
}

/// One page of a listing, already serialised.
#[derive(Debug)]
pub struct Page {
    pub json: String,
}

#[derive(Serialize)]
struct PageBody<'a> {
    window: Window,
    items: Vec<&'a RawValue>,
    next_cursor: Option<String>,
}

/// Where a listing request starts.
#[derive(Debug, Default)]
pub struct ListRequest {
    pub since: Option<String>,
    pub until: Option<String>,
    pub page_size: Option<String>,
    pub cursor: Option<String>,
}

/// A fault the server decided to inject into one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Unavailable,
    Corrupt,
    /// A listing page cut in the middle of its JSON.
    Truncated,
    /// `200` with a gateway's HTML page (login, listing, download).
    GatewayPage,
    /// `200` with JSON that is not a page envelope (listing).
    NotEnvelope,
    /// `200` with an empty body (download).
    Empty,
}

/// What a request is, for the faults it may draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Login,
    Listing,
    Download,
}

impl State {
    /// Loads a dataset: hashes passwords, checks and indexes items.
    pub fn new(
        dataset: &Dataset,
        clock: SharedClock,
        config: Config,
        admin: AdminToken,
    ) -> Result<Self, DatasetError> {
        let accounts = dataset
            .accounts()?
            .into_iter()
            .map(|a| (a.username.clone(), a))
            .collect();
        let prepared = dataset.prepare()?;
        let mut cursor_key = [0u8; 32];
        getrandom::fill(&mut cursor_key).expect("the operating system has no random source");
        let decoy_clear = new_token("decoy-");
        let state = Self(Arc::new(Inner {
            clock,
            config,
            admin,
            cursor_key,
            faults: dataset.faults.clone(),
            visibility: dataset.visibility.clone(),
            employees: dataset.employees.clone(),
            accounts,
            decoy: PasswordHash::hash(&decoy_clear).map_err(|e| DatasetError::Account {
                username: "<decoy>".into(),
                reason: e.to_string(),
            })?,
            failures: Mutex::default(),
            checks: mock_common::CheckPool::default(),
            sessions: Sessions::default(),
            store: RwLock::default(),
            counters: Counters::default(),
        }));
        state.insert(prepared).map_err(DatasetError::Store)?;
        Ok(state)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.0.clock.now()
    }

    pub fn admin(&self) -> &AdminToken {
        &self.0.admin
    }

    pub fn employees(&self) -> &[Participant] {
        &self.0.employees
    }

    fn insert(&self, prepared: Prepared) -> Result<usize, std::io::Error> {
        let mut store = self.0.store.write().expect("store lock poisoned");
        let count = prepared.items.len();
        store.attachments.extend(prepared.attachments);
        // On disk, the batch's JSON is written in one go before any item is listed.
        let mut places = Vec::new();
        if let Some(file) = &mut store.file {
            let mut batch = Vec::new();
            for item in &prepared.items {
                let text = item.json.get().as_bytes();
                let len = u32::try_from(text.len()).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "an item over 4 GiB")
                })?;
                places.push(Json::File {
                    offset: file.end + batch.len() as u64,
                    len,
                });
                batch.extend_from_slice(text);
            }
            use std::os::unix::fs::FileExt;
            file.file.write_all_at(&batch, file.end)?;
            file.end += batch.len() as u64;
        }
        let mut places = places.into_iter();
        for item in prepared.items {
            let seq = store.next_seq;
            store.next_seq += 1;
            let visible_at = item.archived_at + self.0.visibility.lag(&item.id);
            let json = places.next().unwrap_or(Json::Memory(item.json));
            store.items.insert(
                (item.archived_at, item.id, seq),
                Stored {
                    seq,
                    visible_at,
                    json,
                },
            );
        }
        Ok(count)
    }

    /// Keeps the JSON of items added from now on in a temporary file (nameless: gone with
    /// the fake, however it ends) rather than in memory: a load test's million-item day
    /// holds about 40 bytes per item in memory instead of its whole text. Pages read them
    /// back.
    pub fn keep_items_on_disk(&self) -> std::io::Result<()> {
        let (path, file) =
            mock_common::private_file(&std::env::temp_dir(), "mock-telemessage-items", "json")?;
        std::fs::remove_file(&path)?;
        self.0.store.write().expect("store lock poisoned").file = Some(ItemFile { file, end: 0 });
        Ok(())
    }

    /// Lets go of every item and attachment it holds, and empties its item file: it then
    /// lists nothing and serves no attachment. For a load run once the connector has
    /// imported the day, when nothing else will ask for it: a million-item day's index
    /// is hundreds of MB.
    pub fn forget_items(&self) -> std::io::Result<()> {
        let mut store = self.0.store.write().expect("store lock poisoned");
        store.items = BTreeMap::new();
        store.attachments = BTreeMap::new();
        if let Some(file) = &mut store.file {
            file.file.set_len(0)?;
            file.end = 0;
        }
        Ok(())
    }

    /// Adds schema items as a dataset's `items` would have brought them (checked the
    /// same way, archive times as given), without the caller building a dataset of them:
    /// a load test's million-item day is not copied into a JSON document first.
    pub fn load_items(&self, items: &[Value]) -> Result<usize, DatasetError> {
        let prepared = prepare_items(items, &[])?;
        self.insert(prepared).map_err(DatasetError::Store)
    }

    /// Appends items at run time, as the provider captures them. An item without
    /// `archived_at` is stamped with the current time.
    pub fn append(
        &self,
        mut items: Vec<Value>,
        mut raw_items: Vec<Value>,
    ) -> Result<usize, DatasetError> {
        let now = Value::String(
            self.now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
        for item in items.iter_mut().chain(raw_items.iter_mut()) {
            if let Some(obj) = item.as_object_mut() {
                obj.entry("archived_at").or_insert_with(|| now.clone());
            }
        }
        let prepared = prepare_items(&items, &raw_items)?;
        let count = self.insert(prepared).map_err(DatasetError::Store)?;
        self.0
            .counters
            .items_appended
            .fetch_add(count as u64, Ordering::Relaxed);
        Ok(count)
    }

    /// Exchanges a username and password for a bearer token.
    pub async fn login(&self, username: &str, password: &str) -> Result<(String, u64), ApiError> {
        if username.chars().count() > MAX_USERNAME || password.chars().count() > MAX_PASSWORD {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!(
                    "a username is at most {MAX_USERNAME} characters and a password at most {MAX_PASSWORD}"
                ),
            ));
        }
        let now = self.now();
        if let Some(until) = self.locked_until(username, now) {
            let seconds = (until - now).num_seconds().max(1) as u64;
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "account_locked",
                "too many failed logins; the account is locked for a while",
            )
            .with_retry_after(seconds));
        }
        let known = self.0.accounts.get(username);
        let hash = known.map_or(&self.0.decoy, |a| &a.password).clone();
        let clear = password.to_owned();
        let Ok(verified) = self.0.checks.run(move || hash.verify(&clear)).await else {
            tracing::warn!("login refused: password checks are busy");
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "login_busy",
                "too many logins are being checked at once; retry after Retry-After seconds",
            )
            .with_retry_after(1));
        };
        let now = self.now();
        if verified && known.is_some() {
            self.0
                .failures
                .lock()
                .expect("lock poisoned")
                .remove(username);
            let lifetime = self.0.config.token_lifetime;
            let token = self
                .0
                .sessions
                .issue("tm_", username.to_owned(), now + lifetime);
            self.0
                .counters
                .logins_succeeded
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(username, "login succeeded");
            Ok((token, lifetime.num_seconds().max(0) as u64))
        } else {
            self.record_failure(username, now);
            self.0
                .counters
                .logins_failed
                .fetch_add(1, Ordering::Relaxed);
            // An unknown name is the caller's text: not logged.
            match known {
                Some(_) => tracing::info!(username, "login failed"),
                None => tracing::info!("login failed for a username that is not an account"),
            }
            Err(ApiError::unauthorized(
                "invalid_credentials",
                "the username or password is wrong",
            ))
        }
    }

    fn locked_until(&self, username: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let failures = self.0.failures.lock().expect("lock poisoned");
        failures
            .get(username)
            .and_then(|f| f.locked_until)
            .filter(|until| *until > now)
    }

    fn record_failure(&self, username: &str, now: DateTime<Utc>) {
        let config = &self.0.config;
        let mut failures = self.0.failures.lock().expect("lock poisoned");
        // Forget what can no longer matter, so guessing many names cannot grow this map
        // without bound.
        failures.retain(|_, f| {
            f.locked_until.is_some_and(|u| u > now)
                || f.first.is_some_and(|t| now - t < config.lockout_window)
        });
        // Names that are not accounts are tracked too (a lockout must not tell them
        // apart), but only so many at once: a flood of made-up names costs bounded memory.
        if !failures.contains_key(username)
            && failures.len() >= config.max_tracked_names
            && !self.0.accounts.contains_key(username)
        {
            return;
        }
        let entry = failures.entry(username.to_owned()).or_default();
        match entry.first {
            Some(first) if now - first < config.lockout_window => entry.count += 1,
            _ => {
                entry.count = 1;
                entry.first = Some(now);
            }
        }
        if entry.count >= config.lockout_threshold {
            if self.0.accounts.contains_key(username) {
                tracing::warn!(username, "account locked after repeated failed logins");
            }
            *entry = Failures {
                locked_until: Some(now + config.lockout_duration),
                ..Failures::default()
            };
        }
    }

    /// The username behind an `Authorization` header, or the documented 401.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<String, ApiError> {
        let Some(token) = authorization.and_then(mock_common::secret::bearer) else {
            return Err(ApiError::unauthorized(
                "missing_token",
                "send Authorization: Bearer <access_token>",
            ));
        };
        match self.0.sessions.lookup(token, self.now()) {
            Lookup::Unknown => Err(ApiError::unauthorized(
                "invalid_token",
                "the access token is not known",
            )),
            Lookup::Expired => Err(ApiError::unauthorized(
                "token_expired",
                "the access token has expired; log in again",
            )),
            Lookup::Valid(username) => Ok(username),
        }
    }

    /// One page of a listing (`docs/telemessage-api.md` section 2).
    pub fn list(&self, request: &ListRequest) -> Result<Page, ApiError> {
        let config = &self.0.config;
        let page_size = match &request.page_size {
            None => None,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=config.max_page_size).contains(&n) => Some(n),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_request",
                        format!(
                            "page_size must be a whole number from 1 to {}",
                            config.max_page_size
                        ),
                    ));
                }
            },
        };
        let store = self.0.store.read().expect("store lock poisoned");
        let (since, until, snapshot, as_of, after, page_size) = match &request.cursor {
            Some(text) => {
                if request.since.is_some() || request.until.is_some() {
                    return Err(ApiError::bad_request(
                        "invalid_request",
                        "send either a cursor or since/until, not both",
                    ));
                }
                let c = Cursor::decode(text, &self.0.cursor_key).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_cursor",
                        "the cursor was not issued here or was altered",
                    )
                })?;
                (
                    c.since,
                    c.until,
                    c.snapshot,
                    c.as_of,
                    Some(c.after),
                    page_size.unwrap_or(c.page_size),
                )
            }
            None => {
                let since = parse_time("since", request.since.as_deref())?;
                let until = parse_time("until", request.until.as_deref())?;
                if since >= until {
                    return Err(ApiError::bad_request(
                        "invalid_window",
                        "since must be before until",
                    ));
                }
                let size = page_size.unwrap_or(config.default_page_size);
                (since, until, store.next_seq, self.now(), None, size)
            }
        };
        let lower = match &after {
            Some(key) => Bound::Excluded(key.clone()),
            None => Bound::Included((since, String::new(), 0)),
        };
        let upper = Bound::Excluded((until, String::new(), 0));
        // A listing is a snapshot: what was received, and visible, when it began.
        let mut chosen: Vec<(&Key, &Stored)> = store
            .items
            .range((lower, upper))
            .filter(|(_, s)| s.seq < snapshot && s.visible_at <= as_of)
            .take(page_size + 1)
            .collect();
        let next_cursor = if chosen.len() > page_size {
            chosen.truncate(page_size);
            let last = chosen.last().map(|(k, _)| (*k).clone());
            last.map(|after| {
                Cursor {
                    v: 2,
                    since,
                    until,
                    snapshot,
                    as_of,
                    after,
                    page_size,
                }
                .encode(&self.0.cursor_key)
            })
        } else {
            None
        };
        let read = chosen
            .iter()
            .map(|(_, s)| store.json_of(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                tracing::error!(error = %e, "an item cannot be read back from the item file");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an item cannot be read back",
                )
            })?;
        let body = PageBody {
            window: Window { since, until },
            items: read.iter().map(|json| json.as_ref()).collect(),
            next_cursor,
        };
        Ok(Page {
            json: serde_json::to_string(&body).expect("a page always serialises"),
        })
    }

    pub fn attachment(&self, id: &str) -> Option<AttachmentSource> {
        self.0
            .store
            .read()
            .expect("store lock poisoned")
            .attachments
            .get(id)
            .cloned()
    }

    /// What a listing request is about, for fault draws: its window and page, read from
    /// the cursor when there is one (a cursor's text differs between servers: it is
    /// signed with a key made at start-up).
    pub fn listing_identity(&self, request: &ListRequest) -> String {
        match request
            .cursor
            .as_deref()
            .and_then(|c| Cursor::decode(c, &self.0.cursor_key))
        {
            Some(c) => format!(
                "list {} {} after {} {} {}",
                c.since, c.until, c.after.0, c.after.1, c.after.2
            ),
            None => format!(
                "list {:?} {:?} {:?} {:?}",
                request.since, request.until, request.page_size, request.cursor
            ),
        }
    }

    /// Decides, from the dataset's seed and what the request is about (`identity`: a
    /// listing's window and page, an attachment's id) and how many times that same
    /// request came before, whether to inject a fault: never from arrival order.
    pub fn roll_fault(&self, surface: Surface, identity: &str) -> Option<Fault> {
        let f = &self.0.faults;
        // The faults this surface can meet, each with its share; the draw falls in one
        // share or past them all.
        let shares: &[(Fault, f64)] = match surface {
            Surface::Login => &[(Fault::GatewayPage, f.gateway_page_rate)],
            Surface::Listing => &[
                (Fault::Unavailable, f.unavailable_rate),
                (Fault::Truncated, f.truncated_page_rate),
                (Fault::GatewayPage, f.gateway_page_rate),
                (Fault::NotEnvelope, f.not_envelope_rate),
            ],
            Surface::Download => &[
                (Fault::Unavailable, f.unavailable_rate),
                (Fault::Corrupt, f.corrupt_download_rate),
                (Fault::GatewayPage, f.gateway_page_rate),
                (Fault::Empty, f.empty_download_rate),
            ],
        };
        if shares.iter().all(|(_, rate)| *rate <= 0.0) {
            return None;
        }
        let draw = self.0.counters.fault_draws.draw(f.seed, identity);
        let mut upto = 0.0;
        let fault = shares.iter().find_map(|(fault, rate)| {
            upto += rate;
            (draw < upto).then_some(*fault)
        });
        if fault.is_some() {
            self.0
                .counters
                .faults_injected
                .fetch_add(1, Ordering::Relaxed);
        }
        fault
    }

    /// What the transport does to the request `identity` (slow answer, cut body).
    pub fn roll_transport(&self, identity: &str) -> mock_common::transport::Drawn {
        let drawn = self
            .0
            .faults
            .transport()
            .draw(&self.0.counters.fault_draws, identity);
        if drawn.delay.is_some() || drawn.reset {
            self.0
                .counters
                .faults_injected
                .fetch_add(1, Ordering::Relaxed);
        }
        drawn
    }

    pub fn count_request(&self, route: &str) {
        *self
            .0
            .counters
            .requests
            .lock()
            .expect("lock poisoned")
            .entry(route.to_owned())
            .or_default() += 1;
    }

    pub fn count_bytes(&self, n: u64) {
        self.0.counters.bytes_served.fetch_add(n, Ordering::Relaxed);
    }

    pub fn counters(&self) -> CountersSnapshot {
        let c = &self.0.counters;
        CountersSnapshot {
            requests: c.requests.lock().expect("lock poisoned").clone(),
            bytes_served: c.bytes_served.load(Ordering::Relaxed),
            logins_succeeded: c.logins_succeeded.load(Ordering::Relaxed),
            logins_failed: c.logins_failed.load(Ordering::Relaxed),
            faults_injected: c.faults_injected.load(Ordering::Relaxed),
            items_appended: c.items_appended.load(Ordering::Relaxed),
            items_held: self
                .0
                .store
                .read()
                .expect("store lock poisoned")
                .items
                .len() as u64,
        }
    }
}

fn parse_time(name: &str, value: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    let value = value.ok_or_else(|| {
        ApiError::bad_request("invalid_request", format!("{name} is required (RFC 3339)"))
    })?;
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.to_utc())
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_request",
                format!("{name} must be an RFC 3339 timestamp such as 2026-11-22T00:00:00Z"),
            )
        })
}
