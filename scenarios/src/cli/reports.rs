//! What `run` and `replay` share: running scenario files, the table, the reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::{Scenario, ScenarioReport, Verdict};

/// What `run` and `replay` write besides the table.
#[derive(Debug, clap::Args)]
pub struct Outputs {
    /// Write the scenario reports (JSON) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the scenario reports as one self-contained HTML page to this file:
    /// verdicts, counts, skips by reason, every finding by kind, replay commands.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write every delivered message as an .eml file (exact bytes) under
    /// DIR/<scenario>/<mailbox>/.
    #[arg(long, value_name = "DIR")]
    pub keep_mail: Option<PathBuf>,
    #[command(flatten)]
    pub connector: crate::conformance::ConnectorArgs,
}

impl Outputs {
    /// Runs the files, prints the table and writes the reports: the exit status.
    pub async fn run(self, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
        check_writable(&[&self.report, &self.html])?;
        let under = self.connector.under_test();
        let reports = run_files(files, self.keep_mail.as_deref(), &under).await?;
        finish(&reports, self.report.as_deref(), self.html.as_deref())
    }
}

fn print_table(reports: &[ScenarioReport]) {
    println!(
        "{:<34} {:>6} {:>8} {:>6} {:>7} {:>4} {:>10} {:>9} {:>10} {:>6} {:>7}  verdict",
        "scenario",
        "items",
        "expected",
        "found",
        "missing",
        "dup",
        "unexpected",
        "misplaced",
        "wrong-skip",
        "fields",
        "content"
    );
    for r in reports {
        println!(
            "{:<34} {:>6} {:>8} {:>6} {:>7} {:>4} {:>10} {:>9} {:>10} {:>6} {:>7}  {}",
            r.name,
            r.source_items,
            r.expected_deliveries,
            r.found_deliveries,
            r.missing.len(),
            r.duplicates.len(),
            r.unexpected.len(),
            r.misplaced.len(),
            r.wrongly_skipped.len(),
            r.field_errors.len(),
            r.content_errors.len(),
            match r.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
            }
        );
    }
    for r in reports {
        let skips: Vec<String> = r
            .skipped_by_reason
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "  {}: skipped {}",
            r.name,
            if skips.is_empty() {
                "none".into()
            } else {
                skips.join(", ")
            }
        );
        for why in &r.not_checked {
            println!("  {}: not checked: {why}", r.name);
        }
        if !r.gone_mailboxes.is_empty() {
            println!(
                "  {}: mailboxes gone mid-scenario (seeded): {}; {} delivery(ies) to them not made (S9)",
                r.name,
                r.gone_mailboxes.join(", "),
                r.not_delivered_to_gone
            );
        }
    }
    for r in reports.iter().filter(|r| r.verdict == Verdict::Fail) {
        println!(
            "\nFAILED {} (seed {}):",
            r.name,
            r.seed.map_or("none".into(), |s| s.to_string())
        );
        for (what, list) in r.findings() {
            for f in list.iter().take(15) {
                // An id can be enormous (hostile data): show its start and its length.
                let id = crate::reconcile::short(&f.item_id);
                println!(
                    "  {what}: item {id} {}: {}",
                    f.mailbox.as_deref().unwrap_or(""),
                    f.detail
                );
            }
            if list.len() > 15 {
                println!("  ... and {} more {what}", list.len() - 15);
            }
        }
        if let Some(error) = &r.error {
            println!("  could not be run to its end (nothing reconciled): {error}");
        }
        if r.connector_failures > 0 {
            println!(
                "  the connector's last run left {} deliveries failed, items held or items needing a person",
                r.connector_failures
            );
        }
        println!("  replay: {}", r.replay);
    }
}

async fn run_files(
    files: &[PathBuf],
    keep_mail: Option<&Path>,
    under: &crate::conformance::UnderTest,
) -> anyhow::Result<Vec<ScenarioReport>> {
    let mut reports = Vec::new();
    for file in files {
        let replay = format!(
            "cargo run --release -p scenarios -- run {}{}",
            file.display(),
            under.flags()
        );
        // A scenario that cannot be read or run is reported as failed and the others
        // still run: one error must not hide what the rest would find.
        let scenario = match Scenario::load(file) {
            Ok(scenario) => scenario,
            Err(e) => {
                eprintln!("  {}: {e:#}", file.display());
                let name = file.file_stem().map_or_else(
                    || file.display().to_string(),
                    |s| s.to_string_lossy().into_owned(),
                );
                reports.push(ScenarioReport::errored(
                    name,
                    None,
                    replay,
                    format!("{e:#}"),
                ));
                continue;
            }
        };
        eprintln!(
            "running {} ({} items, {} run(s))",
            scenario.name,
            scenario.source_items(),
            scenario.runs.len()
        );
        let work = crate::harness::temp_dir(&format!("scenario-{}", scenario.name));
        let started = std::time::Instant::now();
        let outcome = crate::runner::run_judged(&scenario, &work, replay.clone(), under).await;
        // The work directory holds the connector's state and staged data: removed
        // whether the run succeeded or not.
        let _ = std::fs::remove_dir_all(&work);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                let error = format!("running {}: {e:#}", file.display());
                eprintln!("  {error}");
                let (name, seed) = (scenario.name.clone(), scenario.seed);
                reports.push(ScenarioReport::errored(name, seed, replay, error));
                continue;
            }
        };
        if let Some(dir) = keep_mail {
            let n = crate::keep_mail::write(&outcome.landed, dir, &scenario.name)?;
            eprintln!("  {n} messages kept under {}", dir.display());
        }
        let retries: u64 = outcome.runs.iter().map(|r| r.retries).sum();
        if outcome.runs.len() < scenario.runs.len() {
            // A connector under test that writes no report says nothing of its own.
            eprintln!(
                "  {} run(s) in {:.1}s, {} killed at a crash point; judged by the mailboxes",
                scenario.runs.len(),
                started.elapsed().as_secs_f64(),
                outcome.crashes
            );
        } else {
            eprintln!(
                "  {} deliveries in {:.1}s ({} retries)",
                outcome.runs.iter().map(|r| r.deliveries).sum::<u64>(),
                started.elapsed().as_secs_f64(),
                retries
            );
        }
        reports.push(outcome.report);
    }
    Ok(reports)
}

/// Refuses a report path that cannot be written now, rather than after the runs.
pub fn check_writable(paths: &[&Option<PathBuf>]) -> anyhow::Result<()> {
    for path in paths.iter().filter_map(|p| p.as_ref()) {
        std::fs::write(path, b"")
            .with_context(|| format!("the report {} cannot be written", path.display()))?;
    }
    Ok(())
}

fn finish(
    reports: &[ScenarioReport],
    report: Option<&Path>,
    html: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    print_table(reports);
    if let Some(path) = report {
        std::fs::write(path, serde_json::to_string_pretty(reports)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = html {
        std::fs::write(path, crate::html::scenario_report(reports))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("HTML report: {}", path.display());
    }
    let failed = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .count();
    println!(
        "\n{} scenario(s): {} passed, {} failed",
        reports.len(),
        reports.len() - failed,
        failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
