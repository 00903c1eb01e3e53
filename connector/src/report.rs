//! The run report (`--report FILE`, JSON; fields promised in interfaces.md).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// Why an item, or part of one, was not imported (or a notice about one that was), and
/// the code the report, the state and the accounting carry for it
/// (`docs/rules.md`; the codes are part of the report's contract, interfaces.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// No participant maps to a valid Microsoft 365 user (S10).
    Unmapped,
    /// The message is above the import limit even without its file (S11).
    ItemTooLarge,
    /// The file is above the import limit; the rest is imported (S11).
    AttachmentTooLarge,
    /// The file is under the limit but the message with it would not be; the rest is
    /// imported.
    AttachmentOmittedToFit,
    /// The file could not be fetched whole and checked; the rest is imported.
    AttachmentUnverifiable,
    /// The message was too large for one Graph request with its file, so it was imported
    /// without it and the file attached after; Microsoft 365 refused the attachment
    /// (403). The rest is imported.
    AttachmentRefused,
    /// The provider's item cannot be read; kept byte for byte in the quarantine.
    InvalidItem,
    /// A person gave up on a held item (`connector held give-up`), with the reason.
    GivenUp,
    /// A notice: an id that came again with new content, delivered as a revision.
    RevisedItem,
    /// A notice: an item first found by the look-back, delivered.
    LateVisible,
    /// A notice: no participant maps, and the item went to the catch-all mailbox
    /// (`mapping.unmapped_mailbox`) instead of being skipped as `unmapped`.
    UnmappedToCatchAll,
}

impl SkipReason {
    /// Every reason, in the order the report's readers know them.
    pub const ALL: [SkipReason; 11] = [
        Self::Unmapped,
        Self::ItemTooLarge,
        Self::AttachmentTooLarge,
        Self::AttachmentOmittedToFit,
        Self::AttachmentUnverifiable,
        Self::AttachmentRefused,
        Self::InvalidItem,
        Self::GivenUp,
        Self::RevisedItem,
        Self::LateVisible,
        Self::UnmappedToCatchAll,
    ];

    /// The wire code.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Unmapped => "unmapped",
            Self::ItemTooLarge => "item_too_large",
            Self::AttachmentTooLarge => "attachment_too_large",
            Self::AttachmentOmittedToFit => "attachment_omitted_to_fit",
            Self::AttachmentUnverifiable => "attachment_unverifiable",
            Self::AttachmentRefused => "attachment_refused",
            Self::InvalidItem => "invalid_item",
            Self::GivenUp => "given_up",
            Self::RevisedItem => "revised_item",
            Self::LateVisible => "late_visible",
            Self::UnmappedToCatchAll => "unmapped_to_catch_all",
        }
    }

    /// A notice about a delivered item rather than a skip.
    pub const fn is_notice(self) -> bool {
        matches!(
            self,
            Self::RevisedItem | Self::LateVisible | Self::UnmappedToCatchAll
        )
    }

    /// The item it is said of was imported nowhere (as against one delivered, whole or
    /// without its file, with this said of it).
    pub const fn left_out_whole(self) -> bool {
        matches!(
            self,
            Self::Unmapped | Self::ItemTooLarge | Self::InvalidItem | Self::GivenUp
        )
    }

    /// The reason a code stands for.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// An item, or part of one, that was not imported, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Skip {
    pub item_id: String,
    /// A [`SkipReason`]'s code.
    pub reason: String,
    pub detail: String,
}

/// A delivery that could not be made in this run; its window stays open.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failure {
    pub item_id: String,
    pub mailbox: Option<String>,
    pub error: String,
}

/// An item on the held list: it failed when its window closed and is tried again by the
/// next runs, or (in `needs_person`) no longer by itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeldItem {
    pub item_id: String,
    /// Runs in which it failed.
    pub runs: u32,
    pub first_failed_at: DateTime<Utc>,
    pub last_error: String,
}

