//! The tenant directory a fake Microsoft 365 serves: tenants, their registered
//! applications (client secrets kept only as argon2 hashes) and their users.

use std::path::Path;

use serde::{Deserialize, Serialize};

use mock_common::PasswordHash;

/// The directory file, as written (`docs/examples/mailbox-directory.json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub tenants: Vec<TenantSpec>,
    /// Seeded faults on Graph calls.
    #[serde(default)]
    pub faults: Faults,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// The tenant id (a GUID), used in the token URL.
    pub id: String,
    /// The tenant's default domain, also accepted in the token URL.
    pub domain: String,
    #[serde(default)]
    pub applications: Vec<ApplicationSpec>,
    #[serde(default)]
    pub users: Vec<User>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSpec {
    pub client_id: String,
    #[serde(default)]
    pub display_name: String,
    /// The secret in clear (hashed at load), or
    #[serde(default)]
    pub client_secret: Option<String>,
    /// an argon2 PHC string.
    #[serde(default)]
    pub client_secret_hash: Option<String>,
    /// Application permissions granted with admin consent, e.g. `Mail.ReadWrite`.
    #[serde(default)]
    pub permissions: Vec<String>,
}

impl std::fmt::Debug for ApplicationSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplicationSpec")
            .field("client_id", &self.client_id)
            .field("display_name", &self.display_name)
            .field("client_secret", &"<redacted>")
            .field("permissions", &self.permissions)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub user_principal_name: String,
    #[serde(default)]
    pub mail: Option<String>,
    pub display_name: String,
    /// Whether the user has an Exchange Online mailbox. Without one, mail calls answer
    /// `MailboxNotEnabledForRESTAPI`.
    #[serde(default = "yes")]
    pub mailbox_enabled: bool,
    /// Litigation Hold: deleted messages are kept as recoverable items.
    #[serde(default)]
    pub litigation_hold: bool,
}

fn yes() -> bool {
    true
}

/// Seeded faults: each rate is a probability from 0 to 1, drawn per Graph request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub seed: u64,
    /// Share of Graph requests answered `503` with `Retry-After`.
    #[serde(default)]
    pub unavailable_rate: f64,
    /// Share of imports that are stored but answered `504` (the client cannot know the
    /// message landed).
    #[serde(default)]
    pub lost_import_response_rate: f64,
    /// Share of Graph requests whose access token is revoked before it expires: the
    /// token is forgotten and the request answered `401` (the client must get a new one).
    #[serde(default)]
    pub revoked_token_rate: f64,
    /// Share of Graph requests answered `429` with a `Retry-After` of 1 to 10 seconds,
    /// beyond the per-mailbox throttling (a storm: each retry is drawn again).
    #[serde(default)]
    pub throttle_storm_rate: f64,
    /// Share of imports whose target folder is deleted for good just before they arrive
    /// (its messages go to Recoverable Items); the import is answered `404`.
    #[serde(default)]
    pub folder_deleted_rate: f64,
    /// Share of imports whose mailbox is disabled, or whose user is deleted (half each),
    /// just before they arrive; from then on Graph answers `404` for it.
    #[serde(default)]
    pub mailbox_disabled_rate: f64,
    /// Share of Graph requests answered only after a delay of up to `slow_max_ms`.
    #[serde(default)]
    pub slow_rate: f64,
    #[serde(default = "default_slow_max_ms")]
    pub slow_max_ms: u64,
    /// Share of successful Graph answers whose body breaks off half-way (the connection
    /// is reset); what the request did is done.
    #[serde(default)]
    pub reset_rate: f64,
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

/// A registered application as the server keeps it.
#[derive(Debug, Clone)]
pub struct Application {
    pub client_id: String,
    pub display_name: String,
    pub secret: PasswordHash,
    pub permissions: Vec<String>,
}

/// A tenant as the server keeps it.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub domain: String,
    pub applications: Vec<Application>,
    pub users: Vec<User>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{path}: cannot read the file: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a valid directory: {source}")]
    Syntax {
        path: String,
        source: serde_json::Error,
    },
    #[error("tenant {tenant}: {reason}")]
    Invalid { tenant: String, reason: String },
    #[error("faults: {0}")]
    Faults(String),
    #[error("the message store cannot be made: {0}")]
    Store(String),
}

impl Directory {
    pub fn from_file(path: &Path) -> Result<Self, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DirectoryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| DirectoryError::Syntax {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn from_json(text: &str) -> Result<Self, DirectoryError> {
        serde_json::from_str(text).map_err(|source| DirectoryError::Syntax {
            path: "<directory>".into(),
            source,
        })
    }

    /// Checks the directory and hashes every client secret (argon2; slow on purpose).
    pub fn tenants(&self) -> Result<Vec<Tenant>, DirectoryError> {
        for (name, rate) in [
            ("unavailable_rate", self.faults.unavailable_rate),
            (
                "lost_import_response_rate",
                self.faults.lost_import_response_rate,
            ),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(DirectoryError::Faults(format!(
                    "{name} is {rate}; it must be between 0 and 1"
                )));
            }
        }
        let mut ids = std::collections::HashSet::new();
        let mut upns = std::collections::HashSet::new();
        self.tenants
            .iter()
            .map(|spec| {
                let fail = |reason: String| DirectoryError::Invalid {
                    tenant: spec.id.clone(),
                    reason,
                };
                for user in &spec.users {
                    if !ids.insert(user.id.to_ascii_lowercase()) {
                        return Err(fail(format!("user id {} is used twice", user.id)));
                    }
                    if !upns.insert(user.user_principal_name.to_ascii_lowercase()) {
                        return Err(fail(format!(
                            "userPrincipalName {} is used twice",
                            user.user_principal_name
                        )));
                    }
                }
                let applications = spec
                    .applications
                    .iter()
                    .map(|app| {
                        let secret = match (&app.client_secret, &app.client_secret_hash) {
                            (Some(clear), None) => PasswordHash::hash(clear),
                            (None, Some(phc)) => PasswordHash::from_phc(phc),
                            _ => {
                                return Err(fail(format!(
                                    "application {}: give exactly one of client_secret or client_secret_hash",
                                    app.client_id
                                )));
                            }
                        }
                        .map_err(|e| fail(format!("application {}: {e}", app.client_id)))?;
                        Ok(Application {
                            client_id: app.client_id.clone(),
                            display_name: app.display_name.clone(),
                            secret,
                            permissions: app.permissions.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Tenant {
                    id: spec.id.clone(),
                    domain: spec.domain.clone(),
                    applications,
                    users: spec.users.clone(),
                })
            })
            .collect()
    }
}
