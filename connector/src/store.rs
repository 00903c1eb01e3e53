//! The connector's state, in SQLite: the windows (and the end of the last one done), the
//! items staged for the open window, every delivery (item, mailbox, Graph id) and every
//! skip. A window is advanced only when each of its items is delivered or skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::errors::ConnectorError;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    since TEXT NOT NULL,
    until TEXT NOT NULL,
    fetched INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    opened_at TEXT NOT NULL,
    closed_at TEXT
);
CREATE TABLE IF NOT EXISTS staged (
    window_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (window_id, item_id)
);
CREATE INDEX IF NOT EXISTS staged_order ON staged (window_id, seq);
CREATE TABLE IF NOT EXISTS deliveries (
    item_id TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    graph_id TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (item_id, mailbox)
);
CREATE TABLE IF NOT EXISTS skips (
    item_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    window_id INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (item_id, reason)
);
CREATE TABLE IF NOT EXISTS quarantine (
    window_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    item_id TEXT,
    reason TEXT NOT NULL,
    file TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (window_id, position)
);
CREATE TABLE IF NOT EXISTS held (
    item_id TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    window_id INTEGER NOT NULL,
    first_failed_at TEXT NOT NULL,
    runs INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    needs_person INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS owed_files (
    item_id TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    window_id INTEGER NOT NULL,
    first_failed_at TEXT NOT NULL,
    runs INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    needs_person INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS seen (
    item_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    revision INTEGER NOT NULL,
    window_id INTEGER NOT NULL,
    PRIMARY KEY (item_id, digest)
);
CREATE TABLE IF NOT EXISTS look_backs (window_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS unreported (window_id INTEGER PRIMARY KEY, accounting TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refused_secrets (
    setting TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    code TEXT NOT NULL,
    refused_at TEXT NOT NULL
);
";

/// An item that could not be delivered when its window closed: kept here (its JSON as
/// received) and tried again by the next runs, until it is delivered, skipped with a
/// reason, or declared to need a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub item_id: String,
    pub json: String,
    pub window_id: i64,
    pub first_failed_at: DateTime<Utc>,
    /// Runs in which it failed.
    pub runs: u32,
    pub last_error: String,
    pub needs_person: bool,
}

/// An item the provider sent that could not be read, kept byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quarantined {
    pub window_id: i64,
    /// Its place in the window's listing, from 1.
    pub position: u64,
    pub item_id: Option<String>,
    pub reason: String,
    pub file: String,
}

/// A skip as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipRecord {
    pub item_id: String,
    pub reason: String,
    pub detail: String,
}

/// Where one delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// The import was sent; its outcome is not known (written by earlier versions, which
    /// recorded every attempt).
    Attempted,
    Delivered,
}

/// The key an item's content is recorded under (staging, deliveries, the held list):
/// the provider's id for the first content of an id, and the id with its revision number
/// for a later, different content. The mapping is one to one: a key with a U+001F is
/// always `id U+001F revision`, split at its last U+001F.
pub fn record_key(item_id: &str, revision: u32) -> String {
    if revision <= 1 && !item_id.contains('\u{1f}') {
        item_id.to_owned()
    } else {
        format!("{item_id}\u{1f}{revision}")
    }
}

/// The provider's id and the revision a record key stands for.
pub fn split_key(key: &str) -> (&str, u32) {
    match key.rsplit_once('\u{1f}') {
        Some((id, n)) => (id, n.parse().unwrap_or(1)),
        None => (key, 1),
    }
}

/// A record key as a person reads and types it: the id, or `ID revision N` for a later
/// content of the id.
pub fn display_key(key: &str) -> String {
    match split_key(key) {
        (id, 1) if !key.contains('\u{1f}') => id.to_owned(),
        (id, n) => format!("{id} revision {n}"),
    }
}

/// Which listing a page belongs to, for staging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// A window's listing (or its listing again after a crash).
    First,
    /// A window taken again by hand (`--since`).
    Again,
    /// A closed window listed once more for late items.
    LookBack,
}

/// An item a listing page brought that the state had not seen: a new id, or an id seen
/// before with different content (a revision above 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContent {
    pub key: String,
    pub item_id: String,
    pub revision: u32,
}

/// An open window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub id: i64,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub fetched: bool,
    /// A window listed again after it closed, for items the provider listed late: what
    /// it finds is reported as `late_visible`.
    pub look_back: bool,
    /// Begun by this run. Only in such a window is a delivery with no record known never
    /// to have been sent: in any other (a window an earlier run left open, a held item)
    /// it is looked up in the mailbox before its first send.
    pub fresh: bool,
    /// The state has no history of this window's time: it was begun on a state that had
    /// begun no window before (new, emptied, deleted or set aside after damage), or it
    /// starts before the earliest window the state ever began (`--since` further back).
    /// A state that is gone may have delivered its items: each delivery is looked up in
    /// the mailbox before it is sent (`docs/rules.md`, "A lost state").
    pub unknown_past: bool,
}

