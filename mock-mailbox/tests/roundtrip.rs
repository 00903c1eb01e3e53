//! A message with non-ASCII headers and a binary attachment goes in through importMime and
//! comes back byte for byte from `$value`, with its fields right in listing and search.

mod common;

use axum::http::StatusCode;
use common::*;
use mail_builder::MessageBuilder;

fn whatsapp_like() -> (Vec<u8>, Vec<u8>) {
    let attachment: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mime = MessageBuilder::new()
        .from(("Chloé Dubois +33612345678", "chloe@contoso.example"))
        .to(vec![
            ("Алиса Арчер", "alice@contoso.example"),
            ("بوب", "bob@contoso.example"),
        ])
        .subject("WhatsApp Message From 33612345678 to Sales Group — prix 👍")
        .date(1_795_338_001i64)
        .message_id("wa-0042@archive.example")
        .header(
            "X-WhatsApp-Kind",
            mail_builder::headers::text::Text::new("document"),
        )
        .text_body("Voici le récapitulatif — مرحبا — 你好")
        .html_body("<p>Voici le récapitulatif — مرحبا — 你好</p>")
        .attachment(
            "application/pdf",
            "Récapitulatif Q4.pdf",
            attachment.clone(),
        )
        .write_to_vec()
        .unwrap();
    (mime, attachment)
}

#[tokio::test]
async fn import_then_value_returns_the_exact_bytes_and_fields_are_read_right() {
    let fake = fake();
    let token = fake.token().await;
    let folder = fake.folder(&token, ALICE, "WhatsApp Archiver").await;
    let (mime, attachment) = whatsapp_like();
    let created = fake.import(&token, ALICE, &folder, &mime).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json()["id"].as_str().unwrap().to_owned();

    let value = fake
        .get(&token, &format!("/v1.0/users/{ALICE}/messages/{id}/$value"))
        .await;
    assert_eq!(value.status, StatusCode::OK);
    assert_eq!(value.body, mime, "byte for byte");

    let listed = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/mailFolders/{folder}/messages"),
        )
        .await
        .json();
    let m = &listed["value"][0];
    assert_eq!(
        m["subject"],
        "WhatsApp Message From 33612345678 to Sales Group — prix 👍"
    );
    assert_eq!(
        m["from"]["emailAddress"]["name"],
        "Chloé Dubois +33612345678"
    );
    assert_eq!(m["toRecipients"][0]["emailAddress"]["name"], "Алиса Арчер");
    assert_eq!(m["toRecipients"][1]["emailAddress"]["name"], "بوب");
    assert_eq!(m["hasAttachments"], true);
    assert_eq!(m["internetMessageId"], "<wa-0042@archive.example>");
    assert_eq!(m["body"]["contentType"], "html");
    assert!(m["bodyPreview"].as_str().unwrap().contains("你好"));

    let inspected = fake.state.inspect_messages(ALICE, false).unwrap();
    assert_eq!(inspected[0].attachments[0].name, "Récapitulatif Q4.pdf");
    assert_eq!(inspected[0].attachments[0].content_type, "application/pdf");
    assert_eq!(inspected[0].attachments[0].size, attachment.len());
    assert!(
        inspected[0]
            .headers
            .contains(&("X-WhatsApp-Kind".into(), "document".into()))
    );
}

#[tokio::test]
async fn search_covers_the_documented_kql_subset() {
    let fake = fake();
    let token = fake.token().await;
    let (mime, _) = whatsapp_like();
    fake.import(&token, ALICE, "inbox", &mime).await;
    fake.import(
        &token,
        ALICE,
        "inbox",
        &mime_dated("plain@x", "Lunch plans", "Mon, 23 Nov 2026 12:00:00 +0000"),
    )
    .await;
    let search = |q: &'static str| {
        let fake = &fake;
        let token = token.clone();
        async move {
            let page = fake
                .get(
                    &token,
                    &format!("/v1.0/users/{ALICE}/messages?$search={}", urlencode(q)),
                )
                .await
                .json();
            let mut subjects: Vec<String> = page["value"]
                .as_array()
                .unwrap_or_else(|| panic!("{q}: {page}"))
                .iter()
                .map(|m| m["subject"].as_str().unwrap().to_owned())
                .collect();
            subjects.sort();
            subjects
        }
    };
    let both = 2;
    let recap = "WhatsApp Message From 33612345678 to Sales Group — prix 👍";
    assert_eq!(
        search("\"récapitulatif\"").await,
        [recap],
        "bare word hits the body"
    );
    assert_eq!(
        search("\"chloé\"").await,
        [recap],
        "bare word hits the sender"
    );
    assert_eq!(
        search("\"lunch\"").await,
        ["Lunch plans"],
        "bare word hits the subject"
    );
    assert_eq!(search("\"from:chloe@contoso.example\"").await, [recap]);
    assert_eq!(search("\"to:Алиса\"").await, [recap]);
    assert_eq!(
        search("\"participants:bob@contoso.example\"").await.len(),
        both
    );
    assert_eq!(search("\"subject:lunch\"").await, ["Lunch plans"]);
    assert_eq!(search("\"hasAttachment:true\"").await, [recap]);
    assert_eq!(search("\"hasAttachments:false\"").await, ["Lunch plans"]);
    assert_eq!(search("\"received>=2026-11-23\"").await, ["Lunch plans"]);
    assert_eq!(search("\"received<2026-11-23\"").await, [recap]);
    assert_eq!(search("\"received=2026-11-23\"").await, ["Lunch plans"]);
    assert_eq!(
        search("\"received>2026-11-22T12:00:00Z\"").await,
        ["Lunch plans"]
    );
    assert_eq!(
        search("\"subject:lunch OR hasAttachment:true\"")
            .await
            .len(),
        both
    );
    assert_eq!(
        search("\"subject:lunch AND hasAttachment:true\"")
            .await
            .len(),
        0
    );
    let bad = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/messages?$search=unquoted"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

