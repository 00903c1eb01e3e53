//! The scenario file (docs/scenarios.md): explicit, or generator parameters and a seed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn yes() -> bool {
    true
}

fn default_domain() -> String {
    "contoso.example".into()
}

fn default_limit() -> u64 {
    10 * 1024 * 1024
}

/// A Microsoft 365 user of the scenario's tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub upn: String,
    pub name: String,
    /// Whether the user has a mailbox (a disabled one is not a valid user for mail).
    #[serde(default = "yes")]
    pub mailbox: bool,
}

/// An item served as exact JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTextItem {
    pub id: String,
    pub archived_at: DateTime<Utc>,
    pub json: String,
}

/// One connector run: up to `until`, from the end of the last run (or `since`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub until: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

impl RunSpec {
    /// When the run happens: half an hour after its `until`, past the connector's settle
    /// delay (15 minutes by default).
    pub fn run_at(&self) -> DateTime<Utc> {
        self.until + chrono::TimeDelta::minutes(30)
    }
}

/// A scenario, written out. A file with `generate` is expanded into this form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The generator's seed, for generated scenarios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Generator parameters: when present, everything below is generated from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GeneratorParams>,
    #[serde(default = "default_domain")]
    pub tenant_domain: String,
    /// The Microsoft 365 directory.
    #[serde(default)]
    pub users: Vec<User>,
    /// Employees registered with the provider: `{phone, name, user_email}`.
    #[serde(default)]
    pub employees: Vec<Value>,
    /// The custom mapping file's text, if the organisation uploads one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_csv: Option<String>,
    /// The country of national numbers in the mapping file (ISO 3166 code, `GB`): the
    /// connector's `mapping.default_region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_default_region: Option<String>,
    #[serde(default = "yes")]
    pub automatic_mapping: bool,
    /// The connector's `mapping.unmapped_mailbox`: the catch-all for items no
    /// participant maps (an option beyond the product description; none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmapped_mailbox: Option<String>,
    #[serde(default = "default_limit")]
    pub size_limit: u64,
    /// Run the connector with its own default archive folder and size limit (what a
    /// configuration file that names neither gives), instead of the harness setting
    /// both: a connector whose defaults differ from the rules then fails the scenario.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub connector_defaults: bool,
    /// Provider items, in the fake's dataset form (attachments by `seed`).
    #[serde(default)]
    pub items: Vec<Value>,
    /// Items the provider serves that do not follow the schema.
    #[serde(default)]
    pub raw_items: Vec<Value>,
    /// Items the provider serves as exact JSON text (`{id, archived_at, json}`): data no
    /// JSON value can hold as it came, such as a lone surrogate escape or nesting deeper
    /// than a parser's limit. Each must be skipped as `invalid_item` under its `id` and
    /// kept, byte for byte, in the connector's quarantine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw_text_items: Vec<RawTextItem>,
    pub runs: Vec<RunSpec>,
    /// Seeded faults of the fake provider (its dataset's `faults`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_faults: Option<Value>,
    /// The provider's visibility lag (its dataset's `visibility`): items listed only some
    /// time after their archive time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<mock_telemessage::dataset::Visibility>,
    /// Seeded faults of the fake Microsoft 365 (its directory's `faults`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_faults: Option<Value>,
    /// Crash points: when the Nth request to the fake Microsoft 365 (counted from 1 over
    /// the whole scenario) has taken effect, its answer never comes and the connector is
    /// stopped dead; a new connector resumes the same run on the same state. A point past
    /// the scenario's last request is never reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crashes: Vec<u64>,
    /// How a crash point stops the connector: `abort` (the default: its task in the
    /// runner's process is aborted) or `sigkill` (every run is the `connector` binary as a
    /// child process, killed with SIGKILL).
    #[serde(default, skip_serializing_if = "CrashBy::is_abort")]
    pub crash_by: CrashBy,
    /// The connector's concurrency for this scenario (the runner's default, 8, if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// How strict and slow the fake Microsoft 365 is. Absent: Graph's rules (its 4 MiB
    /// request cap) without its delays. `{"name": "graph"}` is the same, with
    /// `max_request_bytes` to move the cap and `latency` to add the delays (scenarios run
    /// on the harness's clock, and CI has no time to spend waiting); `{"name":
    /// "lenient"}` takes bodies up to 48 MiB, as the fake once did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_profile: Option<MailboxProfile>,
}

