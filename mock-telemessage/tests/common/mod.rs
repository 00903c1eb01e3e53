//! Helpers for the fake provider's tests: a server on a manual clock, requests without a
//! socket, and bodies as JSON.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use mock_common::{AdminToken, ManualClock};
use mock_telemessage::{Config, Dataset, State, router};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const USER: &str = "contoso-archive";
pub const PASSWORD: &str = "correct horse battery staple";
pub const ADMIN: &str = "admin-token-for-tests-only";

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

pub fn participant(phone: &str, name: &str, email: Option<&str>) -> Value {
    json!({"phone": phone, "name": name, "user_email": email})
}

/// A text item archived at `archived_at`.
pub fn text_item(id: &str, archived_at: &str) -> Value {
    json!({
        "id": id, "type": "text", "capture_mode": "phone_archiver",
        "archived_at": archived_at, "sent_at": archived_at,
        "conversation": {"id": "c1", "type": "direct", "name": null},
        "from": participant("+16174354634", "Alice Archer", Some("alice@contoso.example")),
        "to": [participant("+12124325249", "Bob Baker", None)],
        "text": format!("message {id}")
    })
}

pub fn document_item(id: &str, archived_at: &str, att_id: &str, size: u64, seed: u64) -> Value {
    json!({
        "id": id, "type": "document", "capture_mode": "cloud_archiver",
        "archived_at": archived_at, "sent_at": archived_at,
        "conversation": {"id": "c1", "type": "direct", "name": null},
        "from": participant("+16174354634", "Alice Archer", Some("alice@contoso.example")),
        "to": [participant("+12124325249", "Bob Baker", None)],
        "document": {"caption": null, "attachment": {
            "id": att_id, "file_name": "report.pdf", "content_type": "application/pdf",
            "size": size, "seed": seed}}
    })
}

pub struct Fake {
    pub state: State,
    pub clock: ManualClock,
}

pub fn dataset(items: Vec<Value>) -> Dataset {
    Dataset::from_json(
        &json!({
            "accounts": [{"username": USER, "password": PASSWORD}],
            "employees": [participant("+16174354634", "Alice Archer", Some("alice@contoso.example"))],
            "items": items,
        })
        .to_string(),
    )
    .unwrap()
}

pub fn fake(items: Vec<Value>) -> Fake {
    fake_from(&dataset(items))
}

pub fn fake_from(dataset: &Dataset) -> Fake {
    let clock = ManualClock::new(t("2026-11-23T00:30:00Z"));
    let state = State::new(
        dataset,
        Arc::new(clock.clone()),
        Config::default(),
        AdminToken::new(ADMIN),
    )
    .unwrap();
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

    pub fn error_code(&self) -> String {
        let body = self.json();
        let code = body["error"]["code"].as_str().expect("error.code");
        assert!(body["error"]["message"].is_string());
        assert!(body["error"]["request_id"].is_string());
        assert_eq!(
            self.headers["x-request-id"].to_str().unwrap(),
            body["error"]["request_id"]
        );
        code.to_owned()
    }
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
            cut,
            status,
            headers,
            body,
        }
    }

    pub async fn login_as(&self, username: &str, password: &str) -> Answer {
        self.send(
            Request::post("/api/v1/auth/token")
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"username": username, "password": password}).to_string(),
                ))
                .unwrap(),
        )
        .await
    }

    pub async fn token(&self) -> String {
        let answer = self.login_as(USER, PASSWORD).await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.json()["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> Answer {
        let mut request = Request::get(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// Every item id of a listing, following cursors to the end.
    pub async fn list_all(
        &self,
        token: &str,
        since: &str,
        until: &str,
        page_size: usize,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        let mut uri = format!("/api/v1/items?since={since}&until={until}&page_size={page_size}");
        loop {
            let answer = self.get(&uri, Some(token)).await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&answer.body)
            );
            let page = answer.json();
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= page_size);
            ids.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(cursor) => uri = format!("/api/v1/items?cursor={cursor}"),
                None => return ids,
            }
        }
    }
}
