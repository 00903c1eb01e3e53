//! What must happen to each item, computed from the mission's rules alone. It shares no
//! code with the connector: a shared bug would be invisible.
//!
//! Rules: per participant, the mapping file's address if it is a user with a mailbox,
//! else (automatic mapping on) the email property if it is; an item reaches every distinct
//! such mailbox, or is `unmapped`. An attachment above the limit is left out (and
//! reported); a message whose size is surely above the limit is `item_too_large`; one
//! whose size is near the limit may go either way. Raw (off-schema) items are
//! `invalid_item`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::model::Scenario;

/// What a landed message must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    pub sender: String,
    pub recipients: usize,
    pub sent_at: Option<DateTime<Utc>>,
    /// The subject must start with `DELETED` (deleted before export, or a deletion).
    pub deleted_marker: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    None,
    Present {
        size: u64,
    },
    Omitted {
        size: u64,
    },
    /// Its id is longer than a request can carry (over 2,048 bytes): left out, with a
    /// note, and reported as `attachment_unverifiable`.
    Unreachable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Deliver {
        mailboxes: BTreeSet<String>,
        attachment: Attachment,
        fields: Fields,
    },
    /// Close to the size limit: delivered with its attachment, or `item_too_large`.
    DeliverOrTooLarge {
        mailboxes: BTreeSet<String>,
        attachment: Attachment,
        fields: Fields,
    },
    Skip {
        reason: &'static str,
    },
}

/// The expected outcome of every source item, by item id.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub items: BTreeMap<String, Outcome>,
    /// The provider corrupts downloads on purpose: an attachment whose every try is
    /// corrupted may be left out as `attachment_unverifiable`, a reported outcome.
    pub downloads_may_fail: bool,
}

impl Expected {
    /// Deliveries that must happen (items near the limit not counted).
    pub fn deliveries(&self) -> usize {
        self.items
            .values()
            .map(|o| match o {
                Outcome::Deliver { mailboxes, .. } => mailboxes.len(),
                _ => 0,
            })
            .sum()
    }

    pub fn skips_by_reason(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for o in self.items.values() {
            match o {
                Outcome::Skip { reason } => *out.entry((*reason).to_owned()).or_default() += 1,
                Outcome::Deliver {
                    attachment: Attachment::Omitted { .. },
                    ..
                } => *out.entry("attachment_too_large".to_owned()).or_default() += 1,
                Outcome::Deliver {
                    attachment: Attachment::Unreachable,
                    ..
                } => *out.entry("attachment_unverifiable".to_owned()).or_default() += 1,
                _ => {}
            }
        }
        out
    }
}

/// `+` and the digits of a number as a mapping file or the provider may write it.
fn digits_of(raw: &str) -> String {
    let trimmed = raw.trim().trim_start_matches('\u{feff}');
    let mut digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if !trimmed.starts_with('+') && digits.starts_with("00") {
        digits = digits[2..].to_owned();
    }
    format!("+{digits}")
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            // A header carries only an ASCII address (RFC 5322 without SMTPUTF8).
            !local.is_empty()
                && domain.contains('.')
                && !s.contains(char::is_whitespace)
                && s.is_ascii()
                && s.len() <= 254
        }
        None => false,
    }
}

/// The mapping file as a simple reader sees it: header, then `phone,email` lines.
fn read_csv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() {
                return None;
            }
            // A quoted first field may hold commas; the email never does.
            let (phone, email) = line.rsplit_once(',')?;
            Some((
                digits_of(phone.trim().trim_matches('"')),
                email.trim().trim_matches('"').to_lowercase(),
            ))
        })
        .collect()
}

/// base64 with line breaks, as MIME writes an attachment.
fn base64_size(n: u64) -> u64 {
    n.div_ceil(3) * 4 * 78 / 76
}