fn mime_dated(id: &str, subject: &str, date: &str) -> Vec<u8> {
    format!("From: Bob Baker <bob@contoso.example>\r\nTo: Alice <alice@contoso.example>\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n\r\nSee you there\r\n").into_bytes()
}

#[tokio::test]
async fn on_disk_the_same_message_in_two_mailboxes_is_one_file_and_comes_back_exactly() {
    let fake = fake_with(mock_mailbox::Config {
        storage: mock_mailbox::store::Storage::Disk { dir: None },
        ..mock_mailbox::Config::default()
    });
    let dir = fake.state.store().path().unwrap().to_path_buf();
    let token = fake.token().await;
    let (mime, _) = whatsapp_like();
    let mut ids = Vec::new();
    for user in [ALICE, BOB] {
        let created = fake.import(&token, user, "inbox", &mime).await;
        assert_eq!(created.status, StatusCode::CREATED);
        ids.push(created.json()["id"].as_str().unwrap().to_owned());
    }
    // The message and, after it, its text and HTML body: once for both mailboxes.
    let summary = fake
        .state
        .inspect_content(ALICE, &ids[0])
        .unwrap()
        .summary()
        .unwrap();
    let text = summary.body_text.len() + summary.body_html.unwrap().len();
    assert_eq!(
        fake.state.store().bytes_written(),
        (mime.len() + text) as u64,
        "one copy of the bytes"
    );
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    for (user, id) in [ALICE, BOB].iter().zip(&ids) {
        let value = fake
            .get(&token, &format!("/v1.0/users/{user}/messages/{id}/$value"))
            .await;
        assert_eq!(value.status, StatusCode::OK);
        assert_eq!(value.body, mime, "byte for byte from disk");
    }
    // In memory: two entries, one content (its bytes are on disk).
    let memory = fake.state.memory();
    assert_eq!((memory.messages, memory.contents), (2, 1));
    let content = fake.state.inspect_content(ALICE, &ids[0]).unwrap();
    let entries = memory.bytes - content.heap_bytes() as u64;
    assert!(
        entries > 0 && entries < content.heap_bytes() as u64,
        "the content is counted once, the two entries are small: {entries} of {}",
        memory.bytes
    );
    assert!(
        content.heap_bytes() < mime.len(),
        "the bytes are not in memory"
    );
    drop(content);
    // The inspection view reads the same bytes, and the summary is shared.
    let alice = fake.state.inspect_messages(ALICE, false).unwrap();
    assert_eq!(alice[0].size, mime.len());
    assert_eq!(
        fake.state
            .inspect_content(BOB, &ids[1])
            .unwrap()
            .mime()
            .unwrap(),
        mime
    );
    drop(fake);
    assert!(!dir.exists(), "the fake removes the store it made");
}

#[tokio::test]
async fn a_summary_mailbox_lists_and_hashes_what_came_but_refuses_its_bytes() {
    let fake = fake_with(mock_mailbox::Config {
        storage: mock_mailbox::store::Storage::Summary,
        ..mock_mailbox::Config::default()
    });
    let token = fake.token().await;
    let (mime, _) = whatsapp_like();
    let created = fake.import(&token, ALICE, "inbox", &mime).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    // Graph's view of it is whole.
    let got = fake
        .get(&token, &format!("/v1.0/users/{ALICE}/messages/{id}"))
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json()["subject"], created.json()["subject"]);
    // The bytes are not kept: a documented refusal, in Graph's error shape.
    let value = fake
        .get(&token, &format!("/v1.0/users/{ALICE}/messages/{id}/$value"))
        .await;
    assert_eq!(value.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(value.json()["error"]["code"], "ErrorContentNotRetained");
    // The inspection view has every attachment's name, size and SHA-256 of its bytes.
    let seen = fake.state.inspect_messages(ALICE, false).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&mime).unwrap();
    let expected: Vec<(String, usize, String)> = parsed
        .attachments()
        .map(|a| {
            use mail_parser::MimeHeaders;
            use sha2::Digest;
            (
                a.attachment_name().unwrap().to_owned(),
                a.contents().len(),
                hex(&sha2::Sha256::digest(a.contents())),
            )
        })
        .collect();
    assert!(!expected.is_empty());
    let shown: Vec<(String, usize, String)> = seen[0]
        .attachments
        .iter()
        .map(|a| (a.name.clone(), a.size, a.sha256.clone()))
        .collect();
    assert_eq!(shown, expected);
    assert_eq!(seen[0].size, mime.len());
    // Only the header section and the text were written, not the message.
    let head = mime.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert_eq!(
        fake.state.store().bytes_written(),
        (head + parsed.body_text(0).unwrap().len()) as u64
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
