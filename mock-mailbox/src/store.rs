//! Where message bytes live. Each distinct message (by the SHA-256 of its MIME) is kept
//! once, whichever mailboxes hold it: the same item delivered to five mailboxes is one
//! [`Content`] with five entries pointing at it. The bytes stay in memory (the default,
//! quickest for small tests) or go to one append-only file under a directory the fake
//! owns and removes (`--store DIR`, or a temporary one), so a big day does not have to
//! fit in RAM. One file, not a file per message: creating files costs far more than
//! writing them (0.5 ms an `openat` on these machines). The space of a message no mailbox
//! holds any more is not reused; it goes with the store.
//!
//! Each message's header section and text go to the same file (after the message), and
//! its summary is built again from them when asked: memory keeps only what Graph
//! filters and sorts on, and where the rest is.
//!
//! For a day larger than the disk, [`Storage::Summary`] keeps no message bytes at all:
//! each message is read on arrival; its header section and text go to a temporary file,
//! and the SHA-256 of the whole message and of each attachment stay in memory. Its
//! `$value` is then refused with [`Content::retained`] false (docs/mailbox-api.md,
//! "Retention").

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};

use chrono::{DateTime, Utc};

use crate::message::{AttachmentSummary, MimeError, Summary, hex, read_head, summarise};

/// Where bytes are kept.
#[derive(Debug, Clone, Default)]
pub enum Storage {
    /// In memory.
    #[default]
    Memory,
    /// In a file under `dir` (created if needed; the file is removed at the end), or
    /// under a new temporary directory (removed at the end).
    Disk { dir: Option<PathBuf> },
    /// Not at all: the hashes, and the header section and text in a temporary file.
    Summary,
}

/// The content of one distinct message. In memory: the SHA-256s, the few fields Graph
/// filters and sorts on, and where the rest is. The header section, the text and the
/// bytes are in the store's file (in memory with [`Storage::Memory`]) and read when asked
/// ([`Content::open`], [`Content::mime`]), so a million of them take little RAM.
#[derive(Debug)]
pub struct Content {
    pub sha256: [u8; 32],
    pub len: usize,
    internet_message_id: Option<Box<str>>,
    date: Option<DateTime<Utc>>,
    attachments: Box<[Attached]>,
    place: Place,
}

/// An attachment as kept: its hash in binary, hex when shown.
#[derive(Debug)]
struct Attached {
    name: Box<str>,
    content_type: Box<str>,
    size: u64,
    sha256: [u8; 32],
}

/// Where a content's bytes, header section and text are.
#[derive(Debug, Clone)]
enum Place {
    /// All in memory: the header section is the first `head` bytes of `mime`.
    Memory {
        mime: Box<[u8]>,
        head: u32,
        text: Box<str>,
        html: Option<Box<str>>,
    },
    /// In the store's file from `offset`: the message if `mime` (its first `head` bytes
    /// are the header section), else the header section alone; then the text and the
    /// HTML body.
    File {
        file: Arc<Segment>,
        offset: u64,
        mime: bool,
        head: u32,
        text: u32,
        html: Option<u32>,
    },
}

