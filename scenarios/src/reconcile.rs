//! Compares what must happen (the oracle) with what landed (the mock mailbox's inspection
//! view) and what the connector reported, item by item.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Context as _;
use connector::RunReport;
use mock_mailbox::state::Placed;
use mock_mailbox::store::{Content, Opened};
use serde::Serialize;

use crate::conformance::Rules;
use crate::model::Scenario;
use crate::oracle::{Attachment, Expected, Fields, Outcome};

/// The folder every item must land in.
pub const FOLDER: &str = "WhatsApp Archiver";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

/// One discrepancy: the item, the mailbox, and which rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Finding {
    pub item_id: String,
    pub mailbox: Option<String>,
    pub detail: String,
}

/// A scenario's reconciliation (the fields of interfaces.md, and more).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub seed: Option<u64>,
    pub source_items: usize,
    pub expected_deliveries: usize,
    pub found_deliveries: usize,
    pub missing: Vec<Finding>,
    pub duplicates: Vec<Finding>,
    pub unexpected: Vec<Finding>,
    pub misplaced: Vec<Finding>,
    pub wrongly_skipped: Vec<Finding>,
    pub field_errors: Vec<Finding>,
    /// A delivered copy whose content differs from the item: text, attachment bytes,
    /// Message-ID, references, X-WhatsApp headers, the omission note, 7-bit headers.
    pub content_errors: Vec<Finding>,
    /// A run report whose accounting does not add up (planned deliveries = imported +
    /// imported without a file + already there + skipped + failed), per run and per
    /// window, or whose windows do not add up to the run.
    pub accounting_errors: Vec<Finding>,
    pub skipped_by_reason: BTreeMap<String, usize>,
    pub expected_skips_by_reason: BTreeMap<String, usize>,
    pub connector_failures: usize,
    /// Mailboxes a seeded fault disabled (or whose user it deleted) mid-scenario, and
    /// the expected deliveries to them that were not made (S9: no mailbox from then on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gone_mailboxes: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_delivered_to_gone: usize,
    pub verdict: Verdict,
    /// The command that replays this scenario.
    pub replay: String,
    /// Why the scenario could not be run to its end (its file unreadable, a connector
    /// run that errored): then nothing was reconciled and the verdict is a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The rules the connector was judged by, when not ours (`--rules core`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Rules>,
    /// Checks that could not be made, and why: a connector that writes no run report is
    /// judged by the mailboxes alone; the core rules leave our wording unchecked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<String>,
}

impl ScenarioReport {
    /// The report of a scenario that could not be run to its end: a failure, with why.
    pub fn errored(name: String, seed: Option<u64>, replay: String, error: String) -> Self {
        Self {
            verdict: Verdict::Fail,
            error: Some(error),
            ..Self::empty(name, seed, replay)
        }
    }

    /// A report with nothing found yet.
    pub(crate) fn empty(name: String, seed: Option<u64>, replay: String) -> Self {
        Self {
            name,
            seed,
            source_items: 0,
            expected_deliveries: 0,
            found_deliveries: 0,
            missing: Vec::new(),
            duplicates: Vec::new(),
            unexpected: Vec::new(),
            misplaced: Vec::new(),
            wrongly_skipped: Vec::new(),
            field_errors: Vec::new(),
            content_errors: Vec::new(),
            accounting_errors: Vec::new(),
            skipped_by_reason: BTreeMap::new(),
            expected_skips_by_reason: BTreeMap::new(),
            connector_failures: 0,
            gone_mailboxes: Vec::new(),
            not_delivered_to_gone: 0,
            verdict: Verdict::Pass,
            replay,
            error: None,
            rules: None,
            not_checked: Vec::new(),
        }
    }

    /// Each kind of finding, named as a person reads it, with its list.
    pub fn findings(&self) -> [(&'static str, &Vec<Finding>); 8] {
        [
            ("missing", &self.missing),
            ("duplicate", &self.duplicates),
            ("unexpected", &self.unexpected),
            ("misplaced", &self.misplaced),
            ("wrongly skipped", &self.wrongly_skipped),
            ("wrong field", &self.field_errors),
            ("wrong content", &self.content_errors),
            ("accounting", &self.accounting_errors),
        ]
    }

    pub fn problems(&self) -> usize {
        self.missing.len()
            + self.duplicates.len()
            + self.unexpected.len()
            + self.misplaced.len()
            + self.wrongly_skipped.len()
            + self.field_errors.len()
            + self.content_errors.len()
            + self.accounting_errors.len()
    }
}

/// One delivered copy: the mailbox, the folder it is in there, and its content in the
/// fake's store (its summary, shared by every mailbox holding the same bytes; the exact
/// bytes with `content.mime()`, read when asked: a big day's bytes are not all held at
/// once, and with `--retain summary` not at all). Only what the reconciliation asks is
/// kept, not the fake's whole entry: a big day has millions of copies.
#[derive(Debug, Clone)]
pub struct Copy {
    /// Shared by every copy in that mailbox.
    pub mailbox: Arc<str>,
    /// Its folder's name (shared by the folder's copies), or "Recoverable Items".
    pub folder: Arc<str>,
    content: Arc<Content>,
    /// In Recoverable Items.
    pub recoverable: bool,
    /// Deleted for good with the archive folder (a seeded fault), not one by one.
    pub deleted_with_archive_folder: bool,
    /// The fake's id of the message, kept only when its content has no Message-ID to
    /// name it by.
    unnamed_id: Option<Box<str>>,
}

impl Copy {
    fn of(mailbox: Arc<str>, placed: Placed) -> Self {
        let Placed {
            stored,
            folder,
            recoverable,
        } = placed;
        Self {
            mailbox,
            folder,
            recoverable,
            deleted_with_archive_folder: stored.deleted_with.as_deref() == Some(FOLDER),
            unnamed_id: match stored.content.internet_message_id() {
                Some(_) => None,
                None => Some(stored.id().into()),
            },
            content: stored.content,
        }
    }

