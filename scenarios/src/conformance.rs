//! The conformance kit: any connector program, run in place of ours and judged by what
//! lands in the mailboxes (`docs/conformance.md`). This module is the contract's code
//! side: what a program under test is given (environment variables and the same as a
//! JSON file), how it is run, killed at a crash point and read back.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use connector::RunReport;
use serde::{Deserialize, Serialize};

use crate::harness::{CLIENT_ID, CLIENT_SECRET, Crashes, Fakes, PROVIDER_PASSWORD, PROVIDER_USER};
use crate::model::{RunSpec, Scenario};

/// Which rules judge a connector: those any connector must meet, or ours too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Rules {
    /// What the product description asks of any connector: every item exactly once in
    /// each of its mailboxes, in the archive folder, with its sender, recipients, date,
    /// text and files (by SHA-256), the Message-ID derived from the item id, nothing over
    /// the size limit, nothing the rules skip. Not our wording.
    Core,
    /// Core, and what is ours to choose: the deletion marker in the subject, the note
    /// on a file left out (header and body), our `X-WhatsApp-*` headers, the
    /// `whatsapp.invalid` address of a participant with no email property.
    #[default]
    Ours,
}

impl Rules {
    pub fn name(self) -> &'static str {
        match self {
            Rules::Core => "core",
            Rules::Ours => "ours",
        }
    }
}

/// What the harness runs as the connector.
#[derive(Debug, Clone, Default)]
pub enum UnderTest {
    /// Our connector: the library in process, or our binary where a scenario's crashes
    /// are by SIGKILL.
    #[default]
    Ours,
    /// Any program, started through `sh -c`, given the contract's environment.
    Command { command: String, rules: Rules },
}

impl UnderTest {
    pub fn rules(&self) -> Rules {
        match self {
            UnderTest::Ours => Rules::Ours,
            UnderTest::Command { rules, .. } => *rules,
        }
    }

    /// The command-line flags that choose this connector again (for replay commands).
    pub fn flags(&self) -> String {
        match self {
            UnderTest::Ours => String::new(),
            UnderTest::Command { command, rules } => format!(
                " --connector-cmd '{}' --rules {}",
                command.replace('\'', r"'\''"),
                rules.name()
            ),
        }
    }
}

/// The flags that put another connector under test (`run`, `replay`, `chaos`, `shrink`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectorArgs {
    /// Run this program in place of our connector, once per scenario run, through
    /// `sh -c`. It is given everything it needs in CONNECTOR_* environment variables and
    /// in the JSON file CONNECTOR_CONTEXT_FILE names (docs/conformance.md); secrets are
    /// never on its command line. It is judged by what lands in the mailboxes; if it
    /// writes a run report in our JSON shape to CONNECTOR_REPORT, by its skips too.
    #[arg(long, value_name = "CMD")]
    pub connector_cmd: Option<String>,
    /// The rules it is judged by: core (what any connector must do) or ours (our
    /// wording too). Default: core with --connector-cmd, ours without.
    #[arg(long, value_enum, requires = "connector_cmd")]
    pub rules: Option<Rules>,
}

impl ConnectorArgs {
    pub fn under_test(&self) -> UnderTest {
        match &self.connector_cmd {
            None => UnderTest::Ours,
            Some(command) => UnderTest::Command {
                command: command.clone(),
                rules: self.rules.unwrap_or(Rules::Core),
            },
        }
    }
}

