//! Reading a scenario file: the explicit form as written, or a generated one expanded
//! by [`crate::generate`] from its parameters (the only place that needs both the file's
//! types and the generator).

use std::path::Path;

use crate::model::Scenario;

impl Scenario {
    /// Reads a scenario file, expanding a generated one.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let scenario: Self = serde_json::from_str(text)?;
        scenario.expanded()
    }

    /// The explicit form: generated content for a file with `generate`, else itself.
    pub fn expanded(self) -> anyhow::Result<Self> {
        let Some(params) = self.generate.clone() else {
            if self.runs.is_empty() {
                anyhow::bail!("the scenario has no runs: give at least one {{\"until\": ...}}");
            }
            return Ok(self);
        };
        let mut generated = crate::generate::generate(&params)?;
        generated.name = self.name;
        if !self.description.is_empty() {
            generated.description = self.description;
        }
        generated.generate = Some(params);
        generated.provider_faults = self.provider_faults;
        if self.visibility.is_some() {
            generated.visibility = self.visibility;
        }
        generated.mailbox_faults = self.mailbox_faults;
        generated.crashes = self.crashes;
        generated.crash_by = self.crash_by;
        generated.concurrency = self.concurrency;
        generated.mailbox_profile = self.mailbox_profile;
        Ok(generated)
    }
}