    /// Its content in the fake's store (shared by every copy of the same bytes).
    pub fn content(&self) -> &Arc<Content> {
        &self.content
    }

    /// Its header section and text, read back from the fake's store, and the summary
    /// built from them.
    pub fn open(&self) -> Result<Opened, mock_mailbox::store::ReadError> {
        self.content().open()
    }

    /// What names it: its Message-ID, or the fake's id if it has none.
    pub fn name(&self) -> String {
        match (self.content.internet_message_id(), &self.unnamed_id) {
            (Some(id), _) => id.to_owned(),
            (None, Some(id)) => id.to_string(),
            (None, None) => String::new(),
        }
    }
}

/// Where each item landed: its copies, by item id, in id order. A sorted list rather than
/// a map: a big day has a million items, and each costs here its id, its copies and 32
/// bytes (a B-tree's entry, with its nodes' spare room, cost about twice that).
#[derive(Debug, Default)]
pub struct Landed {
    items: Vec<(Box<str>, Box<[Copy]>)>,
}

impl Landed {
    /// From each item's id and copies, in any order; one entry per id.
    fn new(mut items: Vec<(Box<str>, Box<[Copy]>)>) -> Self {
        items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Self { items }
    }

    /// The place of an item in the id order.
    fn position(&self, item_id: &str) -> Option<usize> {
        self.items
            .binary_search_by(|(id, _)| (**id).cmp(item_id))
            .ok()
    }

    /// An item's copies, if it landed anywhere.
    pub fn get(&self, item_id: &str) -> Option<&[Copy]> {
        self.position(item_id).map(|i| &*self.items[i].1)
    }

    /// Items that landed somewhere.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each item's id and copies, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Copy])> {
        self.items.iter().map(|(id, copies)| (&**id, &**copies))
    }

    /// The ids, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(id, _)| id)
    }

    /// Each item's copies, in id order.
    pub fn values(&self) -> impl Iterator<Item = &[Copy]> {
        self.iter().map(|(_, copies)| copies)
    }
}

impl std::ops::Index<&str> for Landed {
    type Output = [Copy];

