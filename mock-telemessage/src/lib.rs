//! `mock-telemessage`: a faithful fake of the TeleMessage archive API described in
//! `docs/telemessage-api.md`.
//!
//! Build a [`State`] from a [`Dataset`], then serve [`router`]. Tests call
//! `router(state).oneshot(request)` without a socket; the binary binds a port.

pub mod attachment;
pub mod cursor;
pub mod dataset;
pub mod error;
pub mod routes;
pub mod state;
pub mod wire;

pub use dataset::{Dataset, DatasetError, Faults};
pub use routes::router;
pub use state::{Config, State};
