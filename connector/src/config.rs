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
}

impl Default for MappingSection {
    fn default() -> Self {
        Self {
            automatic: true,
            csv: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ImportSection {
    folder: String,
    size_limit_bytes: u64,
    phone_address_domain: String,
    concurrency: usize,
    page_size: u32,
    max_attempts: u32,
}

impl Default for ImportSection {
    fn default() -> Self {
        Self {
            folder: "WhatsApp Archiver".into(),
            size_limit_bytes: size::DEFAULT_LIMIT,
            phone_address_domain: "whatsapp.invalid".into(),
            concurrency: 8,
            page_size: 500,
            max_attempts: 6,
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

/// The configuration, checked, with secrets read and paths made absolute.
#[derive(Debug, Clone)]
pub struct Config {
    pub provider_url: String,
    pub provider_username: String,
    pub provider_password: Secret,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub graph_url: String,
    pub login_url: String,
    pub automatic_mapping: bool,
    pub mapping_csv: Option<PathBuf>,
    pub folder: String,
    pub size_limit: u64,
    pub phone_address_domain: String,
    pub concurrency: usize,
    pub page_size: u32,
    pub max_attempts: u32,
    pub state_dir: PathBuf,
    pub daily_at: chrono::NaiveTime,
}

fn secret(
    path: &Path,
    what: &str,
    env: Option<&str>,
    file: Option<&Path>,
    inline: bool,
) -> Result<Secret, ConnectorError> {
    let fail = |reason: String| ConnectorError::Config {
        path: path.display().to_string(),
        reason,
    };
    if inline {
        return Err(fail(format!(
            "{what} must not be written in the configuration file; name an environment variable ({what}_env) or a file ({what}_file) that holds it"
        )));
    }
    match (env, file) {
        (Some(var), None) => std::env::var(var)
            .map(|v| Secret::new(v.trim_end_matches(['\r', '\n'])))
            .map_err(|_| fail(format!("{what}_env names {var}, which is not set"))),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|v| Secret::new(v.trim_end_matches(['\r', '\n'])))
            .map_err(|e| fail(format!("{what}_file {}: {e}", file.display()))),
        (None, None) => Err(fail(format!("give {what}_env or {what}_file"))),
        (Some(_), Some(_)) => Err(fail(format!("give {what}_env or {what}_file, not both"))),
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
        let file: File = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
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
        let provider_password = secret(
            path,
            "password",
            p.password_env.as_deref(),
            p.password_file.as_deref().map(resolve).as_deref(),
            p.password.is_some(),
        )?;
        let client_secret = secret(
            path,
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
            tenant: m.tenant.clone(),
            client_id: m.client_id.clone(),
            client_secret,
            graph_url: m.graph_url.clone(),
            login_url: m.login_url.clone(),
            automatic_mapping: file.mapping.automatic,
            mapping_csv: file.mapping.csv.as_deref().map(resolve),
            folder: import.folder.clone(),
            size_limit: import.size_limit_bytes,
            phone_address_domain: import.phone_address_domain.clone(),
            concurrency: import.concurrency,
            page_size: import.page_size,
            max_attempts: import.max_attempts.max(1),
            state_dir: resolve(&file.state_dir),
            daily_at,
        })
    }
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
