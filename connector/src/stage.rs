//! The staging area (the seed's "secure storage location"): attachment bytes of the open
//! window, under the state directory, readable by the connector's user only, deleted when
//! the window is accounted for.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::errors::ConnectorError;

#[derive(Debug, Clone)]
pub struct Staging {
    root: PathBuf,
    quarantine: PathBuf,
}

fn private_dir(path: &Path) -> Result<(), ConnectorError> {
    let fail = |e: std::io::Error| ConnectorError::Staging {
        path: path.display().to_string(),
        reason: e.to_string(),
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
        })
    }

    fn window_dir(&self, window: i64) -> PathBuf {
        self.root.join(format!("window-{window}"))
    }

    /// Where an attachment of a window is staged. The file is named by a digest of the
    /// attachment id, so no id can reach outside the directory.
    pub fn attachment(&self, window: i64, attachment_id: &str) -> Result<PathBuf, ConnectorError> {
        let dir = self.window_dir(window);
        private_dir(&dir)?;
        let name: String = Sha256::digest(attachment_id.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(dir.join(name))
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
            reason: e.to_string(),
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
        let dir = self.window_dir(window);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ConnectorError::Staging {
                path: dir.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
}