    /// An item's copies; panics if it landed nowhere.
    fn index(&self, item_id: &str) -> &[Copy] {
        self.get(item_id)
            .unwrap_or_else(|| panic!("{item_id} landed nowhere"))
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every message of every mailbox, by the item id it carries. An id too long for its
/// header is written cut, ending with the SHA-256 of the whole id (docs/email-format.md);
/// it is matched back to the source item through that digest. A mailbox the inspection
/// view cannot show is an error, never an empty mailbox.
pub fn landed(
    scenario: &Scenario,
    long_ids: &BTreeMap<String, String>,
    mailbox: &mock_mailbox::State,
) -> anyhow::Result<Landed> {
    // The copies of one content (an item in several mailboxes) say the same: each
    // content's header section is read and decoded once. Each item's copies are kept in
    // a slot of their own, its id once; a big day has millions of copies.
    let mut slot_of_content: std::collections::HashMap<*const Content, u32> = Default::default();
    let mut slot_of_id: std::collections::HashMap<String, u32> = Default::default();
    let mut slots: Vec<Vec<Copy>> = Vec::new();
    // A user without a mailbox has nothing to show, and nothing can land there.
    for user in scenario.users.iter().filter(|u| u.mailbox) {
        let messages = mailbox.inspect_placed(&user.upn, true).ok_or_else(|| {
            anyhow::anyhow!(
                "the mock mailbox cannot show the mailbox of {}: its contents cannot be reconciled",
                user.upn
            )
        })?;
        let mailbox_name: Arc<str> = user.upn.to_lowercase().into();
        // A version Litigation Hold kept when a file was attached after import is the
        // hold's record, not a copy: the message lives on with its file.
        for m in messages.into_iter().filter(|m| !m.stored.replaced) {
            let content = Arc::as_ptr(&m.stored.content);
            let slot = match slot_of_content.get(&content) {
                Some(slot) => *slot,
                None => {
                    let id = item_id_of(&m.stored.content, long_ids).with_context(|| {
                        format!(
                            "the mock mailbox cannot read back a message of {}",
                            user.upn
                        )
                    })?;
                    let next = u32::try_from(slots.len()).context("over 4 billion items")?;
                    let slot = *slot_of_id.entry(id).or_insert(next);
                    if slot == next {
                        slots.push(Vec::new());
                    }
                    slot_of_content.insert(content, slot);
                    slot
                }
            };
            // Most items have two or three copies: no room kept for a fourth.
            let copies = &mut slots[slot as usize];
            copies.reserve_exact(1);
            copies.push(Copy::of(mailbox_name.clone(), m));
        }
    }
    drop(slot_of_content);
    let mut items = Vec::with_capacity(slot_of_id.len());
    for (id, slot) in slot_of_id {
        let copies = std::mem::take(&mut slots[slot as usize]);
        items.push((id.into_boxed_str(), copies.into_boxed_slice()));
    }
    Ok(Landed::new(items))
}

/// The item id (and revision) a Message-ID gives, read back as docs/email-format.md
/// writes it: `<local@host>`, the local part the id itself, or `x-` and the id's bytes in
/// hex, or `x-sha256-` and its digest; `+rev<n>` after it for a later content. The host
/// is the connector's own. A Message-ID that reads as none of these is kept whole (and
/// then matches no item).
fn item_of_message_id(
    message_id: &str,
    long_ids: &BTreeMap<String, String>,
) -> (String, Option<u32>) {
    let whole = || (message_id.to_owned(), None);
    let bare = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let Some((local, _host)) = bare.rsplit_once('@') else {
        return whole();
    };
    let (local, revision) = match local.rsplit_once("+rev") {
        Some((id, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (id, n.parse().ok())
        }
        _ => (local, None),
    };
    let id = if let Some(digest) = local.strip_prefix("x-sha256-") {
        match long_ids.get(digest) {
            Some(id) => id.clone(),
            None => return whole(),
        }
    } else if let Some(hex) = local.strip_prefix("x-") {
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
            })
            .collect();
        match bytes.and_then(|b| String::from_utf8(b).ok()) {
            Some(id) => id,
            None => return whole(),
        }
    } else {
        local.to_owned()
    };
    (id, revision)
}

/// The expected item a message carries: its `X-WhatsApp-Item-Id` (matched back to the
/// whole id through its digest if cut), else its Message-ID; a later content of an id (a
/// revision) is its own expected item.
fn item_id_of(
    content: &Content,
    long_ids: &BTreeMap<String, String>,
) -> Result<String, mock_mailbox::store::ReadError> {
    let headers = content.headers()?;
    let id = header(&headers, "X-WhatsApp-Item-Id")
        .map(|h| match h.rsplit_once("sha256=") {
            Some((_, digest)) if h.contains("[cut] sha256=") => long_ids
                .get(digest.trim())
                .cloned()
                .unwrap_or_else(|| h.to_owned()),
            _ => h.to_owned(),
        })
        .map(|id| (id, None));
    // A message without our header (another connector's) is known by its Message-ID.
    let (id, revision) = match id {
        Some(found) => found,
        None => item_of_message_id(content.internet_message_id().unwrap_or_default(), long_ids),
    };
    let revision = header(&headers, "X-WhatsApp-Revision")
        .and_then(|n| n.trim().parse().ok())
        .or(revision);
    let key = match revision {
        Some(n) => crate::oracle::revision_key(&id, n),
        None => id,
    };
    // A follow-up bringing a file the item's message went without is its own entry.
    Ok(if header(&headers, "X-WhatsApp-Completes").is_some() {
        format!("{key}{FILE_FOLLOW_UP}")
    } else {
        key
    })
}

/// Added to an item's key for the follow-ups that bring its owed file.
const FILE_FOLLOW_UP: &str = " (file follow-up)";

/// The follow-ups that bring an item's owed file (its download failed for good when its
/// message was built, and a later run fetched it): at most one per mailbox that takes the
/// item, in the archive folder, carrying the provider's very bytes. Only an item whose
/// file is delivered by the rules, in a scenario where downloads may fail, can owe one.
fn check_follow_ups(
    item_id: &str,
    mailboxes: &crate::oracle::Mailboxes,
    owed_possible: Option<&str>,
    landed: &Landed,
    checked: &mut [bool],
    r: &mut ScenarioReport,
) {
    let Some(at) = landed.position(&format!("{item_id}{FILE_FOLLOW_UP}")) else {
        return;
    };
    checked[at] = true;
    let finding = |mailbox: &str, detail: &str| Finding {
        item_id: item_id.to_owned(),
        mailbox: Some(mailbox.to_owned()),
        detail: detail.to_owned(),
    };
    let mut seen = BTreeSet::new();
    for c in landed.items[at].1.iter() {
        let Some(sha256) = owed_possible else {
            r.unexpected.push(finding(
                &c.mailbox,
                "a follow-up bringing a file, although this item's file cannot have been owed",
            ));
            continue;
        };
        if !mailboxes.iter().any(|m| m == &*c.mailbox) {
            r.unexpected.push(finding(
                &c.mailbox,
                "a file follow-up in a mailbox the item does not go to",
            ));
        } else if &*c.folder != FOLDER || c.recoverable {
            r.misplaced.push(finding(
                &c.mailbox,
                &format!("a file follow-up in folder {:?}, not {FOLDER:?}", c.folder),
            ));
        } else if !seen.insert(c.mailbox.clone()) {
            r.duplicates.push(finding(
                &c.mailbox,
                "two follow-ups bringing the same owed file",
            ));
        } else {
            match c.open() {
                Ok(o) if o.summary.attachments.iter().any(|a| a.sha256 == sha256) => {}
                Ok(_) => r.content_errors.push(finding(
                    &c.mailbox,
                    &format!(
                        "the file follow-up does not carry the provider's file (SHA-256 {sha256})"
                    ),
                )),
                Err(e) => r.content_errors.push(finding(
                    &c.mailbox,
                    &format!("the file follow-up cannot be read back: {e}"),
                )),
            }
        }
    }
}

/// Report reasons that describe a delivered item rather than a skip.
const NOTICES: [&str; 3] = ["revised_item", "late_visible", "unmapped_to_catch_all"];

/// The rule behind a skip reason, for people reading a failure.
fn rule_of(reason: &str) -> &'static str {
    match reason {
        "unmapped" => " (S10: no participant maps to a valid Microsoft 365 user)",
        "item_too_large" => " (S11: the message is above 10 MiB)",
        "attachment_too_large" => " (S11: the attachment is above 10 MiB)",
        "attachment_omitted_to_fit" => {
            " (S11: the attachment fits, its message would not; the rest is imported)"
        }
        "invalid_item" => " (bad data is reported, not imported)",
        _ => "",
    }
}

