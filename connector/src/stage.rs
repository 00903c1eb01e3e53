//! The staging area (the seed's "secure storage location"): attachment bytes of the open
//! window, under the state directory, readable by the connector's user only. An item's
//! file is deleted as soon as every one of its mailboxes has it, and whatever is left
//! when the window is accounted for: customer data stays at rest no longer than needed.

use std::path::{Path, PathBuf};

use crate::errors::ConnectorError;

#[derive(Debug, Clone)]
pub struct Staging {
    root: PathBuf,
    quarantine: PathBuf,
    /// Window directories made by this process (each is made, and made private, once).
    made: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
    /// Bytes staged by this process and not yet removed, by file, and their peak: how
    /// much customer data was at rest at once (the run report's `peak_staging_bytes`).
    usage: std::sync::Arc<std::sync::Mutex<Usage>>,
}

#[derive(Debug, Default)]
struct Usage {
    files: std::collections::HashMap<PathBuf, u64>,
    now: u64,
    peak: u64,
}

/// What a failed file operation in the state directory means for the operator: a full
/// disk is named as such, with the way on.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => format!(
            "no space left on the device ({e}). The run stopped here and nothing is lost: the window stays open and the next run resumes it. Free space under the state directory (or move state_dir), then run again"
        ),
        _ => e.to_string(),
    }
}

fn private_dir(path: &Path) -> Result<(), ConnectorError> {
    let fail = |e: std::io::Error| ConnectorError::Staging {
        path: path.display().to_string(),
        reason: io_reason(&e),
    };
    std::fs::create_dir_all(path).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    Ok(())
}

impl Staging {
    pub fn new(state_dir: &Path) -> Result<Self, ConnectorError> {
        private_dir(state_dir)?;
        let root = state_dir.join("staging");
        private_dir(&root)?;
        Ok(Self {
            root,
            quarantine: state_dir.join("quarantine"),
            made: Default::default(),
            usage: Default::default(),
        })
    }

    fn window_dir(&self, window: i64) -> PathBuf {
        self.root.join(format!("window-{window}"))
    }

    /// Where an attachment of a window is staged. The file is named by a digest of the
    /// attachment id, so no id can reach outside the directory.
    pub fn attachment(&self, window: i64, attachment_id: &str) -> Result<PathBuf, ConnectorError> {
        let dir = self.window_dir(window);
        if !self.made.lock().expect("lock poisoned").contains(&window) {
            private_dir(&dir)?;
            self.made.lock().expect("lock poisoned").insert(window);
        }
        Ok(self.file_of(&dir, attachment_id))
    }

    fn file_of(&self, dir: &Path, attachment_id: &str) -> PathBuf {
        dir.join(crate::digest::sha256_hex(attachment_id.as_bytes()))
    }

    /// Counts a file of `bytes` just staged at `path` (one staged again replaces its
    /// count).
    pub fn staged(&self, path: &Path, bytes: u64) {
        let mut usage = self.usage.lock().expect("lock poisoned");
        let before = usage.files.insert(path.to_path_buf(), bytes).unwrap_or(0);
        usage.now = usage.now - before + bytes;
        usage.peak = usage.peak.max(usage.now);
    }

    /// The most bytes staged at once by this process so far.
    pub fn peak_bytes(&self) -> u64 {
        self.usage.lock().expect("lock poisoned").peak
    }

    /// No longer counts the files under `dir` (a window cleared).
    fn unstaged_under(&self, dir: &Path) {
        let mut usage = self.usage.lock().expect("lock poisoned");
        let mut freed = 0;
        usage.files.retain(|path, bytes| {
            let keep = !path.starts_with(dir);
            if !keep {
                freed += *bytes;
            }
            keep
        });
        usage.now -= freed;
    }

    /// Deletes one staged attachment (every mailbox has its item); one never staged is
    /// no error.
    pub fn forget(&self, window: i64, attachment_id: &str) -> Result<(), ConnectorError> {
        let path = self.file_of(&self.window_dir(window), attachment_id);
        // One file, by its key: a delivery's own step, not a scan of every staged file.
        {
            let mut usage = self.usage.lock().expect("lock poisoned");
            let freed = usage.files.remove(&path).unwrap_or(0);
            usage.now -= freed;
        }
        gone(&path, std::fs::remove_file(&path))
    }

    /// Keeps the bytes of an item that could not be read, as the provider sent them, in
    /// the quarantine (private like the staging area; never deleted by the connector).
    /// Named by the window's start and the item's place in its listing.
    pub fn quarantine(
        &self,
        window_since: chrono::DateTime<chrono::Utc>,
        position: u64,
        bytes: &[u8],
    ) -> Result<PathBuf, ConnectorError> {
        private_dir(&self.quarantine)?;
        let path = self.quarantine.join(format!(
            "{}-item-{position:06}.json",
            window_since.format("%Y%m%dT%H%M%S%.3fZ")
        ));
        let fail = |e: std::io::Error| ConnectorError::Staging {
            path: path.display().to_string(),
            reason: io_reason(&e),
        };
        std::fs::write(&path, bytes).map_err(fail)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(fail)?;
        }
        Ok(path)
    }

    /// Deletes what a window staged.
    pub fn clear(&self, window: i64) -> Result<(), ConnectorError> {
        self.made.lock().expect("lock poisoned").remove(&window);
        let dir = self.window_dir(window);
        self.unstaged_under(&dir);
        gone(&dir, std::fs::remove_dir_all(&dir))
    }
}

/// The outcome of removing `path`: what was not there is gone too.
fn gone(path: &Path, removed: std::io::Result<()>) -> Result<(), ConnectorError> {
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ConnectorError::Staging {
            path: path.display().to_string(),
            reason: io_reason(&e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_items_file_goes_at_once_and_the_window_keeps_the_rest() {
        let state = std::env::temp_dir().join(format!("connector-stage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let staging = Staging::new(&state).unwrap();
        let a = staging.attachment(7, "att-a").unwrap();
        let b = staging.attachment(7, "att-b").unwrap();
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(a.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "the window's directory is private");
        }
        staging.forget(7, "att-a").unwrap();
        assert!(!a.exists(), "delivered everywhere: deleted");
        assert!(b.exists(), "another item's file stays");
        staging.forget(7, "never-staged").unwrap();
        staging.clear(7).unwrap();
        assert!(!b.exists());
        // The directory is made again for a window taken up again.
        let again = staging.attachment(7, "att-c").unwrap();
        std::fs::write(&again, b"c").unwrap();
        // What was at rest at once is counted, and what went is no longer.
        let counted = Staging::new(&state).unwrap();
        let (x, y) = (
            counted.attachment(9, "x").unwrap(),
            counted.attachment(9, "y").unwrap(),
        );
        counted.staged(&x, 100);
        counted.staged(&y, 50);
        counted.forget(9, "x").unwrap();
        counted.staged(&y, 70);
        assert_eq!(counted.peak_bytes(), 150);
        let z = counted.attachment(10, "z").unwrap();
        counted.staged(&z, 60);
        assert_eq!(counted.peak_bytes(), 150, "70 + 60 is less than the peak");
        counted.clear(9).unwrap();
        counted.clear(10).unwrap();
        counted.staged(&z, 140);
        assert_eq!(counted.peak_bytes(), 150);
        counted.staged(&x, 20);
        assert_eq!(
            counted.peak_bytes(),
            160,
            "140 + 20: both windows' files count"
        );
        std::fs::remove_dir_all(&state).unwrap();
    }
}
