//! `mock-mailbox`: a faithful fake of the part of Microsoft 365 the connector uses: the
//! Microsoft identity platform's client-credentials token endpoint and the Microsoft Graph
//! mail API (users, mail folders, MIME import, messages, search). `docs/mailbox-api.md`
//! lists exactly what is implemented and where the fake knowingly differs.
//!
//! Build a [`State`] from a [`Directory`], then serve [`router`].

pub mod attach;
pub mod directory;
pub mod error;
pub mod message;
pub mod odata;
pub mod profile;
pub mod routes;
pub mod search;
pub mod state;
pub mod store;
pub mod throttle;
pub mod ui;

pub use directory::{Directory, DirectoryError};
pub use routes::router;
pub use state::{Config, State};
pub use throttle::Limits;
