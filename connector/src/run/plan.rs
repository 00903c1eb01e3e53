//! The pure part of an item's way to the mailboxes: what to send, decided with no I/O.
//! [`file_fate`] says, before anything is downloaded, whether the item's file is to be
//! fetched and carried or left out and why ([`carries_file`] is its size rule);
//! [`message`] builds what goes to every mailbox from the item and its file (or why the
//! file is left out), or says that nothing can go.

use crate::email::{self, AttachmentBody, Email, OmitReason, Options};
use crate::model::Item;
use crate::size;

/// Whether the item's file is to be fetched and carried: it fits the limit on its own,
/// and so would the message with it (base64 makes a file a third larger). A file that
/// fits on its own but not in its message is left out, and the rest is imported (S11).
/// An item without a file, or with one too large on its own, answers `true`: there is
/// nothing to leave out to fit.
pub fn carries_file(item: &Item, options: &Options, limit: u64) -> bool {
    match item.content.attachment() {
        Some(att) if size::attachment_fits(att.size, limit) => {
            let frame = email::convert(item, Some(AttachmentBody::Bytes(&[])), options, limit);
            let text_part = email::safe_content_type(&att.content_type).starts_with("text/");
            size::attachment_can_fit(frame.mime.len(), att.size, text_part, limit)
        }
        _ => true,
    }
}

/// What becomes of an item's file, decided before anything is downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFate {
    /// The item has no file.
    NoFile,
    /// The file is left out, for this reason.
    Omit(OmitReason),
    /// The file is to be fetched, verified and carried.
    Fetch,
}

/// The file's fate: left out to fit the message, too large on its own, or named by an
/// id too long to ask for (it could not be fetched again); else fetched.
pub fn file_fate(item: &Item, options: &Options, limit: u64) -> FileFate {
    match item.content.attachment() {
        None => FileFate::NoFile,
        Some(_) if !carries_file(item, options, limit) => FileFate::Omit(OmitReason::ToFit),
        Some(att) if !size::attachment_fits(att.size, limit) => {
            FileFate::Omit(OmitReason::TooLarge)
        }
        Some(att) if att.id.len() > email::MAX_ATTACHMENT_ID => {
            FileFate::Omit(OmitReason::Unreachable)
        }
        Some(_) => FileFate::Fetch,
    }
}

/// What a message holds beside its file and text: headers, the text's HTML alternative.
const MESSAGE_OVERHEAD: u64 = 16 * 1024;

/// The bytes an item's message keeps while its deliveries go, known before anything is
/// downloaded: what the memory budget charges the item until its message is built. A
/// carried file is held as fetched, then in the import body (the MIME's base64, about
/// 1.8 times the file); a file that follows the import (its message above `max_request`)
/// is kept as it is beside a small body. The item's text (`item_bytes`: its staged JSON,
/// an upper bound) is in the body as base64. The build itself, on the connector's one
/// thread, holds the MIME too for a moment: one item at a time, outside the budget.
pub fn bytes_to_build(
    fate: FileFate,
    file_size: u64,
    item_bytes: usize,
    max_request: u64,
) -> usize {
    let text = item_bytes as u64 + MESSAGE_OVERHEAD;
    let kept = match fate {
        FileFate::Fetch => {
            let inline = size::base64_len(text + size::base64_mime_len(file_size));
            if inline > max_request {
                file_size + size::base64_len(text)
            } else {
                inline
            }
        }
        FileFate::NoFile | FileFate::Omit(_) => size::base64_len(text),
    };
    usize::try_from(kept).unwrap_or(usize::MAX)
}

/// The message's part for the file as it came: its bytes, or why it is left out.
pub fn attachment_body(file: &Option<Result<Vec<u8>, OmitReason>>) -> Option<AttachmentBody<'_>> {
    match file {
        Some(Ok(bytes)) => Some(AttachmentBody::Bytes(bytes)),
        Some(Err(reason)) => Some(AttachmentBody::Omitted(*reason)),
        None => None,
    }
}

/// What the item becomes.
#[derive(Debug)]
pub enum Planned {
    /// This message, the same for every mailbox and every attempt.
    Send(Email),
    /// No message within the limit can be made: the item is skipped whole.
    TooLarge { bytes: usize },
}

