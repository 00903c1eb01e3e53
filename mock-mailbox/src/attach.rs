//! Files attached to a message after it was stored: by one `POST .../attachments` (under
//! 3 MB) or by an upload session (`createUploadSession`, then `PUT`s of chunks to a
//! pre-authenticated upload URL). A file attached becomes part of the message's MIME, so
//! `$value`, `hasAttachments`, `$search`, the inspection view and the viewer all see it
//! with nothing of their own to learn.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use mail_parser::{MessageParser, MimeHeaders};
use mock_common::TokenDigest;

use crate::message::MimeError;

/// A file attached by a single `POST .../attachments` must be under 3 MB (Microsoft's
/// documentation; read here as 3 MiB of decoded bytes).
pub const SINGLE_POST_LIMIT: usize = 3 * 1024 * 1024;
/// Each chunk `PUT` to an upload URL carries at most 4 MB (read as 4 MiB).
pub const CHUNK_LIMIT: usize = 4 * 1024 * 1024;
/// The largest file an upload session takes: 150 MB (read as 150 MiB).
pub const UPLOAD_LIMIT: u64 = 150 * 1024 * 1024;
/// An upload session lapses this long after it was created or last took a chunk.
/// Microsoft gives each session an `expirationDateTime` but documents no figure for
/// Outlook attachments: an assumption (docs/mailbox-api.md).
pub const SESSION_IDLE_MINUTES: i64 = 15;

