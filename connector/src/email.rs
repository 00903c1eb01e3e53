//! An item becomes one RFC 5322 message. The rules are written for compliance reviewers
//! in docs/email-format.md; this is the only code that applies them. Pure: the caller
//! supplies attachment bytes (or why they are left out).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};
use sha2::{Digest, Sha256};

use crate::digest::hex;
use crate::mapping::is_email;
use crate::model::{CallMedia, Content, Item, MembershipAction, Participant};
use crate::phone::digits;

/// The host part of every Message-ID the connector writes.
pub const MESSAGE_ID_HOST: &str = "whatsapp-archiver.invalid";
/// Longest subject Exchange keeps.
pub const MAX_SUBJECT: usize = 255;
/// Longest display name written in `From`/`To` (characters); the full name stays in the body.
pub const MAX_NAME: usize = 128;
/// Longest value of an `X-WhatsApp-*` header (characters), ids and group names included.
pub const MAX_HEADER_VALUE: usize = 256;
/// Most addresses written in `To`; every participant stays listed in the body.
pub const MAX_RECIPIENTS: usize = 500;
/// `X-WhatsApp-Unmapped` of an item delivered to the catch-all mailbox.
pub const UNMAPPED: &str =
    "no participant maps to a Microsoft 365 mailbox; delivered to the catch-all mailbox";

/// The marker that says a value was cut.
pub const CUT: &str = "…[cut]";

/// Settings that shape messages.
#[derive(Debug, Clone)]
pub struct Options {
    /// Domain of the addresses made for participants without an email address.
    pub phone_address_domain: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            phone_address_domain: "whatsapp.invalid".into(),
        }
    }
}

/// Why an attachment is not in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OmitReason {
    /// Above the size limit (reported as `attachment_too_large`).
    TooLarge,
    /// Its bytes could not be fetched with the size and SHA-256 the provider gave
    /// (reported as `attachment_unverifiable`).
    Unverifiable,
    /// The provider gave it an id too long for any request to carry, so it cannot be
    /// asked for (reported as `attachment_unverifiable`).
    Unreachable,
    /// It fits the limit on its own, but the message carrying it (base64 makes it a
    /// third larger) would not: the rest of the item is imported without it (reported
    /// as `attachment_omitted_to_fit`).
    ToFit,
}

/// The longest attachment id the connector asks the provider for (bytes); a longer one
/// cannot be carried by a request URL.
pub const MAX_ATTACHMENT_ID: usize = 2048;

impl OmitReason {
    pub fn reason(self) -> crate::report::SkipReason {
        use crate::report::SkipReason;
        match self {
            Self::TooLarge => SkipReason::AttachmentTooLarge,
            Self::Unverifiable | Self::Unreachable => SkipReason::AttachmentUnverifiable,
            Self::ToFit => SkipReason::AttachmentOmittedToFit,
        }
    }

    fn sentence(self, limit: u64) -> String {
        match self {
            Self::TooLarge => format!("it is larger than the {limit}-byte import limit"),
            Self::Unverifiable => "its bytes could not be fetched intact from the archive (size or SHA-256 did not match)".into(),
            Self::Unreachable => format!("the archive gave it an id longer than {MAX_ATTACHMENT_ID} bytes, which no request can carry"),
            Self::ToFit => format!("the message carrying it would be larger than the {limit}-byte import limit (encoding makes a file about a third larger), so the message is imported without it"),
        }
    }
}

