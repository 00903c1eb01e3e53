//! The dataset a fake provider serves: accounts, registered employees, items, and the
//! faults to inject. It is the wire JSON of `docs/telemessage-api.md` with two changes:
//! an attachment gives a `seed` instead of its `sha256` (its bytes are generated from it),
//! and account passwords are given in clear or as an argon2 PHC hash (`password_hash`).
//! Clear passwords are hashed at load and dropped.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::attachment;
use crate::wire;
use mock_common::PasswordHash;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    #[serde(default)]
    pub accounts: Vec<AccountSpec>,
    #[serde(default)]
    pub employees: Vec<wire::Participant>,
    /// Items that must follow the schema; the load fails on the first that does not.
    #[serde(default)]
    pub items: Vec<Value>,
    /// Items served exactly as written, schema or not (to test a client's handling of bad
    /// data). Each needs only a string `id` and an RFC 3339 `archived_at`.
    #[serde(default)]
    pub raw_items: Vec<Value>,
    /// Items served as the exact JSON text given, for data no JSON value can hold as it
    /// came (a lone surrogate escape, nesting deeper than a parser's limit). The text must
    /// be one JSON value syntactically; it is never parsed into a value.
    #[serde(default)]
    pub raw_text_items: Vec<RawTextItem>,
    #[serde(default)]
    pub faults: Faults,
    /// When items become listable: the provider's own commit and indexing delay.
    #[serde(default)]
    pub visibility: Visibility,
}

/// The provider's visibility lag: an item is listed only from `archived_at` plus its lag
/// on. The lag of an item is given by id in `items` (seconds), else drawn from `seed`
/// and the item's id: with probability `rate`, from 1 to `max_lag_seconds` seconds. The
/// draw depends on the id alone, never on the order requests arrive in.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Visibility {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rate: f64,
    #[serde(default)]
    pub max_lag_seconds: u64,
    #[serde(default)]
    pub items: BTreeMap<String, u64>,
}

impl Visibility {
    /// How long after its archive time the item `id` becomes listable.
    pub fn lag(&self, id: &str) -> chrono::TimeDelta {
        if let Some(seconds) = self.items.get(id) {
            return chrono::TimeDelta::seconds(i64::try_from(*seconds).unwrap_or(i64::MAX / 1000));
        }
        if self.rate <= 0.0 || self.max_lag_seconds == 0 {
            return chrono::TimeDelta::zero();
        }
        // FNV-1a of the id, so the draw is the id's own.
        let n = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        if mock_common::seeded::unit(self.seed, n) >= self.rate {
            return chrono::TimeDelta::zero();
        }
        let draw = mock_common::seeded::unit(self.seed ^ 0x5eed_1a65, n);
        let seconds = 1 + (draw * self.max_lag_seconds as f64) as u64;
        chrono::TimeDelta::seconds(seconds.min(self.max_lag_seconds) as i64)
    }
}

/// An item given as raw JSON text, with the `id` and `archived_at` the fake files it by
/// (the text itself may not say them readably).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawTextItem {
    pub id: String,
    pub archived_at: DateTime<Utc>,
    pub json: String,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("accounts", &self.accounts.len())
            .field("employees", &self.employees.len())
            .field("items", &self.items.len())
            .field("raw_items", &self.raw_items.len())
            .field("raw_text_items", &self.raw_text_items.len())
            .field("faults", &self.faults)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for AccountSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSpec")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Seeded fault injection. Each rate is a probability from 0 to 1, decided per request
/// from `seed`, what the request is about (a listing's window and page, an attachment's
/// id) and how many times that same request came before: never from arrival order, so a
/// scenario meets the same faults at any client concurrency.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub seed: u64,
    /// Share of listing and download requests answered `503 unavailable`.
    #[serde(default)]
    pub unavailable_rate: f64,
    /// Share of downloads whose bytes are altered in flight (one byte flipped).
    #[serde(default)]
    pub corrupt_download_rate: f64,
    /// Share of listing pages whose answer is cut in the middle of its JSON (a
    /// connection that dropped mid-body, as a client sees it: 200 and half a page).
    #[serde(default)]
    pub truncated_page_rate: f64,
    /// Share of listing and download requests answered only after a delay of up to
    /// `slow_max_ms`.
    #[serde(default)]
    pub slow_rate: f64,
    #[serde(default = "default_slow_max_ms")]
    pub slow_max_ms: u64,
    /// Share of successful listing and download answers whose body breaks off half-way
    /// (the connection is reset after the headers and some of the body).
    #[serde(default)]
    pub reset_rate: f64,
    /// Share of logins, listings and downloads answered `200` with a gateway's HTML page
    /// instead of the API's answer (a proxy or load balancer in front of the provider
    /// that shows its own page).
    #[serde(default)]
    pub gateway_page_rate: f64,
    /// Share of listings answered `200` with JSON that is not a page envelope (a
    /// maintenance notice from a gateway).
    #[serde(default)]
    pub not_envelope_rate: f64,
    /// Share of downloads answered `200` with an empty body.
    #[serde(default)]
    pub empty_download_rate: f64,
}

