//! The connector's failures that stop a run (bad data from outside is not one of them:
//! it becomes a skipped item with a reason), and the exit status each one gives.
//!
//! Each message says its cause once: variants that wrap another error print it and do
//! not also offer it as a `source`, so a printed chain never repeats itself.

use crate::graph::GraphError;
use crate::mapping::MappingError;
use crate::provider::ProviderError;

/// The exit statuses of the `connector` binary, one meaning each.
pub mod exit {
    /// Every item of the run is delivered or skipped with a reason.
    pub const SUCCESS: u8 = 0;
    /// An error no other status covers (the state database or the staging directory
    /// could not be used): the run stopped, and nothing was lost.
    pub const INTERNAL: u8 = 1;
    /// A bad command line or configuration (mapping file included): fix it and run again.
    pub const USAGE: u8 = 2;
    /// A service could not be reached, or refused to log in: nothing was imported.
    pub const SERVICE: u8 = 3;
    /// The run finished, but some deliveries failed (they are held and tried again by the
    /// next runs) or some items need a person (`connector held list`).
    pub const INCOMPLETE: u8 = 4;
    /// Another run holds the state directory (`connector run` or `schedule`): this one
    /// did nothing. Two runs on one state would import the same items twice.
    pub const BUSY: u8 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The configuration file is missing, unreadable or wrong.
    #[error("configuration {path}: {reason}")]
    Config { path: String, reason: String },
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// The mapping file is refused, with every bad line.
    #[error("{0}")]
    Mapping(MappingError),
    /// The provider could not be used (refused a request, unreachable after retries).
    #[error("provider: {0}")]
    Provider(ProviderError),
    /// Microsoft 365 could not be used (refused a request, unreachable after retries).
    #[error("{}", on_microsoft_365(.0))]
    Graph(GraphError),
    /// A service did not answer at the address a setting gives.
    #[error("cannot reach {service} at {url} (setting {setting}): {cause}")]
    Unreachable {
        service: &'static str,
        setting: &'static str,
        url: String,
        cause: String,
    },
    /// A service refused a secret; it is remembered (as a digest) and not tried again
    /// until the setting holds another value.
    #[error(
        "{service} refused the {what} ({code}){when}. Put the right value in {setting}; the connector does not try this one again until it changes, so the account cannot be locked out by repeated runs"
    )]
    SecretRefused {
        service: &'static str,
        what: &'static str,
        code: String,
        /// Empty when refused just now; else " on <date>, and this run did not try it".
        when: String,
        /// Where the value comes from: `provider.password_env (NAME)`, ...
        setting: String,
    },
    /// The provider locked the account (too many refused logins, by anyone).
    #[error(
        "the provider has locked the account {username} ({message}); wait until it is unlocked, check {setting}, then run again"
    )]
    Locked {
        username: String,
        message: String,
        setting: String,
    },
    /// The state database could not be read or written.
    #[error("state database {path}: {reason}")]
    State { path: String, reason: String },
    /// The state database is damaged: it cannot be read as a database, or fails its
    /// integrity check.
    #[error(
        "state database {path} is damaged ({detail}). Move it aside with `connector state set-aside --config FILE` and run again: a run on a new state looks every message up in the mailbox before sending it, so nothing is imported twice. If the old state's last window ended earlier than 24 hours ago, give that time as --since"
    )]
    StateDamaged { path: String, detail: String },
    /// Another run holds the state directory.
    #[error(
        "another run holds the state directory ({holder}; lock {path}): this run did nothing. Wait for it to finish; two runs on one state would import the same items twice"
    )]
    Busy { path: String, holder: String },
    /// The staging directory (or the quarantine) could not be used.
    #[error("staging directory {path}: {reason}")]
    Staging { path: String, reason: String },
}

/// A Graph error, said once as coming from Microsoft 365: its own text may name the
/// service already ("Microsoft 365 refused the application's sign-in").
fn on_microsoft_365(e: &GraphError) -> String {
    let text = e.to_string();
    if text.contains("Microsoft 365") {
        text
    } else {
        format!("Microsoft 365: {text}")
    }
}

impl From<MappingError> for ConnectorError {
    fn from(e: MappingError) -> Self {
        Self::Mapping(e)
    }
}

impl From<ProviderError> for ConnectorError {
    fn from(e: ProviderError) -> Self {
        Self::Provider(e)
    }
}

impl From<GraphError> for ConnectorError {
    fn from(e: GraphError) -> Self {
        Self::Graph(e)
    }
}

impl ConnectorError {
    /// The exit status this error gives (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config { .. } | Self::Usage(_) | Self::Mapping(_) => exit::USAGE,
            Self::Provider(_)
            | Self::Graph(_)
            | Self::Unreachable { .. }
            | Self::SecretRefused { .. }
            | Self::Locked { .. } => exit::SERVICE,
            Self::State { .. } | Self::StateDamaged { .. } | Self::Staging { .. } => exit::INTERNAL,
            Self::Busy { .. } => exit::BUSY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graph_error_names_the_service_once() {
        let refused = ConnectorError::Graph(GraphError::Token {
            error: "invalid_request".into(),
            description: "AADSTS90002: Tenant not found".into(),
        });
        assert_eq!(
            refused.to_string(),
            "Microsoft 365 refused the application's sign-in: invalid_request: AADSTS90002: Tenant not found"
        );
        let api = ConnectorError::Graph(GraphError::Api {
            status: 403,
            code: "ErrorAccessDenied".into(),
            message: "Access is denied.".into(),
            request_id: "r-1".into(),
        });
        assert_eq!(
            api.to_string(),
            "Microsoft 365: Graph answered 403 ErrorAccessDenied: Access is denied. (request-id r-1)"
        );
    }
}
