//! The connector's failures that stop a run (bad data from outside is not one of them:
//! it becomes a skipped item with a reason).

use crate::graph::GraphError;
use crate::mapping::MappingError;
use crate::provider::ProviderError;

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The configuration file is missing, unreadable or wrong.
    #[error("configuration {path}: {reason}")]
    Config { path: String, reason: String },
    /// The mapping file is refused, with every bad line.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The provider could not be used (login refused, unreachable after retries).
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    /// Microsoft 365 could not be used (sign-in refused, unreachable after retries).
    #[error("Microsoft 365: {0}")]
    Graph(#[from] GraphError),
    /// The state database could not be read or written.
    #[error("state database {path}: {reason}")]
    State { path: String, reason: String },
    /// The staging directory could not be used.
    #[error("staging directory {path}: {reason}")]
    Staging { path: String, reason: String },
}
