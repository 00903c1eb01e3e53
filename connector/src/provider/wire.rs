//! The provider's JSON as docs/telemessage-api.md defines it, and its reading into the
//! domain model. The connector's own copy: it shares no type with the fake.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::model;
use crate::phone;

#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: u64,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub request_id: String,
}

/// A page of a listing. Items stay raw JSON text here (only skipped over, not parsed),
/// so that one unreadable item (a lone surrogate escape, nesting deeper than the
/// parser's limit) does not make the page unreadable.
#[derive(Debug, Deserialize)]
pub struct Page {
    pub items: Vec<Box<serde_json::value::RawValue>>,
    pub next_cursor: Option<String>,
}

/// The id of a raw item, when at least that much of it can be read: only `id` is
/// parsed, every other field is skipped over. `None` when there is no readable id.
pub fn raw_item_id(raw: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct JustId {
        id: Option<Box<serde_json::value::RawValue>>,
    }
    let just: JustId = serde_json::from_str(raw).ok()?;
    let id: String = serde_json::from_str(just.id?.get()).ok()?;
    (!id.trim().is_empty()).then_some(id)
}

/// Reads one raw item's text into the model, or says why it cannot be read. Read
/// straight into the schema; only text that does not read that way is read again as
/// JSON values, so that the reason says whether it is the JSON or the schema (and a
/// repeated key, which the schema refuses, is read as JSON reads it: the last wins).
pub fn read_item_text(raw: &str) -> Result<model::Item, String> {
    if let Ok(item) = serde_json::from_str::<Item>(raw) {
        return into_model(item);
    }
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("is not readable JSON: {e}"))?;
    read_item(&value)
}

/// Reads one raw item's text into the model, with the SHA-256 of its content in a
/// canonical form (object keys sorted, no white space): the same content sent twice has
/// one digest whatever its key order or spacing, and changed content another.
pub fn read_item_with_digest(raw: &str) -> Result<(model::Item, String), String> {
    use sha2::Digest;
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("is not readable JSON: {e}"))?;
    let item = read_item(&value)?;
    let mut canonical = Vec::with_capacity(raw.len());
    write_canonical(&value, &mut canonical);
    let digest = crate::digest::hex(&sha2::Sha256::digest(&canonical));
    Ok((item, digest))
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(key, out);
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => write_json(other, out),
    }
}

/// A key or a scalar as JSON writes it (quoted and escaped only where it has to be).
fn write_json(value: &impl serde::Serialize, out: &mut Vec<u8>) {
    serde_json::to_writer(out, value).expect("a string or a scalar writes to memory");
}

#[derive(Debug, Deserialize)]
pub struct Item {
    pub id: String,
    pub capture_mode: CaptureMode,
    pub archived_at: DateTime<Utc>,
    pub sent_at: DateTime<Utc>,
    pub conversation: Conversation,
    pub from: Participant,
    pub to: Vec<Participant>,
    #[serde(default)]
    pub context: Option<Context>,
    #[serde(default)]
    pub deleted: Option<Deleted>,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    PhoneArchiver,
    CloudArchiver,
}

#[derive(Debug, Deserialize)]
pub struct Conversation {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ConversationKind,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    Direct,
    Group,
}

#[derive(Debug, Deserialize)]
pub struct Users {
    pub users: Vec<Participant>,
}