/// Checks one delivered copy, as read back (`opened`): the envelope fields (sender,
/// recipients, date, deletion marker, attachment presence) into `out.field_errors`, and
/// what the message carries (text, attachment bytes, Message-ID, references, X-WhatsApp
/// headers, the omission note, a 7-bit header block) into `out.content_errors`.
fn check_copy(
    item_id: &str,
    copy: &Copy,
    opened: &Result<Opened, String>,
    (fields, attachment): (&Fields, &Attachment),
    unverifiable_ok: bool,
    rules: Rules,
    out: &mut ScenarioReport,
) {
    let ours = rules == Rules::Ours;
    let (fields_out, content_out) = (&mut out.field_errors, &mut out.content_errors);
    let finding = |detail: String| Finding {
        item_id: item_id.to_owned(),
        mailbox: Some(copy.mailbox.to_string()),
        detail,
    };
    let Opened {
        summary: m,
        headers,
        head,
    } = match opened {
        Ok(opened) => opened,
        Err(e) => {
            content_out.push(finding(format!(
                "the copy cannot be read back from the mock mailbox: {e}"
            )));
            return;
        }
    };
    let mut field = |detail: String| fields_out.push(finding(detail));
    let sender = m
        .from
        .as_ref()
        .map(|f| f.address.to_lowercase())
        .unwrap_or_default();
    if !same_address(&sender, &fields.sender, rules) {
        field(format!(
            "sender is {sender}, the rules say {}",
            fields.sender
        ));
    }
    let recipients: Vec<String> = m.to.iter().map(|t| t.address.to_lowercase()).collect();
    if recipients.len() != fields.recipients.len()
        || !recipients
            .iter()
            .zip(&fields.recipients)
            .all(|(got, want)| same_address(got, want, rules))
    {
        field(format!(
            "To is [{}], the item's recipients are [{}]",
            recipients.join(", "),
            fields.recipients.join(", ")
        ));
    }
    if fields.sent_at.is_some() && m.date != fields.sent_at {
        field(format!(
            "Date {:?} is not the send time {:?}",
            m.date, fields.sent_at
        ));
    }
    if ours && fields.deleted_marker != m.subject.starts_with("DELETED") {
        field(format!(
            "subject {:?}: the deletion marker must be there exactly for deleted messages",
            short(&m.subject)
        ));
    }
    let omission = header(headers, "X-WhatsApp-Omitted-Attachment");
    let noted_in_body = m.body_text.contains("[Attachment left out:");
    let mut content = |detail: String| content_out.push(finding(detail));
    // The file is carried, with the provider's bytes. Answers whether a file of that size
    // is there at all.
    let carried = |size: u64, sha256: &str, content: &mut dyn FnMut(String)| match m
        .attachments
        .iter()
        .find(|a| a.size as u64 == size)
    {
        None => false,
        Some(a) => {
            if a.sha256 != sha256 {
                content(format!(
                    "attachment {} has SHA-256 {}, the provider's bytes have {sha256}: its content changed on the way",
                    short(&a.name),
                    a.sha256
                ));
            }
            true
        }
    };
    // The file is left out for `reason`: not attached, named in the header, said in the body.
    let left_out = |reason: &str,
                    attached: String,
                    no_header: &str,
                    field: &mut dyn FnMut(String),
                    content: &mut dyn FnMut(String)| {
        if !m.attachments.is_empty() {
            field(attached);
        }
        if !ours {
            return;
        }
        if omission.is_none_or(|h| !h.contains(reason)) {
            field(no_header.into());
        }
        if !noted_in_body {
            content("the body does not say that the attachment was left out".into());
        }
    };
    match attachment {
        Attachment::Present { size, sha256 } => {
            let left_out_unverified =
                unverifiable_ok && omission.is_some_and(|h| h.contains("attachment_unverifiable"));
            if !left_out_unverified && !carried(*size, sha256, &mut content) {
                field(format!(
                    "the {size}-byte attachment is missing (10 MiB rule: it fits)"
                ));
            }
        }
        Attachment::Omitted { size } => left_out(
            "attachment_too_large",
            format!("a {size}-byte attachment is above the limit and must be left out"),
            "the omitted attachment has no X-WhatsApp-Omitted-Attachment note",
            &mut field,
            &mut content,
        ),
        Attachment::OmittedToFit { size } => left_out(
            "attachment_omitted_to_fit",
            format!(
                "a {size}-byte attachment whose message would exceed the limit must be left out"
            ),
            "the attachment left out to fit has no X-WhatsApp-Omitted-Attachment note",
            &mut field,
            &mut content,
        ),
        Attachment::PresentOrOmittedToFit { size, sha256 } => {
            let noted = omission.is_some_and(|h| h.contains("attachment_omitted_to_fit"));
            if !carried(*size, sha256, &mut content) {
                if ours && !noted {
                    field(format!(
                        "the {size}-byte attachment is neither carried nor noted as left out to fit"
                    ));
                } else if ours && !noted_in_body {
                    content("the body does not say that the attachment was left out".into());
                }
            }
        }
        Attachment::Unreachable => left_out(
            "attachment_unverifiable",
            "an attachment whose id no request can carry cannot have been fetched".into(),
            "the unreachable attachment has no X-WhatsApp-Omitted-Attachment note",
            &mut field,
            &mut content,
        ),
        Attachment::None => {}
    }
    if !m
        .internet_message_id
        .as_deref()
        .is_some_and(|got| same_message_id(got, &fields.message_id, rules))
    {
        content(format!(
            "Message-ID is {:?}; the item id gives {} (the same in every mailbox and run)",
            m.internet_message_id.as_deref().map(short),
            short(&fields.message_id)
        ));
    }
    let in_reply_to: Vec<String> = fields.in_reply_to.iter().cloned().collect();
    let same_ids = |got: &[String], want: &[String]| {
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|(g, w)| same_message_id(g, w, rules))
    };
    if !same_ids(&m.in_reply_to, &in_reply_to) || !same_ids(&m.references, &fields.references) {
        content(format!(
            "In-Reply-To {:?} and References {:?}; the rules say {:?} and {:?}",
            m.in_reply_to, m.references, in_reply_to, fields.references
        ));
    }
    for line in &fields.text {
        if !m.body_text.contains(line.as_str()) {
            content(format!("the body lacks the item's text {:?}", short(line)));
            break;
        }
    }
    for (name, value) in fields.headers.iter().filter(|_| ours) {
        match header(headers, name) {
            Some(v) if v == &**value => {}
            found => content(format!(
                "{name} is {:?}, the item says {:?}",
                found.map(short),
                short(value)
            )),
        }
    }
    if let Some(pos) = head.iter().position(|&b| {
        !b.is_ascii() || (b < 0x20 && !matches!(b, b'\r' | b'\n' | b'\t')) || b == 0x7f
    }) {
        content(format!(
            "header byte {pos} is {:#04x}: every header must be 7-bit, without control characters",
            head[pos]
        ));
    }
}

