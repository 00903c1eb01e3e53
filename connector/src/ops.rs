//! What operations tools read: log lines (text for people, JSON lines for log shippers,
//! colour only at a terminal) and the figures of the last run in the Prometheus text
//! format, written where node_exporter's textfile collector reads them
//! (`docs/operations.md`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::report::RunReport;

/// The form of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: coloured only when stderr is a terminal and NO_COLOR is not set.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message, fields, and the
    /// run's span (its `run_id`).
    Json,
}

/// Colour only for a person at a terminal: never in a file or a pipe, never with
/// `NO_COLOR` set to anything (no-color.org).
pub fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Sends log lines to stderr in `format`; `RUST_LOG` picks the level (default `info`).
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour_on_stderr()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// An id for one run, on every log line of it: when it started and this process.
pub fn run_id(started: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        started.format("%Y%m%dT%H%M%SZ"),
        std::process::id()
    )
}

/// How a run ended, for its figures.
#[derive(Debug)]
pub enum Ended<'a> {
    /// It ran to its end (complete or not): its report.
    Report(&'a RunReport),
    /// It stopped with an error before it had a report: the exit status it gives.
    Failed { exit_status: u8, at: DateTime<Utc> },
}

const PREFIX: &str = "whatsapp_connector";

/// The figures of the run that `ended`, in the Prometheus text format (version 0.0.4).
/// `last_success` is the end of the last complete run before this one (read back from
/// the file this replaces), kept when this run is not one.
pub fn metrics_text(ended: &Ended<'_>, last_success: Option<f64>) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {PREFIX}_{name} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}_{name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{PREFIX}_{name}{labels} {value}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    let seconds = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
    let (ended_at, exit_status, complete) = match ended {
        Ended::Report(r) => (
            r.finished_at,
            if r.complete {
                0
            } else {
                crate::errors::exit::INCOMPLETE
            },
            r.complete,
        ),
        Ended::Failed { exit_status, at } => (*at, *exit_status, false),
    };
    let last_success = if complete {
        Some(seconds(ended_at))
    } else {
        last_success
    };
    gauge(
        "last_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        &one(seconds(ended_at)),
    );
    if let Some(t) = last_success {
        gauge(
            "last_success_timestamp_seconds",
            "When the last run that delivered everything it planned ended (Unix time).",
            &one(t),
        );
    }
    gauge(
        "last_run_exit_status",
        "The last run's exit status: 0 success, 1 internal error, 2 configuration, 3 a service unreachable or refusing the login, 4 deliveries failed or items need a person, 5 another run held the state.",
        &one(f64::from(exit_status)),
    );
    gauge(
        "last_run_success",
        "1 if the last run delivered everything it planned, else 0.",
        &one(if complete { 1.0 } else { 0.0 }),
    );
    let Ended::Report(r) = ended else {
        return out;
    };
    let count = |n: u64| one(n as f64);
    gauge(
        "last_run_duration_seconds",
        "How long the last run took.",
        &one((r.finished_at - r.started_at).num_milliseconds() as f64 / 1000.0),
    );
    gauge(
        "last_run_items_fetched",
        "Items the last run read from the provider.",
        &count(r.items_fetched),
    );
    gauge(
        "last_run_deliveries",
        "Messages the last run imported.",
        &count(r.deliveries),
    );
    gauge(
        "last_run_already_delivered",
        "Deliveries the last run found already made (looked up by Message-ID).",
        &count(r.already_delivered),
    );
    let mut skips: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for s in &r.skipped {
        *skips.entry(s.reason.as_str()).or_default() += 1;
    }
    gauge(
        "last_run_skipped",
        "Items (or their files) the last run left out, by reason.",
        &skips
            .iter()
            .map(|(reason, n)| (format!("{{reason=\"{}\"}}", label(reason)), *n as f64))
            .collect::<Vec<_>>(),
    );
    gauge(
        "last_run_failed_deliveries",
        "Deliveries the last run could not make (their items are held).",
        &count(r.failed.len() as u64),
    );
    gauge(
        "held_items",
        "Items held for the next runs after the last run.",
        &count(r.held.len() as u64),
    );
    gauge(
        "items_needing_person",
        "Items no run will try again until a person says so (connector held retry).",
        &count(r.needs_person.len() as u64),
    );
    gauge(
        "last_run_retries",
        "Requests the last run sent again.",
        &count(r.retries),
    );
    gauge(
        "last_run_throttled",
        "429 answers the last run met.",
        &count(r.throttled),
    );
    let oldest = r
        .held
        .iter()
        .chain(&r.needs_person)
        .map(|h| h.first_failed_at)
        .min()
        .map_or(0.0, |t| {
            ((r.finished_at - t).num_milliseconds() as f64 / 1000.0).max(0.0)
        });
    gauge(
        "oldest_undelivered_age_seconds",
        "Age of the oldest item held or needing a person, from its first failure (0 if none).",
        &one(oldest),
    );
    out
}

