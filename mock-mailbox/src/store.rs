//! Where message bytes live. Each distinct message (by the SHA-256 of its MIME) is kept
//! once, whichever mailboxes hold it: the same item delivered to five mailboxes is one
//! [`Content`] with five entries pointing at it. The bytes stay in memory (the default,
//! quickest for small tests) or go to one append-only file under a directory the fake
//! owns and removes (`--store DIR`, or a temporary one), so a big day does not have to
//! fit in RAM. One file, not a file per message: creating files costs far more than
//! writing them (0.5 ms an `openat` on these machines). The space of a message no mailbox
//! holds any more is not reused; it goes with the store.
//!
//! For a day larger than the disk, [`Storage::Summary`] keeps no message bytes at all:
//! each message is read on arrival and only what Graph lists and searches (its
//! [`Summary`], with the SHA-256 of each attachment), the SHA-256 of the whole message
//! and its header section stay. Its `$value` is then refused with
//! [`Content::retained`] false (docs/mailbox-api.md, "Retention").

use std::collections::HashMap;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
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
    /// In a file under `dir` (created if needed; the file is removed at the end), or
    /// under a new temporary directory (removed at the end).
    Disk { dir: Option<PathBuf> },
    /// Not at all: the summary, the hashes and the header section only.
    Summary,
}

/// The content of one distinct message: its summary, and its bytes wherever they are.
#[derive(Debug)]
pub struct Content {
    pub sha256: [u8; 32],
    pub len: usize,
    pub summary: Summary,
    /// The header section, kept in memory in every mode (the reconciliation and Graph's
    /// `internetMessageHeaders` read it; decoded when asked).
    head: Box<[u8]>,
    bytes: Bytes,
}

#[derive(Debug)]
enum Bytes {
    Memory(Vec<u8>),
    /// At `offset` in the store's file (held open while any content is in it).
    File {
        offset: u64,
        file: Arc<Segment>,
    },
    /// Not kept (the header section is, beside).
    Dropped,
}

/// Why a message's bytes cannot be given back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The store keeps summaries only ([`Storage::Summary`]).
    #[error("this mailbox keeps each message's summary and hashes only, not its bytes")]
    NotRetained,
    #[error("the message store cannot read: {0}")]
    Io(#[from] std::io::Error),
}

impl Content {
    /// Whether the exact bytes are kept (not with [`Storage::Summary`]).
    pub fn retained(&self) -> bool {
        !matches!(self.bytes, Bytes::Dropped)
    }

    /// The exact MIME bytes.
    pub fn mime(&self) -> Result<Vec<u8>, ReadError> {
        match &self.bytes {
            Bytes::Memory(b) => Ok(b.clone()),
            Bytes::File { offset, file } => {
                let mut buf = vec![0u8; self.len];
                file.file.read_exact_at(&mut buf, *offset)?;
                Ok(buf)
            }
            Bytes::Dropped => Err(ReadError::NotRetained),
        }
    }

    /// About how many bytes this content takes in memory: the struct, the summary's
    /// strings and lists, the header section and, in memory mode, the message.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.summary.heap_bytes()
            + self.head.len()
            + match &self.bytes {
                Bytes::Memory(b) => b.len(),
                Bytes::File { .. } | Bytes::Dropped => 0,
            }
    }

    /// The header section: every byte up to the first empty line (or all of them).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Every header, name and decoded value, in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        crate::message::headers_of(&self.head)
    }
}

/// Where the header section ends: the first CRLF CRLF.
fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The store's one file, appended to; removed (with its directory, if the store made
/// it) when the last content in it is gone.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    dir: PathBuf,
    owned_dir: bool,
    file: std::fs::File,
    end: Mutex<u64>,
}

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if self.owned_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A content being kept now, which the imports of the same bytes wait for.
type Coming = Arc<tokio::sync::OnceCell<Arc<Content>>>;

