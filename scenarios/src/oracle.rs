//! What must happen to each item, computed from the mission's rules alone. It shares no
//! code with the connector: a shared bug would be invisible.
//!
//! Rules: per participant, the mapping file's address if it is a user with a mailbox,
//! else (automatic mapping on) the email property if it is; an item reaches every distinct
//! such mailbox, or is `unmapped`. An attachment above the limit is left out (and
//! reported); a message whose size is surely above the limit is `item_too_large`; one
//! whose size is near the limit may go either way. Raw (off-schema) items are
//! `invalid_item`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::model::Scenario;

/// One copy of a string that many items name (a mailbox, an address, a conversation):
/// a million-item day names the same few thousand of them millions of times, and the
/// expected outcome of every item is held until the day is reconciled.
fn shared(s: &str) -> Arc<str> {
    static ALL: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    let mut all = ALL
        .get_or_init(Mutex::default)
        .lock()
        .expect("shared strings poisoned");
    match all.get(s) {
        Some(known) => known.clone(),
        None => {
            let new: Arc<str> = Arc::from(s);
            all.insert(new.clone());
            new
        }
    }
}

/// The mailboxes an item must land in (principal names, lower case): sorted, each once,
/// each name shared with every other item naming it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mailboxes(Box<[Arc<str>]>);

impl Mailboxes {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|m| &**m)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, mailbox: &str) -> bool {
        self.0.binary_search_by(|m| (**m).cmp(mailbox)).is_ok()
    }
}

impl FromIterator<String> for Mailboxes {
    fn from_iter<I: IntoIterator<Item = String>>(names: I) -> Self {
        let mut all: Vec<Arc<str>> = names.into_iter().map(|n| shared(&n)).collect();
        all.sort();
        all.dedup();
        Self(all.into_boxed_slice())
    }
}

impl<'a> IntoIterator for &'a Mailboxes {
    type Item = &'a str;
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Arc<str>>, fn(&Arc<str>) -> &str>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|m| &**m)
    }
}

/// What a landed message must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    pub sender: Arc<str>,
    /// The addresses of `To`, in order.
    pub recipients: Vec<Arc<str>>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The subject must start with `DELETED` (deleted before export, or a deletion).
    pub deleted_marker: bool,
    /// `<local@whatsapp-archiver.invalid>`, from the item id alone.
    pub message_id: String,
    /// The Message-IDs (without `<>`) `References` must give, in order: the earlier item
    /// of a reply, an edit, a reaction or a deletion; then, for a revision, the first
    /// content of its id.
    pub references: Vec<String>,
    /// What `In-Reply-To` must give: the first content of its id for a revision, else the
    /// earlier item, if any.
    pub in_reply_to: Option<String>,
    /// Lines the plain-text body must contain: the item's text or caption, each line with
    /// its control characters shown as symbols.
    pub text: Vec<String>,
    /// `X-WhatsApp-*` headers and the exact value each must have.
    pub headers: Vec<(&'static str, Arc<str>)>,
}

/// The host of every Message-ID (docs/email-format.md).
const MESSAGE_ID_HOST: &str = "whatsapp-archiver.invalid";

/// The Message-ID docs/email-format.md gives an item id: the id itself if it is made of
/// `A-Z a-z 0-9 . _ -` only (at most 200 bytes, no leading `x-`, no leading, trailing or
/// doubled dot); else `x-` and its bytes in hex; beyond 200 bytes `x-sha256-` and the hex
/// SHA-256 of its bytes.
pub fn message_id_of(item_id: &str) -> String {
    use sha2::Digest;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let plain_chars = item_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    let local = if item_id.len() > 200 {
        format!(
            "x-sha256-{}",
            hex(&sha2::Sha256::digest(item_id.as_bytes()))
        )
    } else if plain_chars
        && !item_id.is_empty()
        && !item_id.starts_with("x-")
        && !item_id.starts_with('.')
        && !item_id.ends_with('.')
        && !item_id.contains("..")
    {
        item_id.to_owned()
    } else {
        format!("x-{}", hex(item_id.as_bytes()))
    };
    format!("<{local}@{MESSAGE_ID_HOST}>")
}