/// A content read back: its summary, and its header section as bytes and decoded.
#[derive(Debug, Clone)]
pub struct Opened {
    pub summary: Summary,
    /// Every header, name and decoded value, in order.
    pub headers: Vec<(String, String)>,
    /// The header section: every byte up to the first empty line (or all of them).
    pub head: Vec<u8>,
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
        match &self.place {
            Place::Memory { .. } => true,
            Place::File { mime, .. } => *mime,
        }
    }

    /// The exact MIME bytes.
    pub fn mime(&self) -> Result<Vec<u8>, ReadError> {
        match &self.place {
            Place::Memory { mime, .. } => Ok(mime.to_vec()),
            Place::File {
                file,
                offset,
                mime: true,
                ..
            } => file.read(*offset, self.len),
            Place::File { mime: false, .. } => Err(ReadError::NotRetained),
        }
    }

    /// The `Message-ID`, as Graph's `internetMessageId` (with its angle brackets).
    pub fn internet_message_id(&self) -> Option<&str> {
        self.internet_message_id.as_deref()
    }

    /// The `Date` header.
    pub fn date(&self) -> Option<DateTime<Utc>> {
        self.date
    }

    /// Whether it carries any attachment.
    pub fn has_attachments(&self) -> bool {
        !self.attachments.is_empty()
    }

    /// Its attachments, in order, with hex SHA-256s.
    pub fn attachments(&self) -> Vec<AttachmentSummary> {
        self.attachments
            .iter()
            .map(|a| AttachmentSummary {
                name: a.name.to_string(),
                content_type: a.content_type.to_string(),
                size: a.size as usize,
                sha256: hex(&a.sha256),
            })
            .collect()
    }

    /// Reads the header section and the text back and builds the summary again: one
    /// read of the store's file (two for a message kept whole), one parse of the header
    /// section.
    pub fn open(&self) -> Result<Opened, ReadError> {
        let (head, text, html) = match &self.place {
            Place::Memory {
                mime,
                head,
                text,
                html,
            } => (
                mime[..*head as usize].to_vec(),
                text.to_string(),
                html.as_deref().map(str::to_owned),
            ),
            Place::File {
                file,
                offset,
                mime,
                head,
                text,
                html,
            } => {
                let (head, at) = if *mime {
                    (
                        file.read(*offset, *head as usize)?,
                        offset + self.len as u64,
                    )
                } else {
                    (Vec::new(), *offset)
                };
                let before = if *mime { 0 } else { self.head_len() };
                let mut rest =
                    file.read(at, before + *text as usize + html.unwrap_or(0) as usize)?;
                let mut html_bytes = rest.split_off(before + *text as usize);
                let text_bytes = rest.split_off(before);
                let head = if *mime { head } else { rest };
                let html = html.map(|_| utf8(std::mem::take(&mut html_bytes)));
                (head, utf8(text_bytes), html)
            }
        };
        let (mut summary, headers) = read_head(&head);
        summary.internet_message_id = self.internet_message_id.as_deref().map(str::to_owned);
        summary.date = self.date;
        summary.body_text = text;
        summary.body_html = html;
        summary.attachments = self.attachments();
        Ok(Opened {
            summary,
            headers,
            head,
        })
    }

    /// What the fake read from the message: as [`Content::open`] builds it, from the
    /// store's recent summaries when it is there.
    pub fn summary(&self) -> Result<Summary, ReadError> {
        let Place::File { file, offset, .. } = &self.place else {
            return self.open().map(|o| o.summary);
        };
        let recent = file
            .recent
            .lock()
            .expect("store lock poisoned")
            .get(*offset);
        if let Some(summary) = recent {
            return Ok(Summary::clone(&summary));
        }
        let summary = self.open()?.summary;
        file.recent
            .lock()
            .expect("store lock poisoned")
            .put(*offset, Arc::new(summary.clone()));
        Ok(summary)
    }

    /// Every header, name and decoded value, in order.
    pub fn headers(&self) -> Result<Vec<(String, String)>, ReadError> {
        self.open().map(|o| o.headers)
    }

    fn head_len(&self) -> usize {
        match &self.place {
            Place::Memory { head, .. } | Place::File { head, .. } => *head as usize,
        }
    }

    /// About how many bytes this content takes in memory with its entry in the store's
    /// index: the struct, its strings and lists and, in memory mode, the message and its
    /// text (allocator overhead not counted).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + std::mem::size_of::<([u8; 32], Weak<Self>)>()
            + self.internet_message_id.as_deref().map_or(0, str::len)
            + self
                .attachments
                .iter()
                .map(|a| std::mem::size_of::<Attached>() + a.name.len() + a.content_type.len())
                .sum::<usize>()
            + match &self.place {
                Place::Memory {
                    mime, text, html, ..
                } => mime.len() + text.len() + html.as_deref().map_or(0, str::len),
                Place::File { .. } => 0,
            }
    }
}

