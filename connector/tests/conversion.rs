//! Conversion of every item kind: an insta snapshot of each message (boundaries come from
//! the item id, so the bytes are stable), and each message parsed back with mail-parser
//! and checked field by field. Attacks on headers and file names; scripts and emoji.

use std::path::PathBuf;

use connector::email::{AttachmentBody, OmitReason, Options, convert, message_id};
use connector::model::{Content, Item};
use connector::provider::wire::read_item;
use mail_parser::{HeaderValue, MessageParser, MimeHeaders};

const LIMIT: u64 = 10_485_760;

fn golden(name: &str) -> Item {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/examples/telemessage/items")
        .join(format!("{name}.json"));
    read_item(&serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()).unwrap()
}

fn small_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 256) as u8).collect()
}

/// A header's text, unfolded (RFC 5322: a folded line's CRLF is removed).
fn header<'a>(m: &'a mail_parser::Message<'a>, name: &str) -> Option<String> {
    m.header(name)
        .and_then(HeaderValue::as_text)
        .map(|v| v.replace("\r\n", ""))
}

/// Converts a golden item, its attachment made 40 small bytes (and its declared size
/// with it, so that the body and the bytes agree).
fn convert_golden(name: &str) -> (Item, Vec<u8>) {
    let mut item = golden(name);
    let bytes = small_bytes(40);
    if let Content::Media { attachment, .. } | Content::Document { attachment, .. } =
        &mut item.content
    {
        attachment.size = bytes.len() as u64;
    }
    let body = item
        .content
        .attachment()
        .map(|_| AttachmentBody::Bytes(&bytes));
    let email = convert(&item, body, &Options::default(), LIMIT);
    (item, email.mime)
}

const KINDS: [&str; 17] = [
    "text",
    "text-group-reply",
    "text-forwarded",
    "text-deleted-before-export",
    "media-image",
    "media-voice-note",
    "document",
    "location",
    "contact",
    "reaction",
    "reaction-removed",
    "edit",
    "deletion",
    "membership",
    "membership-subject",
    "call-group",
    "call-missed",
];

#[test]
fn every_kind_snapshots() {
    for name in KINDS {
        let (_, mime) = convert_golden(name);
        insta::assert_snapshot!(name, String::from_utf8(mime).unwrap());
    }
}

#[test]
fn every_kind_parses_back_field_by_field() {
    for name in KINDS {
        let (item, mime) = convert_golden(name);
        let m = MessageParser::default()
            .parse(&mime)
            .unwrap_or_else(|| panic!("{name}: unparseable"));
        // From: the sender's display name after the provider's convention, and address.
        let from = m.from().unwrap().first().unwrap();
        assert_eq!(
            from.name().unwrap(),
            format!("{} {}", item.from.name, &item.from.phone[1..]),
            "{name}"
        );
        let expected_from = item
            .from
            .user_email
            .clone()
            .unwrap_or_else(|| format!("{}@whatsapp.invalid", &item.from.phone[1..]));
        assert_eq!(from.address().unwrap(), expected_from, "{name}");
        // To: every other participant, in order.
        let to: Vec<_> = m
            .to()
            .unwrap()
            .iter()
            .map(|a| a.address().unwrap().to_owned())
            .collect();
        assert_eq!(to.len(), item.to.len(), "{name}");
        // Date: the send time, UTC.
        assert_eq!(
            m.date().unwrap().to_timestamp(),
            item.sent_at.timestamp(),
            "{name}"
        );
        // Message-ID: from the item id alone.
        assert_eq!(
            format!("<{}>", m.message_id().unwrap()),
            message_id(&item.id),
            "{name}"
        );
        // Headers for auditors.
        assert_eq!(
            header(&m, "X-WhatsApp-Item-Id").as_deref(),
            Some(item.id.as_str()),
            "{name}"
        );
        assert_eq!(
            header(&m, "X-WhatsApp-Kind").as_deref(),
            Some(item.content.kind()),
            "{name}"
        );
        assert_eq!(
            header(&m, "X-WhatsApp-Conversation-Id").as_deref(),
            Some(item.conversation.id.as_str()),
            "{name}"
        );
        assert!(header(&m, "X-WhatsApp-Capture-Mode").is_some(), "{name}");
        // Subject: the provider's convention, without a '+'.
        let subject = m.subject().unwrap();
        assert!(
            subject.contains(&format!("From {}", &item.from.phone[1..])),
            "{name}: {subject}"
        );
        assert!(!subject.contains('+'), "{name}: {subject}");
        // Bodies: plain and HTML.
        let text = m.body_text(0).unwrap();
        assert!(text.contains(&item.from.name), "{name}");
        assert!(m.body_html(0).unwrap().contains("<html>"), "{name}");
        // Replies, edits, reactions and late deletions point at the original.
        let target = item
            .content
            .target()
            .map(str::to_owned)
            .or(item.context.as_ref().and_then(|c| c.reply_to.clone()));
        match target {
            Some(t) => {
                let expected = message_id(&t);
                let expected = expected.trim_matches(['<', '>']);
                assert_eq!(m.in_reply_to().as_text(), Some(expected), "{name}");
                assert_eq!(m.references().as_text(), Some(expected), "{name}");
            }
            None => assert!(m.in_reply_to().is_empty(), "{name}"),
        }
        // Attachments: the real type and a safe name; a contact card as a vCard.
        let attachments: Vec<_> = m.attachments().collect();
        match &item.content {
            Content::Media { attachment, .. } | Content::Document { attachment, .. } => {
                assert_eq!(attachments.len(), 1, "{name}");
                assert_eq!(
                    attachments[0].attachment_name(),
                    Some(attachment.file_name.as_str()),
                    "{name}"
                );
                let ct = attachments[0].content_type().unwrap();
                assert_eq!(
                    format!("{}/{}", ct.ctype(), ct.subtype().unwrap()),
                    attachment.content_type.split(';').next().unwrap(),
                    "{name}"
                );
                assert_eq!(
                    attachments[0].contents(),
                    small_bytes(40).as_slice(),
                    "{name}"
                );
            }
            Content::Contact { name: contact, .. } => {
                assert_eq!(attachments.len(), 1, "{name}");
                assert_eq!(attachments[0].attachment_name(), Some("contact.vcf"));
                let card = attachments[0].text_contents().unwrap();
                assert!(
                    card.starts_with("BEGIN:VCARD\r\nVERSION:3.0\r\n")
                        && card.contains(&format!("FN:{contact}")),
                    "{card}"
                );
            }
            _ => assert!(attachments.is_empty(), "{name}"),
        }
        match (&item.deleted, &item.content) {
            (Some(_), _) => {
                assert!(subject.starts_with("DELETED For All – "), "{subject}");
                assert!(
                    header(&m, "X-WhatsApp-Deleted")
                        .unwrap()
                        .starts_with("scope=everyone; at=")
                );
                assert!(
                    text.contains("Ignore my last quote"),
                    "the original content is kept"
                );
            }
            (None, Content::Deletion { .. }) => {
                assert!(subject.starts_with("DELETED For Me – "), "{subject}")
            }
            (None, Content::Call { joined, .. }) => {
                assert!(header(&m, "X-WhatsApp-Call").is_some());
                for p in &item.to {
                    let line = text
                        .lines()
                        .find(|l| l.contains(&p.phone) && l.starts_with("Invited"))
                        .unwrap();
                    assert_eq!(
                        line.ends_with("did not join"),
                        !joined.contains(&p.phone),
                        "{line}"
                    );
                }
            }
            _ => {}
        }
    }
}