/// `mime` with one more attachment part, `name` of `content_type`, at its end. A
/// `multipart/mixed` message gets the part before its closing delimiter; any other is
/// wrapped in a new `multipart/mixed` whose first part is the old body, with its own
/// `Content-*` headers. Every other byte is kept as it was.
pub fn with_attachment(
    mime: &[u8],
    name: &str,
    content_type: &str,
    content: &[u8],
) -> Result<Vec<u8>, MimeError> {
    let end = mime
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(MimeError::NotMime)?;
    let (head, body) = (&mime[..end + 2], &mime[end + 4..]);
    let part = render_part(name, content_type, content);
    let parsed = MessageParser::new().parse(mime).ok_or(MimeError::NotMime)?;
    let mixed_boundary = parsed.content_type().and_then(|c| {
        (c.ctype().eq_ignore_ascii_case("multipart")
            && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("mixed")))
        .then(|| c.attribute("boundary").map(str::to_owned))
        .flatten()
    });
    if let Some(boundary) = mixed_boundary {
        let closing = format!("\r\n--{boundary}--");
        if let Some(at) = rfind(mime, closing.as_bytes()) {
            let mut out = Vec::with_capacity(mime.len() + part.len() + boundary.len() + 8);
            out.extend_from_slice(&mime[..at]);
            out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
            out.extend_from_slice(&part);
            out.extend_from_slice(&mime[at..]);
            return Ok(out);
        }
    }
    // Wrap: the header fields of the body move into the first part.
    let boundary = fresh_boundary(mime, content);
    let (content_fields, other_fields): (Vec<&[u8]>, Vec<&[u8]>) = fields(head)
        .into_iter()
        .partition(|f| f.len() >= 8 && f[..8].eq_ignore_ascii_case(b"content-"));
    let mut out = Vec::with_capacity(mime.len() + part.len() + 256);
    for f in &other_fields {
        out.extend_from_slice(f);
    }
    if !other_fields
        .iter()
        .any(|f| f.len() >= 13 && f[..13].eq_ignore_ascii_case(b"mime-version:"))
    {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    out.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    if content_fields.is_empty() {
        out.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    }
    for f in &content_fields {
        out.extend_from_slice(f);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    out.extend_from_slice(&part);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// The attachment part, header fields and encoded body, as mail-builder writes it (it
/// picks the transfer encoding, and encodes a file name that is not plain ASCII).
fn render_part(name: &str, content_type: &str, content: &[u8]) -> Vec<u8> {
    let mut part = Vec::with_capacity(content.len() * 4 / 3 + 512);
    mail_builder::mime::MimePart::new(content_type.to_owned(), content.to_vec())
        .attachment(name.to_owned())
        .write_part(&mut part);
    // mail-builder leaves the body without its own line end when it wrote one already.
    while part.ends_with(b"\r\n") {
        part.truncate(part.len() - 2);
    }
    part
}

/// The header fields of a header section, each with its folded lines and final CRLF.
fn fields(head: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while let Some(n) = head[at..].windows(2).position(|w| w == b"\r\n") {
        let line_end = at + n + 2;
        let folded = head
            .get(line_end)
            .is_some_and(|b| *b == b' ' || *b == b'\t');
        if !folded {
            out.push(&head[start..line_end]);
            start = line_end;
        }
        at = line_end;
    }
    if start < head.len() {
        out.push(&head[start..]);
    }
    out
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// A boundary that occurs in neither the message nor the file.
fn fresh_boundary(mime: &[u8], content: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(mime)
        .chain_update(content)
        .finalize();
    let mut n = 0u32;
    loop {
        let candidate = format!(
            "=_attached_{}_{n}",
            digest[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        if rfind(mime, candidate.as_bytes()).is_none() {
            return candidate;
        }
        n += 1;
    }
}

/// What `createUploadSession` was told about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

/// One upload session. Its URL's credential is kept only as a digest.
#[derive(Debug)]
struct Session {
    credential: TokenDigest,
    client_id: String,
    user_id: String,
    message_id: String,
    file: Announced,
    received: Vec<u8>,
    expires: DateTime<Utc>,
}

/// Who an upload session belongs to, for its chunks' place in the throttle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub client_id: String,
    pub user_id: String,
    pub message_id: String,
}

/// Why a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// No such session, a wrong credential, or one that lapsed (all look the same).
    NotFound,
    /// The chunk does not start where the session expects (overlapping or out of order).
    Range { expected: u64 },
    /// The total in `Content-Range` is not the size announced.
    Total { announced: u64 },
    /// The chunk goes past the announced size.
    PastEnd,
}

/// What a chunk taken did.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// More is expected from `next`; the session lapses at `expires`.
    More { next: u64, expires: DateTime<Utc> },
    /// That was the last chunk: the whole file.
    Complete {
        owner: Owner,
        file: Announced,
        bytes: Vec<u8>,
    },
}

/// The open upload sessions, by id.
#[derive(Debug, Default)]
pub struct Uploads(Mutex<HashMap<String, Session>>);

impl Uploads {
    /// Opens a session; answers its id, the credential for its URL (given out once, never
    /// kept) and when it lapses.
    pub fn open(
        &self,
        owner: Owner,
        file: Announced,
        now: DateTime<Utc>,
    ) -> (String, String, DateTime<Utc>) {
        let id = mock_common::new_token("");
        let credential = mock_common::new_token("");
        let expires = now + Duration::minutes(SESSION_IDLE_MINUTES);
        let mut sessions = self.0.lock().expect("upload lock poisoned");
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            id.clone(),
            Session {
                credential: TokenDigest::of(&credential),
                client_id: owner.client_id,
                user_id: owner.user_id,
                message_id: owner.message_id,
                file,
                received: Vec::new(),
                expires,
            },
        );
        (id, credential, expires)
    }

    /// The owner of session `id` if `credential` opens it and it has not lapsed.
    pub fn owner(&self, id: &str, credential: &str, now: DateTime<Utc>) -> Option<Owner> {
        let mut sessions = self.0.lock().expect("upload lock poisoned");
        let session = sessions.get(id)?;
        if session.credential != TokenDigest::of(credential) {
            return None;
        }
        if session.expires <= now {
            sessions.remove(id);
            return None;
        }
        Some(Owner {
            client_id: session.client_id.clone(),
            user_id: session.user_id.clone(),
            message_id: session.message_id.clone(),
        })
    }

    /// Takes the chunk `bytes` at `start` of a file of `total` bytes.
    pub fn take(
        &self,
        id: &str,
        credential: &str,
        start: u64,
        total: u64,
        bytes: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Taken, ChunkError> {
        let mut sessions = self.0.lock().expect("upload lock poisoned");
        let session = sessions
            .get_mut(id)
            .filter(|s| s.credential == TokenDigest::of(credential) && s.expires > now)
            .ok_or(ChunkError::NotFound)?;
        if total != session.file.size {
            return Err(ChunkError::Total {
                announced: session.file.size,
            });
        }
        let expected = session.received.len() as u64;
        if start != expected {
            return Err(ChunkError::Range { expected });
        }
        if start + bytes.len() as u64 > total {
            return Err(ChunkError::PastEnd);
        }
        session.received.extend_from_slice(bytes);
        session.expires = now + Duration::minutes(SESSION_IDLE_MINUTES);
        if (session.received.len() as u64) < total {
            return Ok(Taken::More {
                next: session.received.len() as u64,
                expires: session.expires,
            });
        }
        let session = sessions.remove(id).expect("the session was just found");
        Ok(Taken::Complete {
            owner: Owner {
                client_id: session.client_id,
                user_id: session.user_id,
                message_id: session.message_id,
            },
            file: session.file,
            bytes: session.received,
        })
    }

    /// Cancels a session; answers whether there was one to cancel.
    pub fn cancel(&self, id: &str, credential: &str, now: DateTime<Utc>) -> bool {
        let mut sessions = self.0.lock().expect("upload lock poisoned");
        let opens = sessions
            .get(id)
            .is_some_and(|s| s.credential == TokenDigest::of(credential) && s.expires > now);
        if opens {
            sessions.remove(id);
        }
        opens
    }

    /// Sessions open now.
    pub fn open_count(&self, now: DateTime<Utc>) -> usize {
        self.0
            .lock()
            .expect("upload lock poisoned")
            .values()
            .filter(|s| s.expires > now)
            .count()
    }

    pub fn clear(&self) {
        self.0.lock().expect("upload lock poisoned").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn attachments(mime: &[u8]) -> Vec<(String, Vec<u8>)> {
        let parsed = MessageParser::new().parse(mime).unwrap();
        parsed
            .attachments()
            .map(|a| {
                (
                    a.attachment_name().unwrap_or_default().to_owned(),
                    a.contents().to_vec(),
                )
            })
            .collect()
    }

    const MIXED: &[u8] = b"From: a@x\r\nMessage-ID: <m1@x>\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=\"a.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b1--\r\n";

    #[test]
    fn a_file_joins_a_mixed_message_at_its_end_byte_for_byte() {
        let file: Vec<u8> = (0..70_000u32).map(|n| (n * 7 % 251) as u8).collect();
        let out = with_attachment(MIXED, "Größe 1.pdf", "application/pdf", &file).unwrap();
        assert!(
            out.starts_with(&MIXED[..MIXED.len() - 8]),
            "what was there stays"
        );
        let found = attachments(&out);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], ("a.png".to_owned(), vec![0, 1, 2]));
        assert_eq!(found[1].0, "Größe 1.pdf");
        assert_eq!(
            sha2::Sha256::digest(&found[1].1),
            sha2::Sha256::digest(&file)
        );
        let parsed = MessageParser::new().parse(&out[..]).unwrap();
        assert_eq!(parsed.message_id(), Some("m1@x"));
        assert_eq!(parsed.body_text(0).as_deref(), Some("hello"));
    }

    #[test]
    fn a_single_part_message_is_wrapped_and_keeps_its_body() {
        let plain = b"From: a@x\r\nMessage-ID: <m2@x>\r\nSubject: s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n";
        let out = with_attachment(plain, "v.mp4", "video/mp4", b"video").unwrap();
        let parsed = MessageParser::new().parse(&out[..]).unwrap();
        let before = MessageParser::new().parse(&plain[..]).unwrap();
        assert_eq!(parsed.message_id(), Some("m2@x"));
        assert_eq!(parsed.subject(), Some("s"));
        assert_eq!(parsed.body_text(0), before.body_text(0));
        assert!(parsed.body_text(0).unwrap().starts_with("café"));
        assert_eq!(attachments(&out), vec![("v.mp4".into(), b"video".to_vec())]);
        // Twice: the second goes into the multipart the first made.
        let twice = with_attachment(&out, "w.mp4", "video/mp4", b"more").unwrap();
        assert_eq!(attachments(&twice).len(), 2);
        assert!(with_attachment(b"no header section", "x", "a/b", b"").is_err());
    }

    fn owner() -> Owner {
        Owner {
            client_id: "app".into(),
            user_id: "u1".into(),
            message_id: "m".into(),
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn chunks_come_in_order_from_the_expected_range_and_lapse() {
        let uploads = Uploads::default();
        let file = Announced {
            name: "f".into(),
            content_type: "a/b".into(),
            size: 10,
        };
        let (id, key, expires) = uploads.open(owner(), file.clone(), t0());
        assert_eq!(expires, t0() + Duration::minutes(15));
        assert_eq!(
            uploads.take(&id, "wrong", 0, 10, b"0123", t0()),
            Err(ChunkError::NotFound)
        );
        assert_eq!(
            uploads.take(&id, &key, 0, 11, b"0123", t0()),
            Err(ChunkError::Total { announced: 10 })
        );
        assert!(matches!(
            uploads.take(&id, &key, 0, 10, b"0123", t0()),
            Ok(Taken::More { next: 4, .. })
        ));
        // Overlapping and out of order are both refused, naming where to resume.
        assert_eq!(
            uploads.take(&id, &key, 2, 10, b"2345", t0()),
            Err(ChunkError::Range { expected: 4 })
        );
        assert_eq!(
            uploads.take(&id, &key, 8, 10, b"89", t0()),
            Err(ChunkError::Range { expected: 4 })
        );
        assert_eq!(
            uploads.take(&id, &key, 4, 10, b"4567890", t0()),
            Err(ChunkError::PastEnd)
        );
        let done = uploads.take(&id, &key, 4, 10, b"456789", t0()).unwrap();
        assert_eq!(
            done,
            Taken::Complete {
                owner: owner(),
                file,
                bytes: b"0123456789".to_vec()
            }
        );
        assert_eq!(
            uploads.owner(&id, &key, t0()),
            None,
            "a finished session is gone"
        );
        // A session not fed for 15 minutes lapses.
        let (id, key, _) = uploads.open(
            owner(),
            Announced {
                size: 4,
                ..done_file()
            },
            t0(),
        );
        let late = t0() + Duration::minutes(15);
        assert_eq!(
            uploads.take(&id, &key, 0, 4, b"0123", late),
            Err(ChunkError::NotFound)
        );
        let (id, key, _) = uploads.open(owner(), done_file(), t0());
        assert!(!uploads.cancel(&id, "wrong", t0()));
        assert!(uploads.cancel(&id, &key, t0()));
        assert_eq!(uploads.owner(&id, &key, t0()), None);
    }

    fn done_file() -> Announced {
        Announced {
            name: "f".into(),
            content_type: "a/b".into(),
            size: 10,
        }
    }
}