/// What became of the items worked on, counted in deliveries, so that it adds up:
/// `planned = delivered + delivered_without_attachment + already_there + skipped +
/// failed`. An item's planned deliveries are its mailboxes; an item with none (unmapped),
/// or that could not be read or mapped, counts as one. `skipped` counts only items left
/// out whole (`unmapped`, `item_too_large`, `invalid_item`), by reason; an item imported
/// without its file is in `delivered_without_attachment`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Accounting {
    /// Items worked on (read from the provider, or held from an earlier run).
    pub items: u64,
    pub planned: u64,
    pub delivered: u64,
    pub delivered_without_attachment: u64,
    pub already_there: u64,
    pub skipped: std::collections::BTreeMap<String, u64>,
    pub failed: u64,
}

impl Accounting {
    /// The sum of the outcomes, which must equal `planned`.
    pub fn outcomes(&self) -> u64 {
        self.delivered
            + self.delivered_without_attachment
            + self.already_there
            + self.skipped.values().sum::<u64>()
            + self.failed
    }

    pub fn adds_up(&self) -> bool {
        self.planned == self.outcomes()
    }

    pub fn add(&mut self, other: &Accounting) {
        self.items += other.items;
        self.planned += other.planned;
        self.delivered += other.delivered;
        self.delivered_without_attachment += other.delivered_without_attachment;
        self.already_there += other.already_there;
        for (reason, n) in &other.skipped {
            *self.skipped.entry(reason.clone()).or_default() += n;
        }
        self.failed += other.failed;
    }