fn text_item(name: &str, text: &str) -> Item {
    let mut item = golden("text");
    item.from.name = name.to_owned();
    item.content = Content::Text {
        text: text.to_owned(),
    };
    item
}

#[test]
fn nothing_from_the_data_can_inject_a_header() {
    let mut item = text_item("Eve\r\nBcc: attacker@evil.example", "hi");
    item.conversation.is_group = true;
    item.conversation.name = Some("Deals\r\nX-Injected: yes".into());
    item.to[0].user_email = Some("bob@contoso.example\r\nCc: leak@evil.example".into());
    item.content = Content::Document {
        caption: None,
        attachment: connector::model::Attachment {
            id: "att-x".into(),
            file_name: "../../etc/passwd\r\nX-Evil: 1\u{202e}fdp.exe".into(),
            content_type: "text/html\r\nX-Evil: 1".into(),
            size: 3,
            sha256: String::new(),
        },
    };
    let email = convert(
        &item,
        Some(AttachmentBody::Bytes(b"abc")),
        &Options::default(),
        LIMIT,
    );
    let m = MessageParser::default().parse(&email.mime).unwrap();
    let names: Vec<String> = m
        .headers()
        .iter()
        .map(|h| h.name().to_ascii_lowercase())
        .collect();
    for forbidden in ["bcc", "cc", "x-injected", "x-evil"] {
        assert!(
            !names.contains(&forbidden.to_owned()),
            "{forbidden} was injected: {names:?}"
        );
    }
    assert_eq!(
        m.to().unwrap().first().unwrap().address(),
        Some("12124325249@whatsapp.invalid"),
        "a bad email property is not used"
    );
    let att = m.attachments().next().unwrap();
    let file = att.attachment_name().unwrap();
    assert!(
        !file.contains('/') && !file.contains('\r') && !file.contains('\u{202e}'),
        "{file:?}"
    );
    assert_eq!(
        att.content_type().unwrap().ctype(),
        "application",
        "a bad content type becomes octet-stream"
    );
    assert_eq!(
        header(&m, "X-WhatsApp-Conversation-Name").as_deref(),
        Some("Deals X-Injected: yes")
    );
}