/// The message for `item` with `body` (its file's bytes, or why the file is left out).
/// A text file whose encoding could not be known in advance, and that makes the message
/// too large, is left out to fit; a message still too large is not sent at all. A message
/// within the limit whose base64 is above `max_request` (Graph's request cap) goes
/// without its file, which follows by an upload session once it is imported
/// ([`email::FollowingFile`]).
pub fn message(
    item: &Item,
    body: Option<AttachmentBody<'_>>,
    options: &Options,
    limit: u64,
    max_request: u64,
) -> Planned {
    let mut message = email::convert(item, body, options, limit);
    if !size::message_fits(message.mime.len(), limit)
        && matches!(body, Some(AttachmentBody::Bytes(_)))
    {
        message = email::convert(
            item,
            Some(AttachmentBody::Omitted(OmitReason::ToFit)),
            options,
            limit,
        );
    }
    if size::message_fits(message.mime.len(), limit) {
        if let Some(AttachmentBody::Bytes(bytes)) = body
            && message.omitted.is_none()
            && size::base64_len(message.mime.len() as u64) > max_request
        {
            message = email::convert(item, Some(AttachmentBody::Follows(bytes)), options, limit);
        }
        Planned::Send(message)
    } else {
        Planned::TooLarge {
            bytes: message.mime.len(),
        }
    }
}