    /// One line: the equation, with its numbers.
    pub fn line(&self) -> String {
        let skipped: Vec<String> = self
            .skipped
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        format!(
            "{} item(s); deliveries planned {} = imported {} + imported without a file {} + already there {} + skipped {}{} + failed {}{}",
            self.items,
            self.planned,
            self.delivered,
            self.delivered_without_attachment,
            self.already_there,
            self.skipped.values().sum::<u64>(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" ({})", skipped.join(", "))
            },
            self.failed,
            if self.adds_up() {
                ""
            } else {
                "  DOES NOT ADD UP"
            }
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunReport {
    /// From the start of the first window worked on to the end of the last.
    pub window: Option<Window>,
    /// Every window worked on, in order, and whether it was closed.
    pub windows: Vec<WindowOutcome>,
    pub items_fetched: u64,
    /// What became of every item this run worked on, windows and held items together.
    #[serde(default)]
    pub accounting: Accounting,
    /// Messages imported in this run (one per item and mailbox).
    pub deliveries: u64,
    /// Deliveries found already done (an earlier run, or a lost answer looked up).
    pub already_delivered: u64,
    pub skipped: Vec<Skip>,
    /// Deliveries that failed in this run; their items are held for the next runs.
    pub failed: Vec<Failure>,
    /// Items the provider sent that could not be read, kept byte for byte under the
    /// state directory (each is also in `skipped` as `invalid_item`).
    pub quarantined: Vec<crate::store::Quarantined>,
    /// Items waiting to be tried again by the next runs.
    pub held: Vec<HeldItem>,
    /// Items that failed in too many runs, or for too long: a person must look
    /// (`connector held list`, `retry`, `give-up`). Listed on every run until then.
    pub needs_person: Vec<HeldItem>,
    pub retries: u64,
    /// Answers `429 Too Many Requests` from Graph, and the time spent waiting on their
    /// `Retry-After` (milliseconds, summed over every request that waited).
    #[serde(default)]
    pub throttled: u64,
    #[serde(default)]
    pub retry_after_wait_ms: u64,
    /// How long each delivery took from the moment its item was staged, ready to send,
    /// to the mailbox's answer: the wait in the queue counts, so a stall shows.
    #[serde(default)]
    pub delivery_latency: Option<Latency>,
    /// Files owed: items delivered without their file, which could not be fetched whole;
    /// the next runs fetch it again and deliver it in a follow-up message.
    #[serde(default)]
    pub owed_files: Vec<HeldItem>,
    /// Owed files tried in too many runs, or for too long: a person must look.
    #[serde(default)]
    pub owed_files_need_person: Vec<HeldItem>,
    /// Follow-up messages delivered in this run, each bringing an owed file to a mailbox.
    #[serde(default)]
    pub files_delivered_later: u64,
    /// The connector process's peak resident memory so far (Linux: VmHWM), in bytes.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// The most attachment bytes staged at once during the run (customer data at rest;
    /// each item's file goes as soon as every mailbox has it).
    #[serde(default)]
    pub peak_staging_bytes: u64,
    /// Set when the state had no history (a first run, or a state emptied, deleted or
    /// set aside): why every delivery of the run was looked up before it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_without_history: Option<String>,
    /// Nothing failed in this run and no item needs a person.
    pub complete: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// This process's peak resident memory, from /proc (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl Latency {
    /// Reads the distribution off a histogram of milliseconds; `None` if it is empty.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Self {
            count: h.len(),
            p50_ms: h.value_at_quantile(0.50),
            p95_ms: h.value_at_quantile(0.95),
            p99_ms: h.value_at_quantile(0.99),
            max_ms: h.max(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WindowOutcome {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub items: u64,
    pub closed: bool,
    /// A window listed again after it closed, for items the provider listed late; its
    /// `items` are those it found that no earlier listing had (`late_visible`).
    #[serde(default)]
    pub look_back: bool,
    /// What became of this window's items in this run.
    #[serde(default)]
    pub accounting: Accounting,
}

impl RunReport {
    /// An empty report of a run that started at `started_at`.
    pub fn new(started_at: DateTime<Utc>) -> Self {
        Self {
            window: None,
            windows: Vec::new(),
            items_fetched: 0,
            accounting: Accounting::default(),
            deliveries: 0,
            already_delivered: 0,
            skipped: Vec::new(),
            failed: Vec::new(),
            quarantined: Vec::new(),
            held: Vec::new(),
            needs_person: Vec::new(),
            retries: 0,
            throttled: 0,
            retry_after_wait_ms: 0,
            delivery_latency: None,
            peak_rss_bytes: None,
            peak_staging_bytes: 0,
            state_without_history: None,
            owed_files: Vec::new(),
            owed_files_need_person: Vec::new(),
            files_delivered_later: 0,
            complete: true,
            started_at,
            finished_at: started_at,
        }
    }

    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        match &self.window {
            Some(w) => lines.push(format!(
                "window {} .. {}",
                w.since.to_rfc3339(),
                w.until.to_rfc3339()
            )),
            None => lines
                .push("nothing to do: the last window already ends at the requested time".into()),
        }
        // Items left out whole apart from notes on items that were delivered (a file
        // left out, a revision, a late item).
        let left_out = self
            .skipped
            .iter()
            .filter(|s| SkipReason::from_code(&s.reason).is_none_or(SkipReason::left_out_whole))
            .count();
        lines.push(format!(
            "items fetched {}, messages imported {}, already delivered {}, items left out {}, notes on delivered items {}, failed {}, retries {}",
            self.items_fetched,
            self.deliveries,
            self.already_delivered,
            left_out,
            self.skipped.len() - left_out,
            self.failed.len(),
            self.retries
        ));
        lines.push(format!("accounting: {}", self.accounting.line()));
        if !self.owed_files.is_empty() || self.files_delivered_later > 0 {
            lines.push(format!(
                "files owed {} (their messages went without them; the next runs fetch them again), files delivered later {}",
                self.owed_files.len(),
                self.files_delivered_later
            ));
        }
        for o in &self.owed_files_need_person {
            lines.push(format!(
                "  FILE OWED, NEEDS A PERSON: {} (since {}, {} runs): {}",
                o.item_id,
                o.first_failed_at.to_rfc3339(),
                o.runs,
                o.last_error
            ));
        }
        if self.state_without_history.is_some() {
            lines.push(
                "the state had no history: every message was looked up in its mailbox before it was sent (see state_without_history in the report)".into(),
            );
        }
        let imported = self.accounting.delivered + self.accounting.delivered_without_attachment;
        if imported == 0 {
            lines.push(if self.accounting.items == 0 {
                "nothing imported: the provider listed no new item".to_owned()
            } else {
                format!(
                    "nothing imported: every one of the {} item(s) was already there, skipped or failed (see above)",
                    self.accounting.items
                )
            });
        }
        for w in self.windows.iter().filter(|w| w.accounting.items > 0) {
            lines.push(format!(
                "  window {} .. {}{}: {}",
                w.since.to_rfc3339(),
                w.until.to_rfc3339(),
                if w.look_back { " (look-back)" } else { "" },
                w.accounting.line()
            ));
        }
        let mut reasons = std::collections::BTreeMap::<&str, usize>::new();
        for s in &self.skipped {
            *reasons.entry(&s.reason).or_default() += 1;
        }
        for (reason, n) in reasons {
            lines.push(format!("  skipped {reason}: {n}"));
        }
        for f in self.failed.iter().take(10) {
            lines.push(format!(
                "  failed {} {}: {}",
                f.item_id,
                f.mailbox.as_deref().unwrap_or("-"),
                f.error
            ));
        }
        for q in &self.quarantined {
            lines.push(format!(
                "  quarantined item {} of window {}: {}",
                q.position, q.window_id, q.file
            ));
        }
        if !self.held.is_empty() {
            lines.push(format!(
                "  held for the next runs: {} item(s) that could not be delivered yet",
                self.held.len()
            ));
        }
        for h in &self.needs_person {
            lines.push(format!(
                "  NEEDS A PERSON: item {} failed in {} run(s) since {}: {}",
                h.item_id,
                h.runs,
                h.first_failed_at.to_rfc3339(),
                h.last_error
            ));
        }
        lines.push(if self.complete {
            "complete: every item of the window(s) is delivered or skipped with a reason".into()
        } else if self.needs_person.is_empty() {
            "INCOMPLETE: some deliveries failed; their items are held and the next runs try them again".into()
        } else {
            "INCOMPLETE: some items need a person: see `connector held list --config ...`".into()
        });
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_items_left_out_apart_from_notes_on_delivered_ones() {
        let mut report = RunReport::new(DateTime::UNIX_EPOCH);
        for (id, reason) in [
            ("wa-1", SkipReason::Unmapped),
            ("wa-2", SkipReason::AttachmentOmittedToFit),
            ("wa-3", SkipReason::RevisedItem),
            ("wa-4", SkipReason::InvalidItem),
            ("wa-5", SkipReason::LateVisible),
        ] {
            report.skipped.push(Skip {
                item_id: id.into(),
                reason: reason.code().into(),
                detail: String::new(),
            });
        }
        let summary = report.summary();
        assert!(
            summary.contains("items left out 2, notes on delivered items 3"),
            "{summary}"
        );
    }

    #[test]
    fn every_skip_reason_has_its_own_code_and_is_in_the_rules() {
        let rules = include_str!("../../docs/rules.md");
        let mut seen = std::collections::BTreeSet::new();
        for reason in SkipReason::ALL {
            assert!(seen.insert(reason.code()), "{reason} twice");
            assert!(
                rules.contains(&format!("| `{}` |", reason.code())),
                "docs/rules.md does not list {reason}"
            );
            assert_eq!(reason.to_string(), reason.code());
        }
        let notices: Vec<_> = SkipReason::ALL.iter().filter(|r| r.is_notice()).collect();
        assert_eq!(
            notices,
            [
                &SkipReason::RevisedItem,
                &SkipReason::LateVisible,
                &SkipReason::UnmappedToCatchAll
            ]
        );
    }
}