fn default_slow_max_ms() -> u64 {
    20
}

impl Faults {
    /// The faults of the transport (slow answers, cut bodies).
    pub fn transport(&self) -> mock_common::transport::TransportFaults {
        mock_common::transport::TransportFaults {
            seed: self.seed,
            slow_rate: self.slow_rate,
            slow_max_ms: self.slow_max_ms,
            reset_rate: self.reset_rate,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: cannot read the file: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a valid dataset: {source}")]
    Syntax {
        path: String,
        source: serde_json::Error,
    },
    #[error("{place}: {reason}")]
    Item { place: String, reason: String },
    #[error("account {username:?}: {reason}")]
    Account { username: String, reason: String },
    #[error("faults: {0}")]
    Faults(String),
    #[error("the fake provider cannot write its items to its temporary file: {0}")]
    Store(std::io::Error),
}

/// An account as the server keeps it: the name and an argon2 hash.
#[derive(Debug, Clone)]
pub struct Account {
    pub username: String,
    pub password: PasswordHash,
}

/// What the server needs to generate an attachment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentSource {
    pub seed: u64,
    pub size: u64,
    pub content_type: String,
    pub file_name: String,
}

/// An item ready to serve: its listing key and its JSON as it goes on the wire.
#[derive(Debug)]
pub struct PreparedItem {
    pub id: String,
    pub archived_at: DateTime<Utc>,
    pub json: Box<RawValue>,
}

/// Items and attachments ready for the store.
#[derive(Debug, Default)]
pub struct Prepared {
    pub items: Vec<PreparedItem>,
    pub attachments: BTreeMap<String, AttachmentSource>,
}

impl Dataset {
    pub fn from_file(path: &Path) -> Result<Self, DatasetError> {
        let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| match e {
            DatasetError::Syntax { source, .. } => DatasetError::Syntax {
                path: path.display().to_string(),
                source,
            },
            DatasetError::Item { place, reason } => DatasetError::Item {
                place: format!("{}: {place}", path.display()),
                reason,
            },
            other => other,
        })
    }

    pub fn from_json(text: &str) -> Result<Self, DatasetError> {
        serde_json::from_str(text).map_err(|source| DatasetError::Syntax {
            path: "<dataset>".into(),
            source,
        })
    }

    /// Hashes the account passwords (argon2; slow on purpose).
    pub fn accounts(&self) -> Result<Vec<Account>, DatasetError> {
        self.accounts
            .iter()
            .map(|spec| {
                let fail = |reason: &str| DatasetError::Account {
                    username: spec.username.clone(),
                    reason: reason.to_owned(),
                };
                let password = match (&spec.password, &spec.password_hash) {
                    (Some(clear), None) => {
                        PasswordHash::hash(clear).map_err(|e| fail(&e.to_string()))?
                    }
                    (None, Some(phc)) => {
                        PasswordHash::from_phc(phc).map_err(|e| fail(&e.to_string()))?
                    }
                    _ => return Err(fail("give exactly one of `password` or `password_hash`")),
                };
                Ok(Account {
                    username: spec.username.clone(),
                    password,
                })
            })
            .collect()
    }

    /// Checks the faults and items, computes each attachment's SHA-256 from its seed.
    pub fn prepare(&self) -> Result<Prepared, DatasetError> {
        for (name, rate) in [
            ("unavailable_rate", self.faults.unavailable_rate),
            ("corrupt_download_rate", self.faults.corrupt_download_rate),
            ("truncated_page_rate", self.faults.truncated_page_rate),
            ("gateway_page_rate", self.faults.gateway_page_rate),
            ("not_envelope_rate", self.faults.not_envelope_rate),
            ("empty_download_rate", self.faults.empty_download_rate),
            ("visibility.rate", self.visibility.rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(DatasetError::Faults(format!(
                    "{name} is {rate}; it must be between 0 and 1"
                )));
            }
        }
        let mut prepared = prepare_items(&self.items, &self.raw_items)?;
        for (index, raw) in self.raw_text_items.iter().enumerate() {
            let fail = |reason: String| DatasetError::Item {
                place: format!("raw_text_items[{index}] (id {})", raw.id),
                reason,
            };
            let json = RawValue::from_string(raw.json.clone()).map_err(|e| {
                fail(format!(
                    "`json` must be one JSON value, syntactically (it is served as written): {e}"
                ))
            })?;
            prepared.items.push(PreparedItem {
                id: raw.id.clone(),
                archived_at: raw.archived_at,
                json,
            });
        }
        Ok(prepared)
    }
}