/// How deliveries are committed: many to a transaction, at least every `max_delay`.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    pub max_records: usize,
    pub max_delay: std::time::Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_records: 512,
            max_delay: std::time::Duration::from_millis(200),
        }
    }
}

/// A window closed by a run that stopped before its report.
#[derive(Debug, Clone)]
pub struct Unreported {
    pub id: i64,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub look_back: bool,
    pub accounting: crate::report::Accounting,
}

/// Deliveries made and not yet committed: (item, mailbox, address, Graph id, time). At
/// most one group, so looking through it is cheap.
#[derive(Debug)]
struct Pending {
    records: Vec<(String, String, String, String, String)>,
    since: std::time::Instant,
}

/// A staged item: its place in the listing and its JSON as received.
#[derive(Debug, Clone)]
pub struct Staged {
    pub seq: i64,
    pub item_id: String,
    pub json: String,
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// Locked before `db` whenever both are.
    pending: Arc<Mutex<Pending>>,
    group: GroupCommit,
}

/// A SQLite failure, named as damage when SQLite says the file is not a database or is
/// corrupt (what `connector state set-aside` is for), and as a full disk when it is.
fn damaged_or(path: &Path, e: rusqlite::Error) -> ConnectorError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match e.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => ConnectorError::StateDamaged {
            path: path.display().to_string(),
            detail: e.to_string(),
        },
        Some(rusqlite::ErrorCode::DiskFull) => ConnectorError::State {
            path: path.display().to_string(),
            reason: format!(
                "no space left on the device ({e}). The run stopped and nothing is lost: what was not recorded is looked up in the mailbox by the next run. Free space under the state directory, then run again"
            ),
        },
        _ => ConnectorError::State {
            path: path.display().to_string(),
            reason: e.to_string(),
        },
    }
}

/// The database file exists and only its owner may read it (it names every mailbox and
/// item delivered), before SQLite opens it.
fn private_file(path: &Path) -> Result<(), ConnectorError> {
    let fail = |e: std::io::Error| ConnectorError::State {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(path).map_err(fail)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    }
    #[cfg(not(unix))]
    options.open(path).map_err(fail)?;
    Ok(())
}

/// Moves a state database (and its journal files) aside, to `NAME.set-aside-TIME`, so
/// that the next run begins a new state that looks every delivery up before sending.
/// Answers where it went; a state that is not there is no error (`None`).
pub fn set_aside(path: &Path, now: DateTime<Utc>) -> Result<Option<PathBuf>, ConnectorError> {
    if !path.exists() {
        return Ok(None);
    }
    let stamp = now.format("%Y%m%dT%H%M%SZ");
    let name = |suffix: &str| {
        let mut os = path.as_os_str().to_owned();
        os.push(suffix);
        PathBuf::from(os)
    };
    let target = name(&format!(".set-aside-{stamp}"));
    for suffix in ["", "-wal", "-shm"] {
        let from = name(suffix);
        if from.exists() {
            let to = name(&format!(".set-aside-{stamp}{suffix}"));
            std::fs::rename(&from, &to).map_err(|e| ConnectorError::State {
                path: from.display().to_string(),
                reason: format!("cannot move it aside to {}: {e}", to.display()),
            })?;
        }
    }
    Ok(Some(target))
}

/// Every row of a table of things waiting for a later run (`held`, `owed_files`: the
/// same columns), oldest first.
fn waiting_rows(db: &Connection, table: &'static str) -> rusqlite::Result<Vec<Held>> {
    let mut stmt = db.prepare_cached(&format!(
        "SELECT item_id, json, window_id, first_failed_at, runs, last_error, needs_person FROM {table} ORDER BY first_failed_at, item_id"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(Held {
            item_id: r.get(0)?,
            json: r.get(1)?,
            window_id: r.get(2)?,
            first_failed_at: parse_ts(&r.get::<_, String>(3)?),
            runs: r.get::<_, i64>(4)? as u32,
            last_error: r.get(5)?,
            needs_person: r.get::<_, i64>(6)? != 0,
        })
    })?;
    rows.collect()
}

/// Marks a row of a waiting table as needing a person: no longer tried by itself.
fn mark_waiting(db: &Connection, table: &'static str, item_id: &str) -> rusqlite::Result<()> {
    db.execute(
        &format!("UPDATE {table} SET needs_person = 1 WHERE item_id = ?1"),
        params![item_id],
    )
    .map(|_| ())
}

