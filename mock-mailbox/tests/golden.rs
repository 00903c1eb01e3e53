//! The fake's answers have exactly the shape of the golden Graph examples in
//! docs/examples/graph/ (the same keys at every level), which the connector's own tests
//! parse too.

mod common;

use std::path::PathBuf;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

fn golden(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/examples/graph")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Differences in shape between two JSON values, as paths.
fn shape_differences(expected: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for key in e.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{key} missing"));
            }
            for key in a.keys().filter(|k| !e.contains_key(*k)) {
                out.push(format!("{path}.{key} not in the golden file"));
            }
            for (key, value) in e {
                if let Some(other) = a.get(key) {
                    shape_differences(value, other, &format!("{path}.{key}"), out);
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let (Some(e), Some(a)) = (e.first(), a.first()) {
                shape_differences(e, a, &format!("{path}[0]"), out);
            }
        }
        (Value::Null, _) | (_, Value::Null) => {}
        (e, a) if std::mem::discriminant(e) != std::mem::discriminant(a) => {
            out.push(format!("{path}: {e} vs {a}"));
        }
        _ => {}
    }
}

fn assert_same_shape(name: &str, actual: &Value) {
    let mut differences = Vec::new();
    shape_differences(&golden(name), actual, "$", &mut differences);
    assert!(
        differences.is_empty(),
        "{name}: {differences:#?}\nactual: {actual:#}"
    );
}

#[tokio::test]
async fn every_answer_has_the_golden_shape() {
    let fake = fake();
    let answer = fake
        .token_request(
            TENANT,
            &[
                ("client_id", APP),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
                ("grant_type", "client_credentials"),
            ],
        )
        .await;
    assert_same_shape("token.json", &answer.json());
    let token = answer.json()["access_token"].as_str().unwrap().to_owned();
    let refused = fake
        .token_request(
            TENANT,
            &[
                ("client_id", APP),
                ("client_secret", "no"),
                ("scope", "https://graph.microsoft.com/.default"),
                ("grant_type", "client_credentials"),
            ],
        )
        .await;
    assert_same_shape("token-error.json", &refused.json());

    assert_same_shape(
        "user.json",
        &fake
            .get(&token, &format!("/v1.0/users/{ALICE}"))
            .await
            .json(),
    );
    let folder = fake
        .post_json(
            &token,
            &format!("/v1.0/users/{ALICE}/mailFolders"),
            json!({"displayName": "WhatsApp Archiver"}),
        )
        .await;
    assert_eq!(folder.status, StatusCode::CREATED);
    assert_same_shape("folder.json", &folder.json());
    let again = fake
        .post_json(
            &token,
            &format!("/v1.0/users/{ALICE}/mailFolders"),
            json!({"displayName": "WhatsApp Archiver"}),
        )
        .await;
    assert_same_shape("error.json", &again.json());
    assert_same_shape(
        "folders-page.json",
        &fake
            .get(&token, &format!("/v1.0/users/{ALICE}/mailFolders?$top=1"))
            .await
            .json(),
    );

    let folder_id = folder.json()["id"].as_str().unwrap().to_owned();
    let imported = fake
        .import(
            &token,
            ALICE,
            &folder_id,
            &mime("wa-0001@whatsapp-archiver.invalid", "s"),
        )
        .await;
    assert_same_shape("message.json", &imported.json());
    assert_same_shape(
        "messages-page.json",
        &fake
            .get(&token, &format!("/v1.0/users/{ALICE}/messages"))
            .await
            .json(),
    );
}
