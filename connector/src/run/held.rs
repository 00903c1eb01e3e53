//! The held list: items an earlier run could not deliver, tried first.

use super::*;

impl Connector {
    /// Tries again the items earlier runs could not deliver. One that is delivered or
    /// skipped with a reason leaves the list; one that fails again counts a run, and after
    /// `import.held_runs` runs or `import.held_days` days it needs a person.
    pub(super) async fn retry_held(&self, report: &mut RunReport) -> Result<(), ConnectorError> {
        let held: Vec<Held> = self
            .store
            .held()?
            .into_iter()
            .filter(|h| !h.needs_person)
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        tracing::info!(items = held.len(), "trying held items again");
        let mut windows = std::collections::BTreeSet::new();
        for h in held {
            windows.insert(h.window_id);
            let window = Window {
                id: h.window_id,
                since: h.first_failed_at,
                until: h.first_failed_at,
                fetched: true,
                look_back: false,
                fresh: false,
                unknown_past: false,
            };
            let staged = Staged {
                seq: 0,
                item_id: h.item_id.clone(),
                json: h.json.clone(),
            };
            let mut r = self.process_item(&window, staged).await?;
            report.accounting.add(&r.account);
            report.skipped.extend(std::mem::take(&mut r.skips));
            if r.failures.is_empty() {
                self.store.release(&h.item_id)?;
                tracing::info!(item = %h.item_id, "held item archived");
                continue;
            }
            let error = r.error();
            self.store
                .hold(&h.item_id, &h.json, h.window_id, &error, (self.clock)())?;
            self.maybe_needs_person(&h.item_id, h.runs + 1, h.first_failed_at)?;
            report.failed.extend(r.failures);
        }
        for id in windows {
            self.staging.clear(id)?;
        }
        Ok(())
    }

    /// Marks a held item as needing a person once it has failed in enough runs or for
    /// long enough.
    pub(super) fn maybe_needs_person(
        &self,
        item_id: &str,
        runs: u32,
        first_failed_at: DateTime<Utc>,
    ) -> Result<(), ConnectorError> {
        if self.needs_person_after(runs, first_failed_at) {
            self.store.mark_needs_person(item_id)?;
        }
        Ok(())
    }

    /// Whether something failing since `first_failed_at`, in `runs` runs, is no longer
    /// tried by itself (`import.held_runs` runs or `import.held_days` days): the one rule
    /// for held items and owed files.
    pub(super) fn needs_person_after(&self, runs: u32, first_failed_at: DateTime<Utc>) -> bool {
        let age = (self.clock)() - first_failed_at;
        runs >= self.config.held_runs
            || age >= chrono::TimeDelta::days(i64::from(self.config.held_days))
    }
}
