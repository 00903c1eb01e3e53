//! The Graph mail endpoints through the router, without a socket: success and each
//! documented error.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

#[tokio::test]
async fn users_are_found_by_id_or_principal_name_within_the_tenant_only() {
    let fake = fake();
    let token = fake.token().await;
    for reference in [ALICE, ALICE_ID, "ALICE@CONTOSO.EXAMPLE"] {
        let answer = fake.get(&token, &format!("/v1.0/users/{reference}")).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json()["id"], ALICE_ID);
        assert_eq!(answer.json()["userPrincipalName"], ALICE);
    }
    let selected = fake
        .get(&token, &format!("/v1.0/users/{ALICE}?$select=mail"))
        .await
        .json();
    assert_eq!(
        selected.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id", "mail"]
    );
    for unknown in ["nobody@contoso.example", GINA] {
        let answer = fake.get(&token, &format!("/v1.0/users/{unknown}")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.graph_error(), "Request_ResourceNotFound");
    }
    let reader = fake.token_for(TENANT, READER, READER_SECRET).await;
    let answer = fake.get(&reader, &format!("/v1.0/users/{ALICE}")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.graph_error(), "Authorization_RequestDenied");
}

#[tokio::test]
async fn a_token_of_one_tenant_can_do_nothing_in_another() {
    let fake = fake();
    let other = fake.token_for(OTHER_TENANT, OTHER_APP, OTHER_SECRET).await;
    let answer = fake
        .get(&other, &format!("/v1.0/users/{ALICE}/mailFolders"))
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.graph_error(), "ErrorInvalidUser");
    let answer = fake.import(&other, ALICE, "inbox", &mime("x@y", "x")).await;
    assert_eq!(answer.graph_error(), "ErrorInvalidUser");
    assert_eq!(fake.state.inspect_messages(ALICE, true).unwrap().len(), 0);
}

#[tokio::test]
async fn mail_calls_on_a_user_without_a_mailbox_say_so() {
    let fake = fake();
    let token = fake.token().await;
    assert_eq!(
        fake.get(&token, &format!("/v1.0/users/{FRANK}"))
            .await
            .status,
        StatusCode::OK
    );
    let answer = fake
        .get(&token, &format!("/v1.0/users/{FRANK}/mailFolders"))
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.graph_error(), "MailboxNotEnabledForRESTAPI");
}