/// A label value with `\`, `"` and line breaks escaped.
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The last success a metrics file written before says, if it says one.
pub fn last_success_in(text: &str) -> Option<f64> {
    let name = format!("{PREFIX}_last_success_timestamp_seconds ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse().ok())
}

/// Writes the figures of the run that `ended` to `path`, atomically (a temporary file
/// beside it, then renamed: a collector never reads half a file), keeping the last
/// success the file held.
pub fn write_metrics(path: &Path, ended: &Ended<'_>) -> std::io::Result<()> {
    let before = std::fs::read_to_string(path).ok();
    let text = metrics_text(ended, before.as_deref().and_then(last_success_in));
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "metrics".into());
    let tmp = dir
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RunReport {
        serde_json::from_value(serde_json::json!({
            "window": null, "windows": [], "items_fetched": 3, "deliveries": 2,
            "already_delivered": 1,
            "skipped": [
                {"item_id": "a", "reason": "unmapped", "detail": ""},
                {"item_id": "b", "reason": "unmapped", "detail": ""},
                {"item_id": "c", "reason": "odd \"one\"", "detail": ""}
            ],
            "failed": [{"item_id": "d", "mailbox": null, "error": "504"}],
            "quarantined": [],
            "held": [{"item_id": "d", "runs": 2, "first_failed_at": "2026-11-21T01:00:00Z", "last_error": "504"}],
            "needs_person": [], "retries": 7, "throttled": 2, "complete": false,
            "started_at": "2026-11-23T01:00:00Z", "finished_at": "2026-11-23T01:00:30Z"
        }))
        .expect("a report")
    }

    #[test]
    fn the_figures_say_what_the_report_says() {
        let text = metrics_text(&Ended::Report(&report()), Some(1.5e9));
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(
            has("whatsapp_connector_last_run_skipped{reason=\"unmapped\"} 2"),
            "{text}"
        );
        assert!(
            has(r#"whatsapp_connector_last_run_skipped{reason="odd \"one\""} 1"#),
            "{text}"
        );
        assert!(has("whatsapp_connector_last_run_exit_status 4"), "{text}");
        assert!(has("whatsapp_connector_last_run_success 0"), "{text}");
        assert!(
            has("whatsapp_connector_last_run_duration_seconds 30"),
            "{text}"
        );
        assert!(
            has("whatsapp_connector_last_run_failed_deliveries 1"),
            "{text}"
        );
        assert!(has("whatsapp_connector_last_run_retries 7"), "{text}");
        // Held since two days before the run ended.
        assert!(
            has("whatsapp_connector_oldest_undelivered_age_seconds 172830"),
            "{text}"
        );
        // An incomplete run keeps the last success it was given.
        assert_eq!(last_success_in(&text), Some(1.5e9));
        let failed = metrics_text(
            &Ended::Failed {
                exit_status: 3,
                at: "2026-11-24T01:00:00Z".parse().expect("a time"),
            },
            None,
        );
        assert_eq!(last_success_in(&failed), None, "none known, none said");
        assert!(failed.contains("whatsapp_connector_last_run_exit_status 3\n"));
    }
}
