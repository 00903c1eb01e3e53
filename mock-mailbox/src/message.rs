//! A stored message: its entry in a mailbox, what mail-parser reads from its bytes (the
//! fields Graph lists and searches), and its Graph JSON.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderName, HeaderValue, MessageParser, MimeHeaders};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// A name and address, as Graph's `emailAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    pub name: String,
    pub address: String,
}

/// An attachment as the inspection API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentSummary {
    pub name: String,
    pub content_type: String,
    pub size: usize,
    /// SHA-256 of the decoded content, lowercase hex.
    pub sha256: String,
}

/// What the fake knows of a message besides its bytes: read on arrival, then built again
/// from the header section and the kept fields when asked ([`crate::store::Content::open`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub internet_message_id: Option<String>,
    pub subject: String,
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub date: Option<DateTime<Utc>>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub body_text: String,
    pub body_html: Option<String>,
    pub attachments: Vec<AttachmentSummary>,
}

/// Why a MIME import was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MimeError {
    #[error("the body is not valid base64")]
    Base64,
    #[error("the content is not a MIME message")]
    NotMime,
}

/// Reads a MIME message. A message with no header at all is not one.
pub fn summarise(mime: &[u8]) -> Result<Summary, MimeError> {
    // Headers mail-parser does not know (X-...) are read as unstructured text, so their
    // values are decoded (RFC 2047) and unfolded as a reader sees them.
    // (`default_header_text` applies only to a parser with an explicit header map, so
    // the map the default parser uses is spelled out.)
    let parsed = parser().parse(mime).ok_or(MimeError::NotMime)?;
    if parsed.headers().is_empty() || !looks_like_headers(mime) {
        return Err(MimeError::NotMime);
    }
    summary_of(&parsed)
}

/// The parser every reading of a stored message uses, so that attachments are found
/// in the same order on arrival and when one is downloaded.
fn parser() -> MessageParser {
    MessageParser::new()
        .with_mime_headers()
        .with_date_headers()
        .with_address_headers()
        .with_message_ids()
        .header_text(HeaderName::Subject)
        .header_text(HeaderName::Comments)
        .header_comma_separated(HeaderName::Keywords)
        .header_comma_separated(HeaderName::ContentLanguage)
        .header_received(HeaderName::Received)
        .header_raw(HeaderName::MimeVersion)
        .default_header_text()
}

/// The decoded content of a stored message's attachment number `index` (in the order
/// of [`Summary::attachments`]).
pub fn attachment_content(mime: &[u8], index: usize) -> Option<Vec<u8>> {
    let parsed = parser().parse(mime)?;
    parsed
        .attachments()
        .nth(index)
        .map(|part| part.contents().to_vec())
}

fn summary_of(parsed: &mail_parser::Message<'_>) -> Result<Summary, MimeError> {
    let mut summary = header_fields(parsed);
    summary.attachments = parsed
        .attachments()
        .map(|part| AttachmentSummary {
            name: part.attachment_name().unwrap_or("attachment").to_owned(),
            content_type: part
                .content_type()
                .map(|c| match c.subtype() {
                    Some(sub) => format!("{}/{sub}", c.ctype()),
                    None => c.ctype().to_owned(),
                })
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: part.contents().len(),
            sha256: {
                use sha2::Digest;
                hex(&sha2::Sha256::digest(part.contents()).into())
            },
        })
        .collect();
    Ok(summary)
}

