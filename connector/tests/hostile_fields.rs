//! Whatever the provider puts in a name or a text, the message stays strict RFC 5322:
//! 7-bit, CRLF line ends only, no line over 998 bytes, no raw control byte, a bounded
//! header block; and it parses back to what the item says. Property tests over arbitrary
//! strings (control characters, surrogate-free Unicode, huge values) in every field.

use chrono::{DateTime, TimeZone, Utc};
use connector::email::{
    AttachmentBody, MAX_RECIPIENTS, Options, convert, date_of, message_id, participant_address,
    visible,
};
use connector::model::{
    Attachment, CaptureMode, Content, Context, Conversation, Item, Participant,
};
use mail_parser::{HeaderValue, MessageParser};
use proptest::prelude::*;

/// Every way a value from outside can be hostile: any character, very long, or both.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\x7f\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}a-z\r\n ]{0,40}",
        prop::collection::vec(any::<char>(), 0..3000).prop_map(|v| v.into_iter().collect()),
        (1usize..40_000).prop_map(|n| "n".repeat(n)),
    ]
}

fn participant() -> impl Strategy<Value = Participant> {
    (hostile(), hostile(), prop::option::of(hostile())).prop_map(|(phone, name, user_email)| {
        Participant {
            phone,
            name,
            user_email,
        }
    })
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        (0i64..4_102_444_800).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap()),
        // Outside what a mail date can say: year -1, year 1, year 20000.
        Just(Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap()),
        Just(Utc.with_ymd_and_hms(1, 6, 1, 0, 0, 0).unwrap()),
        Just(Utc.with_ymd_and_hms(20_000, 1, 1, 0, 0, 0).unwrap()),
    ]
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        hostile().prop_map(|text| Content::Text { text }),
        (hostile(), hostile(), hostile(), hostile()).prop_map(|(caption, id, file_name, ct)| {
            Content::Document {
                caption: Some(caption),
                attachment: Attachment {
                    id,
                    file_name,
                    content_type: ct,
                    size: 16,
                    sha256: "0".repeat(64),
                },
            }
        }),
        (hostile(), hostile()).prop_map(|(target_id, text)| Content::Edit { target_id, text }),
        (hostile(), prop::collection::vec(hostile(), 0..3), hostile()).prop_map(
            |(name, phones, organization)| Content::Contact {
                name,
                phones,
                emails: Vec::new(),
                organization: Some(organization),
            }
        ),
    ]
}

prop_compose! {
    fn item()(
        id in hostile(),
        from in participant(),
        to in prop::collection::vec(participant(), 0..4),
        conversation_id in hostile(),
        conversation_name in prop::option::of(hostile()),
        is_group in any::<bool>(),
        sent_at in time(),
        quoted in prop::option::of(hostile()),
        content in content(),
    ) -> Item {
        Item {
            id,
            revision: 1,
            unmapped: Vec::new(),
            capture_mode: CaptureMode::CloudArchiver,
            archived_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap(),
            sent_at,
            conversation: Conversation { id: conversation_id, is_group, name: conversation_name },
            from,
            to,
            context: quoted.map(|q| Context {
                reply_to: Some("wa-earlier".into()),
                quoted_text: Some(q),
                forwarded: false,
                frequently_forwarded: false,
            }),
            deleted: None,
            content,
        }
    }
}

/// The wire-level rules: what every byte of the message may be.
fn assert_strict(mime: &[u8]) {
    let header_end = mime
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a blank line ends the header block");
    assert!(
        header_end < 64 * 1024,
        "the header block is {header_end} bytes; Exchange refuses large headers"
    );
    for (i, &b) in mime.iter().enumerate() {
        assert!(b.is_ascii(), "byte {i} is not 7-bit");
        assert!(
            b >= 0x20 && b != 0x7f || matches!(b, b'\r' | b'\n' | b'\t'),
            "byte {i} is the raw control {b:#04x}"
        );
        if b == b'\r' {
            assert_eq!(mime.get(i + 1), Some(&b'\n'), "bare CR at byte {i}");
        }
        if b == b'\n' {
            assert!(i > 0 && mime[i - 1] == b'\r', "bare LF at byte {i}");
        }
    }
    for (n, line) in mime.split(|&b| b == b'\n').enumerate() {
        assert!(line.len() <= 999, "line {n} is {} bytes", line.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED_0008),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_item_becomes_a_strict_message_that_reads_back(item in item()) {
        let bytes = b"attachment bytes";
        let body = item.content.attachment().map(|_| AttachmentBody::Bytes(bytes));
        let options = Options::default();
        let email = convert(&item, body, &options, 10_485_760);
        assert_strict(&email.mime);

        let m = MessageParser::default().parse(&email.mime).expect("it parses");
        let expected_id = message_id(&item.id);
        prop_assert_eq!(m.message_id(), Some(expected_id.trim_matches(['<', '>'])));
        let from = m.from().and_then(|a| a.first()).expect("a From address");
        prop_assert_eq!(
            from.address().unwrap_or_default(),
            participant_address(&item.from, &options)
        );
        let to = m.to().map_or(0, |a| a.iter().count());
        prop_assert_eq!(to, item.to.len().min(MAX_RECIPIENTS));
        for a in m.to().into_iter().flat_map(|a| a.iter()) {
            prop_assert!(a.address().unwrap_or_default().is_ascii());
        }
        let subject = m.subject().unwrap_or_default();
        prop_assert!(subject.chars().count() <= 255);
        prop_assert!(!subject.chars().any(char::is_control), "{subject:?}");
        if let Some(HeaderValue::DateTime(d)) = m.header("Date") {
            prop_assert_eq!(d.to_timestamp(), date_of(&item).timestamp());
        } else {
            prop_assert!(false, "no Date header");
        }
        // The text survives, each line made visible, in the plain-text part.
        let text = m.body_text(0).expect("a text part");
        if let Content::Text { text: sent } = &item.content {
            for line in sent.split('\n') {
                let line = visible(line.strip_suffix('\r').unwrap_or(line));
                prop_assert!(text.contains(&line), "line {line:?} is not in the body");
            }
        }
        // No line of the body starts with anything the data put there on its own line.
        let lines: Vec<&str> = text.lines().collect();
        prop_assert!(lines.iter().all(|l| !l.chars().any(|c| c.is_control() && c != '\t')));
    }
}
