//! Pieces both fakes share, and nothing else: an injected clock, slow hashing of
//! passwords and secrets, opaque bearer tokens kept only as digests, request ids, the
//! admin-token check, the look of the pages shown to people, and the start-up that prints the `listening on` line.
//!
//! The connector never depends on this crate (see ARCHITECTURE.md).

pub mod clock;
pub mod log_capture;
pub mod page;
pub mod secret;
pub mod seeded;
pub mod serve;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use log_capture::LogCapture;
pub use secret::{AdminToken, Lookup, PasswordHash, Sessions, TokenDigest, new_token, request_id};
