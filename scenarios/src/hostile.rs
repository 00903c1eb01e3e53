//! Hostile items sprinkled into a generated day at a low rate: the kinds of bad data the
//! rule "bad input never stops the archive" is about (control characters, enormous ids
//! and names, an impossible date, an attachment id no request can carry, wrong types, a
//! lone surrogate escape, nesting deeper than any parser takes). The first kinds stay
//! readable and must land, cleaned; the last three are unreadable and must be skipped as
//! `invalid_item` and kept byte for byte in the quarantine. The oracle knows both from
//! the data itself, as it does for the recorded `hostile-provider-data`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::RngExt;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::model::{RawTextItem, Scenario};

/// What a hostile item does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    ControlCharacters,
    HugeNames,
    ImpossibleDate,
    LongAttachmentId,
    HugeId,
    WrongTypes,
    LoneSurrogate,
    DeepNesting,
}

const KINDS: [Kind; 8] = [
    Kind::ControlCharacters,
    Kind::HugeNames,
    Kind::ImpossibleDate,
    Kind::LongAttachmentId,
    Kind::HugeId,
    Kind::WrongTypes,
    Kind::LoneSurrogate,
    Kind::DeepNesting,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::ControlCharacters => "control characters",
            Kind::HugeNames => "enormous names",
            Kind::ImpossibleDate => "an impossible date",
            Kind::LongAttachmentId => "an attachment id of 70,000 characters",
            Kind::HugeId => "an item id of 70,000 characters",
            Kind::WrongTypes => "wrong types",
            Kind::LoneSurrogate => "a lone surrogate escape",
            Kind::DeepNesting => "nesting 300 deep",
        }
    }
}

/// Turns about `rate` of the scenario's items into hostile ones, each of a kind drawn
/// from `rng`. Items another item refers to (a reply, a reaction, an edit, a deletion)
/// and ids the provider sends more than once are left alone, so that the rest of the day
/// means what it meant. Answers how many of each kind.
pub fn sprinkle(scenario: &mut Scenario, rng: &mut StdRng, rate: f64) -> BTreeMap<Kind, usize> {
    let mut referred: BTreeSet<String> = BTreeSet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in &scenario.items {
        if let Some(id) = item["context"]["reply_to"].as_str() {
            referred.insert(id.to_owned());
        }
        for key in ["reaction", "edit", "deletion"] {
            if let Some(id) = item[key]["target_id"].as_str() {
                referred.insert(id.to_owned());
            }
        }
        if let Some(id) = item["id"].as_str() {
            *seen.entry(id.to_owned()).or_default() += 1;
        }
    }
    let mut done = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (index, item) in scenario.items.iter_mut().enumerate() {
        let Some(id) = item["id"].as_str().map(str::to_owned) else {
            continue;
        };
        if referred.contains(&id) || seen.get(&id) != Some(&1) || !rng.random_bool(rate) {
            continue;
        }
        let mut kind = KINDS[rng.random_range(0..KINDS.len())];
        if kind == Kind::LongAttachmentId && attachment(item).is_none() {
            kind = Kind::ControlCharacters;
        }
        *done.entry(kind).or_default() += 1;
        match kind {
            Kind::ControlCharacters => {
                let name = item["from"]["name"]
                    .as_str()
                    .unwrap_or("Someone")
                    .to_owned();
                item["from"]["name"] = json!(format!(
                    "{name}\r\nBcc: mallory@evil.example\u{202e}\u{0}\u{7}\u{1b}[31m"
                ));
                if let Some(text) = item["text"].as_str().map(str::to_owned) {
                    item["text"] = json!(format!(
                        "{text}\u{0}\u{7}\u{1b}[2J\r\nBcc: mallory@evil.example\rafter a bare CR\u{7f}"
                    ));
                }
            }
            Kind::HugeNames => {
                item["from"]["name"] = json!("A".repeat(20_000));
                if item["conversation"]["type"] == "group" {
                    item["conversation"]["name"] = json!("G".repeat(20_000));
                }
                if let Some(first) = item["to"].get_mut(0) {
                    first["name"] = json!("\u{628}".repeat(5_000));
                }
            }
            Kind::ImpossibleDate => item["sent_at"] = json!("-0001-01-01T00:00:00Z"),
            Kind::LongAttachmentId => {
                if let Some(a) = attachment(item) {
                    // Its own id: two items with one attachment id must agree on its
                    // bytes.
                    a["id"] = json!(format!("att-{id}-{}", "9".repeat(70_000)));
                }
            }
            Kind::HugeId => item["id"] = json!(format!("{id}-{}", "x".repeat(70_000))),
            Kind::WrongTypes | Kind::LoneSurrogate | Kind::DeepNesting => {
                unreadable.push((index, kind))
            }
        }
    }
    // The unreadable ones leave the schema items for the provider's raw ones.
    for (index, kind) in unreadable.into_iter().rev() {
        let item = scenario.items.remove(index);
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        let archived_at = item["archived_at"].clone();
        match kind {
            Kind::WrongTypes => scenario.raw_items.push(json!({
                "id": id, "archived_at": archived_at, "capture_mode": "cloud_archiver",
                "sent_at": 12345, "conversation": "not an object", "from": 42, "to": "bob",
                "type": "text", "text": ["not", "a", "string"]
            })),
            Kind::LoneSurrogate | Kind::DeepNesting => {
                let Some(archived_at) = archived_at
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                else {
                    continue;
                };
                let mut item = item;
                let json = if kind == Kind::LoneSurrogate {
                    item["text"] = json!("half an emoji: @SURROGATE@");
                    item.to_string().replace("@SURROGATE@", "\\ud83d")
                } else {
                    item["extra"] = json!("@NESTING@");
                    item.to_string().replace(
                        "\"@NESTING@\"",
                        &format!("{}{}", "[".repeat(300), "]".repeat(300)),
                    )
                };
                scenario.raw_text_items.push(RawTextItem {
                    id,
                    archived_at: archived_at.to_utc(),
                    json,
                });
            }
            _ => unreachable!("only unreadable kinds are here"),
        }
    }
    done
}

