//! Microsoft Graph, as the connector uses it: the client-credentials token, users, the
//! archive folder, MIME import and lookup by Message-ID.

pub mod client;
pub mod pace;
pub mod wire;

pub use client::{FolderLookup, GraphClient, GraphError, ImportBody, UserRef};