/// Prepares schema items and raw items. An id may come more than once, as a real
/// provider may send it again: the same content (a repeat) or new content (a revision).
pub fn prepare_items(items: &[Value], raw_items: &[Value]) -> Result<Prepared, DatasetError> {
    let mut prepared = Prepared::default();
    for (index, value) in items.iter().enumerate() {
        let place = |id: Option<&str>| match id {
            Some(id) => format!("items[{index}] (id {id})"),
            None => format!("items[{index}]"),
        };
        let mut value = value.clone();
        let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
        let fail = |reason: String| DatasetError::Item {
            place: place(id.as_deref()),
            reason,
        };
        if let Some(source) = seed_attachment(&mut value).map_err(fail)? {
            let att_id = attachment_id(&value).unwrap_or_default();
            match prepared.attachments.get(&att_id) {
                Some(existing) if *existing != source => {
                    return Err(fail(format!(
                        "attachment id {att_id} is used twice with different content"
                    )));
                }
                _ => {
                    prepared.attachments.insert(att_id, source);
                }
            }
        }
        let item: wire::Item = serde_json::from_value(value.clone())
            .map_err(|e| fail(format!("does not follow the item schema: {e}")))?;
        push(&mut prepared, item.id, item.archived_at, &value, fail)?;
    }
    for (index, value) in raw_items.iter().enumerate() {
        let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
        let fail = |reason: String| DatasetError::Item {
            place: format!("raw_items[{index}]"),
            reason,
        };
        let id = id.ok_or_else(|| fail("needs a string `id`".into()))?;
        let archived_at = value
            .get("archived_at")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .ok_or_else(|| fail("needs an RFC 3339 `archived_at`".into()))?
            .to_utc();
        push(&mut prepared, id, archived_at, value, fail)?;
    }
    Ok(prepared)
}

fn push(
    prepared: &mut Prepared,
    id: String,
    archived_at: DateTime<Utc>,
    value: &Value,
    fail: impl Fn(String) -> DatasetError,
) -> Result<(), DatasetError> {
    let json = RawValue::from_string(value.to_string())
        .map_err(|e| fail(format!("cannot be serialised: {e}")))?;
    prepared.items.push(PreparedItem {
        id,
        archived_at,
        json,
    });
    Ok(())
}

fn attachment_object(value: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let kind = value.get("type")?.as_str()?.to_owned();
    if kind != "media" && kind != "document" {
        return None;
    }
    value.get_mut(&kind)?.get_mut("attachment")?.as_object_mut()
}

fn attachment_id(value: &Value) -> Option<String> {
    let kind = value.get("type")?.as_str()?;
    value
        .get(kind)?
        .get("attachment")?
        .get("id")?
        .as_str()
        .map(str::to_owned)
}

/// Replaces an attachment's `seed` by the `sha256` of the bytes it generates. A `sha256`
/// given beside the seed is kept as written (a provider whose metadata is wrong).
fn seed_attachment(value: &mut Value) -> Result<Option<AttachmentSource>, String> {
    let Some(att) = attachment_object(value) else {
        return Ok(None);
    };
    let Some(seed) = att.remove("seed") else {
        return Err("an attachment in a dataset needs a `seed` for its bytes".into());
    };
    let seed = seed
        .as_u64()
        .ok_or("attachment `seed` must be a non-negative integer")?;
    let size = att
        .get("size")
        .and_then(Value::as_u64)
        .ok_or("attachment `size` must be a non-negative integer")?;
    let text = |k: &str| att.get(k).and_then(Value::as_str).map(str::to_owned);
    let source = AttachmentSource {
        seed,
        size,
        content_type: text("content_type").ok_or("attachment needs `content_type`")?,
        file_name: text("file_name").ok_or("attachment needs `file_name`")?,
    };
    if !att.contains_key("sha256") {
        att.insert(
            "sha256".into(),
            Value::String(attachment::sha256_hex(seed, size)),
        );
    }
    Ok(Some(source))
}