/// Lowercase hex of a SHA-256.
pub fn hex(sha256: &[u8; 32]) -> String {
    sha256.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a parsed message says in its headers and bodies, its attachments aside.
fn header_fields(parsed: &mail_parser::Message<'_>) -> Summary {
    let list = |a: Option<&Address>| -> Vec<Mailbox> {
        a.map(|a| {
            a.iter()
                .map(|m| Mailbox {
                    name: m.name().unwrap_or_default().to_owned(),
                    address: m.address().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let ids = |v: &HeaderValue| -> Vec<String> {
        match v {
            HeaderValue::Text(t) => vec![t.to_string()],
            HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
            _ => Vec::new(),
        }
    };
    Summary {
        internet_message_id: parsed.message_id().map(|id| format!("<{id}>")),
        subject: parsed.subject().unwrap_or_default().to_owned(),
        from: list(parsed.from()).into_iter().next(),
        to: list(parsed.to()),
        cc: list(parsed.cc()),
        bcc: list(parsed.bcc()),
        reply_to: list(parsed.reply_to()),
        date: parsed
            .date()
            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
        in_reply_to: ids(parsed.in_reply_to()),
        references: ids(parsed.references()),
        body_text: parsed
            .body_text(0)
            .map(|b| b.into_owned())
            .unwrap_or_default(),
        // Only a real text/html part: mail-parser would otherwise render the text as HTML.
        body_html: parsed
            .html_bodies()
            .find(|p| p.is_text_html())
            .and_then(|p| p.text_contents())
            .map(str::to_owned),
        attachments: Vec::new(),
    }
}

/// Every header of a header section (the bytes before the first empty line), name and
/// decoded value, in order: what Graph's `internetMessageHeaders` lists. Read when asked
/// rather than kept decoded beside each message (a big day holds a million of them).
pub fn headers_of(head: &[u8]) -> Vec<(String, String)> {
    read_head(head).1
}

/// A header section read again: the summary's fields that come from headers (subject,
/// addresses, ids, date; no body and no attachments), and every header in order.
pub(crate) fn read_head(head: &[u8]) -> (Summary, Vec<(String, String)>) {
    let mut whole = Vec::with_capacity(head.len() + 4);
    whole.extend_from_slice(head);
    whole.extend_from_slice(b"\r\n\r\n");
    let Some(parsed) = parser().parse(&whole) else {
        return (Summary::default(), Vec::new());
    };
    let headers = parsed
        .headers()
        .iter()
        .map(|h| {
            let raw = parsed
                .raw_message()
                .get(h.offset_start() as usize..h.offset_end() as usize)
                .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                .unwrap_or_default();
            let value = match h.value() {
                HeaderValue::Text(t) => t.to_string(),
                _ => unfold(&raw),
            };
            (h.name().to_owned(), value)
        })
        .collect();
    let mut summary = header_fields(&parsed);
    summary.attachments.clear();
    summary.body_text.clear();
    summary.body_html = None;
    (summary, headers)
}

/// The first line of a message must be a header field (`Name: value`).
fn looks_like_headers(mime: &[u8]) -> bool {
    let first = mime.split(|b| *b == b'\n').next().unwrap_or_default();
    match first.iter().position(|b| *b == b':') {
        Some(colon) if colon > 0 => first[..colon]
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b':'),
        _ => false,
    }
}

fn unfold(raw: &str) -> String {
    raw.split_once(':')
        .map(|(_, v)| v)
        .unwrap_or(raw)
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A message in a mailbox: a few numbers and a pointer to its content. Its ids are
/// worked out from them when asked ([`Ids`]), so a mailbox of a million messages keeps
/// no id strings.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The mailbox's user id, shared by every message of the mailbox.
    owner: Arc<str>,
    /// Its number in the mailbox: the message id and change key are made from it.
    pub serial: u64,
    /// The number of the folder it is in (see [`Ids::folder`]).
    pub folder: u64,
    /// The bytes and what was read from them, shared by every copy of the same bytes.
    pub content: Arc<crate::store::Content>,
    pub is_draft: bool,
    pub created: DateTime<Utc>,
    /// Deleted for good with its folder (a seeded fault): that folder's name.
    pub deleted_with: Option<Box<str>>,
    /// A version kept by Litigation Hold when the message changed (a file attached
    /// after import): the message itself lives on with its new content.
    pub replaced: bool,
}

/// The ids of a mailbox's objects, made from the user id, a kind and a number, as Graph's
/// opaque base64 ids look: `AAMkA` and the URL-safe base64 of `user/kind/number`.
#[derive(Debug)]
pub struct Ids;

impl Ids {
    pub fn make(owner: &str, kind: &str, serial: u64) -> String {
        format!(
            "AAMkA{}",
            URL_SAFE_NO_PAD.encode(format!("{owner}/{kind}/{serial}"))
        )
    }

    /// A folder's id.
    pub fn folder(owner: &str, serial: u64) -> String {
        Self::make(owner, "f", serial)
    }

    /// The number in an id made for `owner` and `kind`, or `None` for any other string
    /// (another mailbox's id, another kind, not an id at all).
    pub fn serial(owner: &str, kind: &str, id: &str) -> Option<u64> {
        let decoded = URL_SAFE_NO_PAD.decode(id.strip_prefix("AAMkA")?).ok()?;
        let text = std::str::from_utf8(&decoded).ok()?;
        let rest = text.strip_prefix(owner)?.strip_prefix('/')?;
        let (k, n) = rest.split_once('/')?;
        // Only the spelling this fake makes: no sign, no leading zero.
        if k != kind || n.starts_with(['+', '0']) && n != "0" {
            return None;
        }
        n.parse().ok()
    }
}

impl StoredMessage {
    pub fn new(
        owner: Arc<str>,
        serial: u64,
        folder: u64,
        content: Arc<crate::store::Content>,
        is_draft: bool,
        created: DateTime<Utc>,
    ) -> Self {
        Self {
            owner,
            serial,
            folder,
            content,
            is_draft,
            created,
            deleted_with: None,
            replaced: false,
        }
    }

    /// Graph's id of the message.
    pub fn id(&self) -> String {
        Ids::make(&self.owner, "m", self.serial)
    }

    /// The id of the folder it is in.
    pub fn folder_id(&self) -> String {
        Ids::folder(&self.owner, self.folder)
    }

    /// Its version, as Graph's `changeKey` (messages here are never changed).
    pub fn change_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("ck{}", self.serial))
    }

    /// About how many bytes this entry takes in memory with its key in the mailbox's
    /// map, its content aside (shared by every copy of the same bytes).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + std::mem::size_of::<u64>()
            + self.deleted_with.as_deref().map_or(0, str::len)
    }

    /// When Graph says it was received: the `Date` header, else the import time.
    pub fn received(&self) -> DateTime<Utc> {
        self.content.date().unwrap_or(self.created)
    }

    /// The Graph `message` resource. `internetMessageHeaders` appears only when selected,
    /// as in Graph.
    pub fn to_graph(
        &self,
        with_headers: bool,
    ) -> Result<Map<String, Value>, crate::store::ReadError> {
        // The header list only when asked: the summary alone is usually at hand.
        let (s, headers) = if with_headers {
            let opened = self.content.open()?;
            (opened.summary, Some(opened.headers))
        } else {
            (self.content.summary()?, None)
        };
        let email = |m: &Mailbox| json!({"emailAddress": {"name": m.name, "address": m.address}});
        let many = |l: &[Mailbox]| Value::Array(l.iter().map(email).collect());
        let (content_type, content) = match &s.body_html {
            Some(html) => ("html", html.clone()),
            None => ("text", s.body_text.clone()),
        };
        let preview: String = s.body_text.split_whitespace().collect::<Vec<_>>().join(" ");
        let preview: String = preview.chars().take(255).collect();
        let received = self
            .received()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let created = self
            .created
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut m = Map::new();
        m.insert(
            "@odata.etag".into(),
            json!(format!("W/\"{}\"", self.change_key())),
        );
        m.insert("id".into(), json!(self.id()));
        m.insert("createdDateTime".into(), json!(created));
        m.insert("lastModifiedDateTime".into(), json!(created));
        m.insert("changeKey".into(), json!(self.change_key()));
        m.insert("categories".into(), json!([]));
        m.insert("receivedDateTime".into(), json!(received));
        m.insert("sentDateTime".into(), json!(received));
        m.insert("hasAttachments".into(), json!(!s.attachments.is_empty()));
        m.insert("internetMessageId".into(), json!(s.internet_message_id));
        m.insert("subject".into(), json!(s.subject));
        m.insert("bodyPreview".into(), json!(preview));
        m.insert("importance".into(), json!("normal"));
        m.insert("parentFolderId".into(), json!(self.folder_id()));
        m.insert("isRead".into(), json!(!self.is_draft));
        m.insert("isDraft".into(), json!(self.is_draft));
        m.insert(
            "body".into(),
            json!({"contentType": content_type, "content": content}),
        );
        let from = s.from.as_ref().map(email).unwrap_or(Value::Null);
        m.insert("sender".into(), from.clone());
        m.insert("from".into(), from);
        m.insert("toRecipients".into(), many(&s.to));
        m.insert("ccRecipients".into(), many(&s.cc));
        m.insert("bccRecipients".into(), many(&s.bcc));
        m.insert("replyTo".into(), many(&s.reply_to));
        m.insert("flag".into(), json!({"flagStatus": "notFlagged"}));
        if let Some(headers) = headers {
            m.insert(
                "internetMessageHeaders".into(),
                Value::Array(
                    headers
                        .iter()
                        .map(|(n, v)| json!({"name": n, "value": v}))
                        .collect(),
                ),
            );
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_graph_shows() {
        let mime = b"From: =?utf-8?q?Chlo=C3=A9?= <chloe@contoso.example>\r\nTo: Bob <bob@contoso.example>, ann@contoso.example\r\nSubject: =?utf-8?b?UHJpeCDwn5GN?=\r\nDate: Sun, 22 Nov 2026 09:00:01 +0000\r\nMessage-ID: <wa-1@archive.example>\r\nIn-Reply-To: <wa-0@archive.example>\r\nX-WhatsApp-Kind: text\r\n\r\nHello there\r\n";
        let s = summarise(mime).unwrap();
        assert_eq!(s.subject, "Prix 👍");
        assert_eq!(s.from.as_ref().unwrap().name, "Chloé");
        assert_eq!(s.to.len(), 2);
        assert_eq!(
            s.internet_message_id.as_deref(),
            Some("<wa-1@archive.example>")
        );
        assert_eq!(s.in_reply_to, ["wa-0@archive.example"]);
        assert_eq!(s.date.unwrap().to_rfc3339(), "2026-11-22T09:00:01+00:00");
        let head = &mime[..mime.windows(4).position(|w| w == b"\r\n\r\n").unwrap()];
        let headers = headers_of(head);
        assert!(headers.contains(&("X-WhatsApp-Kind".into(), "text".into())));
        assert!(headers.contains(&("Subject".into(), "Prix 👍".into())));
        assert_eq!(headers.len(), 7);
        assert_eq!(s.body_text.trim(), "Hello there");
    }

    #[test]
    fn an_id_gives_back_its_number_only_for_its_own_mailbox_and_kind() {
        let owner = "2f1c9a7e-0000-4000-8000-000000000001";
        let id = Ids::make(owner, "m", 42);
        assert!(id.starts_with("AAMkA"));
        assert_eq!(Ids::serial(owner, "m", &id), Some(42));
        assert_eq!(Ids::serial(owner, "f", &id), None, "another kind");
        let other = "2f1c9a7e-0000-4000-8000-000000000002";
        assert_eq!(Ids::serial(other, "m", &id), None, "another mailbox");
        assert_eq!(Ids::serial(owner, "m", &Ids::make(other, "m", 42)), None);
        for not_ours in ["", "AAMkA", "AAMkA!!", "42", &Ids::make(owner, "m", 1)[1..]] {
            assert_eq!(Ids::serial(owner, "m", not_ours), None, "{not_ours:?}");
        }
        // One spelling per number: no leading zero, no sign.
        let padded = format!("AAMkA{}", URL_SAFE_NO_PAD.encode(format!("{owner}/m/042")));
        assert_eq!(Ids::serial(owner, "m", &padded), None);
    }

    #[test]
    fn text_that_is_not_a_message_is_refused() {
        assert_eq!(summarise(b"").unwrap_err(), MimeError::NotMime);
        assert_eq!(
            summarise(b"just some words\r\n").unwrap_err(),
            MimeError::NotMime
        );
        assert_eq!(
            summarise(&[0xff, 0xfe, 0x00, 0x01]).unwrap_err(),
            MimeError::NotMime
        );
    }
}