/// The item's attachment, whatever its kind of message.
fn attachment(item: &mut Value) -> Option<&mut Value> {
    let kind = item["type"].as_str()?.to_owned();
    let a = item.get_mut(&kind)?.get_mut("attachment")?;
    a.is_object().then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn hostile_items_are_of_every_kind_and_leave_referred_items_alone() {
        let params: crate::generate::GeneratorParams = serde_json::from_value(json!({
            "seed": 3, "start": "2026-11-22T00:00:00Z", "days": 1, "employees": 10,
            "external_contacts": 5, "items_per_day": 400, "boundary_cases": false
        }))
        .unwrap();
        let mut scenario = crate::generate::generate(&params).unwrap();
        let before = scenario.source_items();
        let raw_before = scenario.raw_items.len();
        let mut rng = StdRng::seed_from_u64(1);
        let done = sprinkle(&mut scenario, &mut rng, 0.1);
        assert_eq!(
            scenario.source_items(),
            before,
            "items change, none is lost"
        );
        assert!(done.len() >= 6, "{done:?}");
        let total: usize = done.values().sum();
        assert!((20..=70).contains(&total), "{total} of {before}");
        let unreadable = done.get(&Kind::WrongTypes).copied().unwrap_or(0);
        assert_eq!(scenario.raw_items.len(), raw_before + unreadable);
        for raw in &scenario.raw_text_items {
            assert!(
                serde_json::from_str::<Value>(&raw.json).is_err(),
                "{}: no parser with a depth limit or strict surrogates reads it",
                raw.id
            );
        }
        // Every reference still points at an item.
        let ids: BTreeSet<&str> = scenario
            .items
            .iter()
            .filter_map(|i| i["id"].as_str())
            .collect();
        for item in &scenario.items {
            for key in ["reaction", "edit", "deletion"] {
                if let Some(target) = item[key]["target_id"].as_str() {
                    assert!(ids.contains(target), "{target} referred to");
                }
            }
        }
        // The same seed, the same day.
        let mut again = crate::generate::generate(&params).unwrap();
        sprinkle(&mut again, &mut StdRng::seed_from_u64(1), 0.1);
        assert_eq!(again, scenario);
    }
}