/// The attachment's content, as the caller has it.
#[derive(Debug, Clone, Copy)]
pub enum AttachmentBody<'a> {
    Bytes(&'a [u8]),
    Omitted(OmitReason),
    /// The file is not in the message's MIME: the message is too large for one Graph
    /// request with it, so it is attached to the imported message afterwards (these are
    /// its bytes, for the note that names its size and SHA-256).
    Follows(&'a [u8]),
}

/// The file that is attached to a message after its import, as the message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowingFile {
    /// The file name as the message gives it ([`safe_file_name`]).
    pub name: String,
    /// Its content type ([`safe_content_type`]).
    pub content_type: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

impl FollowingFile {
    /// The file of `att` whose bytes are `bytes`, as a message names it.
    fn of(att: &crate::model::Attachment, bytes: &[u8]) -> Self {
        Self {
            name: safe_file_name(&att.file_name),
            content_type: safe_content_type(&att.content_type),
            size: bytes.len() as u64,
            sha256: crate::digest::sha256_hex(bytes),
        }
    }

    /// The body line that says the file is added after import.
    fn note(&self) -> String {
        format!(
            "[Attachment added after import: {} ({} bytes, SHA-256 {}). With it this message is larger than one Microsoft 365 request takes, so the file is attached to it once it is in the mailbox.]",
            self.name, self.size, self.sha256
        )
    }

    /// The value of `X-WhatsApp-Attachment-Follows`.
    fn header(&self) -> String {
        format!(
            "name=\"{}\"; size={}; sha256={}",
            self.name.replace('"', ""),
            self.size,
            self.sha256
        )
    }
}

/// The message for one item.
#[derive(Debug, Clone)]
pub struct Email {
    pub message_id: String,
    pub mime: Vec<u8>,
    /// Set when the item's attachment was left out.
    pub omitted: Option<OmitReason>,
    /// Set when the item's file is attached after the import.
    pub follows: Option<FollowingFile>,
}

/// `<local@whatsapp-archiver.invalid>`, from the provider's item id alone. Ids made only
/// of `A-Z a-z 0-9 . _ -` (and not starting with `x-`) are used as they are; any other id
/// is written as `x-` and its UTF-8 bytes in hex, so two ids never share a Message-ID.
pub fn message_id(item_id: &str) -> String {
    format!("<{}@{MESSAGE_ID_HOST}>", message_id_local(item_id))
}

/// The local part of an item's Message-ID.
fn message_id_local(item_id: &str) -> String {
    let plain = !item_id.is_empty()
        && item_id.len() <= 200
        && !item_id.starts_with("x-")
        && item_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !item_id.starts_with('.')
        && !item_id.ends_with('.')
        && !item_id.contains("..");
    if plain {
        item_id.to_owned()
    } else if item_id.len() <= 200 {
        format!("x-{}", hex(item_id.as_bytes()))
    } else {
        format!("x-sha256-{}", hex(&Sha256::digest(item_id.as_bytes())))
    }
}

/// The Message-ID of an item's `revision`: the first content an id brings has the id's
/// own (`message_id`); a later, different content has `+rev<n>` added to its local part.
/// No plain, hex or digest local part contains `+`, so no item's Message-ID can equal
/// another item's revision.
pub fn revision_message_id(item_id: &str, revision: u32) -> String {
    if revision <= 1 {
        return message_id(item_id);
    }
    format!(
        "<{}+rev{revision}@{MESSAGE_ID_HOST}>",
        message_id_local(item_id)
    )
}

/// Characters that change the direction text is shown in (bidirectional overrides,
/// embeddings, isolates and marks): with them a name can make `exe.pdf` read as
/// `fdp.exe`. Names are data: they are removed from headers and shown in bodies.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A header value with every control character (CR and LF above all) made a space, so
/// no data can start a header of its own, and no direction-changing character.
pub fn clean(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .filter(|c| !is_bidi_control(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A value for an `X-WhatsApp-*` header: one line, at most [`MAX_HEADER_VALUE`]
/// characters; a longer one is cut and ends with the marker and the SHA-256 of the whole
/// value, so that a reviewer can still match it with the archive.
pub fn header_value(value: &str) -> String {
    let value = clean(value);
    if value.chars().count() <= MAX_HEADER_VALUE {
        return value;
    }
    // ASCII, so that the header needs no encoding to be read.
    let tail = format!("...[cut] sha256={}", hex(&Sha256::digest(value.as_bytes())));
    let keep = MAX_HEADER_VALUE.saturating_sub(tail.chars().count());
    value.chars().take(keep).collect::<String>() + &tail
}

/// The longest file name offered, in characters.
const MAX_FILE_NAME: usize = 200;

/// A file name safe to offer on every file system: no path, no control or
/// direction-changing characters, none of `"<>:*?|`, no leading dots, no trailing dots or
/// spaces (Windows drops them), not a device name Windows reserves (`CON`, `NUL.txt`,
/// `com1`: an underscore is put before it), at most 200 characters with the extension
/// kept when it is cut, and never empty.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | ':' | '*' | '?' | '|'))
        .filter(|c| !is_bidi_control(*c))
        .collect();
    let trimmed = cleaned
        .trim()
        .trim_start_matches('.')
        .trim_end_matches(['.', ' '])
        .trim()
        .to_owned();
    if trimmed.is_empty() {
        return "attachment".into();
    }
    let (stem, ext) = match trimmed.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && (1..=16).contains(&ext.chars().count())
                && !ext.contains(' ') =>
        {
            (stem.to_owned(), Some(ext.to_owned()))
        }
        _ => (trimmed.clone(), None),
    };
    let reserved = {
        let base = stem
            .split('.')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_uppercase();
        matches!(base.as_str(), "CON" | "PRN" | "AUX" | "NUL")
            || ((base.starts_with("COM") || base.starts_with("LPT"))
                && base.len() == 4
                && base[3..]
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '¹' | '²' | '³')))
    };
    let stem = if reserved { format!("_{stem}") } else { stem };
    let room = MAX_FILE_NAME - ext.as_ref().map_or(0, |e| e.chars().count() + 1);
    let stem: String = stem.chars().take(room).collect();
    match ext {
        Some(ext) => format!("{}.{ext}", stem.trim_end_matches(['.', ' '])),
        None => stem,
    }
}