/// Everything a program under test is given for one run: the JSON file's fields, and as
/// `CONNECTOR_<FIELD>` environment variables (upper case). Its `Debug` hides the secrets.
#[derive(Clone, Serialize)]
pub struct Handover {
    pub provider_url: String,
    pub provider_username: String,
    pub provider_password: String,
    /// Graph's root, as `https://graph.microsoft.com` would be: `/v1.0/...`, `/beta/...`.
    pub graph_url: String,
    /// The identity platform's root, as `https://login.microsoftonline.com` would be.
    pub login_url: String,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    /// Automatic mapping (S7): whether a participant's email property may be used.
    pub automatic_mapping: bool,
    /// The mapping file (S8), when the scenario has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_file: Option<PathBuf>,
    /// The region of national numbers in the mapping file (ISO 3166 code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_region: Option<String>,
    /// The catch-all mailbox for items no participant maps, when the scenario uses that
    /// option (beyond the product description: skip them otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmapped_mailbox: Option<String>,
    /// The start of the window when the operator named one; else the connector goes on
    /// from where its last run ended (its own state under `work_dir`), a first run
    /// taking the day before `until`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    pub until: String,
    /// The time of the run in the scenario's world: the fakes' clocks read this.
    pub now: String,
    /// The connector's own directory, kept across a scenario's runs (its state).
    pub work_dir: PathBuf,
    /// Where a run report in our JSON shape may be written (optional).
    pub report: PathBuf,
    /// The size limit in bytes (S11).
    pub size_limit_bytes: u64,
    /// The fakes' time stands still between requests: a wait on `Retry-After` may be
    /// cut to this many milliseconds (optional, to keep runs quick).
    pub retry_cap_ms: u64,
    /// The requests in flight the scenario was written for (a hint; chaos seeds draw
    /// their fault rates for it).
    pub concurrency: usize,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("provider_url", &self.provider_url)
            .field("graph_url", &self.graph_url)
            .field("until", &self.until)
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Handover {
    /// The handover for run `spec` of `scenario` on `fakes`.
    pub fn new(
        fakes: &Fakes,
        scenario: &Scenario,
        spec: &RunSpec,
        mapping_file: Option<PathBuf>,
        work_dir: &Path,
        report: PathBuf,
        (retry_cap_ms, concurrency): (u64, usize),
    ) -> Self {
        Self {
            provider_url: fakes.provider_url.clone(),
            provider_username: PROVIDER_USER.into(),
            provider_password: PROVIDER_PASSWORD.into(),
            graph_url: fakes.mailbox_url.clone(),
            login_url: fakes.mailbox_url.clone(),
            tenant: fakes.tenant.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            automatic_mapping: scenario.automatic_mapping,
            mapping_file,
            mapping_region: scenario.mapping_default_region.clone(),
            unmapped_mailbox: scenario.unmapped_mailbox.clone(),
            since: spec.since.map(time),
            until: time(spec.until),
            now: time(spec.run_at()),
            work_dir: work_dir.to_path_buf(),
            report,
            size_limit_bytes: scenario.size_limit,
            retry_cap_ms,
            concurrency,
        }
    }

    /// The environment variables: every field, `CONNECTOR_` and its name in upper case.
    pub fn env(&self) -> Vec<(String, String)> {
        let value = serde_json::to_value(self).expect("a handover serialises");
        let serde_json::Value::Object(fields) = value else {
            unreachable!("a handover is an object")
        };
        fields
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (format!("CONNECTOR_{}", k.to_uppercase()), v)
            })
            .collect()
    }
}

/// How a run of a program under test ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited 0 or 4; its report, if it wrote one in our shape.
    Finished(Option<Box<RunReport>>),
    /// A crash point was reached and its process group was killed (SIGKILL).
    Killed,
}

/// Runs `command` once with `handover`, killed with its whole process group when a crash
/// point is reached. Its output goes to `log`. An exit other than 0 or 4 is an error
/// carrying the log's last lines.
pub async fn run_once(
    command: &str,
    handover: &Handover,
    log: &Path,
    crashes: &Crashes,
) -> anyhow::Result<Ended> {
    use std::os::unix::fs::OpenOptionsExt;
    let context = handover.work_dir.with_extension("handover.json");
    // The file holds secrets: its owner only, written before anything is in it.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&context)
        .with_context(|| format!("writing {}", context.display()))?;
    std::io::Write::write_all(
        &mut file,
        serde_json::to_string_pretty(handover)?.as_bytes(),
    )?;
    drop(file);
    let _ = std::fs::remove_file(&handover.report);
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = tokio::process::Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .envs(handover.env())
        .env("CONNECTOR_CONTEXT_FILE", &context)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Its own process group: a crash kills whatever it started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = child
        .spawn()
        .with_context(|| format!("starting `sh -c {command}`"))?;
    let pid = child
        .id()
        .context("the connector under test has no process id")?;
    let ended = tokio::select! {
        () = crashes.crashed() => {
            let group = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let waited = child.wait().await;
            crashes.release();
            waited.map(|_| Ended::Killed).map_err(anyhow::Error::from)
        }
        status = child.wait() => match status {
            Err(e) => Err(e.into()),
            Ok(status) if !crate::harness::run_finished(status) => Err(anyhow::anyhow!(
                "the connector under test (`{command}`) exited with {status}; the last lines of its output ({}):\n{}",
                log.display(),
                crate::harness::log_tail(log)
            )),
            Ok(_) => read_report(&handover.report).map(|r| Ended::Finished(r.map(Box::new))),
        }
    };
    // The file with the secrets goes however the run ended.
    let _ = std::fs::remove_file(&context);
    ended
}

