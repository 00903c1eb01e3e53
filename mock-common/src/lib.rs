//! Pieces both fakes share, and nothing else: an injected clock, slow hashing of
//! passwords and secrets and the bounded pool that checks them, opaque bearer tokens kept
//! only as digests, request ids, the admin-token check, the look of the pages shown to
//! people, and the start-up that prints the `listening on` line.
//!
//! The connector never depends on this crate (see ARCHITECTURE.md).

pub mod check_pool;
pub mod clock;
pub mod log_capture;
pub mod page;
pub mod secret;
pub mod seeded;
pub mod serve;
pub mod transport;

pub use check_pool::{Busy, CheckPool};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use log_capture::LogCapture;
pub use secret::{AdminToken, Lookup, PasswordHash, Sessions, TokenDigest, new_token, request_id};

/// A new file under `dir` for a fake's own data (a message store, a day's items),
/// readable and writable by this user only, named `{prefix}-{pid}-{n}.{extension}` so
/// that two fakes, or two processes, never share one. The caller removes it.
pub fn private_file(
    dir: &std::path::Path,
    prefix: &str,
    extension: &str,
) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{prefix}-{}-{n}.{extension}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    Ok((path, file))
}

/// At most `max` characters of an attacker-chosen string, for an error message or a
/// log line; longer ones end in `...` and say how long they were.
pub fn clip(value: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(value),
        Some((end, _)) => std::borrow::Cow::Owned(format!(
            "{}...({} characters)",
            &value[..end],
            value.chars().count()
        )),
    }
}

#[cfg(test)]
mod clip_tests {
    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        assert_eq!(super::clip("short", 10), "short");
        assert_eq!(super::clip("ééééé", 5), "ééééé");
        assert_eq!(super::clip("éééééé", 5), "ééééé...(6 characters)");
    }
}
