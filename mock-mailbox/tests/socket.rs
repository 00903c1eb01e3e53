//! Over a real socket on a port the OS picks, with a real HTTP client: token, folder,
//! import, and the MIME back.

mod common;

use common::*;

#[tokio::test]
async fn a_real_client_gets_a_token_creates_the_folder_and_imports() {
    let fake = fake();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server =
        tokio::spawn(axum::serve(listener, mock_mailbox::router(fake.state.clone())).into_future());
    let client = reqwest::Client::new();

    let token: serde_json::Value = client
        .post(format!("{base}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("client_id", APP),
            ("client_secret", SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let folder: serde_json::Value = client
        .post(format!("{base}/v1.0/users/{ALICE}/mailFolders"))
        .bearer_auth(token)
        .json(&serde_json::json!({"displayName": "WhatsApp Archiver"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let folder = folder["id"].as_str().unwrap();
    let message = mime("socket@x", "Over TCP");
    let created = client
        .post(format!(
            "{base}/beta/users/{ALICE}/mailFolders/{folder}/importMime"
        ))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body(b64(&message))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page: serde_json::Value = client
        .get(format!("{base}/v1.0/users/{ALICE}/mailFolders?$top=2"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next = page["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&base),
        "the next link points back at this server: {next}"
    );
    let next_page = client.get(next).bearer_auth(token).send().await.unwrap();
    assert_eq!(next_page.status(), 200);
    let back = client
        .get(format!("{base}/v1.0/users/{ALICE}/messages/{id}/$value"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(back.bytes().await.unwrap().as_ref(), message.as_slice());
    server.abort();
}