/// Every distinct message stored, by SHA-256.
#[derive(Debug)]
pub struct Store {
    segment: Option<Arc<Segment>>,
    summary_only: bool,
    known: Mutex<HashMap<[u8; 32], Weak<Content>>>,
    /// Contents being read and written now: a second import of the same bytes at the
    /// same time waits for the first, so they are read and written once.
    coming: Mutex<HashMap<[u8; 32], Coming>>,
    bytes_on_disk: AtomicU64,
}

impl Store {
    pub fn new(storage: &Storage) -> std::io::Result<Self> {
        let segment = match storage {
            Storage::Memory | Storage::Summary => None,
            Storage::Disk { dir } => {
                let (dir, owned_dir) = match dir {
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
                std::fs::create_dir_all(&dir)?;
                // Named apart, so two stores can share a directory; readable by this user only.
                let path = dir.join(format!(
                    "messages-{}-{}.bin",
                    std::process::id(),
                    next_store()
                ));
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                Some(Arc::new(Segment {
                    path,
                    dir,
                    owned_dir,
                    file,
                    end: Mutex::new(0),
                }))
            }
        };
        Ok(Self {
            segment,
            summary_only: matches!(storage, Storage::Summary),
            known: Mutex::default(),
            coming: Mutex::default(),
            bytes_on_disk: AtomicU64::new(0),
        })
    }

    /// The directory the bytes are in, if on disk.
    pub fn path(&self) -> Option<&Path> {
        self.segment.as_ref().map(|s| s.dir.as_path())
    }

    /// Keeps a message: the content already stored if the same bytes are, else a new
    /// one (read, summarised and written once, even when the same bytes come several
    /// times at once: the others wait for the first).
    pub async fn put(&self, mime: Vec<u8>) -> Result<Arc<Content>, StoreError> {
        let sha256: [u8; 32] = Sha256::digest(&mime).into();
        if let Some(known) = self.lookup(&sha256) {
            return Ok(known);
        }
        let cell = self
            .coming
            .lock()
            .expect("store lock poisoned")
            .entry(sha256)
            .or_default()
            .clone();
        let kept = cell
            .get_or_try_init(|| async { self.keep_new(sha256, mime) })
            .await
            .cloned();
        // Known from now on (or refused, and the next one tries again).
        let mut coming = self.coming.lock().expect("store lock poisoned");
        if coming.get(&sha256).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            coming.remove(&sha256);
        }
        kept
    }

