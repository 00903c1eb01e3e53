//! One test over a real socket on a port the OS picks, with a real HTTP client.

mod common;

use common::*;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn a_real_client_logs_in_pages_and_downloads_over_tcp() {
    let fake = fake(vec![
        text_item("wa-1", "2026-11-22T10:00:00Z"),
        document_item("wa-2", "2026-11-22T11:00:00Z", "att-2", 1_000_000, 5),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        axum::serve(listener, mock_telemessage::router(fake.state.clone())).into_future(),
    );

    let client = reqwest::Client::new();
    let token: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/token"))
        .json(&serde_json::json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let mut ids = Vec::new();
    let mut url = format!(
        "{base}/api/v1/items?since=2026-11-22T00:00:00Z&until=2026-11-23T00:00:00Z&page_size=1"
    );
    let mut attachment = None;
    loop {
        let page: serde_json::Value = client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for item in page["items"].as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().to_owned());
            if let Some(att) = item.get("document") {
                attachment = Some(att["attachment"].clone());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{base}/api/v1/items?cursor={c}"),
            None => break,
        }
    }
    assert_eq!(ids, ["wa-1", "wa-2"]);
    let attachment = attachment.unwrap();
    let response = client
        .get(format!("{base}/api/v1/attachments/att-2"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.content_length(), Some(1_000_000));
    let bytes = response.bytes().await.unwrap();
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(attachment["sha256"], digest.as_str());
    server.abort();
}