/// A content type safe to write: `type/subtype` in token characters, else octet-stream.
pub fn safe_content_type(value: &str) -> String {
    let main = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match main.split_once('/') {
        Some((t, s)) if token(t) && token(s) => main,
        _ => "application/octet-stream".into(),
    }
}

/// `value` cut to `max` characters, with the marker at the end, if it is longer.
pub fn cap(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        value.to_owned()
    } else {
        let keep = max.saturating_sub(CUT.chars().count());
        let mut cut: String = value.chars().take(keep).collect();
        cut.push_str(CUT);
        cut
    }
}

fn display_name(p: &Participant) -> String {
    cap(
        &clean(&format!(
            "{} {}",
            cap(&clean(&p.name), MAX_NAME),
            digits(&p.phone)
        )),
        MAX_NAME + 20,
    )
}

/// A line of the body with every control character shown as its visible symbol (U+2400
/// and on), so that data never starts a line of its own and no part carries raw control
/// bytes. Tabs stay.
pub fn visible(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\t' => c,
            '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
            '\u{7f}' => '\u{2421}',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// A name (of a person, a group) as a body line shows it: [`visible`], and every
/// direction-changing character named (`[U+202E]`), never obeyed. Message text keeps its
/// direction marks: right-to-left scripts use them, and they are what was written.
pub fn visible_name(value: &str) -> String {
    visible(value)
        .chars()
        .fold(String::with_capacity(value.len()), |mut out, c| {
            if is_bidi_control(c) {
                out.push_str(&format!("[U+{:04X}]", c as u32));
            } else {
                out.push(c);
            }
            out
        })
}

/// Lines of free text (a message, a caption). `body_lines` makes every line [`visible`]
/// at its end, these included.
fn text_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
}

/// The time written as `Date`: when the item was sent, unless that is outside what a
/// mail date can say (before 1970 or after 9999), when the archive time stands in.
pub fn date_of(item: &Item) -> DateTime<Utc> {
    use chrono::Datelike;
    if (1970..=9999).contains(&item.sent_at.year()) {
        item.sent_at
    } else {
        item.archived_at
    }
}