    fn keep_new(&self, sha256: [u8; 32], mime: Vec<u8>) -> Result<Arc<Content>, StoreError> {
        if let Some(known) = self.lookup(&sha256) {
            return Ok(known);
        }
        let mut summary = summarise(&mime)?;
        let len = mime.len();
        let head: Box<[u8]> = mime[..head_end(&mime).unwrap_or(len)].into();
        let bytes = match &self.segment {
            None if self.summary_only => {
                // Graph then gives the body as text: the HTML alternative is the text's.
                summary.body_html = None;
                Bytes::Dropped
            }
            None => Bytes::Memory(mime),
            Some(segment) => {
                let offset = {
                    let mut end = segment.end.lock().expect("store lock poisoned");
                    let offset = *end;
                    *end += len as u64;
                    offset
                };
                segment
                    .file
                    .write_all_at(&mime, offset)
                    .map_err(StoreError::Io)?;
                self.bytes_on_disk.fetch_add(len as u64, Ordering::Relaxed);
                Bytes::File {
                    offset,
                    file: segment.clone(),
                }
            }
        };
        let content = Arc::new(Content {
            sha256,
            len,
            summary,
            head,
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIME: &[u8] = b"From: a@b.example\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n\r\nHello\r\n";

    #[tokio::test]
    async fn the_same_bytes_are_kept_once_and_read_back_exactly_on_disk() {
        let store = Store::new(&Storage::Disk { dir: None }).unwrap();
        let dir = store.path().unwrap().to_path_buf();
        let a = store.put(MIME.to_vec()).await.unwrap();
        let b = store.put(MIME.to_vec()).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one content for the same bytes");
        assert_eq!(store.bytes_written(), MIME.len() as u64);
        let other = store.put(MIME.replace_first()).await.unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(store.bytes_written(), 2 * MIME.len() as u64);
        assert_eq!(a.mime().unwrap(), MIME);
        assert_eq!(other.mime().unwrap(), MIME.replace_first());
        assert_eq!(
            a.head(),
            b"From: a@b.example\r\nSubject: hi\r\nMessage-ID: <1@x>"
        );
        assert_eq!(a.summary.subject, "hi");
        // A header section longer than one read, its end across two reads.
        let long = format!(
            "Subject: {}\r\nFrom: a@b.example\r\n\r\nbody\r\n",
            "x".repeat(16 * 1024 - 40)
        );
        let c = store.put(long.clone().into_bytes()).await.unwrap();
        assert_eq!(c.head(), long.split("\r\n\r\n").next().unwrap().as_bytes());
        drop((a, b, other, store));
        assert!(dir.exists(), "a content still held keeps the store's file");
        assert_eq!(c.mime().unwrap(), long.as_bytes());
        drop(c);
        assert!(
            !dir.exists(),
            "the store's own directory goes with its last content"
        );
    }

    #[tokio::test]
    async fn a_summary_store_keeps_the_head_and_the_hashes_but_not_the_bytes() {
        let store = Store::new(&Storage::Summary).unwrap();
        assert!(store.path().is_none(), "nothing on disk");
        let mime = b"From: a@b.example\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n";
        let a = store.put(mime.to_vec()).await.unwrap();
        assert!(!a.retained());
        assert!(matches!(a.mime(), Err(ReadError::NotRetained)));
        assert_eq!(
            a.head(),
            &mime[..mime.windows(4).position(|w| w == b"\r\n\r\n").unwrap()]
        );
        assert_eq!(a.headers()[1], ("Subject".to_owned(), "hi".to_owned()));
        assert_eq!(a.len, mime.len());
        assert_eq!(a.sha256, <[u8; 32]>::from(Sha256::digest(mime)));
        assert_eq!(a.summary.subject, "hi");
        assert_eq!(a.summary.body_text.trim(), "Hello");
        let att = &a.summary.attachments[0];
        assert_eq!((att.name.as_str(), att.size), ("f.bin", 3));
        // SHA-256 of the decoded bytes 00 01 02.
        assert_eq!(
            att.sha256,
            "ae4b3280e56e2faf83f414a6e3dabe9d5fbe18976544c05fed121accb85b53fc"
        );
        assert_eq!(store.bytes_written(), 0);
        let b = store.put(mime.to_vec()).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "still one content for the same bytes");
    }

    #[test]
    fn the_same_bytes_coming_at_once_are_read_and_written_once() {
        let store = Store::new(&Storage::Disk { dir: None }).expect("a temporary store");
        // Long enough that reading it takes a while: the imports overlap.
        let mut mime = MIME.to_vec();
        for line in 0..20_000 {
            mime.extend_from_slice(format!("line {line} of a long message\r\n").as_bytes());
        }
        // Eight threads, let go at once, each importing the same bytes.
        let start = std::sync::Barrier::new(8);
        let kept: Vec<Arc<Content>> = std::thread::scope(|s| {
            let puts: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .build()
                            .expect("a runtime");
                        start.wait();
                        runtime.block_on(store.put(mime.clone())).unwrap()
                    })
                })
                .collect();
            puts.into_iter().map(|p| p.join().unwrap()).collect()
        });
        assert!(kept.iter().all(|c| Arc::ptr_eq(c, &kept[0])), "one content");
        assert_eq!(store.bytes_written(), mime.len() as u64, "written once");
    }

    #[tokio::test]
    async fn what_is_not_a_message_is_refused_and_not_kept() {
        let store = Store::new(&Storage::Memory).unwrap();
        assert!(matches!(
            store.put(b"not mail".to_vec()).await,
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