/// A scenario's profile of the fake Microsoft 365 (`mock_mailbox::profile`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxProfile {
    pub name: mock_mailbox::profile::ProfileName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<mock_mailbox::profile::Latency>,
}

impl MailboxProfile {
    /// The fake's profile this asks for.
    pub fn profile(&self) -> mock_mailbox::profile::Profile {
        use mock_mailbox::profile::{Profile, ProfileName};
        let mut profile = match self.name {
            ProfileName::Lenient => Profile::lenient(),
            ProfileName::Graph => Profile::graph(self.latency.clone()),
        };
        if let Some(cap) = self.max_request_bytes {
            profile.max_request_bytes = cap;
        }
        profile
    }
}

/// How a crash point stops the connector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashBy {
    /// The connector's task in the runner's process is aborted (as fast as SIGKILL, and
    /// the runner can run many seeds at once).
    #[default]
    Abort,
    /// Every run is the `connector` binary as a child process; a crash is SIGKILL.
    Sigkill,
}

impl CrashBy {
    fn is_abort(&self) -> bool {
        *self == Self::Abort
    }
}

impl Scenario {
    /// The file form: a generated scenario is written as its parameters only.
    pub fn to_file_json(&self) -> String {
        let value = match &self.generate {
            Some(params) => {
                let mut file = serde_json::json!({"name": self.name, "description": self.description, "generate": params, "runs": []});
                for (key, value) in [
                    ("provider_faults", self.provider_faults.clone()),
                    ("mailbox_faults", self.mailbox_faults.clone()),
                    (
                        "visibility",
                        self.visibility
                            .as_ref()
                            .map(|v| serde_json::to_value(v).expect("serialises")),
                    ),
                    ("concurrency", self.concurrency.map(|c| c.into())),
                    (
                        "mailbox_profile",
                        self.mailbox_profile
                            .as_ref()
                            .map(|p| serde_json::to_value(p).expect("serialises")),
                    ),
                ] {
                    if let Some(value) = value {
                        file[key] = value;
                    }
                }
                if !self.crashes.is_empty() {
                    file["crashes"] = self.crashes.clone().into();
                }
                if !self.crash_by.is_abort() {
                    file["crash_by"] = serde_json::to_value(self.crash_by).expect("serialises");
                }
                file
            }
            None => serde_json::to_value(self).expect("a scenario serialises"),
        };
        serde_json::to_string_pretty(&value).expect("a scenario serialises") + "\n"
    }

    /// Every source item: schema items, raw items and raw text items.
    pub fn source_items(&self) -> usize {
        self.items.len() + self.raw_items.len() + self.raw_text_items.len()
    }

    /// The time after the last run, when the scenario is over.
    pub fn end(&self) -> DateTime<Utc> {
        self.runs.iter().map(|r| r.until).max().unwrap_or_default()
    }
}

fn d50() -> usize {
    50
}
fn d40() -> usize {
    40
}
fn d1() -> u32 {
    1
}
fn d3000() -> usize {
    3000
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorParams {
    pub seed: u64,
    /// Midnight (UTC) of the first day.
    pub start: DateTime<Utc>,
    #[serde(default = "d1")]
    pub days: u32,
    #[serde(default = "d50")]
    pub employees: usize,
    #[serde(default = "d40")]
    pub external_contacts: usize,
    #[serde(default = "d3000")]
    pub items_per_day: usize,
    /// Days (from 1) whose daily run is missed; the next run must catch them up.
    #[serde(default)]
    pub missed_runs: Vec<u32>,
    /// Attachments just below, at and just above 10 MiB, and an oversized text.
    #[serde(default = "yes")]
    pub boundary_cases: bool,
    /// Share of items the provider lists late (up to six hours after their archive
    /// time): those archived near the end of a day are found by the next run's look-back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub late_rate: f64,
    /// Share of text items the provider sends again later with changed text (revisions).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision_rate: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}
