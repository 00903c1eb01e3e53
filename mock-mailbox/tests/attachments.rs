//! Files attached after import, through the router: the single POST (under 3 MB) and the
//! upload session (chunks to a pre-authenticated URL), and what Graph says when they go
//! wrong. A file attached is part of the message everywhere: `$value`, `hasAttachments`,
//! `$search`, the inspection view, with its SHA-256.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use mock_mailbox::Config;
use mock_mailbox::profile::Profile;
use serde_json::json;
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

fn graph() -> Fake {
    fake_with(Config {
        profile: Profile::graph(None),
        ..Config::default()
    })
}

/// `n` bytes no compressor or coincidence would make equal to another file's.
fn file(n: usize, seed: u8) -> Vec<u8> {
    let mut state = u64::from(seed) + 1;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

/// A message that carries `attachment` inline (base64 in its MIME).
fn mime_with(message_id: &str, name: &str, attachment: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "From: Alice Archer <alice@contoso.example>\r\nTo: Bob Baker <bob@contoso.example>\r\nSubject: a video\r\nDate: Sun, 22 Nov 2026 09:00:01 +0000\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: video/mp4\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(b64(attachment).as_bytes());
    out.extend_from_slice(b"\r\n--b--\r\n");
    out
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The path and query of an absolute URL the fake gave out.
fn local(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http URL");
    rest[rest.find('/').unwrap()..].to_owned()
}

impl Fake {
    async fn put_chunk(&self, url: &str, first: usize, total: usize, chunk: &[u8]) -> Answer {
        self.send(
            Request::put(local(url))
                .header(
                    "content-range",
                    format!("bytes {first}-{}/{total}", first + chunk.len() - 1),
                )
                .body(Body::from(chunk.to_vec()))
                .unwrap(),
        )
        .await
    }

    async fn session(
        &self,
        token: &str,
        user: &str,
        message: &str,
        name: &str,
        size: usize,
    ) -> Answer {
        self.post_json(
            token,
            &format!("/v1.0/users/{user}/messages/{message}/attachments/createUploadSession"),
            json!({"AttachmentItem": {"attachmentType": "file", "name": name, "size": size, "contentType": "video/mp4"}}),
        )
        .await
    }

    /// Imports a small message into the inbox; answers its id.
    async fn imported(&self, token: &str, user: &str, message_id: &str) -> String {
        let answer = self
            .import(token, user, "inbox", &mime(message_id, "the text"))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
        answer.json()["id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn a_nine_mib_file_refused_in_one_import_arrives_by_upload_session_byte_for_byte() {
    let fake = graph();
    let token = fake.token().await;
    let video = file(9 * MIB, 1);
    // In one request the message is over Graph's 4 MiB: 413, nothing stored.
    let whole = fake
        .import(
            &token,
            ALICE,
            "inbox",
            &mime_with("big@x", "clip.mp4", &video),
        )
        .await;
    assert_eq!(whole.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(whole.graph_error(), "RequestEntityTooLarge");
    assert!(fake.state.inspect_messages(ALICE, true).unwrap().is_empty());

    // Without the file it fits; the file follows by an upload session.
    let id = fake.imported(&token, ALICE, "big@x").await;
    let opened = fake
        .session(&token, ALICE, &id, "clip.mp4", video.len())
        .await;
    assert_eq!(
        opened.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&opened.body)
    );
    let session = opened.json();
    assert_eq!(session["nextExpectedRanges"], json!(["0-"]));
    assert_eq!(session["expirationDateTime"], "2026-11-23T01:15:00Z");
    let url = session["uploadUrl"].as_str().unwrap().to_owned();
    assert!(url.contains("authtoken="), "{url}");
    let chunks: Vec<&[u8]> = video.chunks(4 * MIB).collect();
    assert_eq!(chunks.len(), 3);
    let mut first = 0;
    for (n, chunk) in chunks.iter().enumerate() {
        let answer = fake.put_chunk(&url, first, video.len(), chunk).await;
        first += chunk.len();
        if n < 2 {
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&answer.body)
            );
            // One value for Outlook attachments: where the next chunk starts.
            assert_eq!(
                answer.json()["nextExpectedRanges"],
                json!([first.to_string()])
            );
        } else {
            assert_eq!(answer.status, StatusCode::CREATED);
            assert!(answer.body.is_empty());
            let location = answer.headers["location"].to_str().unwrap();
            let attachment = fake.get(&token, &local(location)).await;
            assert_eq!(attachment.status, StatusCode::OK);
            let meta = attachment.json();
            assert_eq!(meta["name"], "clip.mp4");
            assert_eq!(meta["size"], video.len());
            let value = fake
                .get(&token, &format!("{}/$value", local(location)))
                .await;
            assert_eq!(value.status, StatusCode::OK);
            assert_eq!(hex(&value.body), hex(&video), "byte for byte");
        }
    }
    // Part of the message everywhere: hasAttachments, $value, the list, the search, the
    // inspection view with the file's SHA-256; and still one message.
    let message = fake
        .get(&token, &format!("/v1.0/users/{ALICE}/messages/{id}"))
        .await
        .json();
    assert_eq!(message["hasAttachments"], true);
    assert_eq!(message["internetMessageId"], "<big@x>");
    let raw = fake
        .get(&token, &format!("/v1.0/users/{ALICE}/messages/{id}/$value"))
        .await;
    let parsed = mail_parser::MessageParser::new()
        .parse(&raw.body[..])
        .unwrap();
    let parts: Vec<_> =
        mail_parser::MimeHeaders::attachment_name(parsed.attachments().next().unwrap())
            .into_iter()
            .collect();
    assert_eq!(parts, ["clip.mp4"]);
    assert_eq!(
        hex(parsed.attachments().next().unwrap().contents()),
        hex(&video)
    );
    let listed = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/messages/{id}/attachments"),
        )
        .await
        .json();
    assert_eq!(listed["value"].as_array().unwrap().len(), 1);
    assert_eq!(listed["value"][0]["contentType"], "video/mp4");
    assert!(
        listed["value"][0].get("contentBytes").is_none(),
        "a list carries no bytes"
    );
    let found = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/messages?$search=%22hasAttachment:true%22"),
        )
        .await
        .json();
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    let inspected = fake.state.inspect_messages(ALICE, true).unwrap();
    assert_eq!(inspected.len(), 1);
    assert_eq!(inspected[0].attachments[0].sha256, hex(&video));
    assert_eq!(inspected[0].body_text.trim(), "Body of the text");
}