#[test]
fn scripts_right_to_left_text_and_emoji_survive() {
    let names = ["Zoë Ångström", "محمد العلي", "דוד לוי", "王小明", "Ελένη"];
    let text = "Prix 101,25 € — مرحبا بك — שלום — 你好 👍🏽👨‍👩‍👧 \u{200f}RTL mark";
    for name in names {
        let item = text_item(name, text);
        let email = convert(&item, None, &Options::default(), LIMIT);
        let m = MessageParser::default().parse(&email.mime).unwrap();
        assert_eq!(
            m.from().unwrap().first().unwrap().name().unwrap(),
            format!("{name} 16174354634")
        );
        assert!(m.body_text(0).unwrap().contains(text));
        assert!(m.body_html(0).unwrap().contains("مرحبا بك"));
        assert!(
            email.mime.is_ascii(),
            "every header and body is encoded to 7-bit"
        );
    }
}

#[test]
fn html_is_escaped() {
    let item = text_item("Mallory", "<script>alert('x')</script> & <b>bold</b>");
    let m_bytes = convert(&item, None, &Options::default(), LIMIT).mime;
    let m = MessageParser::default().parse(&m_bytes).unwrap();
    let html = m.body_html(0).unwrap();
    assert!(
        !html.contains("<script>") && html.contains("&lt;script&gt;") && html.contains("&amp;")
    );
}

#[test]
fn a_subject_never_exceeds_255_characters() {
    let mut item = golden("text-group-reply");
    item.conversation.name = Some("Very long group name ".repeat(30));
    let m_bytes = convert(&item, None, &Options::default(), LIMIT).mime;
    let m = MessageParser::default().parse(&m_bytes).unwrap();
    assert_eq!(m.subject().unwrap().chars().count(), 255);
    assert!(m.subject().unwrap().ends_with('…'));
}

/// The attachment rule at 10,485,759 / 10,485,760 / 10,485,761 bytes, as the run applies
/// it: a fitting attachment is carried; a larger one is left out with a note and a header.
#[test]
fn attachment_size_boundary() {
    for (size, carried) in [
        (10_485_759u64, true),
        (10_485_760, true),
        (10_485_761, false),
    ] {
        let mut item = golden("document");
        if let Content::Document { attachment, .. } = &mut item.content {
            attachment.size = size;
        }
        let bytes = vec![b'x'; size as usize];
        let body = if connector::size::attachment_fits(size, LIMIT) {
            AttachmentBody::Bytes(&bytes)
        } else {
            AttachmentBody::Omitted(OmitReason::TooLarge)
        };
        let email = convert(&item, Some(body), &Options::default(), LIMIT);
        let m = MessageParser::default().parse(&email.mime).unwrap();
        assert_eq!(m.attachments().count(), usize::from(carried), "{size}");
        assert_eq!(email.omitted.is_none(), carried);
        if carried {
            assert_eq!(
                m.attachments().next().unwrap().contents().len() as u64,
                size
            );
        } else {
            let note = header(&m, "X-WhatsApp-Omitted-Attachment").unwrap();
            assert_eq!(
                note,
                format!("name=\"Term sheet v3.pdf\"; size={size}; reason=attachment_too_large")
            );
            assert!(
                m.body_text(0)
                    .unwrap()
                    .contains("[Attachment left out: Term sheet v3.pdf (10485761 bytes)")
            );
        }
    }
}

#[test]
fn message_ids_are_stable_distinct_and_safe() {
    assert_eq!(message_id("wa-0001"), "<wa-0001@whatsapp-archiver.invalid>");
    // Each converted message carries exactly the id derived from its item.
    for name in KINDS {
        let (item, mime) = convert_golden(name);
        let m = MessageParser::default().parse(&mime).unwrap();
        assert_eq!(
            format!("<{}>", m.message_id().unwrap()),
            message_id(&item.id),
            "{name}"
        );
    }
    let odd = message_id("id with spaces <and> @signs");
    assert!(odd.starts_with("<x-") && !odd[1..odd.len() - 1].contains(['<', '>', ' ']));
    assert_ne!(
        message_id("ab"),
        message_id("x-6162"),
        "an encoded id never meets a plain one"
    );
    assert!(message_id(&"a".repeat(500)).len() < 120);
}

#[test]
fn the_same_item_always_gives_the_same_bytes() {
    let (_, a) = convert_golden("media-image");
    let (_, b) = convert_golden("media-image");
    assert_eq!(a, b);
}

/// The size plan decided before a download is exact for binary attachments: the message
/// with the part present but empty, plus the file's base64 length, is the message.
#[test]
fn the_size_plan_before_download_is_exact() {
    for name in ["document", "media-image", "media-voice-note"] {
        for size in [0usize, 1, 2, 3, 56, 57, 58, 1000, 65_537, 400_001] {
            let mut item = golden(name);
            if let Content::Media { attachment, .. } | Content::Document { attachment, .. } =
                &mut item.content
            {
                attachment.size = size as u64;
            }
            let bytes = small_bytes(size);
            let frame = convert(
                &item,
                Some(AttachmentBody::Bytes(&[])),
                &Options::default(),
                LIMIT,
            );
            let full = convert(
                &item,
                Some(AttachmentBody::Bytes(&bytes)),
                &Options::default(),
                LIMIT,
            );
            assert_eq!(
                frame.mime.len() as u64 + connector::size::base64_mime_len(size as u64),
                full.mime.len() as u64,
                "{name} with {size} bytes"
            );
        }
    }
}
