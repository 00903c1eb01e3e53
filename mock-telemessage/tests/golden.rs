//! The contract's golden files (docs/examples/telemessage/) against the fake's own types:
//! each parses, and writing it back gives the same JSON, so no field is lost or renamed.

use std::path::PathBuf;

use mock_telemessage::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

fn round_trip<T: DeserializeOwned + Serialize>(path: &std::path::Path) -> T {
    let text = std::fs::read_to_string(path).unwrap();
    let original: Value = serde_json::from_str(&text).unwrap();
    let typed: T = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
    let written = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        written,
        original,
        "{} changes when written back",
        path.display()
    );
    typed
}

#[test]
fn every_golden_item_parses_and_round_trips() {
    let dir = examples().join("telemessage/items");
    let mut kinds = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let item: wire::Item = round_trip(&path);
        let value = serde_json::to_value(&item).unwrap();
        kinds.insert(value["type"].as_str().unwrap().to_owned());
    }
    let all = [
        "text",
        "media",
        "document",
        "location",
        "contact",
        "reaction",
        "edit",
        "deletion",
        "membership",
        "call",
    ];
    assert_eq!(kinds, all.iter().map(|k| k.to_string()).collect());
}

#[test]
fn golden_answer_shapes_round_trip() {
    let dir = examples().join("telemessage");
    let _: wire::ErrorBody = round_trip(&dir.join("error.json"));
    let _: wire::UsersResponse = round_trip(&dir.join("users.json"));
    let token: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("token.json")).unwrap()).unwrap();
    let parsed: wire::TokenResponse = serde_json::from_value(token.clone()).unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), token);
    #[derive(serde::Deserialize, Serialize)]
    struct Page {
        window: wire::Window,
        items: Vec<wire::Item>,
        next_cursor: Option<String>,
    }
    let page: Page = round_trip(&dir.join("items-page.json"));
    assert_eq!(page.items.len(), 2);
}

#[test]
fn the_example_dataset_loads_and_serves_every_golden_item() {
    let dataset =
        mock_telemessage::Dataset::from_file(&examples().join("telemessage-dataset.json")).unwrap();
    let prepared = dataset.prepare().unwrap();
    // Every golden item is in the dataset (which also has items of its own, such as the
    // one that reaches every mapping case of the example data).
    let served: std::collections::BTreeSet<&str> =
        prepared.items.iter().map(|i| i.id.as_str()).collect();
    for entry in std::fs::read_dir(examples().join("telemessage/items")).unwrap() {
        let path = entry.unwrap().path();
        let golden: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let id = golden["id"].as_str().unwrap();
        assert!(
            served.contains(id),
            "{} ({id}) is not served",
            path.display()
        );
    }
    assert_eq!(prepared.attachments.len(), 3);
    for item in &prepared.items {
        let parsed: wire::Item = serde_json::from_str(item.json.get()).unwrap();
        if let Some(att) = parsed.attachment() {
            let source = &prepared.attachments[&att.id];
            assert_eq!(
                att.sha256,
                mock_telemessage::attachment::sha256_hex(source.seed, source.size)
            );
        }
    }
}

#[test]
fn dataset_errors_name_the_file_and_the_item() {
    let dir = std::env::temp_dir().join(format!("tm-dataset-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.json");
    std::fs::write(&path, r#"{"items": [{"id": "wa-9", "type": "text"}]}"#).unwrap();
    let err = mock_telemessage::Dataset::from_file(&path)
        .unwrap()
        .prepare()
        .unwrap_err()
        .to_string();
    assert!(err.contains("items[0] (id wa-9)"), "{err}");
    std::fs::write(&path, "{\n  \"items\": [,]\n}").unwrap();
    let err = mock_telemessage::Dataset::from_file(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("broken.json") && err.contains("line 2"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