#[tokio::test]
async fn chunks_out_of_order_overlapping_oversized_or_of_another_total_are_refused_and_resumed() {
    // Under `lenient` the request cap is 48 MiB: the 4 MiB chunk limit is the session's own.
    let fake = fake();
    let token = fake.token().await;
    let id = fake.imported(&token, ALICE, "chunks@x").await;
    let data = file(5 * MIB, 2);
    let url = fake
        .session(&token, ALICE, &id, "f.bin", data.len())
        .await
        .json()["uploadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let over = fake
        .put_chunk(&url, 0, data.len(), &data[..4 * MIB + 1])
        .await;
    assert_eq!(over.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(over.graph_error(), "RequestEntityTooLarge");
    let other_total = fake.put_chunk(&url, 0, data.len() + 1, &data[..10]).await;
    assert_eq!(other_total.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        fake.put_chunk(&url, 0, data.len(), &data[..MIB])
            .await
            .status,
        StatusCode::OK
    );
    // The next chunk is lost on the way; the one after it is out of order.
    let skipped = fake
        .put_chunk(&url, 2 * MIB, data.len(), &data[2 * MIB..3 * MIB])
        .await;
    assert_eq!(skipped.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(skipped.graph_error(), "InvalidRange");
    assert!(
        skipped.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("expects byte {MIB} next"))
    );
    let overlapping = fake
        .put_chunk(&url, MIB / 2, data.len(), &data[MIB / 2..MIB + 10])
        .await;
    assert_eq!(overlapping.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // Resumed from where the session says.
    assert_eq!(
        fake.put_chunk(&url, MIB, data.len(), &data[MIB..4 * MIB])
            .await
            .status,
        StatusCode::OK
    );
    let past_end = fake
        .put_chunk(&url, 4 * MIB, data.len(), &data[4 * MIB..])
        .await;
    assert_eq!(past_end.status, StatusCode::CREATED);
    let inspected = fake.state.inspect_messages(ALICE, false).unwrap();
    assert_eq!(inspected[0].attachments.len(), 1);
    assert_eq!(inspected[0].attachments[0].sha256, hex(&data));
    assert_eq!(inspected[0].attachments[0].size, data.len());
}

#[tokio::test]
async fn the_upload_url_is_useless_without_its_credential_and_lapses_on_the_fakes_clock() {
    let fake = fake();
    let token = fake.token().await;
    let id = fake.imported(&token, ALICE, "secret@x").await;
    let logs = mock_common::LogCapture::install();
    let url = fake.session(&token, ALICE, &id, "f.bin", 100).await.json()["uploadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let credential = url.split("authtoken=").nth(1).unwrap().to_owned();
    assert!(credential.len() >= 40, "unguessable: {credential}");
    let without = url.split('?').next().unwrap().to_owned();
    for wrong in [
        without.clone(),
        format!("{without}?authtoken=x{}", &credential[1..]),
    ] {
        let answer = fake.put_chunk(&wrong, 0, 100, &[0; 10]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{wrong}");
        assert_eq!(answer.graph_error(), "ErrorItemNotFound");
    }
    // A bearer token is not how an upload URL is opened.
    let with_bearer = fake
        .send(
            Request::put(local(&url))
                .header("authorization", format!("Bearer {token}"))
                .header("content-range", "bytes 0-9/100")
                .body(Body::from(vec![0; 10]))
                .unwrap(),
        )
        .await;
    assert_eq!(with_bearer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        fake.put_chunk(&url, 0, 100, &[0; 10]).await.status,
        StatusCode::OK
    );
    // Fed nothing for 15 minutes of the fake's clock, it lapses.
    fake.clock.advance(chrono::Duration::minutes(15));
    assert_eq!(
        fake.put_chunk(&url, 10, 100, &[0; 10]).await.status,
        StatusCode::NOT_FOUND
    );
    // A cancelled one takes nothing more.
    let url = fake.session(&token, ALICE, &id, "g.bin", 100).await.json()["uploadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancelled = fake
        .send(Request::delete(local(&url)).body(Body::empty()).unwrap())
        .await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    assert_eq!(
        fake.put_chunk(&url, 0, 100, &[0; 100]).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(
        fake.state.inspect_messages(ALICE, false).unwrap()[0]
            .attachments
            .is_empty()
    );
    // The credential is in no log.
    let (capture, _guard) = logs;
    let text = capture.text();
    assert!(!text.contains(&credential[..20]), "{text}");
}

#[tokio::test]
async fn one_post_takes_a_file_under_3_mb_and_refuses_one_at_it() {
    let fake = fake();
    let token = fake.token().await;
    let id = fake.imported(&token, ALICE, "post@x").await;
    let uri = format!("/v1.0/users/{ALICE}/messages/{id}/attachments");
    let small = file(3 * MIB - 1, 3);
    let answer = fake
        .post_json(
            &token,
            &uri,
            json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "note.pdf",
                   "contentType": "application/pdf", "contentBytes": b64(&small)}),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["size"], small.len());
    let at = file(3 * MIB, 4);
    let refused = fake
        .post_json(
            &token,
            &uri,
            json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "big.pdf",
                   "contentBytes": b64(&at)}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(refused.graph_error(), "RequestEntityTooLarge");
    let listed = fake.get(&token, &uri).await.json();
    assert_eq!(listed["value"].as_array().unwrap().len(), 1, "{listed}");
    let aid = listed["value"][0]["id"].as_str().unwrap();
    let value = fake.get(&token, &format!("{uri}/{aid}/$value")).await;
    assert_eq!(value.headers["content-type"], "application/pdf");
    assert_eq!(hex(&value.body), hex(&small));
    // Another message's attachment id is not this one's.
    let other = fake.imported(&token, ALICE, "post2@x").await;
    let cross = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/messages/{other}/attachments/{aid}"),
        )
        .await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn refusing_attachments_on_non_drafts_answers_403_and_still_serves_drafts() {
    let fake = fake_with(Config {
        attachments_on_non_drafts: false,
        ..Config::default()
    });
    let token = fake.token().await;
    let id = fake.imported(&token, ALICE, "nd@x").await;
    let posted = fake
        .post_json(
            &token,
            &format!("/v1.0/users/{ALICE}/messages/{id}/attachments"),
            json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt", "contentBytes": b64(b"hi")}),
        )
        .await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN);
    assert_eq!(posted.graph_error(), "ErrorAccessDenied");
    let session = fake.session(&token, ALICE, &id, "b.bin", 10).await;
    assert_eq!(session.status, StatusCode::FORBIDDEN);
    let draft = fake
        .post_text(
            &token,
            &format!("/v1.0/users/{ALICE}/messages"),
            b64(&mime("d@x", "draft")),
        )
        .await;
    let draft_id = draft.json()["id"].as_str().unwrap().to_owned();
    let on_draft = fake.session(&token, ALICE, &draft_id, "b.bin", 10).await;
    assert_eq!(on_draft.status, StatusCode::CREATED);
    // And allowed by default.
    let fake = fake_with(Config::default());
    let token = fake.token().await;
    let id = fake.imported(&token, ALICE, "nd@x").await;
    assert_eq!(
        fake.session(&token, ALICE, &id, "b.bin", 10).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn litigation_hold_keeps_the_version_an_attachment_replaced() {
    let fake = fake();
    let token = fake.token().await;
    let id = fake.imported(&token, BOB, "held@x").await;
    let answer = fake
        .post_json(
            &token,
            &format!("/v1.0/users/{BOB}/messages/{id}/attachments"),
            json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt", "contentBytes": b64(b"added")}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let all = fake.state.inspect_messages(BOB, true).unwrap();
    assert_eq!(all.len(), 2, "the live message and the version it replaced");
    let live: Vec<_> = all.iter().filter(|m| !m.recoverable).collect();
    let kept: Vec<_> = all.iter().filter(|m| m.recoverable).collect();
    assert_eq!(live[0].attachments.len(), 1);
    assert!(kept[0].attachments.is_empty());
    assert_eq!(kept[0].internet_message_id.as_deref(), Some("<held@x>"));
}

#[tokio::test]
async fn each_chunk_counts_against_the_mailboxs_upload_budget() {
    let fake = fake_with(Config {
        limits: mock_mailbox::Limits {
            upload_bytes_per_window: 3 * MIB as u64,
            ..mock_mailbox::Limits::default()
        },
        ..Config::default()
    });
    let token = fake.token().await;
    let id = fake.imported(&token, ALICE, "budget@x").await;
    let data = file(4 * MIB, 5);
    let url = fake
        .session(&token, ALICE, &id, "f.bin", data.len())
        .await
        .json()["uploadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        fake.put_chunk(&url, 0, data.len(), &data[..2 * MIB])
            .await
            .status,
        StatusCode::OK
    );
    let throttled = fake
        .put_chunk(&url, 2 * MIB, data.len(), &data[2 * MIB..])
        .await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers["retry-after"], "300");
    assert_eq!(fake.state.counters().throttled, 1);
}

/// The cut answers a file's chunks meet, in order, on a fresh fake with seeded resets;
/// `other_first` imports another message first, so that the message's Graph id differs.
async fn chunk_faults(other_first: bool) -> Vec<bool> {
    let mut directory = directory();
    directory.faults = mock_mailbox::directory::Faults {
        seed: 21,
        reset_rate: 0.5,
        ..Default::default()
    };
    let fake = fake_from(
        &directory,
        Config::default(),
        mock_common::AdminToken::new(ADMIN),
    );
    let token = fake.token().await;
    let imported = |id: &'static str| {
        let fake = &fake;
        let token = token.clone();
        async move {
            loop {
                let answer = fake.import(&token, ALICE, "inbox", &mime(id, "m")).await;
                if !answer.cut {
                    return answer.json()["id"].as_str().unwrap().to_owned();
                }
            }
        }
    };
    if other_first {
        let _ = imported("other@x").await;
    }
    let id = imported("chunks-seeded@x").await;
    let url = loop {
        let answer = fake.session(&token, ALICE, &id, "f.bin", 1_000).await;
        if !answer.cut {
            break answer.json()["uploadUrl"].as_str().unwrap().to_owned();
        }
    };
    let data = file(1_000, 9);
    let mut cut = Vec::new();
    for (n, chunk) in data.chunks(100).enumerate() {
        let answer = fake.put_chunk(&url, n * 100, data.len(), chunk).await;
        assert!(answer.status.is_success(), "{}", answer.status);
        cut.push(answer.cut);
    }
    cut
}

#[tokio::test]
async fn an_upload_chunk_meets_the_same_seeded_faults_whatever_its_sessions_url_and_message_id() {
    let first = chunk_faults(false).await;
    let again = chunk_faults(true).await;
    assert_eq!(
        first, again,
        "drawn by the mailbox, the message's Message-ID and the range, not by the session's random URL"
    );
    assert!(first.contains(&true) && first.contains(&false), "{first:?}");
}