/// Whether an address in a copy is the one the rules give: the same address; under the
/// core rules, for a participant with no email property (our `whatsapp.invalid`
/// address), the same number before the `@` whatever the domain.
fn same_address(got: &str, want: &str, rules: Rules) -> bool {
    match want.strip_suffix("@whatsapp.invalid") {
        Some(number) if rules == Rules::Core => got
            .rsplit_once('@')
            .is_some_and(|(local, _)| local.trim_start_matches('+') == number),
        _ => got == want,
    }
}

/// Whether a Message-ID is the one the item id gives: the same; under the core rules,
/// the same local part (docs/email-format.md) whatever the host after the `@`.
fn same_message_id(got: &str, want: &str, rules: Rules) -> bool {
    let local = |id: &str| {
        let id = id.trim().trim_start_matches('<').trim_end_matches('>');
        id.rsplit_once('@')
            .map_or(id, |(local, _)| local)
            .to_owned()
    };
    got.trim_matches(['<', '>']) == want.trim_matches(['<', '>'])
        || (rules == Rules::Core && local(got) == local(want))
}

/// Reconciles one scenario.
pub fn reconcile(
    scenario: &Scenario,
    expected: &Expected,
    landed: &Landed,
    reports: &[RunReport],
    replay: String,
) -> ScenarioReport {
    let mut reconciliation =
        Reconciliation::new(scenario, expected.gone.clone(), landed, reports, replay);
    reconciliation.check_part(expected);
    reconciliation.finish()
}

/// A reconciliation that takes the expected outcome part by part
/// ([`Reconciliation::check_part`], each part's items once), so that a day's outcomes
/// need not all be held at once; what landed and the run reports are the whole day's.
/// [`reconcile`] is the same with the whole day as one part. What is not any part's,
/// a copy of no source item or a notice for none, is found by [`Reconciliation::finish`].
#[derive(Debug)]
pub struct Reconciliation<'a> {
    scenario: &'a Scenario,
    landed: &'a Landed,
    reports: &'a [RunReport],
    /// Mailboxes that went away mid-scenario (the whole day's, see [`Expected::gone`]).
    gone: BTreeSet<String>,
    /// Skips the reports give, by provider id.
    reported: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// Notices the reports give, by provider id.
    noticed: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// Whether some part had each item of `landed` (by its place there).
    checked: Vec<bool>,
    /// Findings about notices, by provider id; given in id order at the end.
    notices: BTreeMap<String, Option<Finding>>,
    quarantine: Vec<Finding>,
    /// Held items (and items for a person) that wait only for mailboxes gone away.
    held_for_gone: usize,
    /// Whether the connector wrote a run report for every run: else the checks that
    /// need one are not made ([`Reconciliation::judged`]).
    have_reports: bool,
    rules: Rules,
    r: ScenarioReport,
}

impl<'a> Reconciliation<'a> {
    pub fn new(
        scenario: &'a Scenario,
        gone: BTreeSet<String>,
        landed: &'a Landed,
        reports: &'a [RunReport],
        replay: String,
    ) -> Self {
        let mut reported: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut noticed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut skipped_by_reason = BTreeMap::new();
        for s in reports.iter().flat_map(|r| &r.skipped) {
            // Notices about delivered items (a revision, an item listed late) are checked
            // apart from skips.
            let into = if NOTICES.contains(&s.reason.as_str()) {
                &mut noticed
            } else {
                &mut reported
            };
            if into.entry(&s.item_id).or_default().insert(&s.reason) {
                *skipped_by_reason.entry(s.reason.clone()).or_default() += 1;
            }
        }
        let r = ScenarioReport {
            accounting_errors: check_accounting(reports),
            skipped_by_reason,
            gone_mailboxes: gone.iter().cloned().collect(),
            ..ScenarioReport::empty(scenario.name.clone(), scenario.seed, replay)
        };
        Self {
            scenario,
            landed,
            reports,
            gone,
            reported,
            noticed,
            checked: vec![false; landed.len()],
            notices: BTreeMap::new(),
            quarantine: Vec::new(),
            held_for_gone: 0,
            have_reports: true,
            rules: Rules::Ours,
            r,
        }
    }

    /// Judges a connector under `rules`; `have_reports` says whether it wrote a run
    /// report for every run. Without them, skips, notices, the quarantine and the
    /// accounting are not checked (and an item the rules let go as too large may be
    /// absent unreported); the report says which checks were not made.
    pub fn judged(mut self, rules: Rules, have_reports: bool) -> Self {
        self.rules = rules;
        self.have_reports = have_reports;
        self.r.not_checked = crate::conformance::not_checked(rules, have_reports);
        self.r.rules = (rules != Rules::Ours).then_some(rules);
        self
    }