#[derive(Debug, Deserialize)]
pub struct Participant {
    pub phone: String,
    pub name: String,
    #[serde(default)]
    pub user_email: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Context {
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub quoted_text: Option<String>,
    #[serde(default)]
    pub forwarded: bool,
    #[serde(default)]
    pub frequently_forwarded: bool,
}

#[derive(Debug, Deserialize)]
pub struct Deleted {
    pub scope: DeletionScope,
    pub deleted_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum DeletionScope {
    Everyone,
    Me,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    Text { text: String },
    Media { media: Media },
    Document { document: Document },
    Location { location: Location },
    Contact { contact: Contact },
    Reaction { reaction: Reaction },
    Edit { edit: Edit },
    Deletion { deletion: Deletion },
    Membership { membership: Membership },
    Call { call: Call },
}

#[derive(Debug, Deserialize)]
pub struct Media {
    pub kind: MediaKind,
    #[serde(default)]
    pub caption: Option<String>,
    pub attachment: Attachment,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    VoiceNote,
    Sticker,
}

#[derive(Debug, Deserialize)]
pub struct Document {
    #[serde(default)]
    pub caption: Option<String>,
    pub attachment: Attachment,
}

#[derive(Debug, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Contact {
    pub name: String,
    #[serde(default)]
    pub phones: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub organization: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Reaction {
    pub target_id: String,
    #[serde(default)]
    pub emoji: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Edit {
    pub target_id: String,
    pub text: String,
}

#[derive(Debug, Deserialize)]
pub struct Deletion {
    pub target_id: String,
    pub scope: DeletionScope,
}

#[derive(Debug, Deserialize)]
pub struct Membership {
    pub action: MembershipAction,
    #[serde(default)]
    pub members: Vec<Participant>,
    #[serde(default)]
    pub subject: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum MembershipAction {
    Join,
    Leave,
    Add,
    Remove,
    SubjectChange,
}

#[derive(Debug, Deserialize)]
pub struct Call {
    pub media: CallMedia,
    pub outcome: CallOutcome,
    pub started_at: DateTime<Utc>,
    pub duration_seconds: u64,
    #[serde(default)]
    pub joined: Vec<String>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum CallMedia {
    Voice,
    Video,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    Answered,
    Missed,
    Declined,
}

/// Reads one raw item into the model, or says why it cannot be read. Never panics.
pub fn read_item(raw: &serde_json::Value) -> Result<model::Item, String> {
    let item =
        Item::deserialize(raw).map_err(|e| format!("does not follow the item schema: {e}"))?;
    into_model(item)
}

/// An item read in the provider's schema, checked and put in the model's terms.
fn into_model(item: Item) -> Result<model::Item, String> {
    if item.id.trim().is_empty() {
        return Err("the item id is empty".into());
    }
    let sha_ok =
        |a: &Attachment| a.sha256.len() == 64 && a.sha256.bytes().all(|b| b.is_ascii_hexdigit());
    let content = match item.body {
        Body::Text { text } => model::Content::Text { text },
        Body::Media { media } => {
            if !sha_ok(&media.attachment) {
                return Err(format!(
                    "attachment {} has no valid sha256",
                    media.attachment.id
                ));
            }
            model::Content::Media {
                kind: media.kind.into(),
                caption: media.caption,
                attachment: media.attachment.into(),
            }
        }
        Body::Document { document } => {
            if !sha_ok(&document.attachment) {
                return Err(format!(
                    "attachment {} has no valid sha256",
                    document.attachment.id
                ));
            }
            model::Content::Document {
                caption: document.caption,
                attachment: document.attachment.into(),
            }
        }
        Body::Location { location: l } => {
            if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude) {
                return Err(format!(
                    "location {},{} is off the globe",
                    l.latitude, l.longitude
                ));
            }
            model::Content::Location {
                latitude: l.latitude,
                longitude: l.longitude,
                name: l.name,
                address: l.address,
            }
        }
        Body::Contact { contact: c } => model::Content::Contact {
            name: c.name,
            phones: c.phones,
            emails: c.emails,
            organization: c.organization,
        },
        Body::Reaction { reaction: r } => model::Content::Reaction {
            target_id: r.target_id,
            emoji: r.emoji,
        },
        Body::Edit { edit: e } => model::Content::Edit {
            target_id: e.target_id,
            text: e.text,
        },
        Body::Deletion { deletion: d } => model::Content::Deletion {
            target_id: d.target_id,
            scope: d.scope.into(),
        },
        Body::Membership { membership: m } => model::Content::Membership {
            action: match m.action {
                MembershipAction::Join => model::MembershipAction::Join,
                MembershipAction::Leave => model::MembershipAction::Leave,
                MembershipAction::Add => model::MembershipAction::Add,
                MembershipAction::Remove => model::MembershipAction::Remove,
                MembershipAction::SubjectChange => model::MembershipAction::SubjectChange,
            },
            members: m.members.into_iter().map(Into::into).collect(),
            subject: m.subject,
        },
        Body::Call { call: c } => model::Content::Call {
            media: match c.media {
                CallMedia::Voice => model::CallMedia::Voice,
                CallMedia::Video => model::CallMedia::Video,
            },
            outcome: match c.outcome {
                CallOutcome::Answered => model::CallOutcome::Answered,
                CallOutcome::Missed => model::CallOutcome::Missed,
                CallOutcome::Declined => model::CallOutcome::Declined,
            },
            started_at: c.started_at,
            duration_seconds: c.duration_seconds,
            joined: c
                .joined
                .iter()
                .map(|p| phone::normalise(p).unwrap_or_else(|_| p.clone()))
                .collect(),
        },
    };
    Ok(model::Item {
        revision: 1,
        unmapped: Vec::new(),
        id: item.id,
        capture_mode: match item.capture_mode {
            CaptureMode::PhoneArchiver => model::CaptureMode::PhoneArchiver,
            CaptureMode::CloudArchiver => model::CaptureMode::CloudArchiver,
        },
        archived_at: item.archived_at,
        sent_at: item.sent_at,
        conversation: model::Conversation {
            id: item.conversation.id,
            is_group: item.conversation.kind == ConversationKind::Group,
            name: item.conversation.name,
        },
        from: item.from.into(),
        to: item.to.into_iter().map(Into::into).collect(),
        context: item.context.map(|c| model::Context {
            reply_to: c.reply_to,
            quoted_text: c.quoted_text,
            forwarded: c.forwarded,
            frequently_forwarded: c.frequently_forwarded,
        }),
        deleted: item.deleted.map(|d| model::Deleted {
            scope: d.scope.into(),
            at: d.deleted_at,
        }),
        content,
    })
}

impl From<Participant> for model::Participant {
    fn from(p: Participant) -> Self {
        Self {
            phone: phone::normalise(&p.phone).unwrap_or(p.phone),
            name: p.name,
            user_email: p
                .user_email
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty()),
        }
    }
}

impl From<Attachment> for model::Attachment {
    fn from(a: Attachment) -> Self {
        Self {
            id: a.id,
            file_name: a.file_name,
            content_type: a.content_type,
            size: a.size,
            sha256: a.sha256.to_lowercase(),
        }
    }
}

impl From<DeletionScope> for model::DeletionScope {
    fn from(s: DeletionScope) -> Self {
        match s {
            DeletionScope::Everyone => Self::Everyone,
            DeletionScope::Me => Self::Me,
        }
    }
}

impl From<MediaKind> for model::MediaKind {
    fn from(k: MediaKind) -> Self {
        match k {
            MediaKind::Image => Self::Image,
            MediaKind::Video => Self::Video,
            MediaKind::Audio => Self::Audio,
            MediaKind::VoiceNote => Self::VoiceNote,
            MediaKind::Sticker => Self::Sticker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/telemessage")
    }

    /// The connector reads every golden item of the contract with its own types.
    #[test]
    fn reads_every_golden_item() {
        let mut kinds = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(examples().join("items")).unwrap() {
            let path = entry.unwrap().path();
            let raw: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let item = read_item(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            kinds.insert(item.content.kind());
        }
        assert_eq!(kinds.len(), 10);
        let page: Page = serde_json::from_str(
            &std::fs::read_to_string(examples().join("items-page.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(page.items.len(), 2);
        let _: TokenResponse =
            serde_json::from_str(&std::fs::read_to_string(examples().join("token.json")).unwrap())
                .unwrap();
        let _: ErrorBody =
            serde_json::from_str(&std::fs::read_to_string(examples().join("error.json")).unwrap())
                .unwrap();
    }

    /// The digest a content is known by is written in the state, and compared with the
    /// digest of what later listings bring: if its form changed between versions, every
    /// item seen before would come back as a revision and be delivered again. These
    /// values were computed apart from the connector (Python's `json.dumps` with sorted
    /// keys, no white space, UTF-8, then SHA-256).
    #[test]
    fn the_digest_of_a_content_does_not_change_between_versions() {
        for (file, expected) in [
            (
                "text.json",
                "156505501d6a559c79d2f529b33d83f895b5fa806c3c82e9f4be9dbef3dc4c50",
            ),
            (
                "call-group.json",
                "194aec990d594a03dc831d1422999e96fbb09a0530f34573ca0e61f05de0dcee",
            ),
        ] {
            let raw = std::fs::read_to_string(examples().join("items").join(file)).unwrap();
            let (_, digest) = read_item_with_digest(&raw).unwrap();
            assert_eq!(digest, expected, "{file}");
        }
    }

    /// Reading an item's text straight into the schema gives what reading it as JSON
    /// values first gives: every golden item, one with a repeated key (the last wins),
    /// one with keys that need escapes, texts that are no item; and the canonical form
    /// the revision digest is made of is the JSON values' own sorted, compact writing.
    #[test]
    fn an_item_read_straight_is_the_item_read_through_json_values() {
        let mut texts: Vec<String> = std::fs::read_dir(examples().join("items"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        let first = texts[0].clone();
        texts.push(first.replacen('{', r#"{"id": "shadowed", "#, 1));
        texts.push(first.replacen(
            '{',
            r#"{"we\"ird\u0001key\u007f": 1, "\u007f": 2, "ключ": [{"b": 1, "a": "\u2028"}], "#,
            1,
        ));
        texts.extend(["{}", "42", r#"{"id": "\ud800"}"#, "not json"].map(String::from));
        let mut read = 0;
        for text in &texts {
            let straight = read_item_text(text);
            let through_values = serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| format!("is not readable JSON: {e}"))
                .and_then(|v| read_item(&v));
            assert_eq!(
                format!("{straight:?}"),
                format!("{through_values:?}"),
                "{text}"
            );
            read += usize::from(straight.is_ok());
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
                let mut canonical = Vec::new();
                write_canonical(&value, &mut canonical);
                assert_eq!(
                    String::from_utf8(canonical).expect("JSON is UTF-8"),
                    value.to_string(),
                    "{text}"
                );
            }
        }
        assert!(
            read >= 11,
            "the golden items and the one with a repeated key read"
        );
    }

    #[test]
    fn an_unreadable_item_is_a_value_not_a_panic() {
        for raw in [
            serde_json::json!({}),
            serde_json::json!({"id": "x", "type": "hologram"}),
            serde_json::json!(42),
            serde_json::json!({"id": "wa-1", "type": "text", "capture_mode": "phone_archiver", "archived_at": "yesterday"}),
        ] {
            assert!(read_item(&raw).is_err());
        }
    }
}
