//! The `connector` binary as operations tools read it: log lines without escape codes
//! in a file, JSON lines on request (each line of a run naming the run, no secret in
//! any), and the last run's figures in the Prometheus text format, which agree with its
//! report and keep the last success across a failed run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use connector::RunReport;
use tests::{Fakes, examples, t, temp_dir};

const NOW: &str = "2026-11-23T01:00:00Z";
const UNTIL: &str = "2026-11-23T00:00:00Z";

/// Runs `connector run` on `toml` with stderr to a pipe (no terminal), as cron or a log
/// shipper would.
async fn run(toml: &Path, report: &Path, extra: &[&str]) -> Output {
    let bin = tests::connector_binary(None).unwrap();
    let mut command = std::process::Command::new(bin);
    command
        .args(["run", "--config"])
        .arg(toml)
        .args([
            "--until",
            UNTIL,
            "--harness-now",
            NOW,
            "--harness-retry-ms",
            "1,20",
        ])
        .arg("--report")
        .arg(report)
        .args(extra)
        .env("TELEMESSAGE_PASSWORD", tests::PROVIDER_PASSWORD)
        .env("M365_CLIENT_SECRET", tests::CLIENT_SECRET)
        .env("RUST_LOG", "debug")
        .env_remove("NO_COLOR");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The samples of a metrics file, read by the text format's rules (version 0.0.4): every
/// sample's metric has `# HELP` and `# TYPE` lines before it, a sample is `name{labels}
/// value`. Keys are the name with its labels, as written.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut described = std::collections::BTreeSet::new();
    let mut typed = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .expect("HELP names a metric and says what");
            assert!(!help.is_empty());
            described.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            assert!(described.contains(name), "TYPE after HELP: {line}");
            typed.insert(name.to_owned());
        } else {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let name = series.split('{').next().unwrap();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
                "{line}"
            );
            assert!(typed.contains(name), "a sample after its TYPE: {line}");
            if let Some(labels) = series.strip_prefix(name) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "{line}"
                );
            }
            assert!(
                out.insert(series.to_owned(), value.parse::<f64>().unwrap())
                    .is_none(),
                "one sample per series: {line}"
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_metrics_are_what_operations_tools_read() {
    let fakes = Fakes::examples(t(NOW), |r| r).await.unwrap();
    let state = temp_dir("operations");
    let metrics = state.join("textfile/connector.prom");
    std::fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    let config = fakes.config(&state, Some(examples().join("mapping.csv")));
    let toml = state.with_extension("toml");
    let write_toml = |provider: &str, format: &str| {
        let mut text = tests::connector_toml(&config, None).replace(&config.provider_url, provider);
        text.push_str(&format!(
            "\n[log]\nformat = \"{format}\"\n\n[metrics]\ntextfile = \"{}\"\n",
            metrics.display()
        ));
        std::fs::write(&toml, text).unwrap();
    };

    // JSON lines, from the configuration: each a JSON object; a run's lines name it.
    write_toml(&config.provider_url, "json");
    let report_path = state.with_extension("report.json");
    let out = run(&toml, &report_path, &[]).await;
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let mut run_ids = std::collections::BTreeSet::new();
    let mut lines = 0;
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        assert!(v["target"].is_string() && v["fields"].is_object(), "{line}");
        if let Some(id) = v["span"]["run_id"].as_str() {
            run_ids.insert(id.to_owned());
        }
        lines += 1;
    }
    assert!(lines > 5, "a debug run says something: {stderr}");
    assert_eq!(run_ids.len(), 1, "one run, one id: {run_ids:?}");
    let id = run_ids.into_iter().next().unwrap();
    assert!(id.starts_with("20261123T010000Z-"), "{id}");
    for secret in [tests::PROVIDER_PASSWORD, tests::CLIENT_SECRET] {
        assert!(!stderr.contains(secret), "a secret in the JSON log");
    }

    // The figures agree with the report.
    let report: RunReport =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let first = std::fs::read_to_string(&metrics).unwrap();
    let m = samples(&first);
    let get = |name: &str| m[&format!("whatsapp_connector_{name}")];
    assert_eq!(get("last_run_exit_status"), 0.0);
    assert_eq!(get("last_run_success"), 1.0);
    assert_eq!(get("last_run_deliveries"), report.deliveries as f64);
    assert!(report.deliveries > 0);
    assert_eq!(get("last_run_items_fetched"), report.items_fetched as f64);
    assert_eq!(get("held_items"), report.held.len() as f64);
    assert_eq!(
        get("items_needing_person"),
        report.needs_person.len() as f64
    );
    let finished = report.finished_at.timestamp_millis() as f64 / 1000.0;
    assert_eq!(get("last_run_timestamp_seconds"), finished);
    assert_eq!(get("last_success_timestamp_seconds"), finished);
    let skipped: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("whatsapp_connector_last_run_skipped{reason=\""))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(skipped, report.skipped.len() as f64);
    // Written whole, by rename: nothing else is left in the collector's directory.
    let left: Vec<_> = std::fs::read_dir(metrics.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("connector.prom")]);

    // Text, chosen on the command line over the file: no escape codes in a pipe. A run
    // that cannot reach the provider: exit 3, which the figures say, keeping the last
    // success.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_toml(&format!("http://127.0.0.1:{port}"), "json");
    let out = run(
        &toml,
        &state.with_extension("r2.json"),
        &["--log-format", "text"],
    )
    .await;
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a pipe: {stderr:?}"
    );
    assert!(
        stderr.lines().any(|l| l.contains("DEBUG")),
        "text lines: {stderr}"
    );
    assert!(
        !stderr.trim_start().starts_with('{'),
        "text, not JSON: {stderr}"
    );
    let m = samples(&std::fs::read_to_string(&metrics).unwrap());
    assert_eq!(m["whatsapp_connector_last_run_exit_status"], 3.0);
    assert_eq!(m["whatsapp_connector_last_run_success"], 0.0);
    assert_eq!(
        m["whatsapp_connector_last_success_timestamp_seconds"],
        finished
    );
    assert!(
        !m.contains_key("whatsapp_connector_last_run_deliveries"),
        "no figures of a run that had none"
    );
    std::fs::remove_dir_all(&state).unwrap();
}
