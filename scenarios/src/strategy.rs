//! Proptest strategies over the scenario model: small explicit scenarios, so that a
//! failure shrinks to something a person can read and it can be saved and replayed.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::model::{RunSpec, Scenario, User};

const DOMAIN: &str = "contoso.example";
/// A small limit keeps the cases fast; sizes stay far from it so the outcome is certain.
pub const LIMIT: u64 = 200_000;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
        .expect("a fixed time")
        .to_utc()
}

/// How one participant is known: the email property and the mapping file entry, each a
/// valid user, a non-user, or absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Valid(usize),
    NonUser,
    Disabled,
    Absent,
}

fn known() -> impl Strategy<Value = Known> {
    prop_oneof![4 => (0..3usize).prop_map(Known::Valid), 1 => Just(Known::NonUser), 1 => Just(Known::Disabled), 2 => Just(Known::Absent)]
}

fn address(k: Known) -> Option<String> {
    match k {
        Known::Valid(u) => Some(format!("user{u}@{DOMAIN}")),
        Known::NonUser => Some(format!("nobody@{DOMAIN}")),
        Known::Disabled => Some(format!("disabled@{DOMAIN}")),
        Known::Absent => None,
    }
}

/// One item: sender, recipients (indices into the participants), and what it carries.
#[derive(Debug, Clone)]
pub struct ItemPlan {
    from: usize,
    to: Vec<usize>,
    attachment: Option<bool>,
    deleted: bool,
    /// Hours the provider takes to list it (0: at once); past a day, only the next
    /// run's look-back finds it.
    lag_hours: u8,
    /// The provider sends it again with changed text (a revision).
    revised: bool,
}

fn item_plan(people: usize) -> impl Strategy<Value = ItemPlan> {
    (
        0..people,
        proptest::collection::vec(0..people, 1..4),
        prop_oneof![Just(None), Just(Some(false)), Just(Some(true))],
        any::<bool>(),
        prop_oneof![6 => Just(0u8), 1 => 1..40u8],
        proptest::bool::weighted(0.15),
    )
        .prop_map(
            |(from, to, attachment, deleted, lag_hours, revised)| ItemPlan {
                from,
                to: to.into_iter().filter(|t| *t != from).collect(),
                attachment,
                deleted,
                lag_hours,
                revised,
            },
        )
        .prop_filter("a message needs a recipient", |p| !p.to.is_empty())
}

/// A small scenario: up to six participants, each with an email property and a mapping
/// file entry chosen from every case of the rules, and up to ten items among them.
pub fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec((known(), known()), 2..6),
        any::<bool>(),
    )
        .prop_flat_map(|(people, automatic)| {
            let n = people.len();
            (
                Just(people),
                Just(automatic),
                proptest::collection::vec(item_plan(n), 1..10),
            )
        })
        .prop_map(|(people, automatic, plans)| build(&people, automatic, &plans))
}

fn build(people: &[(Known, Known)], automatic: bool, plans: &[ItemPlan]) -> Scenario {
    let participants: Vec<Value> = people
        .iter()
        .enumerate()
        .map(|(i, (email, _))| json!({"phone": format!("+4420794600{i:02}"), "name": format!("Person {i}"), "user_email": address(*email)}))
        .collect();
    let mut csv = String::from("phone,email\n");
    for (i, (_, entry)) in people.iter().enumerate() {
        if let Some(a) = address(*entry) {
            csv.push_str(&format!("+44 20 7946 00{i:02},{a}\n"));
        }
    }
    let mut users: Vec<User> = (0..3)
        .map(|u| User {
            upn: format!("user{u}@{DOMAIN}"),
            name: format!("User {u}"),
            mailbox: true,
        })
        .collect();
    users.push(User {
        upn: format!("disabled@{DOMAIN}"),
        name: "Disabled".into(),
        mailbox: false,
    });
    let mut items: Vec<Value> = plans
        .iter()
        .enumerate()
        .map(|(n, plan)| {
            let at = start() + TimeDelta::minutes(10 * n as i64 + 1);
            let mut item = json!({
                "id": format!("p-{n}"), "capture_mode": "phone_archiver",
                "archived_at": at.to_rfc3339(), "sent_at": at.to_rfc3339(),
                "conversation": {"id": "c", "type": if plan.to.len() > 1 { "group" } else { "direct" }, "name": if plan.to.len() > 1 { Some("Group") } else { None }},
                "from": participants[plan.from], "to": plan.to.iter().map(|t| participants[*t].clone()).collect::<Vec<_>>(),
            });
            match plan.attachment {
                None => {
                    item["type"] = json!("text");
                    item["text"] = json!(format!("message {n}"));
                }
                Some(large) => {
                    item["type"] = json!("document");
                    let size = if large { 300_000 } else { 2_000 + n as u64 };
                    item["document"] = json!({"caption": null, "attachment": {"id": format!("a-{n}"), "file_name": format!("f{n}.pdf"), "content_type": "application/pdf", "size": size, "seed": n}});
                }
            }
            if plan.deleted {
                item["deleted"] = json!({"scope": "everyone", "deleted_at": at.to_rfc3339()});
            }
            item
        })
        .collect();
    // Revisions: the same id a minute later with changed text; and the provider's lag.
    let mut lags = std::collections::BTreeMap::new();
    for (n, plan) in plans.iter().enumerate() {
        if plan.revised {
            let mut again = items[n].clone();
            let at = start() + TimeDelta::minutes(10 * n as i64 + 2);
            again["archived_at"] = json!(at.to_rfc3339());
            let changed = json!(format!("message {n}, sent again with other text"));
            match again["type"].as_str() {
                Some("text") => again["text"] = changed,
                Some(kind) => {
                    let kind = kind.to_owned();
                    again[kind.as_str()]["caption"] = changed;
                }
                None => {}
            }
            items.push(again);
        }
        if plan.lag_hours > 0 {
            lags.insert(format!("p-{n}"), u64::from(plan.lag_hours) * 3600);
        }
    }
    Scenario {
        name: "property".into(),
        description: "a random small scenario from the property test".into(),
        seed: None,
        generate: None,
        tenant_domain: DOMAIN.into(),
        users,
        employees: participants,
        mapping_csv: Some(csv),
        mapping_default_region: None,
        automatic_mapping: automatic,
        unmapped_mailbox: None,
        size_limit: LIMIT,
        connector_defaults: false,
        items,
        raw_items: Vec::new(),
        raw_text_items: Vec::new(),
        // The second run's look-back finds what the first could not yet list.
        runs: vec![
            RunSpec {
                until: start() + TimeDelta::days(1),
                since: None,
            },
            RunSpec {
                until: start() + TimeDelta::days(2),
                since: None,
            },
        ],
        provider_faults: None,
        mailbox_faults: None,
        crashes: Vec::new(),
        crash_by: Default::default(),
        concurrency: None,
        mailbox_profile: None,
        visibility: (!lags.is_empty()).then(|| mock_telemessage::dataset::Visibility {
            items: lags,
            ..Default::default()
        }),
    }
}
