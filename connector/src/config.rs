//! The connector's configuration (TOML). Secrets are never written in it: the provider
//! password and the client secret come from an environment variable or a file it names.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::errors::ConnectorError;
use crate::secret::Secret;
use crate::size;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    provider: ProviderSection,
    microsoft365: M365Section,
    #[serde(default)]
    mapping: MappingSection,
    #[serde(default)]
    import: ImportSection,
    state_dir: PathBuf,
    #[serde(default)]
    schedule: ScheduleSection,
    #[serde(default)]
    pacing: PacingSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    metrics: MetricsSection,
}

/// How log lines are written (`--log-format` overrides it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LogSection {
    format: crate::ops::LogFormat,
}

/// Where the last run's figures go, in the Prometheus text format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MetricsSection {
    textfile: Option<PathBuf>,
}

/// Pacing each mailbox to Graph's budgets (Exchange Online's defaults).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PacingSection {
    enabled: bool,
    requests_per_10_minutes: u64,
    upload_mib_per_5_minutes: u64,
}

impl Default for PacingSection {
    fn default() -> Self {
        let graph = crate::graph::pace::Budget::graph();
        Self {
            enabled: true,
            requests_per_10_minutes: graph.requests,
            upload_mib_per_5_minutes: graph.upload_bytes / (1024 * 1024),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderSection {
    url: String,
    username: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    /// Present only to refuse it with a clear message.
    password: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct M365Section {
    tenant: String,
    client_id: String,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    client_secret: Option<toml::Value>,
    #[serde(default = "default_graph")]
    graph_url: String,
    #[serde(default = "default_login")]
    login_url: String,
}

fn default_graph() -> String {
    "https://graph.microsoft.com".into()
}

fn default_login() -> String {
    "https://login.microsoftonline.com".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingSection {
    #[serde(default = "yes")]
    automatic: bool,
    csv: Option<PathBuf>,
    /// The country of national numbers in the mapping file (ISO 3166 code, `GB`).
    default_region: Option<String>,
    /// A catch-all mailbox for items none of whose participants maps (not the product
    /// description's default, which skips them as `unmapped`).
    unmapped_mailbox: Option<String>,
}

impl Default for MappingSection {
    fn default() -> Self {
        Self {
            automatic: true,
            csv: None,
            default_region: None,
            unmapped_mailbox: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// Requests on the wire at once by default, all mailboxes together. Graph allows 4 in
/// flight per mailbox and answers in a few hundred milliseconds, so a day goes as fast
/// as Graph allows only when every mailbox with work has its 4. Measured with
/// `scenarios load --profile graph` (docs/load-testing.md): a 1,500-item day of 28
/// mailboxes took 6.8 times its Graph bound at 8, 1.06 times at 128; a 20,000-item day of
/// 200 employees 2.1 times at 128, 1.35 at 256 and 1.05 at 512; a 100,000-item day of
/// 1,000 employees (873 mailboxes) 1.52 times at 512 and 1.02 at 2,048. On loopback 2,048
/// costs nothing against 512. Each mailbox still has at most 4, and what is kept open,
/// the requests' buffers included, is bounded by the memory budget (`run::budget`).
pub const DEFAULT_CONCURRENCY: usize = 2048;

/// The bytes the import keeps open by default: items worked on, their built messages and
/// request bodies. Chosen from measurement (docs/load-testing.md, "Memory by bytes"): the
/// connector's whole process stays within about 300 MB on a realistic day at the
/// default concurrency, and the wire stays full.
pub const DEFAULT_MEMORY_BUDGET: u64 = 128 * 1024 * 1024;
/// The least budget taken: one large message's build must fit.
pub const MIN_MEMORY_BUDGET: u64 = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ImportSection {
    folder: String,
    size_limit_bytes: u64,
    phone_address_domain: String,
    concurrency: usize,
    page_size: u32,
    max_attempts: u32,
    /// The largest listing page the connector reads (bytes).
    max_page_bytes: u64,
    /// The largest request body sent to Graph (bytes): a message whose base64 is larger
    /// is imported without its file, which follows by an upload session.
    max_request_bytes: u64,
    /// The bytes the import keeps open at once: items being worked on, their built
    /// messages and request bodies (see `run::window`).
    memory_budget_bytes: u64,
    /// A held item (one that failed when its window closed) is tried by this many runs...
    held_runs: u32,
    /// ...or for this many days, whichever ends first; then it needs a person.
    held_days: u32,
    /// A window closes only once it is this old: the provider lists items some time
    /// after their archive time.
    settle_delay_minutes: u32,
    /// Each run lists this much before where it starts once more, for items the provider
    /// listed late; 0 turns the look-back off.
    look_back_hours: u32,
}

impl Default for ImportSection {
    fn default() -> Self {
        Self {
            folder: "WhatsApp Archiver".into(),
            size_limit_bytes: size::DEFAULT_LIMIT,
            phone_address_domain: "whatsapp.invalid".into(),
            concurrency: DEFAULT_CONCURRENCY,
            page_size: 500,
            max_attempts: 6,
            max_page_bytes: 64 * 1024 * 1024,
            max_request_bytes: crate::size::DEFAULT_MAX_REQUEST,
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET,
            held_runs: 5,
            held_days: 7,
            settle_delay_minutes: 15,
            look_back_hours: 24,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ScheduleSection {
    /// When `schedule` runs each day, `HH:MM` in UTC.
    daily_at_utc: String,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        Self {
            daily_at_utc: "02:00".into(),
        }
    }
}

/// The archive folder and size limit of a configuration file that names neither
/// (`import.folder`, `import.size_limit_bytes`): what the connector reads from a file
/// that leaves them out. The scenario runner runs one recorded scenario with these, so
/// that a changed default is judged by the rules, not taken over by the harness.
pub fn import_defaults() -> (String, u64) {
    let import = ImportSection::default();
    (import.folder, import.size_limit_bytes)
}

/// The configuration, checked, with secrets read and paths made absolute.
#[derive(Debug, Clone)]
pub struct Config {
    pub provider_url: String,
    pub provider_username: String,
    pub provider_password: Secret,
    /// Where the password comes from, for messages: `provider.password_env (NAME)`.
    pub provider_password_from: String,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Where the client secret comes from, for messages.
    pub client_secret_from: String,
    pub graph_url: String,
    pub login_url: String,
    pub automatic_mapping: bool,
    pub mapping_csv: Option<PathBuf>,
    /// Where an item none of whose participants maps goes, instead of being skipped
    /// (`mapping.unmapped_mailbox`; none by default).
    pub unmapped_mailbox: Option<String>,
    /// The region national numbers of the mapping file are in.
    pub mapping_region: Option<phonenumber::country::Id>,
    pub folder: String,
    pub size_limit: u64,
    pub phone_address_domain: String,
    pub concurrency: usize,
    pub page_size: u32,
    pub max_attempts: u32,
    pub max_page_bytes: u64,
    /// The largest Graph request body (bytes): Microsoft documents 4 MB for MIME payloads
    /// and upload chunks; the `importMime` page names no figure (an assumption).
    pub max_request_bytes: u64,
    /// The bytes the import keeps open at once (items, built messages, request bodies).
    pub memory_budget: usize,
    pub held_runs: u32,
    pub held_days: u32,
    /// How old a window must be before it closes.
    pub settle_delay: chrono::TimeDelta,
    /// How far before its start each run lists again for late items (zero: not at all).
    pub look_back: chrono::TimeDelta,
    /// Where the last run's figures are written (Prometheus text format), if anywhere.
    pub metrics_textfile: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub daily_at: chrono::NaiveTime,
    /// Each mailbox paced to these budgets (`None`: not paced; a `429` is still obeyed).
    pub pacing: Option<crate::graph::pace::Budget>,
}

/// Reads a secret from the environment variable or the file the configuration names,
/// and says where it came from (for messages: never the value).
fn secret(
    path: &Path,
    section: &str,
    what: &str,
    env: Option<&str>,
    file: Option<&Path>,
    inline: bool,
) -> Result<(Secret, String), ConnectorError> {
    let fail = |reason: String| ConnectorError::Config {
        path: path.display().to_string(),
        reason,
    };
    if inline {
        return Err(fail(format!(
            "{section}.{what} must not be written in the configuration file; name an environment variable ({section}.{what}_env) or a file ({section}.{what}_file) that holds it"
        )));
    }
    match (env, file) {
        (Some(var), None) => std::env::var(var)
            .map(|v| {
                (
                    Secret::new(v.trim_end_matches(['\r', '\n'])),
                    format!("{section}.{what}_env (the environment variable {var})"),
                )
            })
            .map_err(|_| {
                fail(format!(
                    "{section}.{what}_env names {var}, which is not set"
                ))
            }),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|v| {
                (
                    Secret::new(v.trim_end_matches(['\r', '\n'])),
                    format!("{section}.{what}_file (the file {})", file.display()),
                )
            })
            .map_err(|e| fail(format!("{section}.{what}_file {}: {e}", file.display()))),
        (None, None) => Err(fail(format!(
            "give {section}.{what}_env or {section}.{what}_file"
        ))),
        (Some(_), Some(_)) => Err(fail(format!(
            "give {section}.{what}_env or {section}.{what}_file, not both"
        ))),
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConnectorError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConnectorError::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Reads a configuration; relative paths are taken from the file's directory.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConnectorError> {
        let fail = |reason: String| ConnectorError::Config {
            path: path.display().to_string(),
            reason,
        };
        let file: File = toml::from_str(text).map_err(|e| fail(toml_error(text, &e)))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let p = &file.provider;
        let m = &file.microsoft365;
        let (provider_password, provider_password_from) = secret(
            path,
            "provider",
            "password",
            p.password_env.as_deref(),
            p.password_file.as_deref().map(resolve).as_deref(),
            p.password.is_some(),
        )?;
        let (client_secret, client_secret_from) = secret(
            path,
            "microsoft365",
            "client_secret",
            m.client_secret_env.as_deref(),
            m.client_secret_file.as_deref().map(resolve).as_deref(),
            m.client_secret.is_some(),
        )?;
        let import = &file.import;
        if import.folder.trim().is_empty() {
            return Err(fail("import.folder must not be empty".into()));
        }
        if import.concurrency == 0 || import.page_size == 0 || import.page_size > 1000 {
            return Err(fail(
                "import.concurrency must be at least 1 and import.page_size 1 to 1000".into(),
            ));
        }
        if import.max_page_bytes < 64 * 1024 || import.held_runs == 0 || import.held_days == 0 {
            return Err(fail(
                "import.max_page_bytes must be at least 65536, import.held_runs and import.held_days at least 1".into(),
            ));
        }
        if import.max_request_bytes < crate::size::MIN_MAX_REQUEST {
            return Err(fail(format!(
                "import.max_request_bytes must be at least {} (Graph takes 4 MiB, 4194304)",
                crate::size::MIN_MAX_REQUEST
            )));
        }
        if import.memory_budget_bytes < MIN_MEMORY_BUDGET {
            return Err(fail(format!(
                "import.memory_budget_bytes must be at least {MIN_MEMORY_BUDGET} (16 MiB); the default is {DEFAULT_MEMORY_BUDGET}"
            )));
        }
        if import.look_back_hours > 24 * 31 || import.settle_delay_minutes > 24 * 60 {
            return Err(fail(
                "import.look_back_hours must be at most 744 (31 days) and import.settle_delay_minutes at most 1440".into(),
            ));
        }
        let mapping_region = match &file.mapping.default_region {
            None => None,
            Some(code) => Some(
                code.trim()
                    .to_ascii_uppercase()
                    .parse::<phonenumber::country::Id>()
                    .map_err(|_| {
                        fail(format!(
                            "mapping.default_region {code:?} is not an ISO 3166 country code such as \"GB\" or \"US\""
                        ))
                    })?,
            ),
        };
        for (key, url) in [
            ("provider.url", &p.url),
            ("microsoft365.graph_url", &m.graph_url),
            ("microsoft365.login_url", &m.login_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(fail(format!(
                    "{key} must be an http:// or https:// URL (found {url:?})"
                )));
            }
        }
        let daily_at = chrono::NaiveTime::parse_from_str(&file.schedule.daily_at_utc, "%H:%M")
            .map_err(|_| {
                fail(format!(
                    "schedule.daily_at_utc {:?} is not HH:MM",
                    file.schedule.daily_at_utc
                ))
            })?;
        Ok(Self {
            provider_url: p.url.clone(),
            provider_username: p.username.clone(),
            provider_password,
            provider_password_from,
            tenant: m.tenant.clone(),
            client_id: m.client_id.clone(),
            client_secret,
            client_secret_from,
            graph_url: m.graph_url.clone(),
            login_url: m.login_url.clone(),
            automatic_mapping: file.mapping.automatic,
            mapping_csv: file.mapping.csv.as_deref().map(resolve),
            unmapped_mailbox: file
                .mapping
                .unmapped_mailbox
                .as_deref()
                .map(|m| m.trim().to_lowercase())
                .filter(|m| !m.is_empty()),
            mapping_region,
            folder: import.folder.clone(),
            size_limit: import.size_limit_bytes,
            phone_address_domain: import.phone_address_domain.clone(),
            concurrency: import.concurrency,
            page_size: import.page_size,
            max_attempts: import.max_attempts.max(1),
            max_page_bytes: import.max_page_bytes,
            max_request_bytes: import.max_request_bytes,
            memory_budget: usize::try_from(import.memory_budget_bytes).unwrap_or(usize::MAX),
            held_runs: import.held_runs,
            held_days: import.held_days,
            settle_delay: chrono::TimeDelta::minutes(i64::from(import.settle_delay_minutes)),
            look_back: chrono::TimeDelta::hours(i64::from(import.look_back_hours)),
            state_dir: resolve(&file.state_dir),
            metrics_textfile: file.metrics.textfile.as_deref().map(resolve),
            daily_at,
            pacing: file.pacing.enabled.then(|| crate::graph::pace::Budget {
                requests: file.pacing.requests_per_10_minutes.max(1),
                request_window: std::time::Duration::from_secs(600),
                upload_bytes: file.pacing.upload_mib_per_5_minutes.max(1) * 1024 * 1024,
                upload_window: std::time::Duration::from_secs(300),
            }),
        })
    }
}

/// The log format a configuration file names, read without its secrets, before the
/// command itself reads the file (and reports what is wrong with it): `None` if the file
/// cannot be read.
pub fn log_format_of(path: &Path) -> Option<crate::ops::LogFormat> {
    let text = std::fs::read_to_string(path).ok()?;
    let file: File = toml::from_str(&text).ok()?;
    Some(file.log.format)
}

/// The state directory a configuration file names, read without its secrets (for
/// commands that only look at the state, such as `connector held`).
pub fn state_dir_of(path: &Path) -> Result<PathBuf, ConnectorError> {
    let fail = |reason: String| ConnectorError::Config {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let file: File = toml::from_str(&text).map_err(|e| fail(toml_error(&text, &e)))?;
    Ok(if file.state_dir.is_absolute() {
        file.state_dir
    } else {
        path.parent().unwrap_or(Path::new("")).join(file.state_dir)
    })
}

/// Every key the file may hold, for error messages.
const KEYS: &[&str] = &[
    "provider",
    "microsoft365",
    "mapping",
    "import",
    "schedule",
    "state_dir",
    "url",
    "username",
    "password_env",
    "password_file",
    "password",
    "tenant",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "client_secret",
    "graph_url",
    "login_url",
    "automatic",
    "csv",
    "default_region",
    "unmapped_mailbox",
    "folder",
    "size_limit_bytes",
    "phone_address_domain",
    "concurrency",
    "page_size",
    "max_attempts",
    "max_page_bytes",
    "max_request_bytes",
    "memory_budget_bytes",
    "held_runs",
    "held_days",
    "settle_delay_minutes",
    "look_back_hours",
    "daily_at_utc",
    "pacing",
    "enabled",
    "requests_per_10_minutes",
    "upload_mib_per_5_minutes",
    "log",
    "format",
    "metrics",
    "textfile",
];

/// A TOML error as file position, key and problem, never with the text of the line: the
/// line may hold a secret written where it does not belong, and values are scrubbed
/// from the parser's message for the same reason.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let mut place = String::new();
    let mut key: Option<String> = None;
    if let Some(span) = e.span() {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        place = format!("line {line}, column {column}");
        let section = before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('[') && l.ends_with(']'))
            .map(|l| l.trim_matches(['[', ']']).trim().to_owned());
        let this_line = text.lines().nth(line - 1).unwrap_or("");
        let bare = this_line.split('=').next().unwrap_or("").trim();
        let is_key = !bare.is_empty()
            && bare.len() <= 64
            && this_line.contains('=')
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if is_key {
            key = Some(match section {
                Some(s) if !s.is_empty() => format!("{s}.{bare}"),
                _ => bare.to_owned(),
            });
        }
    }
    let own_key = key
        .as_deref()
        .and_then(|k| k.rsplit('.').next())
        .unwrap_or("");
    let message = scrub_values(e.message().trim(), own_key);
    match (place.is_empty(), key) {
        (true, _) => message,
        (false, Some(k)) => format!("{place}, key {k}: {message}"),
        (false, None) => format!("{place}: {message}"),
    }
}

/// The parser's message with every quoted value replaced by `…`; quoted key names
/// (of the schema, or the key of the line) are kept.
fn scrub_values(message: &str, own_key: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find(quote) {
            Some(end) => {
                let inner = &after[..end];
                out.push(quote);
                let punctuation =
                    inner.chars().count() <= 2 && !inner.chars().any(char::is_alphanumeric);
                if KEYS.contains(&inner) || (!own_key.is_empty() && inner == own_key) || punctuation
                {
                    out.push_str(inner);
                } else {
                    out.push('…');
                }
                out.push(quote);
                rest = &after[end + 1..];
            }
            None => {
                out.push(quote);
                out.push('…');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.replace('\n', "; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
state_dir = "state"
[provider]
url = "http://127.0.0.1:8081"
username = "contoso-archive"
password_env = "CONNECTOR_TEST_PROVIDER_PASSWORD"
[microsoft365]
tenant = "contoso.example"
client_id = "7c1e5a9b-2f4d-4e8a-b6c3-91d0e2f4a8b5"
client_secret_env = "CONNECTOR_TEST_CLIENT_SECRET"
"#;

    #[test]
    fn a_missing_environment_variable_is_named() {
        // The variable is never set, so the error must name it.
        let path = Path::new("/etc/connector/connector.toml");
        let err = Config::parse(path, GOOD).unwrap_err().to_string();
        assert!(
            err.contains("CONNECTOR_TEST_PROVIDER_PASSWORD, which is not set"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_password_written_in_the_file_without_echoing_it() {
        let text = GOOD.replace(
            "password_env = \"CONNECTOR_TEST_PROVIDER_PASSWORD\"",
            "password = \"hunter2\"",
        );
        let err = Config::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("must not be written in the configuration file"),
            "{err}"
        );
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn reads_secrets_from_files_relative_to_the_config() {
        let dir = std::env::temp_dir().join(format!("connector-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("provider.secret"), "s3cret\n").unwrap();
        std::fs::write(dir.join("client.secret"), "c1ient").unwrap();
        let text = GOOD
            .replace(
                "password_env = \"CONNECTOR_TEST_PROVIDER_PASSWORD\"",
                "password_file = \"provider.secret\"",
            )
            .replace(
                "client_secret_env = \"CONNECTOR_TEST_CLIENT_SECRET\"",
                "client_secret_file = \"client.secret\"",
            );
        let config = Config::parse(&dir.join("connector.toml"), &text).unwrap();
        assert_eq!(config.provider_password.expose(), "s3cret");
        assert_eq!(config.client_secret.expose(), "c1ient");
        assert_eq!(config.state_dir, dir.join("state"));
        assert_eq!(config.folder, "WhatsApp Archiver");
        assert_eq!(config.size_limit, 10_485_760);
        assert_eq!(config.graph_url, "https://graph.microsoft.com");
        assert!(!format!("{config:?}").contains("s3cret"));
        // Paced to Graph's budgets unless told otherwise.
        assert_eq!(config.pacing, Some(crate::graph::pace::Budget::graph()));
        let off = format!("{text}\n[pacing]\nenabled = false\n");
        let config = Config::parse(&dir.join("connector.toml"), &off).unwrap();
        assert_eq!(config.pacing, None);
        let custom = format!("{text}\n[pacing]\nupload_mib_per_5_minutes = 50\n");
        let config = Config::parse(&dir.join("connector.toml"), &custom).unwrap();
        assert_eq!(config.pacing.unwrap().upload_bytes, 50 * 1024 * 1024);
        assert_eq!(config.pacing.unwrap().requests, 10_000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = format!("{GOOD}\n[import]\nfolderr = \"x\"\n");
        assert!(
            Config::parse(Path::new("c.toml"), &text)
                .unwrap_err()
                .to_string()
                .contains("folderr")
        );
    }
}
