//! The scenario runner: organisations and days of WhatsApp traffic (written out or
//! generated from a seed), run through the connector against both fakes, and reconciled
//! item by item against what landed in every mailbox.
//!
//! [`model`] is the scenario file (read and expanded by [`scenario_file`]), [`generate`]
//! and [`strategy`] make scenarios,
//! [`runner`] runs them, [`oracle`] computes what must happen from the mission's rules on
//! its own (never with the connector's code), [`reconcile`] compares, [`html`] writes the
//! reconciliation as a page.

pub mod chaos;
pub mod cli;
pub mod conformance;
pub mod generate;
pub mod harness;
pub mod hostile;
pub mod html;
pub mod keep_mail;
pub mod load;
pub mod model;
pub mod oracle;
pub mod parity;
pub mod reconcile;
pub mod runner;
pub mod scenario_file;
pub mod strategy;

pub use model::Scenario;
pub use reconcile::{ScenarioReport, Verdict};
