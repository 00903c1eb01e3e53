//! The connector: once a day it pulls a window of WhatsApp items from the TeleMessage
//! archive, stages them, converts each to an RFC 5322 message, maps participants to
//! Microsoft 365 mailboxes and imports the messages through Microsoft Graph into each
//! mailbox's `WhatsApp Archiver` folder.
//!
//! Pure stages (no I/O): [`phone`], [`mapping`], [`email`], [`size`]. I/O: [`provider`],
//! [`graph`], [`store`], [`stage`]. [`run`] ties them together.

pub mod config;
pub mod digest;
pub mod email;
pub mod errors;
pub mod graph;
pub mod http;
pub mod lock;
pub mod mapping;
pub mod model;
pub mod ops;
pub mod phone;
pub mod progress;
pub mod provider;
pub mod quiet;
pub mod report;
pub mod retry;
pub mod run;
pub mod secret;
pub mod size;
pub mod stage;
pub mod store;

pub use config::Config;
pub use errors::ConnectorError;
pub use report::RunReport;
pub use run::Connector;
