//! The run report (`--report FILE`, JSON; fields promised in interfaces.md).

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// An item, or part of one, that was not imported, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Skip {
    pub item_id: String,
    /// `unmapped`, `attachment_too_large`, `attachment_unverifiable`, `item_too_large` or
    /// `invalid_item`.
    pub reason: String,
    pub detail: String,
}

/// A delivery that could not be made in this run; its window stays open.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub item_id: String,
    pub mailbox: Option<String>,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunReport {
    /// From the start of the first window worked on to the end of the last.
    pub window: Option<Window>,
    /// Every window worked on, in order, and whether it was closed.
    pub windows: Vec<WindowOutcome>,
    pub items_fetched: u64,
    /// Messages imported in this run (one per item and mailbox).
    pub deliveries: u64,
    /// Deliveries found already done (an earlier run, or a lost answer looked up).
    pub already_delivered: u64,
    pub skipped: Vec<Skip>,
    pub failed: Vec<Failure>,
    pub retries: u64,
    /// Every window worked on was closed.
    pub complete: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WindowOutcome {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub items: u64,
    pub closed: bool,
}

impl RunReport {
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
        lines.push(format!(
            "items fetched {}, messages imported {}, already delivered {}, skipped {}, failed {}, retries {}",
            self.items_fetched,
            self.deliveries,
            self.already_delivered,
            self.skipped.len(),
            self.failed.len(),
            self.retries
        ));
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
        lines.push(if self.complete {
            "complete: every item of the window(s) is delivered or skipped".into()
        } else {
            "INCOMPLETE: the window stays open and the next run finishes it".into()
        });
        lines.join("\n")
    }
}