pub fn expected(s: &Scenario) -> Expected {
    let valid: BTreeSet<String> = s
        .users
        .iter()
        .filter(|u| u.mailbox)
        .map(|u| u.upn.to_lowercase())
        .collect();
    let csv = s.mapping_csv.as_deref().map(read_csv).unwrap_or_default();
    let mailbox_of = |p: &Value| -> Option<String> {
        let phone = digits_of(p["phone"].as_str().unwrap_or_default());
        if let Some(address) = csv.get(&phone).filter(|a| valid.contains(*a)) {
            return Some(address.clone());
        }
        let email = p["user_email"].as_str().map(|e| e.trim().to_lowercase())?;
        (s.automatic_mapping && valid.contains(&email)).then_some(email)
    };
    let mut out = Expected {
        downloads_may_fail: s
            .provider_faults
            .as_ref()
            .and_then(|f| f["corrupt_download_rate"].as_f64())
            .is_some_and(|r| r > 0.0),
        ..Expected::default()
    };
    for raw in &s.raw_text_items {
        out.items.insert(
            raw.id.clone(),
            Outcome::Skip {
                reason: "invalid_item",
            },
        );
    }
    for raw in &s.raw_items {
        out.items.insert(
            raw["id"].as_str().unwrap_or_default().to_owned(),
            Outcome::Skip {
                reason: "invalid_item",
            },
        );
    }
    for item in &s.items {
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        let participants: Vec<&Value> = std::iter::once(&item["from"])
            .chain(item["to"].as_array().into_iter().flatten())
            .collect();
        let mailboxes: BTreeSet<String> =
            participants.iter().filter_map(|p| mailbox_of(p)).collect();
        if mailboxes.is_empty() {
            out.items.insert(id, Outcome::Skip { reason: "unmapped" });
            continue;
        }
        let kind = item["type"].as_str().unwrap_or_default();
        let from = &item["from"];
        let sender = match from["user_email"].as_str().map(str::trim) {
            Some(e) if looks_like_email(e) => e.to_lowercase(),
            // A number of more than 15 digits (E.164's most) is no number.
            _ => match &digits_of(from["phone"].as_str().unwrap_or_default())[1..] {
                d if d.is_empty() || d.len() > 15 => "unknown@whatsapp.invalid".to_owned(),
                d => format!("{d}@whatsapp.invalid"),
            },
        };
        let fields = Fields {
            sender,
            recipients: item["to"].as_array().map_or(0, Vec::len),
            // RFC 5322 dates have whole seconds; a send time no mail date can say (before
            // 1970, after 9999, or not a time) gives way to the archive time.
            sent_at: {
                let parse = |field: &str| {
                    item[field]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.to_utc())
                };
                parse("sent_at")
                    .filter(|t| (1970..=9999).contains(&chrono::Datelike::year(t)))
                    .or_else(|| parse("archived_at"))
                    .and_then(|t| DateTime::from_timestamp(t.timestamp(), 0))
            },
            deleted_marker: item.get("deleted").is_some_and(|d| !d.is_null()) || kind == "deletion",
        };
        let text_len = item["text"].as_str().map_or(0, str::len) as u64
            + item[kind]["caption"].as_str().map_or(0, str::len) as u64
            + item["edit"]["text"].as_str().map_or(0, str::len) as u64;
        let attachment_size = item[kind]["attachment"]["size"].as_u64();
        let attachment_id_len = item[kind]["attachment"]["id"].as_str().map_or(0, str::len);
        let attachment = match attachment_size {
            None => Attachment::None,
            Some(size) if size > s.size_limit => Attachment::Omitted { size },
            Some(_) if attachment_id_len > 2048 => Attachment::Unreachable,
            Some(size) => Attachment::Present { size },
        };
        let carried = match attachment {
            Attachment::Present { size } => base64_size(size),
            _ => 0,
        };
        // Text goes in twice (plain and HTML); encodings can triple it; headers and
        // the fixed lines stay under 64 KiB.
        let surely_larger = carried + 2 * text_len > s.size_limit;
        let surely_smaller = carried + 6 * text_len + 64 * 1024 <= s.size_limit;
        let outcome = if surely_larger {
            Outcome::Skip {
                reason: "item_too_large",
            }
        } else if surely_smaller {
            Outcome::Deliver {
                mailboxes,
                attachment,
                fields,
            }
        } else {
            Outcome::DeliverOrTooLarge {
                mailboxes,
                attachment,
                fields,
            }
        };
        out.items.insert(id, outcome);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_as_files_write_them() {
        assert_eq!(digits_of("+1 (617) 435-4634"), "+16174354634");
        assert_eq!(digits_of("0044 7700 900123"), "+447700900123");
        assert_eq!(digits_of("\u{feff}16174354634"), "+16174354634");
        let csv = read_csv("Mobile,Email\r\n\"+1 (617) 435-4634\", Alice@Contoso.example \r\n\r\n");
        assert_eq!(
            csv.get("+16174354634").map(String::as_str),
            Some("alice@contoso.example")
        );
    }
}
