//! One run at a time per state directory: an exclusive lock on `run.lock`, held for the
//! whole life of a [`Connector`](crate::Connector) and let go when it is dropped (or
//! when the process ends, however it ends: the operating system releases it).
//!
//! Two runs on one state would each list the window, each find no record of the other's
//! deliveries and import them again, and each clear the other's staged files. The lock
//! file also says who holds it (process id, host, since when), for the refusal message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::errors::ConnectorError;

/// The name of the lock file inside the state directory.
pub const LOCK_FILE: &str = "run.lock";

/// The lock, held while this value lives.
#[derive(Debug)]
pub struct RunLock {
    // Held only for its lock; closing the file releases it.
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `state_dir` (which must exist), or says who holds it.
    pub fn acquire(state_dir: &Path, now: DateTime<Utc>) -> Result<Self, ConnectorError> {
        let path = state_dir.join(LOCK_FILE);
        let fail = |e: std::io::Error| ConnectorError::State {
            path: path.display().to_string(),
            reason: format!("the run lock cannot be used: {e}"),
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(fail)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(ConnectorError::Busy {
                    path: path.display().to_string(),
                    holder: if holder.is_empty() {
                        "another process (it has not written its name yet)".into()
                    } else {
                        crate::http::clip(holder, 200)
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(fail(e)),
        }
        // Ours: say who holds it.
        let me = format!(
            "process {} on host {} since {}",
            std::process::id(),
            host_name(),
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        file.set_len(0).map_err(fail)?;
        file.rewind().map_err(fail)?;
        file.write_all(me.as_bytes()).map_err(fail)?;
        file.flush().map_err(fail)?;
        Ok(Self { _file: file, path })
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// This machine's name, as the kernel knows it, for the lock's holder line.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_second_lock_is_refused_with_who_holds_the_first_until_it_is_let_go() {
        let dir = std::env::temp_dir().join(format!("run-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = RunLock::acquire(&dir, at("2026-12-07T10:00:00Z")).unwrap();
        let second = RunLock::acquire(&dir, at("2026-12-07T10:00:01Z")).unwrap_err();
        let text = second.to_string();
        assert!(matches!(second, ConnectorError::Busy { .. }), "{text}");
        assert!(
            text.contains(&format!("process {}", std::process::id()))
                && text.contains("since 2026-12-07T10:00:00Z"),
            "names the holder: {text}"
        );
        assert_eq!(second.exit_code(), crate::errors::exit::BUSY);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(first.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(first);
        let third = RunLock::acquire(&dir, at("2026-12-07T10:00:02Z")).unwrap();
        let holder = std::fs::read_to_string(third.path()).unwrap();
        assert!(holder.ends_with("since 2026-12-07T10:00:02Z"), "{holder}");
        drop(third);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