/// The Message-ID of revision `n` of an item (docs/email-format.md): the item's own for
/// the first content, else `+rev<n>` added to its local part.
pub fn revision_message_id(item_id: &str, n: u32) -> String {
    let first = message_id_of(item_id);
    if n <= 1 {
        return first;
    }
    let bare = first.trim_matches(['<', '>']);
    let (local, host) = bare.split_once('@').unwrap_or((bare, MESSAGE_ID_HOST));
    format!("<{local}+rev{n}@{host}>")
}

/// The key of revision `n` (from 2) of an item among expected and landed items.
pub fn revision_key(item_id: &str, n: u32) -> String {
    if n <= 1 {
        item_id.to_owned()
    } else {
        format!("{item_id} (revision {n})")
    }
}

/// How the connector first lists a content, by the rules: by the window that holds its
/// archive time, or by the next run's look-back (`late_visible`), or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    /// In listing `n` of the scenario (listings numbered in the order runs make them).
    Normally(usize),
    Late(usize),
    Never,
}

impl Listed {
    /// Which listing first sees it, in the order they are made; never is last.
    fn order(self) -> usize {
        match self {
            Self::Normally(n) | Self::Late(n) => n,
            Self::Never => usize::MAX,
        }
    }
}

/// One listing the connector makes: the range of archive times it covers, when it is
/// made, and whether it is a look-back.
#[derive(Debug, Clone, Copy)]
struct Listing {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    at: DateTime<Utc>,
    look_back: bool,
}

/// The listings the connector makes, in order: for each run, first the look-back (24
/// hours before where the run starts, when an earlier run closed a window and the run
/// takes no `since`), then its windows up to its `until`.
fn listings(s: &Scenario) -> Vec<Listing> {
    let day = chrono::TimeDelta::hours(24);
    let mut out = Vec::new();
    let mut last_until: Option<DateTime<Utc>> = None;
    for run in &s.runs {
        let at = run.run_at();
        if let (Some(last), None) = (last_until, run.since) {
            out.push(Listing {
                from: last - day,
                to: last,
                at,
                look_back: true,
            });
        }
        let start = run.since.or(last_until).unwrap_or(run.until - day);
        if start < run.until {
            out.push(Listing {
                from: start,
                to: run.until,
                at,
                look_back: false,
            });
        }
        last_until = Some(last_until.map_or(run.until, |l| l.max(run.until)));
    }
    out
}

/// A line of text as the body shows it: control characters as their symbols (U+2400 and
/// on; DEL as U+2421; other control characters as U+FFFD), tabs kept.
/// Message text keeps its direction marks.
pub fn shown(line: &str) -> String {
    shown_as(line, false)
}

/// A name (of a person, a group) as the body shows it: as [`shown`], and every
/// direction-changing character (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to
/// U+2069) written as its code point, `[U+202E]`.
pub fn shown_name(name: &str) -> String {
    shown_as(name, true)
}