#[tokio::test]
async fn folders_page_with_next_link_and_filter_by_name_with_doubled_quotes() {
    let fake = fake();
    let token = fake.token().await;
    fake.folder(&token, ALICE, "WhatsApp Archiver").await;
    fake.folder(&token, ALICE, "O'Brien's deals").await;
    let mut names = Vec::new();
    let mut uri = format!("/v1.0/users/{ALICE}/mailFolders?$top=3");
    loop {
        let page = fake.get(&token, &uri).await.json();
        let values = page["value"].as_array().unwrap();
        assert!(values.len() <= 3);
        names.extend(
            values
                .iter()
                .map(|f| f["displayName"].as_str().unwrap().to_owned()),
        );
        match page["@odata.nextLink"].as_str() {
            Some(next) => {
                // Without a Host header the link names localhost; it is absolute, as in Graph.
                uri = next
                    .strip_prefix("http://localhost")
                    .expect("an absolute link")
                    .to_owned();
            }
            None => break,
        }
    }
    assert_eq!(names.len(), 10);
    assert!(names.contains(&"WhatsApp Archiver".to_owned()) && names.contains(&"Inbox".to_owned()));
    let default_page = fake
        .get(&token, &format!("/v1.0/users/{ALICE}/mailFolders"))
        .await
        .json();
    assert_eq!(default_page["value"].as_array().unwrap().len(), 10);

    let filtered = fake
        .get(
            &token,
            &format!(
                "/v1.0/users/{ALICE}/mailFolders?$filter={}",
                urlencode("displayName eq 'O''Brien''s deals'")
            ),
        )
        .await
        .json();
    assert_eq!(filtered["value"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["value"][0]["displayName"], "O'Brien's deals");
    let none = fake
        .get(
            &token,
            &format!(
                "/v1.0/users/{BOB}/mailFolders?$filter={}",
                urlencode("displayName eq 'WhatsApp Archiver'")
            ),
        )
        .await
        .json();
    assert_eq!(none["value"], json!([]));
    let bad = fake
        .get(
            &token,
            &format!(
                "/v1.0/users/{ALICE}/mailFolders?$filter={}",
                urlencode("displayName eq 'O'Brien'")
            ),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.graph_error(), "BadRequest");
}

#[tokio::test]
async fn creating_a_folder_twice_is_error_folder_exists_even_in_a_race() {
    let fake = fake();
    let token = fake.token().await;
    let uri = format!("/v1.0/users/{ALICE}/mailFolders");
    let (a, b) = tokio::join!(
        fake.post_json(&token, &uri, json!({"displayName": "WhatsApp Archiver"})),
        fake.post_json(&token, &uri, json!({"displayName": "WhatsApp Archiver"})),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
    let loser = if a.status == StatusCode::CONFLICT {
        a
    } else {
        b
    };
    assert_eq!(loser.graph_error(), "ErrorFolderExists");
    let again = fake
        .post_json(&token, &uri, json!({"displayName": "whatsapp archiver"}))
        .await;
    assert_eq!(again.graph_error(), "ErrorFolderExists");
    let empty = fake
        .post_json(&token, &uri, json!({"displayName": " "}))
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let reader = fake.token_for(TENANT, READER, READER_SECRET).await;
    let denied = fake
        .post_json(&reader, &uri, json!({"displayName": "x"}))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.graph_error(), "ErrorAccessDenied");
}

#[tokio::test]
async fn import_mime_creates_a_finished_message_in_the_folder() {
    let fake = fake();
    let token = fake.token().await;
    let folder = fake.folder(&token, ALICE, "WhatsApp Archiver").await;
    let answer = fake
        .import(
            &token,
            ALICE,
            &folder,
            &mime("wa-1@archive.example", "Hello"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let message = answer.json();
    assert_eq!(message["isDraft"], false);
    assert_eq!(message["parentFolderId"], folder.as_str());
    assert_eq!(message["internetMessageId"], "<wa-1@archive.example>");
    assert_eq!(message["subject"], "Hello");
    assert_eq!(
        message["from"]["emailAddress"]["address"],
        "alice@contoso.example"
    );
    assert_eq!(
        message["toRecipients"][0]["emailAddress"]["name"],
        "Bob Baker"
    );
    assert_eq!(message["receivedDateTime"], "2026-11-22T09:00:01Z");
    assert_eq!(message["body"]["contentType"], "text");
    // Well-known names work as folder ids too.
    assert_eq!(
        fake.import(&token, ALICE, "inbox", &mime("wa-2@archive.example", "x"))
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn import_mime_refuses_bad_input_and_stores_nothing() {
    let fake = fake();
    let token = fake.token().await;
    let folder = fake.folder(&token, ALICE, "WhatsApp Archiver").await;
    let uri = format!("/beta/users/{ALICE}/mailFolders/{folder}/importMime");
    let bad64 = fake
        .post_text(&token, &uri, "this is not base64!".into())
        .await;
    assert_eq!(bad64.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad64.graph_error(), "ErrorMimeContentInvalidBase64String");
    let not_mime = fake
        .post_text(&token, &uri, b64(b"just words, no headers"))
        .await;
    assert_eq!(not_mime.graph_error(), "ErrorMimeContentInvalid");
    let v1 = fake
        .post_text(
            &token,
            &format!("/v1.0/users/{ALICE}/mailFolders/{folder}/importMime"),
            b64(&mime("a@b", "x")),
        )
        .await;
    assert_eq!(v1.status, StatusCode::BAD_REQUEST);
    assert!(
        v1.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("importMime")
    );
    let no_folder = fake
        .import(&token, ALICE, "AAMkAnope", &mime("a@b", "x"))
        .await;
    assert_eq!(no_folder.status, StatusCode::NOT_FOUND);
    assert_eq!(no_folder.graph_error(), "ErrorItemNotFound");
    let reader = fake.token_for(TENANT, READER, READER_SECRET).await;
    let denied = fake
        .import(&reader, ALICE, &folder, &mime("a@b", "x"))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let disabled = fake.import(&token, FRANK, "inbox", &mime("a@b", "x")).await;
    assert_eq!(disabled.graph_error(), "MailboxNotEnabledForRESTAPI");
    assert_eq!(fake.state.inspect_messages(ALICE, true).unwrap().len(), 0);
}

#[tokio::test]
async fn posting_mime_to_messages_creates_a_draft_as_graph_does() {
    let fake = fake();
    let token = fake.token().await;
    let answer = fake
        .post_text(
            &token,
            &format!("/v1.0/users/{ALICE}/messages"),
            b64(&mime("d@x", "Draft")),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.json()["isDraft"], true);
    let folders = fake.state.inspect_folders(ALICE).unwrap();
    let drafts = folders.iter().find(|f| f.display_name == "Drafts").unwrap();
    assert_eq!(drafts.message_count, 1);
    let json = fake
        .post_json(
            &token,
            &format!("/v1.0/users/{ALICE}/messages"),
            json!({"subject": "x"}),
        )
        .await;
    assert_eq!(
        json.status,
        StatusCode::BAD_REQUEST,
        "JSON message creation is a documented gap"
    );
}

#[tokio::test]
async fn messages_list_page_select_and_filter_by_internet_message_id() {
    let fake = fake();
    let token = fake.token().await;
    let folder = fake.folder(&token, ALICE, "WhatsApp Archiver").await;
    for i in 0..12 {
        fake.import(
            &token,
            ALICE,
            &folder,
            &mime(&format!("wa-{i}@archive.example"), &format!("Message {i}")),
        )
        .await;
    }
    fake.import(
        &token,
        ALICE,
        "inbox",
        &mime("other@archive.example", "Elsewhere"),
    )
    .await;

    let first = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/mailFolders/{folder}/messages?$select=subject"),
        )
        .await
        .json();
    assert_eq!(
        first["value"].as_array().unwrap().len(),
        10,
        "10 per page by default"
    );
    let keys: Vec<_> = first["value"][0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["@odata.etag", "id", "subject"]);
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.contains("%24skip=10") || next.contains("$skip=10"),
        "{next}"
    );
    let second = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/mailFolders/{folder}/messages?$select=subject&$skip=10"),
        )
        .await
        .json();
    assert_eq!(second["value"].as_array().unwrap().len(), 2);
    assert!(second.get("@odata.nextLink").is_none());

    let all = fake
        .get(&token, &format!("/v1.0/users/{ALICE}/messages?$top=100"))
        .await
        .json();
    assert_eq!(
        all["value"].as_array().unwrap().len(),
        13,
        "a user's messages span folders"
    );

    let filter = urlencode("internetMessageId eq '<wa-7@archive.example>'");
    let found = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/messages?$filter={filter}"),
        )
        .await
        .json();
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    assert_eq!(found["value"][0]["subject"], "Message 7");
    let filter = urlencode("internetMessageId eq '<nope@archive.example>'");
    let none = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/messages?$filter={filter}"),
        )
        .await
        .json();
    assert_eq!(none["value"], json!([]));

    let headers = fake
        .get(
            &token,
            &format!("/v1.0/users/{ALICE}/messages?$top=1&$select=internetMessageHeaders"),
        )
        .await
        .json();
    assert!(
        headers["value"][0]["internetMessageHeaders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "Message-ID")
    );
    let bad = fake
        .get(&token, &format!("/v1.0/users/{ALICE}/messages?$top=abc"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn get_and_delete_a_message_and_litigation_hold_keeps_it() {
    let fake = fake();
    let token = fake.token().await;
    for user in [ALICE, BOB] {
        let created = fake
            .import(&token, user, "inbox", &mime("keep@x", "Keep me"))
            .await
            .json();
        let id = created["id"].as_str().unwrap();
        let got = fake
            .get(&token, &format!("/v1.0/users/{user}/messages/{id}"))
            .await;
        assert_eq!(got.json()["subject"], "Keep me");
        let delete = fake
            .send(
                axum::http::Request::delete(format!("/v1.0/users/{user}/messages/{id}"))
                    .header("authorization", format!("Bearer {token}"))
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(delete.status, StatusCode::NO_CONTENT);
        let gone = fake
            .get(&token, &format!("/v1.0/users/{user}/messages/{id}"))
            .await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        assert_eq!(gone.graph_error(), "ErrorItemNotFound");
        assert_eq!(fake.state.inspect_messages(user, false).unwrap().len(), 0);
    }
    assert_eq!(
        fake.state.inspect_messages(ALICE, true).unwrap().len(),
        0,
        "no hold: gone"
    );
    let kept = fake.state.inspect_messages(BOB, true).unwrap();
    assert_eq!(kept.len(), 1, "on hold: kept as a recoverable item");
    assert!(kept[0].recoverable);
    assert!(fake.state.inspect_content(BOB, &kept[0].id).is_some());
}

#[tokio::test]
async fn unknown_versions_and_paths_answer_in_the_graph_shape() {
    let fake = fake();
    let token = fake.token().await;
    let answer = fake.get(&token, &format!("/v2.0/users/{ALICE}")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.graph_error(), "BadRequest");
    let answer = fake.get(&token, "/v1.0/heapdump").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.graph_error(), "BadRequest");
    assert_eq!(fake.get("", "/health").await.body, b"ok");
}

#[tokio::test]
async fn inspection_api_needs_its_own_token_and_shows_parsed_headers() {
    let fake = fake();
    let token = fake.token().await;
    fake.import(&token, ALICE, "inbox", &mime("i@x", "Inspect me"))
        .await;
    for t in ["", token.as_str(), "wrong"] {
        let answer = fake.get(t, "/admin/v1/counters").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "token {t:?}");
    }
    let messages = fake
        .get(ADMIN, &format!("/admin/v1/mailboxes/{ALICE}/messages"))
        .await
        .json();
    let message = &messages["messages"][0];
    assert_eq!(message["folder"], "Inbox");
    assert_eq!(message["internet_message_id"], "<i@x>");
    let id = message["id"].as_str().unwrap();
    let raw = fake
        .get(
            ADMIN,
            &format!("/admin/v1/mailboxes/{ALICE}/messages/{id}/mime"),
        )
        .await;
    assert_eq!(raw.body, mime("i@x", "Inspect me"));
    let counters = fake.get(ADMIN, "/admin/v1/counters").await.json();
    assert_eq!(counters["tokens_issued"], 1);
    assert!(counters["bytes_received"].as_u64().unwrap() > 0);
    let tenants = fake.get(ADMIN, "/admin/v1/tenants").await;
    assert!(!String::from_utf8_lossy(&tenants.body).contains(SECRET));
    let reset = fake
        .send(
            axum::http::Request::post("/admin/v1/reset")
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT);
    assert_eq!(fake.state.inspect_messages(ALICE, true).unwrap().len(), 0);
    assert_eq!(fake.state.counters().requests, 0);
}
