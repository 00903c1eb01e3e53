//! The HTTP clients against wiremock: paging, token refresh, 429 with Retry-After, 503,
//! connection resets, the folder race, and imports that must not be repeated blindly.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use connector::graph::{FolderLookup, GraphClient, ImportBody};
use connector::provider::ProviderClient;
use connector::retry::RetryPolicy;
use connector::secret::Secret;
use serde_json::json;
use sha2::{Digest, Sha256};
use wiremock::matchers::{
    body_string_contains, header, method, path, query_param, query_param_is_missing,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn fast_retries() -> Arc<RetryPolicy> {
    Arc::new(RetryPolicy::new(
        4,
        Duration::from_millis(1),
        Duration::from_millis(10),
    ))
}

fn provider(server: &MockServer, retry: Arc<RetryPolicy>) -> ProviderClient {
    ProviderClient::new(
        reqwest::Client::new(),
        &server.uri(),
        "contoso-archive",
        Secret::new("pw"),
        retry,
    )
}

fn graph(server: &MockServer, retry: Arc<RetryPolicy>) -> GraphClient {
    GraphClient::new(
        reqwest::Client::new(),
        &server.uri(),
        &server.uri(),
        "contoso.example",
        "app-id",
        Secret::new("client-secret"),
        retry,
    )
}

async fn provider_login(server: &MockServer, expected: u64) {
    Mock::given(method("POST"))
        .and(path("/api/v1/auth/token"))
        .and(body_string_contains("\"password\":\"pw\""))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "tok", "token_type": "Bearer", "expires_in": 3600}),
        ))
        .expect(expected)
        .mount(server)
        .await;
}

async fn graph_token(server: &MockServer, expected: u64) {
    Mock::given(method("POST"))
        .and(path("/contoso.example/oauth2/v2.0/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "gtok"})))
        .expect(expected)
        .mount(server)
        .await;
}

#[tokio::test]
async fn provider_pages_follow_the_cursor() {
    let server = MockServer::start().await;
    provider_login(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/items"))
        .and(query_param("since", "2026-11-22T00:00:00.000Z"))
        .and(query_param("until", "2026-11-23T00:00:00.000Z"))
        .and(query_param("page_size", "2"))
        .and(query_param_is_missing("cursor"))
        .and(header("authorization", "Bearer tok"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"window": {}, "items": [{"id": "a"}, {"id": "b"}], "next_cursor": "c1"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/items"))
        .and(query_param("cursor", "c1"))
        .and(query_param_is_missing("since"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"window": {}, "items": [{"id": "c"}], "next_cursor": null})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = provider(&server, fast_retries());
    let (since, until) = (t("2026-11-22T00:00:00Z"), t("2026-11-23T00:00:00Z"));
    let first = client.page(since, until, None, 2).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let second = client
        .page(since, until, first.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(
        connector::provider::wire::raw_item_id(second.items[0].get()).as_deref(),
        Some("c")
    );
    assert!(second.next_cursor.is_none());
}

#[tokio::test]
async fn an_expired_provider_token_means_one_new_login() {
    let server = MockServer::start().await;
    provider_login(&server, 2).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"code": "token_expired", "message": "expired", "request_id": "r"}}),
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"users": []})))
        .expect(1)
        .mount(&server)
        .await;
    assert!(
        provider(&server, fast_retries())
            .users()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn provider_503_is_retried_and_a_refused_login_is_an_error_without_the_password() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/auth/token"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            json!({"error": {"code": "unavailable", "message": "try again", "request_id": "r0"}}),
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/auth/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "invalid_credentials", "message": "the username or password is wrong", "request_id": "r"}})))
        .expect(1)
        .mount(&server)
        .await;
    let retry = fast_retries();
    let client = provider(&server, retry.clone());
    let err = client.login().await.unwrap_err().to_string();
    assert_eq!(retry.retries(), 1, "the 503 was retried once");
    assert!(
        err.contains("invalid_credentials") && !err.contains("pw\""),
        "{err}"
    );
    // A refused password is not sent again by the same client (the second 401 mock
    // expects exactly one call).
    assert!(client.login().await.is_err());
}

