//! Where message bytes live. Each distinct message (by the SHA-256 of its MIME) is kept
//! once, whichever mailboxes hold it: the same item delivered to five mailboxes is one
//! [`Content`] with five entries pointing at it. The bytes stay in memory (the default,
//! quickest for small tests) or in files under a directory the fake owns and removes
//! (`--store DIR`, or a temporary one), so a big day does not have to fit in RAM.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};

use crate::message::{MimeError, Summary, summarise};

/// Where bytes are kept.
#[derive(Debug, Clone, Default)]
pub enum Storage {
    /// In memory.
    #[default]
    Memory,
    /// In files under `dir` (created if needed, emptied at the end), or under a new
    /// temporary directory.
    Disk { dir: Option<PathBuf> },
}

/// The content of one distinct message: its summary, and its bytes wherever they are.
#[derive(Debug)]
pub struct Content {
    pub sha256: [u8; 32],
    pub len: usize,
    pub summary: Summary,
    bytes: Bytes,
}

#[derive(Debug)]
enum Bytes {
    Memory(Vec<u8>),
    /// The file, and its directory (held so that it outlives every file in it).
    File(PathBuf, #[allow(dead_code)] Arc<Directory>),
}

impl Content {
    /// The exact MIME bytes.
    pub fn mime(&self) -> std::io::Result<Vec<u8>> {
        match &self.bytes {
            Bytes::Memory(b) => Ok(b.clone()),
            Bytes::File(path, _) => std::fs::read(path),
        }
    }

    /// The header section: every byte up to the first empty line (or all of them).
    pub fn head(&self) -> std::io::Result<Vec<u8>> {
        let end = |b: &[u8]| b.windows(4).position(|w| w == b"\r\n\r\n");
        match &self.bytes {
            Bytes::Memory(b) => Ok(b[..end(b).unwrap_or(b.len())].to_vec()),
            Bytes::File(path, _) => {
                let mut file = std::fs::File::open(path)?;
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    let n = file.read(&mut chunk)?;
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(e) = end(&buf) {
                        buf.truncate(e);
                        return Ok(buf);
                    }
                    if n == 0 {
                        return Ok(buf);
                    }
                }
            }
        }
    }
}

impl Drop for Content {
    fn drop(&mut self) {
        if let Bytes::File(path, _) = &self.bytes {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A directory of message files; removed when the last content in it is gone, if the
/// store made it.
#[derive(Debug)]
struct Directory {
    path: PathBuf,
    owned: bool,
}

impl Drop for Directory {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Every distinct message stored, by SHA-256.
#[derive(Debug)]
pub struct Store {
    dir: Option<Arc<Directory>>,
    known: Mutex<HashMap<[u8; 32], Weak<Content>>>,
    serial: AtomicU64,
    bytes_on_disk: AtomicU64,
}

impl Store {
    pub fn new(storage: &Storage) -> std::io::Result<Self> {
        let dir = match storage {
            Storage::Memory => None,
            Storage::Disk { dir } => {
                let (path, owned) = match dir {
                    Some(d) => (d.clone(), false),
                    None => (
                        std::env::temp_dir().join(format!(
                            "mock-mailbox-store-{}-{}",
                            std::process::id(),
                            next_store()
                        )),
                        true,
                    ),
                };
                std::fs::create_dir_all(&path)?;
                Some(Arc::new(Directory { path, owned }))
            }
        };
        Ok(Self {
            dir,
            known: Mutex::default(),
            serial: AtomicU64::new(0),
            bytes_on_disk: AtomicU64::new(0),
        })
    }

    /// The directory the bytes are in, if on disk.
    pub fn path(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path.as_path())
    }

    /// Keeps a message: the content already stored if the same bytes are, else a new
    /// one (read, summarised and written once).
    pub fn put(&self, mime: Vec<u8>) -> Result<Arc<Content>, StoreError> {
        let sha256: [u8; 32] = Sha256::digest(&mime).into();
        if let Some(known) = self.lookup(&sha256) {
            return Ok(known);
        }
        let summary = summarise(&mime)?;
        let len = mime.len();
        let bytes = match &self.dir {
            None => Bytes::Memory(mime),
            Some(dir) => {
                // A serial in the name: a content being dropped never removes the file of
                // a new content with the same bytes.
                let name = format!(
                    "{}-{}.eml",
                    hex(&sha256),
                    self.serial.fetch_add(1, Ordering::Relaxed)
                );
                let path = dir.path.join(name);
                std::fs::write(&path, &mime).map_err(StoreError::Io)?;
                self.bytes_on_disk.fetch_add(len as u64, Ordering::Relaxed);
                Bytes::File(path, dir.clone())
            }
        };
        let content = Arc::new(Content {
            sha256,
            len,
            summary,
            bytes,
        });
        let mut known = self.known.lock().expect("store lock poisoned");
        // Another import of the same bytes may have won the race: keep one.
        if let Some(first) = known.get(&sha256).and_then(Weak::upgrade) {
            return Ok(first);
        }
        known.insert(sha256, Arc::downgrade(&content));
        if known.len() > 1024 && known.len().is_power_of_two() {
            known.retain(|_, w| w.strong_count() > 0);
        }
        Ok(content)
    }

    fn lookup(&self, sha256: &[u8; 32]) -> Option<Arc<Content>> {
        self.known
            .lock()
            .expect("store lock poisoned")
            .get(sha256)
            .and_then(Weak::upgrade)
    }

    /// Bytes written to disk so far (each distinct message once).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_on_disk.load(Ordering::Relaxed)
    }
}

/// Why a message could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Mime(#[from] MimeError),
    #[error("the message store cannot write: {0}")]
    Io(std::io::Error),
}

fn next_store() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIME: &[u8] = b"From: a@b.example\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n\r\nHello\r\n";

    #[test]
    fn the_same_bytes_are_kept_once_and_read_back_exactly_on_disk() {
        let store = Store::new(&Storage::Disk { dir: None }).unwrap();
        let dir = store.path().unwrap().to_path_buf();
        let a = store.put(MIME.to_vec()).unwrap();
        let b = store.put(MIME.to_vec()).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one content for the same bytes");
        assert_eq!(store.bytes_written(), MIME.len() as u64);
        assert_eq!(a.mime().unwrap(), MIME);
        assert_eq!(
            a.head().unwrap(),
            b"From: a@b.example\r\nSubject: hi\r\nMessage-ID: <1@x>"
        );
        assert_eq!(a.summary.subject, "hi");
        let other = store.put(MIME.replace_first()).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        drop((a, b));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "a content no mailbox holds is removed"
        );
        drop((other, store));
        assert!(!dir.exists(), "the store's own directory goes with it");
    }

    #[test]
    fn what_is_not_a_message_is_refused_and_not_kept() {
        let store = Store::new(&Storage::Memory).unwrap();
        assert!(matches!(
            store.put(b"not mail".to_vec()),
            Err(StoreError::Mime(MimeError::NotMime))
        ));
    }

    trait ReplaceFirst {
        fn replace_first(&self) -> Vec<u8>;
    }

    impl ReplaceFirst for [u8] {
        fn replace_first(&self) -> Vec<u8> {
            let mut v = self.to_vec();
            let at = v.iter().position(|b| *b == b'H').unwrap();
            v[at] = b'J';
            v
        }
    }
}
