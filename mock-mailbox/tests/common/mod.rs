//! Helpers for the fake mailbox's tests: a tenant on a manual clock, tokens, and Graph
//! requests without a socket.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use mock_common::{AdminToken, ManualClock};
use mock_mailbox::{Config, Directory, State, router};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const TENANT: &str = "4f2d8c1a-6b3e-4d7f-9a21-0c5e8b7d3f10";
pub const OTHER_TENANT: &str = "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a";
pub const APP: &str = "7c1e5a9b-2f4d-4e8a-b6c3-91d0e2f4a8b5";
pub const SECRET: &str = "client-secret-for-tests";
pub const READER: &str = "0b9f3d2e-8c7a-4b1f-a5e6-d4c3b2a19087";
pub const READER_SECRET: &str = "reader-secret-for-tests";
pub const OTHER_APP: &str = "3a2b1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d";
pub const OTHER_SECRET: &str = "other-secret-for-tests";
pub const ADMIN: &str = "admin-token-for-tests-only";
pub const ALICE: &str = "alice@contoso.example";
pub const ALICE_ID: &str = "a1b2c3d4-0001-4000-8000-000000000001";
pub const BOB: &str = "bob@contoso.example";
pub const FRANK: &str = "frank@contoso.example";
pub const GINA: &str = "gina@fabrikam.example";

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

pub fn directory() -> Directory {
    Directory::from_json(
        &json!({"tenants": [
            {"id": TENANT, "domain": "contoso.example",
             "applications": [
                {"client_id": APP, "client_secret": SECRET, "permissions": ["User.Read.All", "Mail.ReadWrite", "Mail-Advanced.ReadWrite.All"]},
                {"client_id": READER, "client_secret": READER_SECRET, "permissions": ["Mail.Read"]}],
             "users": [
                {"id": ALICE_ID, "userPrincipalName": ALICE, "mail": ALICE, "displayName": "Alice Archer"},
                {"id": "a1b2c3d4-0002-4000-8000-000000000002", "userPrincipalName": BOB, "mail": BOB, "displayName": "Bob Baker", "litigationHold": true},
                {"id": "a1b2c3d4-0005-4000-8000-000000000005", "userPrincipalName": FRANK, "displayName": "Frank Former", "mailboxEnabled": false}]},
            {"id": OTHER_TENANT, "domain": "fabrikam.example",
             "applications": [{"client_id": OTHER_APP, "client_secret": OTHER_SECRET, "permissions": ["User.Read.All", "Mail.ReadWrite", "Mail-Advanced.ReadWrite.All"]}],
             "users": [{"id": "f0000000-0001-4000-8000-00000000000f", "userPrincipalName": GINA, "displayName": "Gina Green"}]}
        ]})
        .to_string(),
    )
    .unwrap()
}

pub struct Fake {
    pub state: State,
    pub clock: ManualClock,
}

pub fn fake() -> Fake {
    fake_with(Config::default())
}

pub fn fake_with(config: Config) -> Fake {
    fake_from(&directory(), config, AdminToken::new(ADMIN))
}

/// A fake of any directory (with its own faults, say), on the usual clock.
pub fn fake_from(directory: &Directory, config: Config, admin: AdminToken) -> Fake {
    let clock = ManualClock::new(t("2026-11-23T01:00:00Z"));
    let state = State::new(directory, Arc::new(clock.clone()), config, admin).unwrap();
    Fake { state, clock }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
    /// The body broke off before its end.
    pub cut: bool,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The Graph error code, after checking the whole error shape.
    pub fn graph_error(&self) -> String {
        let body = self.json();
        let error = &body["error"];
        assert!(error["message"].is_string(), "{body}");
        let request_id = error["innerError"]["request-id"]
            .as_str()
            .expect("innerError.request-id");
        assert!(error["innerError"]["date"].is_string());
        assert_eq!(self.headers["request-id"].to_str().unwrap(), request_id);
        error["code"].as_str().unwrap().to_owned()
    }
}

/// A small MIME message with the given Message-ID.
pub fn mime(message_id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Alice Archer <alice@contoso.example>\r\nTo: Bob Baker <bob@contoso.example>\r\nSubject: {subject}\r\nDate: Sun, 22 Nov 2026 09:00:01 +0000\r\nMessage-ID: <{message_id}>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBody of {subject}\r\n"
    )
    .into_bytes()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Fake {
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        // A body that breaks off (a seeded reset) is read as far as it came.
        let (body, cut) = match response.into_body().collect().await {
            Ok(collected) => (collected.to_bytes().to_vec(), false),
            Err(_) => (Vec::new(), true),
        };
        Answer {
            status,
            headers,
            body,
            cut,
        }
    }

    pub async fn token_request(&self, tenant: &str, form: &[(&str, &str)]) -> Answer {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            Request::post(format!("/{tenant}/oauth2/v2.0/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    pub async fn token_for(&self, tenant: &str, client: &str, secret: &str) -> String {
        let answer = self
            .token_request(
                tenant,
                &[
                    ("client_id", client),
                    ("client_secret", secret),
                    ("scope", "https://graph.microsoft.com/.default"),
                    ("grant_type", "client_credentials"),
                ],
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn token(&self) -> String {
        self.token_for(TENANT, APP, SECRET).await
    }

    pub async fn get(&self, token: &str, uri: &str) -> Answer {
        self.send(
            Request::get(uri)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, token: &str, uri: &str, body: Value) -> Answer {
        self.send(
            Request::post(uri)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    pub async fn post_text(&self, token: &str, uri: &str, body: String) -> Answer {
        self.send(
            Request::post(uri)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "text/plain")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// Creates the folder and returns its id.
    pub async fn folder(&self, token: &str, user: &str, name: &str) -> String {
        let answer = self
            .post_json(
                token,
                &format!("/v1.0/users/{user}/mailFolders"),
                json!({"displayName": name}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()["id"].as_str().unwrap().to_owned()
    }

    pub async fn import(&self, token: &str, user: &str, folder: &str, mime: &[u8]) -> Answer {
        self.post_text(
            token,
            &format!("/beta/users/{user}/mailFolders/{folder}/importMime"),
            b64(mime),
        )
        .await
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