/// Puts a row of a waiting table back to be tried by the next run, as if it had just
/// failed for the first time. Answers whether there was such a row.
fn retry_waiting(
    db: &Connection,
    table: &'static str,
    item_id: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    db.execute(
        &format!(
            "UPDATE {table} SET needs_person = 0, runs = 0, first_failed_at = ?2 WHERE item_id = ?1"
        ),
        params![item_id, ts(now)],
    )
    .map(|n| n > 0)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .unwrap_or_default()
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, ConnectorError> {
        let fail = |e: rusqlite::Error| damaged_or(path, e);
        private_file(path)?;
        let db = Connection::open(path).map_err(fail)?;
        // A damaged file is named as such before anything is written to it.
        let check: String = db
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(fail)?;
        if check != "ok" {
            return Err(ConnectorError::StateDamaged {
                path: path.display().to_string(),
                detail: format!("integrity check: {}", crate::http::clip(&check, 200)),
            });
        }
        db.execute_batch(SCHEMA).map_err(fail)?;
        db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?1)",
            params![ts(Utc::now())],
        )
        .map_err(fail)?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
            path: path.to_path_buf(),
            pending: Arc::new(Mutex::new(Pending {
                records: Vec::new(),
                since: std::time::Instant::now(),
            })),
            group: GroupCommit::default(),
        })
    }

    /// The start of the earliest window this state ever began; `None` for a state with
    /// no history (new, emptied, or recreated after a loss).
    pub fn history_from(&self) -> Result<Option<DateTime<Utc>>, ConnectorError> {
        self.meta("history_from").map(|v| v.map(|s| parse_ts(&s)))
    }

    /// When this state database was created.
    pub fn created_at(&self) -> Result<Option<DateTime<Utc>>, ConnectorError> {
        self.meta("created_at").map(|v| v.map(|s| parse_ts(&s)))
    }

    fn meta(&self, key: &str) -> Result<Option<String>, ConnectorError> {
        self.with(|db| {
            db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
                r.get::<_, String>(0)
            })
            .optional()
        })
    }

    /// How many deliveries go to one transaction, and how long one may wait.
    pub fn with_group_commit(mut self, group: GroupCommit) -> Self {
        self.group = group;
        self
    }

    /// Commits the deliveries made so far in one transaction.
    pub fn flush(&self) -> Result<(), ConnectorError> {
        let mut pending = self.pending.lock().expect("state lock poisoned");
        self.flush_locked(&mut pending)
    }

    fn flush_locked(&self, pending: &mut Pending) -> Result<(), ConnectorError> {
        pending.since = std::time::Instant::now();
        if pending.records.is_empty() {
            return Ok(());
        }
        self.with(|db| {
            let tx = db.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO deliveries (item_id, mailbox, address, state, graph_id, updated_at)
                     VALUES (?1, ?2, ?3, 'delivered', ?4, ?5)
                     ON CONFLICT(item_id, mailbox) DO UPDATE SET state = 'delivered',
                        graph_id = excluded.graph_id, updated_at = excluded.updated_at",
                )?;
                for (item, mailbox, address, graph_id, at) in &pending.records {
                    stmt.execute(params![item, mailbox, address, graph_id, at])?;
                }
            }
            tx.commit()
        })?;
        pending.records.clear();
        Ok(())
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ConnectorError> {
        let db = self.db.lock().expect("state lock poisoned");
        f(&db).map_err(|e| damaged_or(&self.path, e))
    }

    /// The end of the last window fully accounted for.
    pub fn last_until(&self) -> Result<Option<DateTime<Utc>>, ConnectorError> {
        self.with(|db| {
            db.query_row("SELECT value FROM meta WHERE key = 'last_until'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()
        })
        .map(|v| v.map(|s| parse_ts(&s)))
    }

    /// The window left open by an earlier run, if any.
    pub fn open_window(&self) -> Result<Option<Window>, ConnectorError> {
        self.with(|db| {
            db.query_row(
                "SELECT id, since, until, fetched, window_id IS NOT NULL FROM windows
                 LEFT JOIN look_backs ON window_id = id WHERE done = 0 ORDER BY id LIMIT 1",
                [],
                |r| {
                    Ok(Window {
                        id: r.get(0)?,
                        since: parse_ts(&r.get::<_, String>(1)?),
                        until: parse_ts(&r.get::<_, String>(2)?),
                        fetched: r.get::<_, i64>(3)? != 0,
                        look_back: r.get::<_, i64>(4)? != 0,
                        fresh: false,
                        // Not begun by this run: every delivery is looked up anyway.
                        unknown_past: false,
                    })
                },
            )
            .optional()
        })
    }

    /// Opens a window; `look_back` for a window listed again after it closed.
    pub fn begin_window(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        look_back: bool,
    ) -> Result<Window, ConnectorError> {
        let (id, unknown_past) = self.with(|db| {
            let tx = db.unchecked_transaction()?;
            // Decided before this window joins the history.
            let history_from: Option<String> = tx
                .query_row(
                    "SELECT value FROM meta WHERE key = 'history_from'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let unknown_past = history_from.is_none_or(|from| since < parse_ts(&from));
            if unknown_past {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('history_from', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![ts(since)],
                )?;
            }
            tx.execute(
                "INSERT INTO windows (since, until, opened_at) VALUES (?1, ?2, ?3)",
                params![ts(since), ts(until), ts(now)],
            )?;
            let id = tx.last_insert_rowid();
            if look_back {
                tx.execute(
                    "INSERT INTO look_backs (window_id) VALUES (?1)",
                    params![id],
                )?;
            }
            tx.commit()?;
            Ok((id, unknown_past))
        })?;
        Ok(Window {
            id,
            since,
            until,
            fetched: false,
            look_back,
            fresh: true,
            unknown_past,
        })
    }

    /// Stages a page of items as received, in one transaction: (id, JSON, digest of its
    /// content). Content seen before under the same id (a repeat, or the same page listed
    /// again after a crash) is not staged again; an id seen before with other content is
    /// staged as its next revision. Answers what was new.
    ///
    /// `Listing::Again` is for a window taken again on purpose (`--since`): content seen
    /// before is staged too, under its revision, so that it is worked on once more (an
    /// item that was unmapped may map now); deliveries already recorded are not repeated.
    /// In a `Listing::LookBack`, an id that a connector from before this record of
    /// contents delivered or skipped is taken as seen, not as a late item.
    pub fn stage_page(
        &self,
        window: i64,
        items: &[(String, &str, String)],
        listing: Listing,
    ) -> Result<Vec<NewContent>, ConnectorError> {
        self.with(|db| {
            let tx = db.unchecked_transaction()?;
            let mut new = Vec::new();
            {
                let mut known = tx.prepare_cached(
                    "SELECT revision FROM seen WHERE item_id = ?1 AND digest = ?2",
                )?;
                let mut last = tx.prepare_cached("SELECT MAX(revision) FROM seen WHERE item_id = ?1")?;
                let mut see = tx.prepare_cached(
                    "INSERT INTO seen (item_id, digest, revision, window_id) VALUES (?1, ?2, ?3, ?4)",
                )?;
                let mut stage = tx.prepare_cached(
                    "INSERT OR IGNORE INTO staged (window_id, seq, item_id, json)
                     VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM staged WHERE window_id = ?1), ?2, ?3)",
                )?;
                let mut recorded_before = tx.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM deliveries WHERE item_id = ?1)
                         OR EXISTS (SELECT 1 FROM skips WHERE item_id = ?1)",
                )?;
                for (item_id, json, digest) in items {
                    if let Some(revision) = known
                        .query_row(params![item_id, digest], |r| r.get::<_, i64>(0))
                        .optional()?
                    {
                        if listing == Listing::Again {
                            stage.execute(params![window, record_key(item_id, revision as u32), json])?;
                        }
                        continue;
                    }
                    let previous = last.query_row(params![item_id], |r| r.get::<_, Option<i64>>(0))?;
                    if previous.is_none()
                        && listing == Listing::LookBack
                        && recorded_before.query_row(params![item_id], |r| r.get::<_, bool>(0))?
                    {
                        see.execute(params![item_id, digest, 1, window])?;
                        continue;
                    }
                    let revision = previous.map_or(1, |n| n + 1) as u32;
                    see.execute(params![item_id, digest, revision, window])?;
                    let key = record_key(item_id, revision);
                    stage.execute(params![window, key, json])?;
                    new.push(NewContent {
                        key,
                        item_id: item_id.clone(),
                        revision,
                    });
                }
            }
            tx.commit()?;
            Ok(new)
        })
    }

    /// Whether this content of `item_id` (by its digest) was seen before.
    pub fn seen(&self, item_id: &str, digest: &str) -> Result<bool, ConnectorError> {
        self.with(|db| {
            db.prepare_cached("SELECT 1 FROM seen WHERE item_id = ?1 AND digest = ?2")?
                .query_row(params![item_id, digest], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
        })
    }

    /// Records content as seen (for content that is not staged: an unreadable item,
    /// once it is in the quarantine).
    pub fn mark_seen(
        &self,
        item_id: &str,
        digest: &str,
        window: i64,
    ) -> Result<(), ConnectorError> {
        self.with(|db| {
            db.execute(
                "INSERT OR IGNORE INTO seen (item_id, digest, revision, window_id) VALUES (?1, ?2, 0, ?3)",
                params![item_id, digest, window],
            )
            .map(|_| ())
        })
    }

    pub fn mark_fetched(&self, window: i64) -> Result<(), ConnectorError> {
        self.with(|db| {
            db.execute(
                "UPDATE windows SET fetched = 1 WHERE id = ?1",
                params![window],
            )
            .map(|_| ())
        })
    }

    /// The highest sequence number staged in `window` so far (0 if none): sequence
    /// numbers grow in the order items are staged.
    pub fn last_staged_seq(&self, window: i64) -> Result<i64, ConnectorError> {
        self.with(|db| {
            let mut stmt =
                db.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM staged WHERE window_id = ?1")?;
            stmt.query_row(params![window], |r| r.get(0))
        })
    }

    /// Up to `limit` staged items after `after_seq`, in listing order.
    pub fn staged_after(
        &self,
        window: i64,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<Staged>, ConnectorError> {
        self.with(|db| {
            let mut stmt = db.prepare_cached("SELECT seq, item_id, json FROM staged WHERE window_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")?;
            let rows = stmt.query_map(params![window, after_seq, limit as i64], |r| Ok(Staged { seq: r.get(0)?, item_id: r.get(1)?, json: r.get(2)? }))?;
            rows.collect()
        })
    }

    /// Closes a window: records its end as the new start and drops its staged items.
    /// Every delivery made is committed first: a closed window never has an unrecorded
    /// delivery.
    /// `accounting` is what became of the window's items, kept until a report has it.
    pub fn finish_window(
        &self,
        window: &Window,
        accounting: &crate::report::Accounting,
        now: DateTime<Utc>,
    ) -> Result<(), ConnectorError> {
        let accounting = serde_json::to_string(accounting).unwrap_or_default();
        self.flush()?;
        self.with(|db| {
            let tx = db.unchecked_transaction()?;
            tx.execute("UPDATE windows SET done = 1, closed_at = ?2 WHERE id = ?1", params![window.id, ts(now)])?;
            // Closed, and in no report yet: a run stopped before its end leaves it here,
            // for the next run to report.
            tx.execute(
                "INSERT OR REPLACE INTO unreported (window_id, accounting) VALUES (?1, ?2)",
                params![window.id, accounting],
            )?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('last_until', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value
                 WHERE excluded.value > meta.value",
                params![ts(window.until)],
            )?;
            tx.execute("DELETE FROM staged WHERE window_id = ?1", params![window.id])?;
            tx.commit()
        })
    }

    pub fn delivery(
        &self,
        item_id: &str,
        mailbox: &str,
    ) -> Result<Option<DeliveryState>, ConnectorError> {
        Ok(self.deliveries(item_id)?.remove(mailbox))
    }

    /// What the state knows of each of an item's deliveries, by mailbox: one look for
    /// all of them (asked for every item).
    pub fn deliveries(
        &self,
        item_id: &str,
    ) -> Result<HashMap<String, DeliveryState>, ConnectorError> {
        // The uncommitted group first: a delivery recorded there may be committed (and
        // leave it) before the table is read, never the other way round.
        let pending: Vec<String> = self
            .pending
            .lock()
            .expect("state lock poisoned")
            .records
            .iter()
            .filter(|(item, ..)| item == item_id)
            .map(|(_, mailbox, ..)| mailbox.clone())
            .collect();
        let mut known = self.with(|db| {
            db.prepare_cached("SELECT mailbox, state FROM deliveries WHERE item_id = ?1")?
                .query_map(params![item_id], |r| {
                    let state = match r.get_ref(1)?.as_str()? {
                        "delivered" => DeliveryState::Delivered,
                        _ => DeliveryState::Attempted,
                    };
                    Ok((r.get::<_, String>(0)?, state))
                })?
                .collect::<rusqlite::Result<HashMap<_, _>>>()
        })?;
        known.extend(pending.into_iter().map(|m| (m, DeliveryState::Delivered)));
        Ok(known)
    }

    /// Records a delivery. It is committed with others (group commit): a crash may lose
    /// the last ones, which is why a delivery with no record, outside a window this run
    /// began, is looked up before it is sent.
    pub fn mark_delivered(
        &self,
        item_id: &str,
        mailbox: &str,
        address: &str,
        graph_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ConnectorError> {
        let mut pending = self.pending.lock().expect("state lock poisoned");
        pending.records.push((
            item_id.to_owned(),
            mailbox.to_owned(),
            address.to_owned(),
            graph_id.to_owned(),
            ts(now),
        ));
        if pending.records.len() >= self.group.max_records
            || pending.since.elapsed() >= self.group.max_delay
        {
            self.flush_locked(&mut pending)?;
        }
        Ok(())
    }

    /// Windows closed by a run that never got to its report (stopped dead after
    /// closing them), oldest first, with what became of their items.
    pub fn unreported_windows(&self) -> Result<Vec<Unreported>, ConnectorError> {
        self.with(|db| {
            let mut stmt = db.prepare_cached(
                "SELECT id, since, until, look_backs.window_id IS NOT NULL, accounting FROM windows
                 JOIN unreported ON unreported.window_id = id
                 LEFT JOIN look_backs ON look_backs.window_id = id ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(Unreported {
                    id: r.get(0)?,
                    since: parse_ts(&r.get::<_, String>(1)?),
                    until: parse_ts(&r.get::<_, String>(2)?),
                    look_back: r.get(3)?,
                    accounting: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                })
            })?;
            rows.collect()
        })
    }

    /// Every closed window is now in a report.
    pub fn mark_reported(&self) -> Result<(), ConnectorError> {
        self.with(|db| db.execute("DELETE FROM unreported", []).map(|_| ()))
    }

    /// Every skip recorded for a window, whichever run recorded it.
    pub fn skips_of_window(&self, window: i64) -> Result<Vec<SkipRecord>, ConnectorError> {
        self.with(|db| {
            let mut stmt = db.prepare_cached(
                "SELECT item_id, reason, detail FROM skips WHERE window_id = ?1 ORDER BY recorded_at, item_id, reason",
            )?;
            let rows = stmt.query_map(params![window], |r| {
                Ok(SkipRecord {
                    item_id: r.get(0)?,
                    reason: r.get(1)?,
                    detail: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Records an unreadable item kept in the quarantine; the same place twice (a
    /// window listed again after a crash) is one record.
    pub fn record_quarantine(
        &self,
        q: &Quarantined,
        now: DateTime<Utc>,
    ) -> Result<(), ConnectorError> {
        self.with(|db| {
            db.execute(
                "INSERT INTO quarantine (window_id, position, item_id, reason, file, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(window_id, position) DO UPDATE SET item_id = excluded.item_id, reason = excluded.reason, file = excluded.file",
                params![q.window_id, q.position as i64, q.item_id, q.reason, q.file, ts(now)],
            )
            .map(|_| ())
        })
    }

    /// The quarantine records of a window, in listing order.
    pub fn quarantine_of_window(&self, window: i64) -> Result<Vec<Quarantined>, ConnectorError> {
        self.with(|db| {
            let mut stmt = db.prepare_cached(
                "SELECT window_id, position, item_id, reason, file FROM quarantine WHERE window_id = ?1 ORDER BY position",
            )?;
            let rows = stmt.query_map(params![window], |r| {
                Ok(Quarantined {
                    window_id: r.get(0)?,
                    position: r.get::<_, i64>(1)? as u64,
                    item_id: r.get(2)?,
                    reason: r.get(3)?,
                    file: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Puts a failed item on the held list, or counts one more failed run for it. Answers
    /// the record as it now stands.
    pub fn hold(
        &self,
        item_id: &str,
        json: &str,
        window: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ConnectorError> {
        self.flush()?;
        self.with(|db| {
            db.execute(
                "INSERT INTO held (item_id, json, window_id, first_failed_at, runs, last_error) VALUES (?1, ?2, ?3, ?4, 1, ?5)
                 ON CONFLICT(item_id) DO UPDATE SET runs = held.runs + 1, last_error = excluded.last_error",
                params![item_id, json, window, ts(now), error],
            )
            .map(|_| ())
        })
    }

    /// Marks a held item as needing a person: it is no longer tried by itself.
    pub fn mark_needs_person(&self, item_id: &str) -> Result<(), ConnectorError> {
        self.with(|db| mark_waiting(db, "held", item_id))
    }

    /// Removes an item from the held list (delivered, skipped with a reason, or given up).
    pub fn release(&self, item_id: &str) -> Result<bool, ConnectorError> {
        // Its deliveries are committed before it leaves the list.
        self.flush()?;
        self.with(|db| {
            db.execute("DELETE FROM held WHERE item_id = ?1", params![item_id])
                .map(|n| n > 0)
        })
    }

    /// Puts an item that needs a person back on the list to be tried by the next run, as
    /// if it had just failed for the first time.
    pub fn retry_held(&self, item_id: &str, now: DateTime<Utc>) -> Result<bool, ConnectorError> {
        self.with(|db| retry_waiting(db, "held", item_id, now))
    }

    /// Records that an item's file is owed: its message goes without it, and the file
    /// follows when a later run can fetch it. Written before the first delivery of that
    /// message, so that every delivered copy without the file has its record. Recording
    /// it again keeps the first record.
    pub fn owe_file(
        &self,
        item_id: &str,
        json: &str,
        window: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ConnectorError> {
        self.with(|db| {
            db.execute(
                "INSERT OR IGNORE INTO owed_files (item_id, json, window_id, first_failed_at, runs, last_error)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5)",
                params![item_id, json, window, ts(now), error],
            )
            .map(|_| ())
        })
    }

    /// Whether the item's file is owed (its message is then always built without it).
    pub fn file_owed(&self, item_id: &str) -> Result<bool, ConnectorError> {
        self.with(|db| {
            db.query_row(
                "SELECT 1 FROM owed_files WHERE item_id = ?1",
                params![item_id],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
        })
    }

    /// A run tried to fetch an owed file and could not: one more run counted.
    pub fn owed_failed_again(&self, item_id: &str, error: &str) -> Result<(), ConnectorError> {
        self.with(|db| {
            db.execute(
                "UPDATE owed_files SET runs = runs + 1, last_error = ?2 WHERE item_id = ?1",
                params![item_id, error],
            )
            .map(|_| ())
        })
    }

    /// An owed file is tried no more by itself: a person must look.
    pub fn mark_owed_needs_person(&self, item_id: &str) -> Result<(), ConnectorError> {
        self.with(|db| mark_waiting(db, "owed_files", item_id))
    }

    /// Puts an owed file that needs a person back to be tried by the next run.
    pub fn retry_owed(&self, item_id: &str, now: DateTime<Utc>) -> Result<bool, ConnectorError> {
        self.with(|db| retry_waiting(db, "owed_files", item_id, now))
    }

    /// The file is delivered to every mailbox that has the item: no longer owed.
    pub fn file_paid(&self, item_id: &str) -> Result<(), ConnectorError> {
        self.flush()?;
        self.with(|db| {
            db.execute(
                "DELETE FROM owed_files WHERE item_id = ?1",
                params![item_id],
            )
            .map(|_| ())
        })
    }

    /// The files owed, oldest first (as [`Held`]: the item, when it was first owed, the
    /// runs that could not fetch it, the last error, whether a person must look).
    pub fn owed_files(&self) -> Result<Vec<Held>, ConnectorError> {
        self.with(|db| waiting_rows(db, "owed_files"))
    }

    /// The mailboxes (key, address) an item is recorded as delivered to.
    pub fn delivered_to(&self, item_id: &str) -> Result<Vec<(String, String)>, ConnectorError> {
        self.flush()?;
        self.with(|db| {
            let mut stmt = db.prepare_cached(
                "SELECT mailbox, address FROM deliveries WHERE item_id = ?1 AND state = 'delivered' ORDER BY mailbox",
            )?;
            let rows = stmt.query_map(params![item_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// The held items, oldest first.
    pub fn held(&self) -> Result<Vec<Held>, ConnectorError> {
        self.with(|db| waiting_rows(db, "held"))
    }

    /// The digest of a secret the service refused for `setting`, if one is recorded.
    pub fn refused_secret(
        &self,
        setting: &str,
    ) -> Result<Option<(String, String, DateTime<Utc>)>, ConnectorError> {
        self.with(|db| {
            db.query_row(
                "SELECT digest, code, refused_at FROM refused_secrets WHERE setting = ?1",
                params![setting],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        parse_ts(&r.get::<_, String>(2)?),
                    ))
                },
            )
            .optional()
        })
    }

    /// Remembers that the secret of `setting` was refused, as a digest only.
    pub fn record_refused_secret(
        &self,
        setting: &str,
        digest: &str,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ConnectorError> {
        self.with(|db| {
            db.execute(
                "INSERT INTO refused_secrets (setting, digest, code, refused_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(setting) DO UPDATE SET digest = excluded.digest, code = excluded.code, refused_at = excluded.refused_at",
                params![setting, digest, code, ts(now)],
            )
            .map(|_| ())
        })
    }

    /// Forgets a refusal: the secret of `setting` was accepted.
    pub fn clear_refused_secret(&self, setting: &str) -> Result<(), ConnectorError> {
        self.with(|db| {
            db.execute(
                "DELETE FROM refused_secrets WHERE setting = ?1",
                params![setting],
            )
            .map(|_| ())
        })
    }

    /// How many items were ever skipped (whole or their file) for `reason`.
    pub fn skips_for(&self, reason: crate::report::SkipReason) -> Result<u64, ConnectorError> {
        self.with(|db| {
            db.prepare_cached("SELECT COUNT(*) FROM skips WHERE reason = ?1")?
                .query_row(params![reason.code()], |row| row.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
        })
    }

    pub fn record_skip(
        &self,
        item_id: &str,
        reason: crate::report::SkipReason,
        detail: &str,
        window: i64,
        now: DateTime<Utc>,
    ) -> Result<(), ConnectorError> {
        self.with(|db| {
            db.prepare_cached(
                "INSERT INTO skips (item_id, reason, detail, window_id, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(item_id, reason) DO UPDATE SET detail = excluded.detail, recorded_at = excluded.recorded_at",
            )?
            .execute(params![item_id, reason.code(), detail, window, ts(now)])
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn windows_stage_and_deliveries_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("connector-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.sqlite");
        let now = t("2026-11-23T02:00:00Z");
        let never = GroupCommit {
            max_records: usize::MAX,
            max_delay: std::time::Duration::MAX,
        };
        {
            let store = Store::open(&path).unwrap().with_group_commit(never);
            assert_eq!(store.last_until().unwrap(), None);
            let w = store
                .begin_window(
                    t("2026-11-22T00:00:00Z"),
                    t("2026-11-23T00:00:00Z"),
                    now,
                    false,
                )
                .unwrap();
            assert!(w.fresh);
            let item = |id: &str, digest: &str| (id.to_owned(), "{}", digest.to_owned());
            let new = store
                .stage_page(
                    w.id,
                    &[item("wa-2", "d2"), item("wa-1", "d1")],
                    Listing::First,
                )
                .unwrap();
            assert_eq!(new.len(), 2);
            let again = store
                .stage_page(
                    w.id,
                    &[item("wa-2", "d2"), item("wa-2", "d2-revised")],
                    Listing::First,
                )
                .unwrap();
            assert_eq!(
                again,
                [NewContent {
                    key: record_key("wa-2", 2),
                    item_id: "wa-2".into(),
                    revision: 2
                }],
                "the same content is staged once; changed content is its next revision"
            );
            store
                .mark_delivered("wa-1", "m1", "a@x", "AAMk0", now)
                .unwrap();
            assert_eq!(
                store.delivery("wa-1", "m1").unwrap(),
                Some(DeliveryState::Delivered),
                "an uncommitted delivery is known to its run"
            );
            // Dropped without a commit: a crash.
        }
        let store = Store::open(&path).unwrap().with_group_commit(GroupCommit {
            max_records: 2,
            max_delay: std::time::Duration::MAX,
        });
        let w = store.open_window().unwrap().unwrap();
        assert!(
            !w.fresh,
            "a window left open is not fresh: its deliveries are looked up"
        );
        assert_eq!(
            store.delivery("wa-1", "m1").unwrap(),
            None,
            "the crash lost the uncommitted delivery"
        );
        let staged = store.staged_after(w.id, 0, 10).unwrap();
        assert_eq!(
            staged
                .iter()
                .map(|s| s.item_id.as_str())
                .collect::<Vec<_>>(),
            ["wa-2", "wa-1", "wa-2\u{1f}2"]
        );
        store
            .mark_delivered("wa-2", "m1", "a@x", "AAMk1", now)
            .unwrap();
        store
            .mark_delivered("wa-2", "m2", "b@x", "AAMk2", now)
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.delivery("wa-2", "m2").unwrap(),
            Some(DeliveryState::Delivered),
            "a full group is committed"
        );
        store
            .mark_delivered("wa-1", "m1", "a@x", "AAMk0", now)
            .unwrap();
        store
            .finish_window(&w, &crate::report::Accounting::default(), now)
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.delivery("wa-1", "m1").unwrap(),
            Some(DeliveryState::Delivered),
            "closing a window commits its deliveries first"
        );
        assert_eq!(store.last_until().unwrap(), Some(t("2026-11-23T00:00:00Z")));
        assert_eq!(store.open_window().unwrap(), None);
        assert!(store.staged_after(w.id, 0, 10).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_look_back_takes_what_an_older_connector_recorded_as_seen() {
        let dir = std::env::temp_dir().join(format!("connector-store-lb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("state.sqlite")).unwrap();
        let now = t("2026-11-24T00:30:00Z");
        let (since, until) = (t("2026-11-22T00:00:00Z"), t("2026-11-23T00:00:00Z"));
        // Recorded by a version that kept no digests: a delivery and a skip, no `seen`.
        store
            .mark_delivered("wa-old", "m1", "a@x", "AAMk0", now)
            .unwrap();
        store.flush().unwrap();
        store
            .record_skip(
                "wa-unmapped",
                crate::report::SkipReason::Unmapped,
                "-",
                1,
                now,
            )
            .unwrap();
        let w = store.begin_window(since, until, now, true).unwrap();
        let page = [
            ("wa-old".to_owned(), "{}", "d-old".to_owned()),
            ("wa-unmapped".to_owned(), "{}", "d-un".to_owned()),
            ("wa-late".to_owned(), "{}", "d-late".to_owned()),
        ];
        let new = store.stage_page(w.id, &page, Listing::LookBack).unwrap();
        assert_eq!(
            new.iter().map(|n| n.key.as_str()).collect::<Vec<_>>(),
            ["wa-late"],
            "only what no connector recorded is late"
        );
        assert!(store.seen("wa-old", "d-old").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn record_keys_are_one_to_one() {
        for (id, revision) in [
            ("wa-1", 1),
            ("wa-1", 2),
            ("wa-1\u{1f}2", 1),
            ("wa-1\u{1f}2", 3),
            ("", 1),
            ("\u{1f}", 1),
        ] {
            let key = record_key(id, revision);
            assert_eq!(split_key(&key), (id, revision), "{key:?}");
        }
        assert_ne!(record_key("wa-1\u{1f}2", 1), record_key("wa-1", 2));
        assert_eq!(display_key(&record_key("wa-1", 1)), "wa-1");
        assert_eq!(display_key(&record_key("wa-1", 2)), "wa-1 revision 2");
    }
}
