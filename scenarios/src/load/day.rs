//! The day a load run imports: the generator's organisation and traffic from the seed,
//! then the chosen mix.

use serde_json::{Value, json};

use super::{LoadParams, Mix};
use crate::generate::{GeneratorParams, generate};
use crate::model::Scenario;

/// Generates the day (no boundary cases: a load run measures ordinary traffic).
pub fn make(p: &LoadParams) -> anyhow::Result<Scenario> {
    let mut scenario = generate(&GeneratorParams {
        seed: p.seed,
        start: p.start,
        days: p.days,
        employees: p.employees,
        external_contacts: p.external_contacts,
        items_per_day: p.items_per_day,
        missed_runs: Vec::new(),
        boundary_cases: false,
        late_rate: 0.0,
        revision_rate: 0.0,
    })?;
    scenario.name = format!("load-{}x{}-seed{}", p.days, p.items_per_day, p.seed);
    if p.mix == Mix::Text {
        for item in &mut scenario.items {
            as_text(item);
        }
    }
    if p.fault_rate > 0.0 {
        scenario.mailbox_faults = Some(json!({
            "seed": p.seed,
            "unavailable_rate": p.fault_rate / 2.0,
            "lost_import_response_rate": p.fault_rate / 2.0,
        }));
    }
    Ok(scenario)
}

/// An item with a file becomes a text item: its caption, or what it was.
fn as_text(item: &mut Value) {
    let kind = item["type"].as_str().unwrap_or_default().to_owned();
    let part = match kind.as_str() {
        "media" => "media",
        "document" => "document",
        _ => return,
    };
    let text = match item[part]["caption"].as_str() {
        Some(c) if !c.is_empty() => c.to_owned(),
        _ => format!("[{}]", item[part]["kind"].as_str().unwrap_or(part)),
    };
    if let Some(o) = item.as_object_mut() {
        o.remove(part);
    }
    item["type"] = json!("text");
    item["text"] = json!(text);
}

/// About how many bytes of MIME the connector's messages for the day come to, each
/// distinct message once: a few kB of headers and text per item, and each file the size
/// rule lets in, base64-encoded.
pub fn estimated_message_bytes(scenario: &Scenario) -> u64 {
    scenario
        .items
        .iter()
        .map(|item| {
            let file = attachment_of(item)
                .map(|(_, size)| size)
                .filter(|size| *size <= scenario.size_limit)
                .map_or(0, |size| size.div_ceil(3) * 4 * 78 / 76);
            3_000 + file
        })
        .sum()
}

/// The bytes of the files an item carries, if any: `(seed, size)`.
pub fn attachment_of(item: &Value) -> Option<(u64, u64)> {
    let att = item
        .get("media")
        .or_else(|| item.get("document"))?
        .get("attachment")?;
    Some((att["seed"].as_u64()?, att["size"].as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_mix_keeps_every_item_and_drops_every_file() {
        let mut item = json!({"id": "a", "type": "media", "media": {"kind": "image", "caption": null,
            "attachment": {"id": "x", "seed": 3, "size": 10}}});
        assert_eq!(attachment_of(&item), Some((3, 10)));
        as_text(&mut item);
        assert_eq!(item["type"], "text");
        assert_eq!(item["text"], "[image]");
        assert_eq!(attachment_of(&item), None);
        let mut doc = json!({"id": "b", "type": "document", "document": {"caption": "Q3 deck",
            "attachment": {"id": "y", "seed": 4, "size": 20}}});
        as_text(&mut doc);
        assert_eq!(doc["text"], "Q3 deck");
        assert!(doc.get("document").is_none());
    }
}
