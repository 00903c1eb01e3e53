//! The TeleMessage archive API (docs/telemessage-api.md): wire types and the client.

pub mod client;
pub mod wire;

pub use client::{ProviderClient, ProviderError};