/// What the item becomes when its file, if it is carried, arrives whole as `file`: the
/// message every mailbox gets when nothing goes wrong. (`scenarios load` posts these
/// from its raw client, so that the fake's ceiling is measured on the connector's own
/// messages.)
pub fn message_when_all_goes_well(
    item: &Item,
    file: impl FnOnce() -> Vec<u8>,
    options: &Options,
    limit: u64,
    max_request: u64,
) -> Planned {
    let file = match file_fate(item, options, limit) {
        FileFate::NoFile => None,
        FileFate::Omit(reason) => Some(Err(reason)),
        FileFate::Fetch => Some(Ok(file())),
    };
    message(item, attachment_body(&file), options, limit, max_request)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const LIMIT: u64 = 64 * 1024;

    pub(in crate::run) fn item(text: &str, file: Option<(u64, &str)>) -> Item {
        let body = match file {
            None => serde_json::json!({"type": "text", "text": text}),
            Some((size, content_type)) => serde_json::json!({"type": "document",
                "document": {"caption": text, "attachment": {"id": "att-1", "file_name": "f.bin",
                "content_type": content_type, "size": size, "sha256": "00".repeat(32)}}}),
        };
        let mut json = serde_json::json!({"id": "wa-1", "capture_mode": "cloud_archiver",
            "archived_at": "2026-11-22T09:00:05Z", "sent_at": "2026-11-22T09:00:01Z",
            "conversation": {"id": "c-1", "type": "direct", "name": null},
            "from": {"phone": "+33612345678", "name": "Chloé", "user_email": "chloe@contoso.example"},
            "to": [{"phone": "+14155550100", "name": "Bob", "user_email": "bob@contoso.example"}]});
        for (k, v) in body.as_object().unwrap() {
            json[k] = v.clone();
        }
        crate::provider::wire::read_item_text(&json.to_string()).unwrap()
    }

    #[test]
    fn what_a_message_keeps_is_known_before_the_download_and_not_below_what_it_keeps() {
        let options = Options::default();
        let limit = 10 * 1024 * 1024;
        let cap = 4 * 1024 * 1024;
        // (file size, whether it follows the import) for a photo inline and a video after.
        for (size, follows) in [
            (None, false),
            (Some(300_000), false),
            (Some(5_000_000), true),
        ] {
            let it = item("a caption of some words", size.map(|s| (s, "video/mp4")));
            let fate = file_fate(&it, &options, limit);
            let json_len = 1_200; // above this item's staged JSON
            let estimate = bytes_to_build(fate, size.unwrap_or(0), json_len, cap);
            let file = size.map(|s| vec![7u8; s as usize]);
            let Planned::Send(built) = message(
                &it,
                file.as_deref().map(AttachmentBody::Bytes),
                &options,
                limit,
                cap,
            ) else {
                panic!("sent")
            };
            assert_eq!(built.follows.is_some(), follows, "{size:?}");
            let kept = size::base64_len(built.mime.len() as u64) as usize
                + if follows { size.unwrap() as usize } else { 0 };
            assert!(estimate >= kept, "{size:?}: {estimate} < {kept}");
            // Close, or the budget would hold back deliveries that fit.
            assert!(
                estimate <= kept + kept / 10 + 48 * 1024,
                "{size:?}: {estimate} for {kept}"
            );
        }
    }

    #[test]
    fn a_files_fate_is_decided_before_any_download() {
        let options = Options::default();
        let fate = |file| file_fate(&item("hi", file), &options, LIMIT);
        assert_eq!(fate(None), FileFate::NoFile);
        assert_eq!(fate(Some((1_000, "image/jpeg"))), FileFate::Fetch);
        // Fits alone, not in its message once encoded.
        assert_eq!(
            fate(Some((LIMIT - 1_000, "image/jpeg"))),
            FileFate::Omit(OmitReason::ToFit)
        );
        assert_eq!(
            fate(Some((LIMIT + 1, "image/jpeg"))),
            FileFate::Omit(OmitReason::TooLarge)
        );
        // And the message every mailbox gets when all goes well says the same.
        let planned = message_when_all_goes_well(
            &item("hi", Some((LIMIT + 1, "image/jpeg"))),
            || unreachable!("a file left out is never fetched"),
            &options,
            LIMIT,
            LIMIT,
        );
        match planned {
            Planned::Send(m) => assert_eq!(m.omitted, Some(OmitReason::TooLarge)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_is_carried_only_if_its_message_would_fit() {
        let options = Options::default();
        assert!(carries_file(&item("hi", None), &options, LIMIT));
        assert!(carries_file(
            &item("hi", Some((1_000, "image/jpeg"))),
            &options,
            LIMIT
        ));
        // Fits on its own, but base64 makes its message too large: left out to fit.
        let near = LIMIT - 1_000;
        assert!(!carries_file(
            &item("hi", Some((near, "image/jpeg"))),
            &options,
            LIMIT
        ));
        // Too large on its own: nothing to leave out to fit (it is left out as too large).
        assert!(carries_file(
            &item("hi", Some((LIMIT + 1, "image/jpeg"))),
            &options,
            LIMIT
        ));
    }

    #[test]
    fn a_message_over_the_limit_leaves_its_text_file_out_or_is_not_sent() {
        let options = Options::default();
        // A text file that the size plan let through but whose part came out too large.
        let it = item("hi", Some((LIMIT - 4_000, "text/plain")));
        let bytes = vec![b'\x01'; (LIMIT - 4_000) as usize];
        match message(
            &it,
            Some(AttachmentBody::Bytes(&bytes)),
            &options,
            LIMIT,
            2 * LIMIT,
        ) {
            Planned::Send(m) => {
                assert_eq!(m.omitted, Some(OmitReason::ToFit));
                assert!(size::message_fits(m.mime.len(), LIMIT));
            }
            other => panic!("expected the message without its file, got {other:?}"),
        }
        // A small file is carried as it is.
        let small = item("hi", Some((3, "application/pdf")));
        match message(
            &small,
            Some(AttachmentBody::Bytes(b"abc")),
            &options,
            LIMIT,
            LIMIT,
        ) {
            Planned::Send(m) => assert_eq!(m.omitted, None),
            other => panic!("expected the message with its file, got {other:?}"),
        }
        // Text alone above the limit: nothing can be sent.
        let long = "x".repeat(LIMIT as usize + 10);
        assert!(matches!(
            message(&item(&long, None), None, &options, LIMIT, LIMIT),
            Planned::TooLarge { bytes } if bytes as u64 > LIMIT
        ));
    }

    #[test]
    fn a_message_too_large_for_one_request_goes_without_its_file_which_follows() {
        let options = Options::default();
        let bytes: Vec<u8> = (0..30_000u32).map(|n| (n % 251) as u8).collect();
        let it = item("the caption", Some((bytes.len() as u64, "video/mp4")));
        let whole = match message(
            &it,
            Some(AttachmentBody::Bytes(&bytes)),
            &options,
            LIMIT,
            LIMIT,
        ) {
            Planned::Send(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            whole.follows, None,
            "under the cap, the file is in the message"
        );
        // The same item under a 32 KiB request cap: the base64 of its message is over it.
        let cap = 32 * 1024;
        assert!(size::base64_len(whole.mime.len() as u64) > cap);
        let carrier = match message(
            &it,
            Some(AttachmentBody::Bytes(&bytes)),
            &options,
            LIMIT,
            cap,
        ) {
            Planned::Send(m) => m,
            other => panic!("{other:?}"),
        };
        let follows = carrier.follows.clone().expect("the file follows");
        assert_eq!(follows.size, bytes.len() as u64);
        assert_eq!(follows.sha256, crate::digest::sha256_hex(&bytes));
        assert_eq!(follows.name, "f.bin");
        assert_eq!(carrier.omitted, None, "nothing is left out");
        assert!(size::base64_len(carrier.mime.len() as u64) <= cap);
        let parsed = mail_parser::MessageParser::new()
            .parse(&carrier.mime[..])
            .unwrap();
        assert_eq!(parsed.attachments().count(), 0);
        let header = mail_parser::MessageParser::new()
            .header_text(mail_parser::HeaderName::Other(
                "X-WhatsApp-Attachment-Follows".into(),
            ))
            .parse(&carrier.mime[..])
            .unwrap()
            .header("X-WhatsApp-Attachment-Follows")
            .and_then(|h| h.as_text())
            .unwrap()
            .to_owned();
        assert_eq!(
            header,
            format!("name=\"f.bin\"; size=30000; sha256={}", follows.sha256)
        );
        let text = parsed.body_text(0).unwrap();
        assert!(text.contains("the caption"), "{text}");
        assert!(
            text.contains(&format!(
                "[Attachment added after import: f.bin (30000 bytes, SHA-256 {}",
                follows.sha256
            )),
            "{text}"
        );
    }
}