    /// Checks the items of one part: each item's copies, skips and notices, and its
    /// quarantine if the provider sent it unreadable. No item may come in two parts.
    pub fn check_part(&mut self, part: &Expected) {
        let Self {
            scenario,
            landed,
            reports,
            gone,
            reported,
            noticed,
            checked,
            notices,
            quarantine,
            held_for_gone,
            have_reports,
            rules,
            r,
        } = self;
        let (have_reports, rules) = (*have_reports, *rules);
        let (landed, reports): (&'a Landed, &'a [RunReport]) = (landed, reports);
        r.source_items += part.source_items;
        r.expected_deliveries += part.deliveries();
        for (reason, n) in part.skips_by_reason() {
            *r.expected_skips_by_reason.entry(reason).or_default() += n;
        }
        // What the last run left undone for want of a mailbox that went away mid-scenario
        // (a seeded fault) is reported, not lost: an item held only for such mailboxes.
        let only_for_gone = |item_id: &str| -> bool {
            // The report names a later content of an id as "<id> revision <n>".
            let item_id = match item_id
                .rsplit_once(" revision ")
                .and_then(|(id, n)| Some((id, n.parse::<u32>().ok()?)))
            {
                Some((id, n)) => crate::oracle::revision_key(id, n),
                None => item_id.to_owned(),
            };
            let item_id = item_id.as_str();
            !gone.is_empty()
                && match part.items.get(item_id) {
                    Some(
                        Outcome::Deliver { mailboxes, .. }
                        | Outcome::DeliverOrTooLarge { mailboxes, .. },
                    ) => {
                        let copies = landed.get(item_id);
                        mailboxes.iter().all(|m| {
                            gone.contains(m)
                                || copies.is_some_and(|c| c.iter().any(|c| &*c.mailbox == m))
                        })
                    }
                    _ => false,
                }
        };
        *held_for_gone += reports.last().map_or(0, |last| {
            last.held
                .iter()
                .chain(&last.needs_person)
                .filter(|h| only_for_gone(&h.item_id))
                .count()
        });
        for (item_id, outcome) in &part.items {
            let copies: &[Copy] = match landed.position(item_id) {
                Some(at) => {
                    checked[at] = true;
                    &landed.items[at].1
                }
                None => &[],
            };
            // The report names an item by the provider's id, whichever content it is.
            let provider_id = item_id.split(" (revision ").next().unwrap_or(item_id);
            let reasons = reported.get(provider_id).cloned().unwrap_or_default();
            let finding = |mailbox: Option<&str>, detail: String| Finding {
                item_id: item_id.clone(),
                mailbox: mailbox.map(str::to_owned),
                detail,
            };
            let (mailboxes, attachment, fields) = match outcome {
                Outcome::NeverListed => {
                    for c in copies {
                        r.unexpected.push(finding(
                            Some(&c.mailbox),
                            "landed although the provider made it visible after every listing the rules make".into(),
                        ));
                    }
                    continue;
                }
                Outcome::Skip { reason } => {
                    for c in copies {
                        r.unexpected.push(finding(
                            Some(&c.mailbox),
                            format!(
                                "landed in {} although the rules skip it as {reason}{}",
                                c.folder,
                                rule_of(reason)
                            ),
                        ));
                    }
                    if have_reports && !reasons.contains(reason) {
                        r.wrongly_skipped.push(finding(
                            None,
                            format!(
                                "must be reported as {reason}{}; the connector reported {reasons:?}",
                                rule_of(reason)
                            ),
                        ));
                    }
                    continue;
                }
                Outcome::DeliverOrTooLarge { .. }
                    if copies.is_empty()
                        && (!have_reports || reasons.contains("item_too_large")) =>
                {
                    continue;
                }
                Outcome::Deliver {
                    mailboxes,
                    attachment,
                    fields,
                }
                | Outcome::DeliverOrTooLarge {
                    mailboxes,
                    attachment,
                    fields,
                } => (mailboxes, attachment, fields),
            };
            for reason in &reasons {
                // Every mailbox of the item went away before the connector planned it.
                let all_gone = !gone.is_empty() && mailboxes.iter().all(|m| gone.contains(m));
                let allowed = (*reason == "unmapped" && all_gone)
                    || (*reason == "attachment_too_large"
                        && matches!(attachment, Attachment::Omitted { .. }))
                    || (*reason == "attachment_unverifiable"
                        && (matches!(attachment, Attachment::Unreachable)
                            || (part.downloads_may_fail
                                && matches!(attachment, Attachment::Present { .. }))))
                    || (*reason == "attachment_omitted_to_fit"
                        && matches!(
                            attachment,
                            Attachment::OmittedToFit { .. }
                                | Attachment::PresentOrOmittedToFit { .. }
                        ));
                if !allowed {
                    r.wrongly_skipped.push(finding(
                        None,
                        format!(
                            "reported as {reason}, but the rules deliver it to {}",
                            mailboxes.iter().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            // An item none of whose mailboxes was left to take it was never built.
            let never_built =
                copies.is_empty() && !gone.is_empty() && mailboxes.iter().all(|m| gone.contains(m));
            if have_reports
                && !never_built
                && ((matches!(attachment, Attachment::Omitted { .. })
                    && !reasons.contains("attachment_too_large"))
                    || (matches!(attachment, Attachment::Unreachable)
                        && !reasons.contains("attachment_unverifiable"))
                    || (matches!(attachment, Attachment::OmittedToFit { .. })
                        && !reasons.contains("attachment_omitted_to_fit")))
            {
                r.wrongly_skipped.push(finding(
                    None,
                    "its attachment was left out but the report does not say so".into(),
                ));
            }
            // An item's copies usually carry the same bytes: read back once for all of them.
            let mut last: Option<(*const Content, Result<Opened, String>)> = None;
            for mailbox in mailboxes {
                let here: Vec<&Copy> = copies.iter().filter(|c| &*c.mailbox == mailbox).collect();
                let in_folder: Vec<&&Copy> = here
                    .iter()
                    .filter(|c| &*c.folder == FOLDER && !c.recoverable)
                    .collect();
                // Delivered, then deleted for good with the archive folder by a person (a
                // seeded fault): the connector's part was done.
                let deleted_with_folder: Vec<&&Copy> = here
                    .iter()
                    .filter(|c| c.recoverable && c.deleted_with_archive_folder)
                    .collect();
                let deleted_only = in_folder.is_empty()
                    && !deleted_with_folder.is_empty()
                    && deleted_with_folder.len() == here.len();
                match in_folder.len() {
                    0 if deleted_only => r.found_deliveries += 1,
                    // The participant has had no mailbox since it went away (S9).
                    0 if here.is_empty() && gone.contains(mailbox) => {
                        r.not_delivered_to_gone += 1
                    }
                    0 if here.is_empty() => r
                        .missing
                        .push(finding(
                            Some(mailbox),
                            "not delivered, but the mapping rule (S7-S9: file first, then email property) sends it here".into(),
                        )),
                    0 => r.misplaced.push(finding(
                        Some(mailbox),
                        format!("in folder {:?}, not {FOLDER:?}", here[0].folder),
                    )),
                    n => {
                        r.found_deliveries += 1;
                        if n > 1 {
                            r.duplicates
                                .push(finding(Some(mailbox), format!("{n} copies; an item lands once per mailbox, whatever the retries or crashes")));
                        }
                    }
                }
                let delivered = if deleted_only {
                    &deleted_with_folder
                } else {
                    &in_folder
                };
                for copy in delivered {
                    // S11: no message above the limit lands, whatever the connector's
                    // own idea of the limit.
                    let len = copy.content().len as u64;
                    if len > scenario.size_limit {
                        r.content_errors.push(finding(
                            Some(mailbox),
                            format!(
                                "the message is {len} bytes, above the limit of {} (S11)",
                                scenario.size_limit
                            ),
                        ));
                    }
                    let content = Arc::as_ptr(copy.content());
                    let opened = match &last {
                        Some((known, opened)) if *known == content => opened,
                        _ => {
                            let opened = copy.open().map_err(|e| e.to_string());
                            &last.insert((content, opened)).1
                        }
                    };
                    check_copy(
                        item_id,
                        copy,
                        opened,
                        (fields, attachment),
                        part.downloads_may_fail,
                        rules,
                        r,
                    );
                }
                if here.len() > in_folder.len() + deleted_with_folder.len() && !in_folder.is_empty()
                {
                    r.misplaced.push(finding(
                        Some(mailbox),
                        "also copied outside the archive folder".into(),
                    ));
                }
            }
            let owed_possible = match attachment {
                Attachment::Present { sha256, .. } if part.downloads_may_fail => {
                    Some(sha256.as_str())
                }
                _ => None,
            };
            check_follow_ups(item_id, mailboxes, owed_possible, landed, checked, r);
            let fallback = part.gone_fallback.get(item_id);
            for c in copies {
                if !mailboxes.contains(&c.mailbox)
                    && !fallback.is_some_and(|f| f.contains(&*c.mailbox))
                {
                    r.unexpected.push(finding(
                        Some(&c.mailbox),
                        format!(
                            "landed in {} ({}) although the mapping rule (S7-S9: file first, then email property) maps no participant there",
                            c.mailbox, c.folder
                        ),
                    ));
                }
            }
        }
        if !have_reports {
            return;
        }
        for (id, want) in &part.notices {
            let got = noticed.get(id.as_str()).cloned().unwrap_or_default();
            let want: BTreeSet<&str> = want.iter().copied().collect();
            notices.insert(id.clone(), notice_finding(id, &got, &want));
        }
        check_quarantine(scenario, part, reports, quarantine);
    }

    /// The verdict, once every part is checked: copies of no part's item are unexpected,
    /// notices for no part's item are wrong, and the last run's failures count.
    pub fn finish(self) -> ScenarioReport {
        let Self {
            landed,
            reports,
            gone,
            noticed,
            checked,
            mut notices,
            quarantine,
            held_for_gone,
            mut r,
            ..
        } = self;
        for ((item_id, copies), checked) in landed.iter().zip(checked) {
            if !checked {
                for c in copies {
                    r.unexpected.push(Finding {
                        item_id: item_id.to_owned(),
                        mailbox: Some(c.mailbox.to_string()),
                        detail: "no such source item".into(),
                    });
                }
            }
        }
        for (id, got) in &noticed {
            if !notices.contains_key(*id) {
                notices.insert((*id).to_owned(), notice_finding(id, got, &BTreeSet::new()));
            }
        }
        r.wrongly_skipped.extend(notices.into_values().flatten());
        r.wrongly_skipped.extend(quarantine);
        // What the last run left undone: failed deliveries, items still held for later
        // runs, and items that need a person; not those that wait only for mailboxes
        // gone away (a seeded fault), which are reported, not lost.
        r.connector_failures = reports.last().map_or(0, |last| {
            last.failed
                .iter()
                .filter(|f| {
                    !f.mailbox
                        .as_ref()
                        .is_some_and(|m| gone.contains(&m.to_lowercase()))
                })
                .count()
                + last.held.len()
                + last.needs_person.len()
                - held_for_gone
        });
        if r.problems() > 0 || r.connector_failures > 0 {
            r.verdict = Verdict::Fail;
        }
        r
    }
}

/// A finding if the notices a report gives for an id are not those the rules say.
fn notice_finding(id: &str, got: &BTreeSet<&str>, want: &BTreeSet<&str>) -> Option<Finding> {
    (got != want).then(|| Finding {
        item_id: id.to_owned(),
        mailbox: None,
        detail: format!(
            "the report gives the notices {got:?}; the rules say {want:?} (a later content of an id is `revised_item`, an item found by the look-back `late_visible`)"
        ),
    })
}

/// Each run report's accounting must add up, run and windows alike, and its windows may
/// not account for more than the run (held items retried make up the difference).
fn check_accounting(reports: &[RunReport]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (n, report) in reports.iter().enumerate() {
        let mut finding = |detail: String| {
            out.push(Finding {
                item_id: format!("(run {})", n + 1),
                mailbox: None,
                detail,
            })
        };
        let run = &report.accounting;
        if !adds_up(run) {
            finding(format!(
                "the run's accounting does not add up: {}",
                run.line()
            ));
        }
        let (mut planned, mut items) = (0u64, 0u64);
        for w in &report.windows {
            if !adds_up(&w.accounting) {
                finding(format!(
                    "window {} .. {} does not add up: {}",
                    w.since,
                    w.until,
                    w.accounting.line()
                ));
            }
            planned += w.accounting.planned;
            items += w.accounting.items;
        }
        if planned > run.planned || items > run.items {
            finding(format!(
                "the windows account for more than the run: {planned} deliveries planned of {items} items, against {}",
                run.line()
            ));
        }
        let imported = run.delivered + run.delivered_without_attachment;
        if imported != report.deliveries || run.already_there != report.already_delivered {
            finding(format!(
                "the accounting says {imported} imported and {} already there; the report says {} and {}",
                run.already_there, report.deliveries, report.already_delivered
            ));
        }
    }
    out
}

/// The report's equation (`docs/rules.md`), counted here rather than by the connector's
/// own `Accounting::adds_up`, which a connector that got it wrong would get wrong the
/// same way: every planned delivery has exactly one outcome.
fn adds_up(a: &connector::report::Accounting) -> bool {
    let skipped: u64 = a.skipped.values().sum();
    a.planned == a.delivered + a.delivered_without_attachment + a.already_there + skipped + a.failed
}

/// Every item the provider sent that cannot be read must be kept, exactly as sent, in the
/// connector's quarantine: nothing the provider sent is lost, even when it is unreadable.
/// (Those the connector never lists, as before its first run's day, it never sees.)
fn check_quarantine(
    scenario: &Scenario,
    expected: &Expected,
    reports: &[RunReport],
    out: &mut Vec<Finding>,
) {
    let sent = scenario
        .raw_text_items
        .iter()
        .map(|r| (r.id.clone(), r.json.clone()))
        .chain(scenario.raw_items.iter().map(|v| {
            (
                v["id"].as_str().unwrap_or_default().to_owned(),
                v.to_string(),
            )
        }))
        .filter(|(id, _)| expected.items.contains_key(id));
    for (id, text) in sent {
        let kept = reports
            .iter()
            .flat_map(|r| &r.quarantined)
            .find(|q| q.item_id.as_deref() == Some(id.as_str()));
        let problem = match kept {
            None => Some("is not in the quarantine of any run report".to_owned()),
            Some(q) => match std::fs::read(&q.file) {
                Ok(bytes) if bytes == text.as_bytes() => None,
                Ok(bytes) => Some(format!(
                    "its quarantine file {} holds {} bytes that differ from the {} the provider sent",
                    q.file,
                    bytes.len(),
                    text.len()
                )),
                Err(e) => Some(format!(
                    "its quarantine file {} cannot be read: {e}",
                    q.file
                )),
            },
        };
        if let Some(problem) = problem {
            out.push(Finding {
                item_id: id,
                mailbox: None,
                detail: format!("unreadable item {problem} (bad input is kept, never lost)"),
            });
        }
    }
}

/// A value for a person to read: as it is up to 80 characters, else its start and its
/// length (hostile data can carry ids and names of tens of thousands of characters).
pub fn short(value: &str) -> String {
    let n = value.chars().count();
    if n <= 80 {
        value.to_owned()
    } else {
        format!(
            "{}...({n} characters)",
            value.chars().take(60).collect::<String>()
        )
    }
}

/// A stable, readable outcome of a scenario, one line per source item, sorted by id: the
/// mailboxes it landed in (folder named when it is not the archive folder) and what it
/// carried, or why it was skipped. For snapshots: any change in what lands is a changed
/// line a reviewer can read.
pub fn outcome_summary(landed: &Landed, reports: &[RunReport]) -> String {
    let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (item_id, copies) in landed.iter() {
        let mut places: Vec<String> = copies
            .iter()
            .map(|c| {
                if &*c.folder == FOLDER {
                    c.mailbox.to_string()
                } else {
                    format!("{} ({})", c.mailbox, c.folder)
                }
            })
            .collect();
        places.sort();
        let mut carried: Vec<String> = copies[0]
            .content()
            .attachments()
            .iter()
            .map(|a| format!("{} {}B {}", short(&a.name), a.size, &a.sha256[..12]))
            .collect();
        match copies[0].content().headers() {
            Ok(headers) => {
                if let Some(h) = header(&headers, "X-WhatsApp-Omitted-Attachment") {
                    let reason = h.rsplit("reason=").next().unwrap_or_default();
                    carried.push(format!("attachment omitted ({reason})"));
                }
            }
            Err(e) => carried.push(format!("cannot be read back: {e}")),
        }
        let carried = if carried.is_empty() {
            String::new()
        } else {
            format!(" | {}", carried.join(", "))
        };
        lines
            .entry(short(item_id))
            .or_default()
            .push(format!("-> {}{carried}", places.join(", ")));
    }
    let mut skips = BTreeSet::new();
    for s in reports.iter().flat_map(|r| &r.skipped) {
        skips.insert((short(&s.item_id), s.reason.clone()));
    }
    for (id, reason) in skips {
        lines
            .entry(id)
            .or_default()
            .push(format!("skipped {reason}"));
    }
    let mut out = String::new();
    for (id, parts) in lines {
        out.push_str(&format!("{id}: {}\n", parts.join("; ")));
    }
    out
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod accounting_tests {
    use super::*;

    fn report() -> RunReport {
        let mut r = RunReport::new(crate::harness::t("2026-11-23T00:00:00Z"));
        r.accounting.items = 3;
        r.accounting.planned = 5;
        r.accounting.delivered = 3;
        r.accounting.already_there = 1;
        r.accounting.skipped.insert("unmapped".into(), 1);
        r.deliveries = 3;
        r.already_delivered = 1;
        r
    }

    #[test]
    fn a_report_that_adds_up_has_no_finding_and_each_way_of_not_adding_up_has_one() {
        assert_eq!(check_accounting(&[report()]), Vec::<Finding>::new());
        let mut one_lost = report();
        one_lost.accounting.planned = 6;
        let found = check_accounting(&[one_lost]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .detail
                .starts_with("the run's accounting does not add up")
        );
        let mut said_otherwise = report();
        said_otherwise.deliveries = 4;
        let found = check_accounting(&[report(), said_otherwise]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].item_id, "(run 2)");
        let mut windows_more = report();
        let window = connector::report::WindowOutcome {
            since: crate::harness::t("2026-11-22T00:00:00Z"),
            until: crate::harness::t("2026-11-23T00:00:00Z"),
            items: 4,
            closed: true,
            look_back: false,
            accounting: connector::report::Accounting {
                items: 4,
                planned: 6,
                delivered: 6,
                ..Default::default()
            },
        };
        windows_more.windows.push(window);
        let found = check_accounting(&[windows_more]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].detail.contains("the windows account for more"),
            "{found:?}"
        );
    }
}