/// Text written by this store, read back (lossy only if the file was changed under it).
fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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
    recent: Mutex<Recent>,
}

/// The summaries of the contents kept or read last, by their place in the file: an
/// item's copies arrive together and each import's answer shows the summary, so most
/// answers need no read of the file and no parse. At most [`RECENT`] of them.
#[derive(Debug, Default)]
struct Recent {
    by_offset: HashMap<u64, Arc<Summary>>,
    order: std::collections::VecDeque<u64>,
}

const RECENT: usize = 4096;

impl Recent {
    fn get(&self, offset: u64) -> Option<Arc<Summary>> {
        self.by_offset.get(&offset).cloned()
    }

    fn put(&mut self, offset: u64, summary: Arc<Summary>) {
        if self.by_offset.insert(offset, summary).is_none() {
            self.order.push_back(offset);
            if self.order.len() > RECENT
                && let Some(oldest) = self.order.pop_front()
            {
                self.by_offset.remove(&oldest);
            }
        }
    }
}

impl Segment {
    /// Writes `parts` one after the other at the end of the file; answers where they start.
    fn append(&self, parts: &[&[u8]]) -> std::io::Result<u64> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let offset = {
            let mut end = self.end.lock().expect("store lock poisoned");
            let offset = *end;
            *end += len;
            offset
        };
        let mut at = offset;
        for part in parts {
            self.file.write_all_at(part, at)?;
            at += part.len() as u64;
        }
        Ok(offset)
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, ReadError> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
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
            Storage::Memory => None,
            Storage::Disk { .. } | Storage::Summary => {
                let (dir, owned_dir) = match storage {
                    Storage::Disk { dir: Some(d) } => (d.clone(), false),
                    _ => (
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
                let (path, file) = mock_common::private_file(&dir, "messages", "bin")?;
                Some(Arc::new(Segment {
                    path,
                    dir,
                    owned_dir,
                    file,
                    end: Mutex::new(0),
                    recent: Mutex::default(),
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
        let head = head_end(&mime).unwrap_or(len);
        // With summaries only, Graph gives the body as text: the HTML alternative is the
        // text's.
        if self.summary_only {
            summary.body_html = None;
        }
        // As it will be read back, for the answers that follow at once.
        let shown = Arc::new(summary.clone());
        let html = summary.body_html;
        let text = summary.body_text;
        let too_long = |n: usize| u32::try_from(n).map_err(|_| StoreError::TooLong);
        let place = match &self.segment {
            None => Place::Memory {
                head: too_long(head)?,
                mime: mime.into_boxed_slice(),
                text: text.into_boxed_str(),
                html: html.map(String::into_boxed_str),
            },
            Some(segment) => {
                let html_bytes = html.as_deref().unwrap_or_default().as_bytes();
                let first: &[u8] = if self.summary_only {
                    &mime[..head]
                } else {
                    &mime
                };
                let offset = segment
                    .append(&[first, text.as_bytes(), html_bytes])
                    .map_err(StoreError::Io)?;
                self.bytes_on_disk.fetch_add(
                    (first.len() + text.len() + html_bytes.len()) as u64,
                    Ordering::Relaxed,
                );
                segment
                    .recent
                    .lock()
                    .expect("store lock poisoned")
                    .put(offset, shown);
                Place::File {
                    file: segment.clone(),
                    offset,
                    mime: !self.summary_only,
                    head: too_long(head)?,
                    text: too_long(text.len())?,
                    html: html.as_deref().map(|h| too_long(h.len())).transpose()?,
                }
            }
        };
        let content = Arc::new(Content {
            sha256,
            len,
            internet_message_id: summary.internet_message_id.map(String::into_boxed_str),
            date: summary.date,
            attachments: summary
                .attachments
                .into_iter()
                .map(|a| Attached {
                    sha256: unhex(&a.sha256),
                    name: a.name.into_boxed_str(),
                    content_type: a.content_type.into_boxed_str(),
                    size: a.size as u64,
                })
                .collect(),
            place,
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

    /// With summaries only ([`Storage::Summary`]): `old` with one more attachment, its
    /// header section and text shared. Its SHA-256 is of the old hash and the file's
    /// (there are no bytes to hash), so it differs from every message that arrived whole.
    pub fn with_attachment(
        &self,
        old: &Content,
        name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Arc<Content> {
        let file: [u8; 32] = Sha256::digest(bytes).into();
        let mut attachments: Vec<Attached> = old
            .attachments
            .iter()
            .map(|a| Attached {
                name: a.name.clone(),
                content_type: a.content_type.clone(),
                size: a.size,
                sha256: a.sha256,
            })
            .collect();
        attachments.push(Attached {
            name: name.into(),
            content_type: content_type.into(),
            size: bytes.len() as u64,
            sha256: file,
        });
        Arc::new(Content {
            sha256: Sha256::new()
                .chain_update(old.sha256)
                .chain_update(file)
                .finalize()
                .into(),
            len: old.len + bytes.len(),
            internet_message_id: old.internet_message_id.clone(),
            date: old.date,
            attachments: attachments.into_boxed_slice(),
            place: old.place.clone(),
        })
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
    #[error("the message's header section or text is over 4 GiB")]
    TooLong,
}

/// The bytes of a lowercase hex SHA-256 (as [`hex`] writes it).
fn unhex(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = hex
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or_default();
    }
    out
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
        // The message, then its text (read back without parsing the message again).
        let each = (MIME.len() + a.summary().unwrap().body_text.len()) as u64;
        assert_eq!(store.bytes_written(), each);
        let other = store.put(MIME.replace_first()).await.unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(store.bytes_written(), 2 * each);
        assert_eq!(a.mime().unwrap(), MIME);
        assert_eq!(other.mime().unwrap(), MIME.replace_first());
        assert_eq!(
            a.open().unwrap().head,
            b"From: a@b.example\r\nSubject: hi\r\nMessage-ID: <1@x>"
        );
        assert_eq!(a.summary().unwrap().subject, "hi");
        // A header section longer than one read, its end across two reads.
        let long = format!(
            "Subject: {}\r\nFrom: a@b.example\r\n\r\nbody\r\n",
            "x".repeat(16 * 1024 - 40)
        );
        let c = store.put(long.clone().into_bytes()).await.unwrap();
        assert_eq!(
            c.open().unwrap().head,
            long.split("\r\n\r\n").next().unwrap().as_bytes()
        );
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
        let mime = b"From: a@b.example\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n";
        let a = store.put(mime.to_vec()).await.unwrap();
        assert!(!a.retained());
        assert!(matches!(a.mime(), Err(ReadError::NotRetained)));
        let head = &mime[..mime.windows(4).position(|w| w == b"\r\n\r\n").unwrap()];
        assert_eq!(a.open().unwrap().head, head);
        assert_eq!(
            a.headers().unwrap()[1],
            ("Subject".to_owned(), "hi".to_owned())
        );
        assert_eq!(a.len, mime.len());
        assert_eq!(a.sha256, <[u8; 32]>::from(Sha256::digest(mime)));
        let summary = a.summary().unwrap();
        assert_eq!(summary.subject, "hi");
        assert_eq!(summary.body_text.trim(), "Hello");
        let att = &summary.attachments[0];
        assert_eq!((att.name.as_str(), att.size), ("f.bin", 3));
        // SHA-256 of the decoded bytes 00 01 02.
        assert_eq!(
            att.sha256,
            "ae4b3280e56e2faf83f414a6e3dabe9d5fbe18976544c05fed121accb85b53fc"
        );
        // Only the header section and the text went to the store's file.
        assert_eq!(
            store.bytes_written(),
            (head.len() + summary.body_text.len()) as u64
        );
        let b = store.put(mime.to_vec()).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "still one content for the same bytes");
    }

    /// What is kept of a message in memory and in the store's file is enough to build
    /// again, field by field, the summary read on its arrival, in every storage mode.
    #[tokio::test]
    async fn a_content_read_back_is_the_summary_read_on_arrival_in_every_mode() {
        let mime = b"From: =?utf-8?q?Chlo=C3=A9?= <chloe@contoso.example>\r\nTo: Bob <bob@contoso.example>, ann@contoso.example\r\nCc: Dan <dan@contoso.example>\r\nReply-To: desk@contoso.example\r\nSubject: =?utf-8?b?UHJpeCDwn5GN?=\r\nDate: Sun, 22 Nov 2026 09:00:01 +0000\r\nMessage-ID: <wa-1@archive.example>\r\nIn-Reply-To: <wa-0@archive.example>\r\nReferences: <wa-a@archive.example> <wa-0@archive.example>\r\nX-WhatsApp-Kind: media\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe text, caf\xc3\xa9\r\n--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>The <b>HTML</b></p>\r\n--a--\r\n--m\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=\"p.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--m\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"t.csv\"\r\n\r\na,b\r\n--m--\r\n";
        let arrival = summarise(mime).unwrap();
        assert!(arrival.body_html.is_some() && arrival.attachments.len() == 2);
        let head = &mime[..head_end(mime).unwrap()];
        for storage in [
            Storage::Memory,
            Storage::Disk { dir: None },
            Storage::Summary,
        ] {
            let store = Store::new(&storage).unwrap();
            // Another message first, so this one is not at the start of the file.
            store.put(MIME.to_vec()).await.unwrap();
            let content = store.put(mime.to_vec()).await.unwrap();
            let opened = content.open().unwrap();
            let mut expected = arrival.clone();
            if matches!(storage, Storage::Summary) {
                // Graph then shows the text as the body.
                expected.body_html = None;
            }
            assert_eq!(
                serde_json::to_value(&opened.summary).unwrap(),
                serde_json::to_value(&expected).unwrap(),
                "{storage:?}"
            );
            assert_eq!(opened.head, head, "{storage:?}");
            // The summary the answers show (kept from the arrival while recent) is the
            // one read back.
            assert_eq!(
                serde_json::to_value(content.summary().unwrap()).unwrap(),
                serde_json::to_value(&expected).unwrap(),
                "{storage:?}"
            );
            assert_eq!(opened.headers, crate::message::headers_of(head));
            assert_eq!(
                content.internet_message_id(),
                Some("<wa-1@archive.example>")
            );
            assert_eq!(content.date(), arrival.date);
            assert_eq!(content.attachments(), arrival.attachments);
            assert!(content.has_attachments());
            if content.retained() {
                assert_eq!(content.mime().unwrap(), mime, "{storage:?}");
            }
        }
    }

    #[test]
    fn the_recent_summaries_are_bounded_and_the_oldest_go_first() {
        let mut recent = Recent::default();
        let one = Arc::new(Summary::default());
        for offset in 0..RECENT as u64 {
            recent.put(offset, one.clone());
        }
        // Put again: not counted twice.
        recent.put(0, one.clone());
        assert!(recent.get(0).is_some());
        recent.put(RECENT as u64, one.clone());
        assert!(recent.get(0).is_none(), "the oldest went");
        assert!(recent.get(1).is_some() && recent.get(RECENT as u64).is_some());
        assert_eq!(recent.by_offset.len(), RECENT);
        assert_eq!(recent.order.len(), RECENT);
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
        let text = kept[0].summary().unwrap().body_text.len();
        assert_eq!(
            store.bytes_written(),
            (mime.len() + text) as u64,
            "written once"
        );
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