fn shown_as(line: &str, name: bool) -> String {
    let mut out = String::new();
    for c in line.chars() {
        match c {
            '\t' => out.push(c),
            '\u{0}'..='\u{1f}' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}')),
            '\u{7f}' => out.push('\u{2421}'),
            c if c.is_control() => out.push('\u{fffd}'),
            c if name && bidi(c) => out.push_str(&format!("[U+{:04X}]", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn bidi(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The address a header gives a participant: their email property if it can be written
/// in a header (ASCII, at most 254 characters), else one made of their number's digits
/// (`unknown` when there are none or more than E.164's 15).
fn header_address(p: &Value) -> String {
    match p["user_email"].as_str().map(str::trim) {
        Some(e) if looks_like_email(e) => e.to_lowercase(),
        _ => match &digits_of(p["phone"].as_str().unwrap_or_default())[1..] {
            d if d.is_empty() || d.len() > 15 => "unknown@whatsapp.invalid".to_owned(),
            d => format!("{d}@whatsapp.invalid"),
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    None,
    /// Attached, with exactly the provider's bytes (their SHA-256, lowercase hex).
    Present {
        size: u64,
        sha256: String,
    },
    Omitted {
        size: u64,
    },
    /// Its id is longer than a request can carry (over 2,048 bytes): left out, with a
    /// note, and reported as `attachment_unverifiable`.
    Unreachable,
    /// It fits the limit on its own, but its message surely would not: left out, with a
    /// note, and reported as `attachment_omitted_to_fit`; the rest is imported.
    OmittedToFit {
        size: u64,
    },
    /// Near the limit once encoded: carried intact, or left out to fit as above.
    PresentOrOmittedToFit {
        size: u64,
        sha256: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Deliver {
        mailboxes: Mailboxes,
        attachment: Attachment,
        fields: Fields,
    },
    /// Close to the size limit: delivered with its attachment, or `item_too_large`.
    DeliverOrTooLarge {
        mailboxes: Mailboxes,
        attachment: Attachment,
        fields: Fields,
    },
    Skip {
        reason: &'static str,
    },
    /// The provider made it visible too late for every listing the rules make (after the
    /// look-back of the next run, or after the last run): nothing can land.
    NeverListed,
}

/// The expected outcome of every source item, by item id; a later, different content of
/// an id (a revision) by [`revision_key`].
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub items: BTreeMap<String, Outcome>,
    /// Notices the report must give by provider id, though the item is delivered:
    /// `revised_item` for an id that came with new content, `late_visible` for one first
    /// found by a look-back.
    pub notices: BTreeMap<String, BTreeSet<&'static str>>,
    /// The provider corrupts downloads on purpose: an attachment whose every try is
    /// corrupted may be left out as `attachment_unverifiable`, a reported outcome.
    pub downloads_may_fail: bool,
    /// Mailboxes (principal names, lower case) a seeded fault disabled or whose user it
    /// deleted during the scenario, as the fake reports after the runs: a delivery there
    /// may be missing (the participant has no mailbox from then on, S9), and a failure
    /// or an `unmapped` skip because of it is reported, not lost.
    pub gone: BTreeSet<String>,
    /// For an item one of whose mailboxes went away: where the rules send it once that
    /// mailbox is no valid user (the mapping falls back, S8-S9). A copy there is allowed.
    pub gone_fallback: BTreeMap<String, BTreeSet<String>>,
    /// Source items the provider has (schema, raw and raw text items).
    pub source_items: usize,
    /// Item ids too long for their header, by the hex SHA-256 a cut header ends with
    /// (docs/email-format.md): how a landed copy is matched back to its item.
    pub long_ids: BTreeMap<String, String>,
}

impl Expected {
    /// Notes the mailboxes that went away mid-scenario (`gone`, in the order they went),
    /// and where the rules send each item that had one of them once they are no valid
    /// users: after the first went, after the first two, and so on (a participant's
    /// mapping may fall back to a mailbox that goes later).
    pub fn with_gone(mut self, scenario: &Scenario, gone: Vec<String>) -> Self {
        let mut without = scenario.clone();
        for upn in &gone {
            for user in &mut without.users {
                if user.upn.eq_ignore_ascii_case(upn) {
                    user.mailbox = false;
                }
            }
            let after = expected(&without);
            for (id, outcome) in &self.items {
                let (Outcome::Deliver { mailboxes, .. }
                | Outcome::DeliverOrTooLarge { mailboxes, .. }) = outcome
                else {
                    continue;
                };
                if mailboxes.iter().any(|m| gone.iter().any(|g| g == m))
                    && let Some(
                        Outcome::Deliver {
                            mailboxes: then, ..
                        }
                        | Outcome::DeliverOrTooLarge {
                            mailboxes: then, ..
                        },
                    ) = after.items.get(id)
                {
                    self.gone_fallback
                        .entry(id.clone())
                        .or_default()
                        .extend(then.iter().map(str::to_owned));
                }
            }
        }
        let gone: BTreeSet<String> = gone.into_iter().collect();
        self.gone = gone;
        self
    }
}

impl Expected {
    /// Adds what must happen to another part of the same day (the same directory, runs
    /// and faults; other items), for a day worked out part by part. Parts are
    /// independent only if no item id comes in two of them (no repeats, no revisions
    /// across parts): an id seen twice is refused.
    pub fn absorb(&mut self, part: Expected) -> anyhow::Result<()> {
        for (id, outcome) in part.items {
            if self.items.insert(id.clone(), outcome).is_some() {
                anyhow::bail!(
                    "item id {id:?} comes in two parts of the day: the parts are not independent"
                );
            }
        }
        self.notices.extend(part.notices);
        self.downloads_may_fail |= part.downloads_may_fail;
        self.gone.extend(part.gone);
        self.gone_fallback.extend(part.gone_fallback);
        self.source_items += part.source_items;
        self.long_ids.extend(part.long_ids);
        Ok(())
    }

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
        for notice in self.notices.values().flatten() {
            *out.entry((*notice).to_owned()).or_default() += 1;
        }
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
                Outcome::Deliver {
                    attachment: Attachment::OmittedToFit { .. },
                    ..
                } => {
                    *out.entry("attachment_omitted_to_fit".to_owned())
                        .or_default() += 1
                }
                _ => {}
            }
        }
        out
    }
}

/// What a day worked out part by part adds up to, kept while each part's outcomes are
/// dropped once counted: a load run draws its day again, part by part, to reconcile it
/// (`reconcile::Reconciliation`), rather than hold the outcome of a million items.
#[derive(Debug, Default)]
pub struct Tally {
    pub source_items: usize,
    pub deliveries: usize,
    /// See [`Expected::long_ids`]: what landed is matched back to items through them
    /// before any part is checked.
    pub long_ids: BTreeMap<String, String>,
    /// The first 16 bytes of each item id's SHA-256: an id that comes in two parts is
    /// refused, as [`Expected::absorb`] refuses it (16 bytes per item, not the ids).
    seen: HashSet<u128>,
}

impl Tally {
    pub fn add(&mut self, part: &Expected) -> anyhow::Result<()> {
        use sha2::Digest as _;
        for id in part.items.keys() {
            let digest = sha2::Sha256::digest(id.as_bytes());
            let mut key = [0u8; 16];
            key.copy_from_slice(&digest[..16]);
            if !self.seen.insert(u128::from_be_bytes(key)) {
                anyhow::bail!(
                    "item id {id:?} comes in two parts of the day: the parts are not independent"
                );
            }
        }
        self.source_items += part.source_items;
        self.deliveries += part.deliveries();
        self.long_ids
            .extend(part.long_ids.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(())
    }
}

/// `+` and the digits of a number as a mapping file or the provider may write it.
fn digits_of(raw: &str) -> String {
    number_in(raw, None)
}

/// The calling code of the regions scenarios use for national numbers.
fn calling_code(region: &str) -> Option<&'static str> {
    Some(match region.to_ascii_uppercase().as_str() {
        "GB" => "44",
        "FR" => "33",
        "DE" => "49",
        "NL" => "31",
        "US" | "CA" => "1",
        _ => return None,
    })
}

/// A mapping file's number as E.164, by the rule (docs/rules.md), in the oracle's own
/// words: a `(0)` after the country code is the trunk prefix and is dropped; `00` starts
/// an international number; a number without `+` or `00` in a file with a default region
/// is national: its leading trunk `0` goes and the region's calling code comes first.
fn number_in(raw: &str, region: Option<&str>) -> String {
    let trimmed = raw.trim().trim_start_matches('\u{feff}').trim();
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    if let Some(rest) = trimmed.strip_prefix('+') {
        return format!("+{}", digits(&rest.replacen("(0)", "", 1)));
    }
    let all = digits(trimmed);
    if let Some(rest) = all.strip_prefix("00") {
        return format!("+{rest}");
    }
    match region.and_then(calling_code) {
        Some(code) => format!("+{code}{}", all.strip_prefix('0').unwrap_or(&all)),
        None => format!("+{all}"),
    }
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
/// Spaces around a value are ignored, inside quotes too.
fn read_csv(text: &str, region: Option<&str>) -> BTreeMap<String, String> {
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
                number_in(phone.trim().trim_matches('"'), region),
                email.trim().trim_matches('"').trim().to_lowercase(),
            ))
        })
        .collect()
}

/// base64 with line breaks, as MIME writes an attachment.
fn base64_size(n: u64) -> u64 {
    n.div_ceil(3) * 4 * 78 / 76
}

/// Ids longer than a header carries (over 256 characters), by their hex SHA-256.
fn long_ids(s: &Scenario) -> BTreeMap<String, String> {
    use sha2::Digest;
    s.items
        .iter()
        .filter_map(|i| i["id"].as_str())
        .filter(|id| id.chars().count() > 256)
        .map(|id| {
            let digest: String = sha2::Sha256::digest(id.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (digest, id.to_owned())
        })
        .collect()
}

pub fn expected(s: &Scenario) -> Expected {
    let valid: BTreeSet<String> = s
        .users
        .iter()
        .filter(|u| u.mailbox)
        .map(|u| u.upn.to_lowercase())
        .collect();
    let csv = s
        .mapping_csv
        .as_deref()
        .map(|text| read_csv(text, s.mapping_default_region.as_deref()))
        .unwrap_or_default();
    let mailbox_of = |p: &Value| -> Option<String> {
        let phone = digits_of(p["phone"].as_str().unwrap_or_default());
        if let Some(address) = csv.get(&phone).filter(|a| valid.contains(*a)) {
            return Some(address.clone());
        }
        let email = p["user_email"].as_str().map(|e| e.trim().to_lowercase())?;
        (s.automatic_mapping && valid.contains(&email)).then_some(email)
    };
    // The catch-all mailbox for items no participant maps (an option beyond the
    // product description), if it names a valid user; else those items are skipped.
    let catch_all = s
        .unmapped_mailbox
        .as_deref()
        .map(|m| m.trim().to_lowercase())
        .filter(|m| valid.contains(m));
    let mut out = Expected {
        source_items: s.source_items(),
        long_ids: long_ids(s),
        downloads_may_fail: s.provider_faults.as_ref().is_some_and(|f| {
            // Every try of a download may be corrupted, cut short, a gateway's page or
            // empty.
            [
                "corrupt_download_rate",
                "reset_rate",
                "gateway_page_rate",
                "empty_download_rate",
            ]
            .iter()
            .any(|k| f[*k].as_f64().is_some_and(|r| r > 0.0))
        }),
        ..Expected::default()
    };
    // Each distinct content of an id, by when the connector first lists it; later
    // contents of an id are its revisions, numbered in that order.
    let visibility = s.visibility.clone().unwrap_or_default();
    let listings = listings(s);
    let listed = |item: &Value| -> Listed {
        let at = |f: &str| {
            item[f]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc())
        };
        let Some(archived) = at("archived_at") else {
            return Listed::Never;
        };
        let visible = archived + visibility.lag(item["id"].as_str().unwrap_or_default());
        listings
            .iter()
            .enumerate()
            .find(|(_, l)| l.from <= archived && archived < l.to && visible <= l.at)
            .map_or(Listed::Never, |(n, l)| {
                if l.look_back {
                    Listed::Late(n)
                } else {
                    Listed::Normally(n)
                }
            })
    };
    // Unreadable items are skipped as `invalid_item`, when a listing meets them at all (a
    // first run takes only the day before its end: what came earlier is never listed).
    // One whose archive time cannot be read is served among the others and always met.
    let met = |id: &str, archived_at: Option<String>| match archived_at {
        Some(t) if DateTime::parse_from_rfc3339(&t).is_ok() => {
            listed(&serde_json::json!({"id": id, "archived_at": t})) != Listed::Never
        }
        _ => true,
    };
    for raw in &s.raw_text_items {
        if met(&raw.id, Some(raw.archived_at.to_rfc3339())) {
            out.items.insert(
                raw.id.clone(),
                Outcome::Skip {
                    reason: "invalid_item",
                },
            );
        }
    }
    for raw in &s.raw_items {
        let id = raw["id"].as_str().unwrap_or_default();
        if met(id, raw["archived_at"].as_str().map(str::to_owned)) {
            out.items.insert(
                id.to_owned(),
                Outcome::Skip {
                    reason: "invalid_item",
                },
            );
        }
    }
    let mut contents: Vec<(usize, &Value, Listed)> = Vec::new();
    // The contents seen so far of each id (indices into `contents`): a big day is not
    // searched item by item.
    let mut by_id: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (index, item) in s.items.iter().enumerate() {
        let here = listed(item);
        let id = item["id"].as_str().unwrap_or_default();
        let same = by_id
            .get(id)
            .and_then(|known| known.iter().copied().find(|&k| contents[k].1 == item));
        match same {
            // An exact repeat: one item, listed as soon as either copy is.
            Some(k) => {
                if here.order() < contents[k].2.order() {
                    contents[k].2 = here;
                }
            }
            None => {
                by_id.entry(id).or_default().push(contents.len());
                contents.push((index, item, here));
            }
        }
    }
    let position = |c: &(usize, &Value, Listed)| {
        (
            c.2.order(),
            c.1["archived_at"].as_str().unwrap_or_default().to_owned(),
            c.1["id"].as_str().unwrap_or_default().to_owned(),
            c.0,
        )
    };
    contents.sort_by_key(position);
    let mut revisions: BTreeMap<String, u32> = BTreeMap::new();
    for (_, item, listing) in contents {
        let provider_id = item["id"].as_str().unwrap_or_default().to_owned();
        if listing == Listed::Never {
            out.items.insert(
                format!("{provider_id} (never listed)"),
                Outcome::NeverListed,
            );
            continue;
        }
        let revision = {
            let n = revisions.entry(provider_id.clone()).or_default();
            *n += 1;
            *n
        };
        if revision > 1 {
            out.notices
                .entry(provider_id.clone())
                .or_default()
                .insert("revised_item");
        }
        if matches!(listing, Listed::Late(_)) {
            out.notices
                .entry(provider_id.clone())
                .or_default()
                .insert("late_visible");
        }
        let id = provider_id.clone();
        let participants: Vec<&Value> = std::iter::once(&item["from"])
            .chain(item["to"].as_array().into_iter().flatten())
            .collect();
        let mut mailboxes: Mailboxes = participants.iter().filter_map(|p| mailbox_of(p)).collect();
        // No participant maps: the catch-all mailbox takes it, if it is a valid user.
        let to_catch_all = mailboxes.is_empty()
            && match &catch_all {
                Some(address) => {
                    mailboxes = std::iter::once(address.clone()).collect();
                    true
                }
                None => false,
            };
        if mailboxes.is_empty() {
            out.items.insert(
                revision_key(&id, revision),
                Outcome::Skip { reason: "unmapped" },
            );
            continue;
        }
        if to_catch_all {
            out.notices
                .entry(provider_id.clone())
                .or_default()
                .insert("unmapped_to_catch_all");
        }
        let kind = item["type"].as_str().unwrap_or_default();
        let text_of = |v: &Value| -> Vec<String> {
            v.as_str()
                .map(|t| {
                    t.split('\n')
                        .map(|l| shown(l.strip_suffix('\r').unwrap_or(l)))
                        .filter(|l| !l.trim().is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut text = text_of(&item["text"]);
        // Names are data: the body names the sender, and a group by its name, with
        // direction changes written out (a name cannot turn the text around it).
        let group_name = match item["conversation"]["type"].as_str() {
            Some("group") => &item["conversation"]["name"],
            _ => &Value::Null,
        };
        for name in [&item["from"]["name"], group_name] {
            if let Some(n) = name.as_str().filter(|n| !n.trim().is_empty()) {
                text.push(shown_name(n));
            }
        }
        text.extend(text_of(&item[kind]["caption"]));
        text.extend(text_of(&item["edit"]["text"]));
        let target = item[kind]["target_id"]
            .as_str()
            .filter(|_| matches!(kind, "reaction" | "edit" | "deletion"))
            .or(item["context"]["reply_to"].as_str());
        let header_value = |v: &str| {
            // Values a header shows as they are: no control character, no run of
            // spaces, not cut.
            (v.chars().count() <= 256
                && !v.chars().any(|c| c.is_control() || bidi(c))
                && v.trim() == v
                && !v.contains("  "))
            .then(|| v.to_owned())
        };
        let mut headers = vec![
            ("X-WhatsApp-Kind", shared(kind)),
            (
                "X-WhatsApp-Capture-Mode",
                shared(item["capture_mode"].as_str().unwrap_or_default()),
            ),
            (
                "X-WhatsApp-Conversation-Type",
                shared(item["conversation"]["type"].as_str().unwrap_or_default()),
            ),
        ];
        if let Some(at) = item["archived_at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            headers.push((
                "X-WhatsApp-Archived-At",
                Arc::from(
                    at.to_utc()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ),
            ));
        }
        if let Some(v) = header_value(&id) {
            headers.push(("X-WhatsApp-Item-Id", Arc::from(v)));
        }
        if revision > 1 {
            headers.push(("X-WhatsApp-Revision", Arc::from(revision.to_string())));
        }
        if let Some(v) = item["conversation"]["id"].as_str().and_then(header_value) {
            headers.push(("X-WhatsApp-Conversation-Id", shared(&v)));
        }
        if let Some(v) = item["conversation"]["name"].as_str().and_then(header_value) {
            headers.push(("X-WhatsApp-Conversation-Name", shared(&v)));
        }
        if let Some(v) = item[kind]["target_id"]
            .as_str()
            .filter(|_| matches!(kind, "reaction" | "edit" | "deletion"))
            .and_then(header_value)
        {
            headers.push(("X-WhatsApp-Target-Id", Arc::from(v)));
        }
        if let Some(v) = deleted_header(item, kind) {
            headers.push(("X-WhatsApp-Deleted", Arc::from(v)));
        }
        if let Some(v) = call_header(item, kind) {
            headers.push(("X-WhatsApp-Call", Arc::from(v)));
        }
        if to_catch_all {
            headers.push((
                "X-WhatsApp-Unmapped",
                shared("no participant maps to a Microsoft 365 mailbox; delivered to the catch-all mailbox"),
            ));
        }
        let fields = Fields {
            sender: shared(&header_address(&item["from"])),
            recipients: item["to"]
                .as_array()
                .into_iter()
                .flatten()
                .take(500)
                .map(|p| shared(&header_address(p)))
                .collect(),
            message_id: revision_message_id(&id, revision),
            references: target
                .map(|t| message_id_of(t).trim_matches(['<', '>']).to_owned())
                .into_iter()
                .chain(
                    (revision > 1).then(|| message_id_of(&id).trim_matches(['<', '>']).to_owned()),
                )
                .collect(),
            in_reply_to: if revision > 1 {
                Some(message_id_of(&id).trim_matches(['<', '>']).to_owned())
            } else {
                target.map(|t| message_id_of(t).trim_matches(['<', '>']).to_owned())
            },
            text,
            headers,
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
        let att = &item[kind]["attachment"];
        let attachment_id_len = att["id"].as_str().map_or(0, str::len);
        // The provider's SHA-256: as the item gives it, else that of the bytes its seed
        // makes (what the fake provider serves).
        let sha256 = att["sha256"]
            .as_str()
            .map(str::to_lowercase)
            .unwrap_or_else(|| {
                mock_telemessage::attachment::sha256_hex(
                    att["seed"].as_u64().unwrap_or_default(),
                    att["size"].as_u64().unwrap_or_default(),
                )
            });
        let attachment = match attachment_size {
            None => Attachment::None,
            Some(size) if size > s.size_limit => Attachment::Omitted { size },
            Some(_) if attachment_id_len > 2048 => Attachment::Unreachable,
            Some(size) => Attachment::Present { size, sha256 },
        };
        // Text goes in twice (plain and HTML); encodings can triple it; headers and
        // the fixed lines stay under 64 KiB.
        let surely_larger = |carried: u64| carried + 2 * text_len > s.size_limit;
        let surely_smaller = |carried: u64| carried + 6 * text_len + 64 * 1024 <= s.size_limit;
        // A file that fits on its own but not in its message (base64 makes it a third
        // larger) is left out, and the rest of the item is imported.
        let attachment = match attachment {
            Attachment::Present { size, .. } if surely_larger(base64_size(size)) => {
                Attachment::OmittedToFit { size }
            }
            Attachment::Present { size, sha256 } if !surely_smaller(base64_size(size)) => {
                Attachment::PresentOrOmittedToFit { size, sha256 }
            }
            other => other,
        };
        // Only a message too large without any attachment is imported nowhere.
        let surely_larger = surely_larger(0);
        let surely_smaller = surely_smaller(match &attachment {
            Attachment::Present { size, .. } => base64_size(*size),
            _ => 0,
        });
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
        out.items.insert(revision_key(&id, revision), outcome);
    }
    out
}

/// A time of the provider's as the headers write it: UTC, whole seconds.
fn header_time(v: &Value) -> Option<String> {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            t.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
}

/// `X-WhatsApp-Deleted` (docs/email-format.md): `scope=everyone|me; at=TIME`, for an item
/// deleted before the export (at its deletion time) or for a deletion that arrived later
/// (at its own send time). The first, if an item has both.
fn deleted_header(item: &Value, kind: &str) -> Option<String> {
    let scope_of = |v: &Value| {
        v.as_str()
            .filter(|s| matches!(*s, "everyone" | "me"))
            .map(str::to_owned)
    };
    if let Some(d) = item.get("deleted").filter(|d| !d.is_null()) {
        return Some(format!(
            "scope={}; at={}",
            scope_of(&d["scope"])?,
            header_time(&d["deleted_at"])?
        ));
    }
    (kind == "deletion").then_some(())?;
    Some(format!(
        "scope={}; at={}",
        scope_of(&item["deletion"]["scope"])?,
        header_time(&item["sent_at"])?
    ))
}

/// `X-WhatsApp-Call`: `media=voice|video; outcome=answered|missed|declined;
/// started=TIME; duration=SECONDS`.
fn call_header(item: &Value, kind: &str) -> Option<String> {
    (kind == "call").then_some(())?;
    let call = &item["call"];
    Some(format!(
        "media={}; outcome={}; started={}; duration={}",
        call["media"].as_str()?,
        call["outcome"].as_str()?,
        header_time(&call["started_at"])?,
        call["duration_seconds"].as_u64()?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_items_mailboxes_are_sorted_once_each_and_share_their_names() {
        let a: Mailboxes = ["carol@x.example", "al@x.example", "carol@x.example"]
            .map(str::to_owned)
            .into_iter()
            .collect();
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            ["al@x.example", "carol@x.example"]
        );
        assert_eq!(a.len(), 2);
        assert!(a.contains("al@x.example") && a.contains("carol@x.example"));
        assert!(!a.contains("bob@x.example") && !a.contains(""));
        let b: Mailboxes = std::iter::once("carol@x.example".to_owned()).collect();
        assert!(
            Arc::ptr_eq(&a.0[1], &b.0[0]),
            "one copy of a name for every item naming it"
        );
        assert!(Mailboxes::default().is_empty());
    }

    #[test]
    fn reads_numbers_as_files_write_them() {
        assert_eq!(digits_of("+1 (617) 435-4634"), "+16174354634");
        assert_eq!(digits_of("0044 7700 900123"), "+447700900123");
        assert_eq!(digits_of("\u{feff}16174354634"), "+16174354634");
        assert_eq!(digits_of("+44 (0)20 7946 0958"), "+442079460958");
        assert_eq!(number_in("020 7946 0958", Some("GB")), "+442079460958");
        assert_eq!(number_in("(617) 435-4634", Some("US")), "+16174354634");
        let csv = read_csv(
            "Mobile,Email\r\n\"+1 (617) 435-4634\",\" Alice@Contoso.example \"\r\n\r\n",
            None,
        );
        assert_eq!(
            csv.get("+16174354634").map(String::as_str),
            Some("alice@contoso.example")
        );
    }
}