/// The address written for a participant: their email property, or one made from the
/// phone number under the configured domain.
pub fn participant_address(p: &Participant, options: &Options) -> String {
    match p.user_email.as_deref().map(str::trim) {
        // A header can carry only an ASCII address of at most 254 characters (RFC 5321);
        // another is kept in the body.
        Some(e) if is_email(e) && e.is_ascii() && e.len() <= 254 => e.to_lowercase(),
        _ => {
            let digits: String = p.phone.chars().filter(char::is_ascii_digit).collect();
            // E.164 numbers have at most 15 digits; anything longer is not a number.
            let local = if digits.is_empty() || digits.len() > 15 {
                "unknown".to_owned()
            } else {
                digits
            };
            format!("{local}@{}", options.phone_address_domain)
        }
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn who(p: &Participant) -> String {
    match p.user_email.as_deref().map(str::trim) {
        Some(e) if !e.is_ascii() => format!(
            "{} ({}, {})",
            visible_name(&p.name),
            visible_name(&p.phone),
            visible_name(e)
        ),
        _ => format!("{} ({})", visible_name(&p.name), visible_name(&p.phone)),
    }
}

fn to_label(item: &Item) -> String {
    if item.conversation.is_group {
        item.conversation
            .name
            .clone()
            .unwrap_or_else(|| format!("group {}", item.conversation.id))
    } else {
        item.to
            .iter()
            .map(|p| digits(&p.phone).to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The subject, after the provider's convention.
pub fn subject(item: &Item) -> String {
    let from = digits(&item.from.phone);
    let to = to_label(item);
    let base = match &item.content {
        Content::Reaction { .. } => format!("WhatsApp Reaction From {from} to {to}"),
        Content::Edit { .. } => format!("WhatsApp Edit From {from} to {to}"),
        Content::Deletion { scope, .. } => format!(
            "DELETED {} – WhatsApp Message From {from} to {to}",
            scope.label()
        ),
        Content::Membership { .. } => format!("WhatsApp Group Event From {from} in {to}"),
        Content::Call { media, outcome, .. } => {
            let kind = match media {
                CallMedia::Voice => "Voice",
                CallMedia::Video => "Video",
            };
            format!(
                "WhatsApp {kind} Call From {from} to {to} ({})",
                outcome.label()
            )
        }
        _ => format!("WhatsApp Message From {from} to {to}"),
    };
    let full = match &item.deleted {
        Some(d) => format!("DELETED {} – {base}", d.scope.label()),
        None => base,
    };
    let full = clean(&full);
    if full.chars().count() <= MAX_SUBJECT {
        full
    } else {
        let mut cut: String = full.chars().take(MAX_SUBJECT - 1).collect();
        cut.push('…');
        cut
    }
}

fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// The body, as lines; the text part joins them, the HTML part escapes them.
fn body_lines(
    item: &Item,
    omitted: Option<OmitReason>,
    follows: Option<&FollowingFile>,
    limit: u64,
) -> Vec<String> {
    let mut lines = vec![
        format!(
            "WhatsApp {} captured by TeleMessage {}",
            item.content.kind(),
            item.capture_mode.as_str()
        ),
        format!("From: {}", who(&item.from)),
        format!(
            "To: {}",
            item.to.iter().map(who).collect::<Vec<_>>().join(", ")
        ),
        match (&item.conversation.name, item.conversation.is_group) {
            (Some(name), true) => format!("Conversation: {} (group)", visible_name(name)),
            (None, true) => format!(
                "Conversation: group {}",
                visible_name(&item.conversation.id)
            ),
            _ => "Conversation: direct".into(),
        },
        if date_of(item) == item.sent_at {
            format!("Sent: {}", time(item.sent_at))
        } else {
            format!(
                "Sent: {} according to the archive, which no mail date can say; the Date header gives the archive time instead",
                item.sent_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        },
        format!("Archived: {}", time(item.archived_at)),
    ];
    if item.revision > 1 {
        lines.push(format!(
            "Revision {} of this item: the provider sent its id again with different content. \
             The first content is archived as {}; both are kept.",
            item.revision,
            message_id(&item.id)
        ));
    }
    if item.to.len() > MAX_RECIPIENTS {
        lines.push(format!(
            "The To header lists the first {MAX_RECIPIENTS} of {} recipients; all are listed above.",
            item.to.len()
        ));
    }
    if let Some(d) = &item.deleted {
        lines.push(format!(
            "DELETED {} at {}. The original content is kept below.",
            match d.scope {
                crate::model::DeletionScope::Everyone => "for everyone",
                crate::model::DeletionScope::Me => "by the sender for themselves",
            },
            time(d.at)
        ));
    }
    if let Some(c) = &item.context {
        if let Some(target) = &c.reply_to {
            match &c.quoted_text {
                Some(q) => lines.push(format!("In reply to {target}: \"{q}\"")),
                None => lines.push(format!("In reply to {target}")),
            }
        }
        if c.frequently_forwarded {
            lines.push("Forwarded many times".into());
        } else if c.forwarded {
            lines.push("Forwarded".into());
        }
    }
    lines.push(String::new());
    match &item.content {
        Content::Text { text } => lines.extend(text_lines(text)),
        Content::Media { kind, caption, attachment } => {
            lines.push(format!("{} {} ({} bytes)", capitalise(kind.label()), safe_file_name(&attachment.file_name), attachment.size));
            if let Some(c) = caption {
                lines.extend(text_lines(c));
            }
        }
        Content::Document { caption, attachment } => {
            lines.push(format!("Document {} ({} bytes)", safe_file_name(&attachment.file_name), attachment.size));
            if let Some(c) = caption {
                lines.extend(text_lines(c));
            }
        }
        Content::Location { latitude, longitude, name, address } => {
            lines.push(format!("Location: {}", [name.as_deref(), address.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(", ")));
            lines.push(format!("Coordinates: {latitude}, {longitude}"));
        }
        Content::Contact { name, phones, emails, organization } => {
            lines.push(format!("Contact card: {name} (attached as contact.vcf)"));
            if let Some(o) = organization {
                lines.push(format!("Organization: {o}"));
            }
            lines.extend(phones.iter().map(|p| format!("Phone: {p}")));
            lines.extend(emails.iter().map(|e| format!("Email: {e}")));
        }
        Content::Reaction { target_id, emoji: Some(e) } => lines.push(format!("Reacted {e} to message {target_id}")),
        Content::Reaction { target_id, emoji: None } => lines.push(format!("Removed their reaction to message {target_id}")),
        Content::Edit { target_id, text } => {
            lines.push(format!("Edited message {}. New text:", visible(target_id)));
            lines.extend(text_lines(text));
        }
        Content::Deletion { target_id, scope } => lines.push(format!(
            "Deleted message {target_id} {} at {}. The original was archived before the deletion and is kept unchanged.",
            match scope {
                crate::model::DeletionScope::Everyone => "for everyone",
                crate::model::DeletionScope::Me => "for themselves",
            },
            time(item.sent_at)
        )),
        Content::Membership { action, members, subject } => {
            let names = members.iter().map(who).collect::<Vec<_>>().join(", ");
            lines.push(match action {
                MembershipAction::Join => format!("{} joined the group", who(&item.from)),
                MembershipAction::Leave => format!("{} left the group", who(&item.from)),
                MembershipAction::Add => format!("{} added {names}", who(&item.from)),
                MembershipAction::Remove => format!("{} removed {names}", who(&item.from)),
                MembershipAction::SubjectChange => {
                    format!("{} changed the group subject to \"{}\"", who(&item.from), subject.as_deref().unwrap_or(""))
                }
            });
        }
        Content::Call { media, outcome, started_at, duration_seconds, joined } => {
            lines.push(format!(
                "{} call, {}",
                match media {
                    CallMedia::Voice => "Voice",
                    CallMedia::Video => "Video",
                },
                outcome.label()
            ));
            lines.push(format!("Started: {}", time(*started_at)));
            lines.push(format!("Duration: {}", duration(*duration_seconds)));
            lines.push(format!("Caller: {}", who(&item.from)));
            for p in &item.to {
                let took_part = joined.contains(&p.phone);
                lines.push(format!("Invited: {} — {}", who(p), if took_part { "joined" } else { "did not join" }));
            }
        }
    }
    if let (Some(reason), Some(att)) = (omitted, item.content.attachment()) {
        lines.push(String::new());
        lines.push(format!(
            "[Attachment left out: {} ({} bytes), because {}. It remains in the TeleMessage archive.]",
            safe_file_name(&att.file_name),
            att.size,
            reason.sentence(limit)
        ));
    }
    if let Some(file) = follows {
        lines.push(String::new());
        lines.push(file.note());
    }
    // Whatever a line holds from the archive, it stays one line.
    lines.iter().map(|l| visible(l)).collect()
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn vcard_escape(s: &str) -> String {
    clean(s)
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(';', "\\;")
}

/// A vCard 3.0 for a contact-card item.
pub fn vcard(
    name: &str,
    phones: &[String],
    emails: &[String],
    organization: Option<&str>,
) -> String {
    let mut card = vec!["BEGIN:VCARD".to_owned(), "VERSION:3.0".to_owned()];
    card.push(format!("FN:{}", vcard_escape(name)));
    card.push(format!("N:{};;;;", vcard_escape(name)));
    if let Some(o) = organization {
        card.push(format!("ORG:{}", vcard_escape(o)));
    }
    card.extend(
        phones
            .iter()
            .map(|p| format!("TEL;TYPE=CELL:{}", vcard_escape(p))),
    );
    card.extend(
        emails
            .iter()
            .map(|e| format!("EMAIL;TYPE=INTERNET:{}", vcard_escape(e))),
    );
    card.push("END:VCARD".to_owned());
    card.join("\r\n") + "\r\n"
}

fn boundary(item_id: &str, kind: &str, body: &str) -> String {
    let digest = hex(&Sha256::digest(item_id.as_bytes()));
    let mut b = format!("=_wa_{kind}_{}", &digest[..24]);
    while body.contains(&b) {
        b.push('_');
    }
    b
}

/// A message from the item's sender to its recipients (the first `MAX_RECIPIENTS`).
fn addressed<'x>(item: &Item, options: &Options) -> MessageBuilder<'x> {
    MessageBuilder::new()
        .from(Address::new_address(
            Some(display_name(&item.from)),
            participant_address(&item.from, options),
        ))
        .to(Address::new_list(
            item.to
                .iter()
                .take(MAX_RECIPIENTS)
                .map(|p| {
                    Address::new_address(Some(display_name(p)), participant_address(p, options))
                })
                .collect(),
        ))
}

/// Converts one item. `attachment` is the item's attachment content, if it has one.
pub fn convert(
    item: &Item,
    attachment: Option<AttachmentBody<'_>>,
    options: &Options,
    limit: u64,
) -> Email {
    let omitted = match attachment {
        Some(AttachmentBody::Omitted(reason)) => Some(reason),
        _ => None,
    };
    let follows = match (attachment, item.content.attachment()) {
        (Some(AttachmentBody::Follows(bytes)), Some(att)) => Some(FollowingFile::of(att, bytes)),
        _ => None,
    };
    let lines = body_lines(item, omitted, follows.as_ref(), limit);
    let text = lines.join("\r\n") + "\r\n";
    let html = format!(
        "<html><body><div style=\"font-family:sans-serif\">{}</div></body></html>\r\n",
        lines
            .iter()
            .map(|l| html_escape(l))
            .collect::<Vec<_>>()
            .join("<br>\r\n")
    );
    let everything = format!("{text}{html}");
    let alternative = MimePart::new(
        ContentType::new("multipart/alternative")
            .attribute("boundary", boundary(&item.id, "alt", &everything)),
        BodyPart::Multipart(vec![
            MimePart::new("text/plain", BodyPart::Text(text.into())),
            MimePart::new("text/html", BodyPart::Text(html.into())),
        ]),
    );
    let mut parts = Vec::new();
    if let (Some(AttachmentBody::Bytes(bytes)), Some(att)) = (attachment, item.content.attachment())
    {
        parts.push(
            MimePart::new(
                ContentType::new(safe_content_type(&att.content_type)),
                BodyPart::Binary(Cow::Borrowed(bytes)),
            )
            .attachment(safe_file_name(&att.file_name)),
        );
    }
    if let Content::Contact {
        name,
        phones,
        emails,
        organization,
    } = &item.content
    {
        let card = vcard(name, phones, emails, organization.as_deref());
        parts.push(
            MimePart::new("text/vcard", BodyPart::Text(card.into())).attachment("contact.vcf"),
        );
    }
    let body = if parts.is_empty() {
        alternative
    } else {
        parts.insert(0, alternative);
        MimePart::new(
            ContentType::new("multipart/mixed")
                .attribute("boundary", boundary(&item.id, "mixed", &everything)),
            BodyPart::Multipart(parts),
        )
    };

    let id = revision_message_id(&item.id, item.revision);
    let bare = |s: &str| s.trim_start_matches('<').trim_end_matches('>').to_owned();
    let mut builder = addressed(item, options)
        .subject(subject(item))
        .date(date_of(item).timestamp())
        .message_id(bare(&id));
    let reference = item
        .content
        .target()
        .or(item.context.as_ref().and_then(|c| c.reply_to.as_deref()));
    // A revision answers the first content of its id; it still refers to what the item
    // itself refers to.
    let first = (item.revision > 1).then(|| bare(&message_id(&item.id)));
    let mut references: Vec<String> = reference
        .map(|t| bare(&message_id(t)))
        .into_iter()
        .collect();
    references.extend(first.clone());
    if let Some(parent) = first.or_else(|| references.first().cloned()) {
        builder = builder
            .in_reply_to(MessageId::new(parent))
            .references(MessageId::from(references));
    }
    let x = |v: &str| Text::new(header_value(v));
    builder = builder
        .header("X-WhatsApp-Item-Id", x(&item.id))
        .header("X-WhatsApp-Kind", x(item.content.kind()))
        .header(
            "X-WhatsApp-Capture-Mode",
            x(match item.capture_mode {
                crate::model::CaptureMode::PhoneArchiver => "phone_archiver",
                crate::model::CaptureMode::CloudArchiver => "cloud_archiver",
            }),
        )
        .header("X-WhatsApp-Conversation-Id", x(&item.conversation.id))
        .header(
            "X-WhatsApp-Conversation-Type",
            x(if item.conversation.is_group {
                "group"
            } else {
                "direct"
            }),
        )
        .header(
            "X-WhatsApp-Archived-At",
            x(&item
                .archived_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        );
    if let Some(name) = &item.conversation.name {
        builder = builder.header("X-WhatsApp-Conversation-Name", x(name));
    }
    if !item.unmapped.is_empty() {
        builder = builder.header("X-WhatsApp-Unmapped", x(UNMAPPED));
        for line in item.unmapped.iter().take(MAX_RECIPIENTS) {
            builder = builder.header("X-WhatsApp-Unmapped-Participant", x(line));
        }
    }
    if let Some(target) = item.content.target() {
        builder = builder.header("X-WhatsApp-Target-Id", x(target));
    }
    if item.revision > 1 {
        builder = builder.header("X-WhatsApp-Revision", x(&item.revision.to_string()));
    }
    if let Some(d) = &item.deleted {
        builder = builder.header(
            "X-WhatsApp-Deleted",
            x(&format!(
                "scope={}; at={}",
                d.scope.header_value(),
                d.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
        );
    }
    if let Content::Deletion { scope, .. } = &item.content {
        builder = builder.header(
            "X-WhatsApp-Deleted",
            x(&format!(
                "scope={}; at={}",
                scope.header_value(),
                item.sent_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
        );
    }
    if let Content::Call {
        media,
        outcome,
        started_at,
        duration_seconds,
        ..
    } = &item.content
    {
        builder = builder.header(
            "X-WhatsApp-Call",
            x(&format!(
                "media={}; outcome={}; started={}; duration={duration_seconds}",
                match media {
                    CallMedia::Voice => "voice",
                    CallMedia::Video => "video",
                },
                outcome.label(),
                started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
        );
    }
    if let (Some(reason), Some(att)) = (omitted, item.content.attachment()) {
        builder = builder.header(
            "X-WhatsApp-Omitted-Attachment",
            x(&format!(
                "name=\"{}\"; size={}; reason={}",
                safe_file_name(&att.file_name).replace('"', ""),
                att.size,
                reason.reason()
            )),
        );
    }
    if let Some(file) = &follows {
        builder = builder.header("X-WhatsApp-Attachment-Follows", x(&file.header()));
    }
    let mime = builder
        .body(body)
        .write_to_vec()
        .expect("writing to a Vec cannot fail");
    Email {
        message_id: id,
        mime,
        omitted,
        follows,
    }
}

/// The Message-ID of the follow-up that brings an item's file later: `+file` added to
/// the local part of the message it completes (no item's or revision's Message-ID has
/// it, so it is its own).
pub fn file_follow_up_id(item_id: &str, revision: u32) -> String {
    let first = revision_message_id(item_id, revision);
    match first.rsplit_once('@') {
        Some((local, host)) => format!("{local}+file@{host}"),
        None => format!("{first}+file"),
    }
}

/// The message that brings a file owed by an item's message: its file could not be
/// fetched when the item was imported (the text never waits for a file), and archived
/// messages are never changed, so the file comes as a message of its own. It answers
/// the first (`In-Reply-To`, `References`), names it in `X-WhatsApp-Completes` and in its
/// text, and carries the same participants, date and item id.
///
/// When that message's base64 is above `max_request` (Graph's request cap), it goes
/// without the file, which is attached to it after its import ([`FollowingFile`]).
pub fn file_follow_up(item: &Item, bytes: &[u8], options: &Options, max_request: u64) -> Email {
    let whole = file_follow_up_as(item, bytes, options, false);
    if crate::size::base64_len(whole.mime.len() as u64) <= max_request {
        return whole;
    }
    file_follow_up_as(item, bytes, options, true)
}

fn file_follow_up_as(item: &Item, bytes: &[u8], options: &Options, follows: bool) -> Email {
    let Some(att) = item.content.attachment() else {
        unreachable!("a file is owed only by an item with a file");
    };
    let completes = revision_message_id(&item.id, item.revision);
    let id = file_follow_up_id(&item.id, item.revision);
    let name = safe_file_name(&att.file_name);
    let lines = [
        format!(
            "This message completes {completes}: the file below could not be fetched from the archive when that message was imported, and is delivered now."
        ),
        format!(
            "File: {} ({} bytes, SHA-256 {})",
            visible(&name),
            att.size,
            att.sha256
        ),
    ];
    let following = follows.then(|| FollowingFile::of(att, bytes));
    let mut lines = lines.to_vec();
    if let Some(file) = &following {
        // One line of the body: the name shown as `visible` shows any body line.
        lines.push(visible(&file.note()));
    }
    let text = lines.join("\r\n") + "\r\n";
    let text_part = MimePart::new("text/plain", BodyPart::Text(text.clone().into()));
    let body = if following.is_some() {
        text_part
    } else {
        MimePart::new(
            ContentType::new("multipart/mixed")
                .attribute("boundary", boundary(&item.id, "file", &text)),
            BodyPart::Multipart(vec![
                text_part,
                MimePart::new(
                    ContentType::new(safe_content_type(&att.content_type)),
                    BodyPart::Binary(Cow::Borrowed(bytes)),
                )
                .attachment(name.clone()),
            ]),
        )
    };
    let bare = |s: &str| s.trim_start_matches('<').trim_end_matches('>').to_owned();
    let x = |v: &str| Text::new(header_value(v));
    let mut builder = addressed(item, options)
        .subject(cap(&format!("File for: {}", subject(item)), 255))
        .date(date_of(item).timestamp())
        .message_id(bare(&id))
        .in_reply_to(MessageId::new(bare(&completes)))
        .references(MessageId::new(bare(&completes)))
        .header("X-WhatsApp-Item-Id", x(&item.id))
        .header("X-WhatsApp-Kind", x(item.content.kind()))
        .header("X-WhatsApp-Conversation-Id", x(&item.conversation.id))
        .header("X-WhatsApp-Completes", x(&completes));
    if item.revision > 1 {
        builder = builder.header("X-WhatsApp-Revision", x(&item.revision.to_string()));
    }
    if let Some(file) = &following {
        builder = builder.header("X-WhatsApp-Attachment-Follows", x(&file.header()));
    }
    let mime = builder
        .body(body)
        .write_to_vec()
        .expect("writing to a Vec cannot fail");
    Email {
        message_id: id,
        mime,
        omitted: None,
        follows: following,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_on_every_file_system() {
        for (given, offered) in [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("C:\\Users\\a\\CON.txt", "_CON.txt"),
            ("nul", "_nul"),
            ("com1.tar.gz", "_com1.tar.gz"),
            ("LPT9", "_LPT9"),
            ("console.txt", "console.txt"),
            ("com10.txt", "com10.txt"),
            ("invoice\u{202e}fdp.exe", "invoicefdp.exe"),
            ("trailing. . ", "trailing"),
            ("...", "attachment"),
            ("", "attachment"),
        ] {
            assert_eq!(safe_file_name(given), offered, "{given:?}");
        }
        let long = format!("{}.pdf", "a".repeat(300));
        let cut = safe_file_name(&long);
        assert_eq!(cut.chars().count(), 200);
        assert!(cut.ends_with("aaa.pdf"), "the extension is kept: {cut}");
    }

    #[test]
    fn direction_changes_are_removed_from_headers_and_named_in_bodies() {
        assert_eq!(clean("Alice\u{202e}gnp.exe"), "Alicegnp.exe");
        assert_eq!(clean("a\r\nBcc: x"), "a Bcc: x");
        assert_eq!(
            visible_name("Alice\u{202e}gnp.exe\u{2066}"),
            "Alice[U+202E]gnp.exe[U+2066]"
        );
        assert_eq!(
            visible("\u{200f}שלום"),
            "\u{200f}שלום",
            "text keeps its marks"
        );
        assert_eq!(visible("a\r\nb"), "a\u{240d}\u{240a}b");
    }
}