#[tokio::test]
async fn a_download_that_does_not_verify_is_tried_again() {
    let server = MockServer::start().await;
    provider_login(&server, 1).await;
    let good = b"the real bytes".to_vec();
    let sha: String = Sha256::digest(&good)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Mock::given(method("GET"))
        .and(path("/api/v1/attachments/att-1"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"the fake bytes".to_vec()))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/attachments/att-1"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(good.clone()))
        .mount(&server)
        .await;
    let retry = fast_retries();
    let dir = std::env::temp_dir().join(format!("connector-dl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dest = dir.join("att");
    let client = provider(&server, retry.clone());
    client
        .download("att-1", good.len() as u64, &sha, &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), good);
    assert_eq!(retry.retries(), 1);

    let err = client
        .download("att-1", good.len() as u64, &"0".repeat(64), &dest)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SHA-256"), "{err}");
    assert!(
        !dest.exists(),
        "a file that never verified is not left behind"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn graph_honours_retry_after_on_429_and_503() {
    let server = MockServer::start().await;
    graph_token(&server, 1).await;
    for (status, code) in [(429, "ApplicationThrottled"), (503, "ServiceUnavailable")] {
        Mock::given(method("GET"))
            .and(path("/v1.0/users/alice@contoso.example"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("retry-after", "0.01")
                    .set_body_json(json!({"error": {"code": code, "message": "wait"}})),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/v1.0/users/alice@contoso.example"))
        .and(header("authorization", "Bearer gtok"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "u1", "userPrincipalName": "alice@contoso.example"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let retry = fast_retries();
    let user = graph(&server, retry.clone())
        .user("alice@contoso.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.id, "u1");
    assert_eq!(retry.retries(), 2);
}

#[tokio::test]
async fn a_refused_graph_token_is_refreshed_once() {
    let server = MockServer::start().await;
    graph_token(&server, 2).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/nobody@contoso.example"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "InvalidAuthenticationToken", "message": "Lifetime validation failed, the token is expired."}})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/nobody@contoso.example"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(
                json!({"error": {"code": "Request_ResourceNotFound", "message": "no"}}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        graph(&server, fast_retries())
            .user("nobody@contoso.example")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn an_invalid_client_secret_is_reported_without_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contoso.example/oauth2/v2.0/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided. Trace ID: x", "error_codes": [7000215]})))
        .mount(&server)
        .await;
    let err = graph(&server, fast_retries())
        .sign_in()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid_client")
            && err.contains("AADSTS7000215")
            && !err.contains("client-secret"),
        "{err}"
    );
}

#[tokio::test]
async fn a_folder_create_that_loses_the_race_finds_the_winner() {
    let server = MockServer::start().await;
    graph_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/u1/mailFolders"))
        .and(query_param("$filter", "displayName eq 'WhatsApp Archiver'"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/users/u1/mailFolders"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({"error": {"code": "ErrorFolderExists", "message": "A folder with the specified name already exists."}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/u1/mailFolders"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"value": [{"id": "F1", "displayName": "WhatsApp Archiver"}]}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let found = graph(&server, fast_retries())
        .ensure_folder("u1", "WhatsApp Archiver")
        .await
        .unwrap();
    assert_eq!(found, FolderLookup::Found("F1".into()));
}

#[tokio::test]
async fn folder_names_with_quotes_are_escaped_in_the_filter() {
    let server = MockServer::start().await;
    graph_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/u1/mailFolders"))
        .and(query_param(
            "$filter",
            "displayName eq 'O''Brien''s archive'",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"value": [{"id": "F9", "displayName": "O'Brien's archive"}]}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        graph(&server, fast_retries())
            .find_folder("u1", "O'Brien's archive")
            .await
            .unwrap(),
        FolderLookup::Found("F9".into())
    );
}

#[tokio::test]
async fn an_import_is_retried_on_429_but_not_blindly_on_a_5xx() {
    let server = MockServer::start().await;
    graph_token(&server, 1).await;
    Mock::given(method("POST"))
        .and(path("/beta/users/u1/mailFolders/F1/importMime"))
        .and(header("content-type", "text/plain"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0").set_body_json(json!({"error": {"code": "ApplicationThrottled", "message": "MailboxConcurrency"}})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/beta/users/u1/mailFolders/F1/importMime"))
        .and(body_string_contains("RnJvbTo"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": "M1", "isDraft": false})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/beta/users/u1/mailFolders/F1/importMime"))
        .respond_with(
            ResponseTemplate::new(504)
                .set_body_json(json!({"error": {"code": "UnknownError", "message": "timeout"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = graph(&server, fast_retries());
    assert_eq!(
        client
            .import("u1", "F1", &ImportBody::encode(b"From: a@b.c\r\n\r\nhi"))
            .await
            .unwrap(),
        "M1"
    );
    let err = client
        .import("u1", "F1", &ImportBody::encode(b"From: a@b.c\r\n\r\nhi"))
        .await
        .unwrap_err();
    assert!(
        err.uncertain(),
        "a 504 may have landed: the caller must look before sending again"
    );
}

#[tokio::test]
async fn a_message_is_found_by_its_internet_message_id() {
    let server = MockServer::start().await;
    graph_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/u1/messages"))
        .and(query_param(
            "$filter",
            "internetMessageId eq '<wa-1@whatsapp-archiver.invalid>'",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [{"id": "M7"}]})))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        graph(&server, fast_retries())
            .find_message("u1", "<wa-1@whatsapp-archiver.invalid>")
            .await
            .unwrap(),
        Some("M7".into())
    );
}

/// A server that closes the first connection without answering, and answers the next.
#[tokio::test]
async fn a_broken_connection_is_retried() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (first, _) = listener.accept().await.unwrap();
        drop(first);
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let n = conn.read(&mut buf).await.unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = if request.starts_with("POST") {
                json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "t"}).to_string()
            } else {
                json!({"id": "u1", "userPrincipalName": "alice@contoso.example"}).to_string()
            };
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    let retry = fast_retries();
    let client = GraphClient::new(
        reqwest::Client::new(),
        &base,
        &base,
        "contoso.example",
        "app",
        Secret::new("s"),
        retry.clone(),
    );
    let user = client.user("alice@contoso.example").await.unwrap().unwrap();
    assert_eq!(user.id, "u1");
    assert!(retry.retries() >= 1);
    server.abort();
}

#[tokio::test]
async fn a_page_is_read_apart_from_its_items_and_bounded_in_size() {
    let server = MockServer::start().await;
    provider_login(&server, 1).await;
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let body = format!(
        r#"{{"window": {{}}, "items": [{{"id": "half-emoji", "text": "\ud83d"}}, {{"id": "deep", "x": {deep}}}, {{"id": "fine"}}], "next_cursor": null}}"#
    );
    Mock::given(method("GET"))
        .and(path("/api/v1/items"))
        .and(query_param("page_size", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/items"))
        .and(query_param("page_size", "500"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            format!(
                r#"{{"items": [{{"id": "{}"}}], "next_cursor": null}}"#,
                "x".repeat(100_000)
            ),
            "application/json",
        ))
        .mount(&server)
        .await;
    let client = provider(&server, fast_retries()).with_max_page_bytes(70_000);
    let (since, until) = (t("2026-11-22T00:00:00Z"), t("2026-11-23T00:00:00Z"));
    // One unreadable item does not make the page unreadable; each is read on its own.
    let page = client.page(since, until, None, 3).await.unwrap();
    let ids: Vec<Option<String>> = page
        .items
        .iter()
        .map(|i| connector::provider::wire::raw_item_id(i.get()))
        .collect();
    assert_eq!(
        ids,
        [
            Some("half-emoji".into()),
            Some("deep".into()),
            Some("fine".into())
        ]
    );
    let half = connector::provider::wire::read_item_text(page.items[0].get()).unwrap_err();
    assert!(half.contains("not readable JSON"), "{half}");
    let deep = connector::provider::wire::read_item_text(page.items[1].get()).unwrap_err();
    assert!(deep.contains("recursion limit"), "{deep}");
    // A page larger than the bound is an error, not an allocation.
    let err = client.page(since, until, None, 500).await.unwrap_err();
    assert!(
        matches!(
            err,
            connector::provider::ProviderError::PageTooLarge { limit: 70_000 }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_download_longer_than_announced_is_cut_off() {
    let server = MockServer::start().await;
    provider_login(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/attachments/att-long"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![7u8; 4096]))
        .mount(&server)
        .await;
    let dir = std::env::temp_dir().join(format!("connector-dl-long-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dest = dir.join("att");
    let err = provider(&server, fast_retries())
        .download("att-long", 16, &"0".repeat(64), &dest)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("more than the 16 bytes announced"),
        "{err}"
    );
    assert!(!dest.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

const GATEWAY_PAGE: &str =
    "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";

#[tokio::test]
async fn a_gateway_page_or_another_json_on_a_200_is_a_transient_fault_tried_again() {
    let server = MockServer::start().await;
    // The login is first answered with a gateway's page, then properly.
    Mock::given(method("POST"))
        .and(path("/api/v1/auth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(GATEWAY_PAGE, "text/html"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    provider_login(&server, 1).await;
    // The listing: a page, then JSON that is not the envelope, then the page.
    Mock::given(method("GET"))
        .and(path("/api/v1/items"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(GATEWAY_PAGE, "text/html"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "maintenance"})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/items"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"window": {}, "items": [{"id": "a"}], "next_cursor": null})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let retry = fast_retries();
    let client = provider(&server, retry.clone());
    let page = client
        .page(
            t("2026-11-22T00:00:00Z"),
            t("2026-11-23T00:00:00Z"),
            None,
            2,
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(retry.retries(), 3, "one login and two listings tried again");
}

#[tokio::test]
async fn after_the_last_try_the_error_names_the_endpoint_status_type_and_start_never_a_value() {
    let server = MockServer::start().await;
    // A token answer missing a field: its value must not reach the error.
    Mock::given(method("POST"))
        .and(path("/api/v1/auth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "LEAKED-TOKEN-VALUE", "kind": "x"})),
        )
        .expect(4)
        .mount(&server)
        .await;
    let client = provider(&server, fast_retries());
    let error = client.login().await.unwrap_err().to_string();
    assert!(
        error.contains("login answered 200 with application/json")
            && error.contains("the fields access_token, kind")
            && !error.contains("LEAKED-TOKEN-VALUE"),
        "{error}"
    );
    // A listing answered with a gateway's page every time: named, with how it began.
    let server = MockServer::start().await;
    provider_login(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/items"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(GATEWAY_PAGE, "text/html"))
        .expect(4)
        .mount(&server)
        .await;
    let client = provider(&server, fast_retries());
    let error = client
        .page(
            t("2026-11-22T00:00:00Z"),
            t("2026-11-23T00:00:00Z"),
            None,
            2,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("listing page answered 200 with text/html")
            && error.contains("<html><head><title>502 Bad Gateway"),
        "{error}"
    );
}