/// The run report a program under test wrote, if it wrote one; one that is not in our
/// shape is an error naming the file.
fn read_report(path: &Path) -> anyhow::Result<Option<RunReport>> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        Ok(text) => serde_json::from_str(&text).map(Some).with_context(|| {
            format!(
                "the run report {} is not in the shape docs/conformance.md gives (leave it unwritten to be judged by the mailboxes alone)",
                path.display()
            )
        }),
    }
}

/// Why a check was not made for a connector judged under `rules`, `reports` saying
/// whether every run wrote a report.
pub fn not_checked(rules: Rules, reports: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !reports {
        out.push(
            "skip reasons, notices, the quarantine and the report's accounting: the connector wrote no run report"
                .to_owned(),
        );
    }
    if rules == Rules::Core {
        out.push(
            "our wording (rules core): the deletion marker in the subject, the note on a file left out, our X-WhatsApp-* headers"
                .to_owned(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_becomes_a_variable_and_debug_hides_the_secrets() {
        let handover = Handover {
            provider_url: "http://127.0.0.1:1".into(),
            provider_username: "u".into(),
            provider_password: "provider-secret".into(),
            graph_url: "http://127.0.0.1:2".into(),
            login_url: "http://127.0.0.1:2".into(),
            tenant: "contoso.example".into(),
            client_id: "c".into(),
            client_secret: "client-secret".into(),
            automatic_mapping: true,
            mapping_file: None,
            mapping_region: Some("GB".into()),
            unmapped_mailbox: None,
            since: None,
            until: "2026-11-23T00:00:00Z".into(),
            now: "2026-11-23T00:30:00Z".into(),
            work_dir: "/tmp/w".into(),
            report: "/tmp/w.json".into(),
            size_limit_bytes: 10_485_760,
            retry_cap_ms: 50,
            concurrency: 8,
        };
        let env: std::collections::BTreeMap<String, String> = handover.env().into_iter().collect();
        assert_eq!(env["CONNECTOR_PROVIDER_PASSWORD"], "provider-secret");
        assert_eq!(env["CONNECTOR_CLIENT_SECRET"], "client-secret");
        assert_eq!(env["CONNECTOR_AUTOMATIC_MAPPING"], "true");
        assert_eq!(env["CONNECTOR_SIZE_LIMIT_BYTES"], "10485760");
        assert_eq!(env["CONNECTOR_MAPPING_REGION"], "GB");
        assert!(!env.contains_key("CONNECTOR_SINCE"));
        assert!(!env.contains_key("CONNECTOR_MAPPING_FILE"));
        assert_eq!(env["CONNECTOR_CONCURRENCY"], "8");
        assert_eq!(env.len(), 17);
        let shown = format!("{handover:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}

#[cfg(test)]
mod docs {
    /// The smallest report docs/conformance.md shows reads as our run report.
    #[test]
    fn the_documented_smallest_report_reads() {
        let doc = include_str!("../../docs/conformance.md");
        let start = doc.find("```json\n").expect("a json block") + "```json\n".len();
        let end = start + doc[start..].find("```").expect("its end");
        let report: connector::RunReport =
            serde_json::from_str(&doc[start..end]).expect("the documented report reads");
        assert_eq!(report.skipped[0].reason, "unmapped");
        assert!(report.accounting.adds_up());
    }
}
