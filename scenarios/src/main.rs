//! `scenarios`: generate, run, replay and serve WhatsApp archiving scenarios.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use scenarios::generate::GeneratorParams;
use scenarios::harness::{CLIENT_ID, Fakes, PROVIDER_USER};
use scenarios::{Scenario, ScenarioReport, Verdict};

/// Runs organisations' days of WhatsApp traffic through the connector against the fakes
/// and reconciles every item against every mailbox.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replays every recorded scenario (scenarios/recorded/*.json) and prints the
    /// reconciliation; exits 0 only if every one passes.
    Replay {
        /// Directory of scenario files.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/recorded"))]
        dir: PathBuf,
        /// Write the scenario reports (JSON) to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the scenario reports as one self-contained HTML page to this file:
        /// verdicts, counts, skips by reason, every finding by kind, replay commands.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Write every delivered message as an .eml file (exact bytes) under
        /// DIR/<scenario>/<mailbox>/.
        #[arg(long, value_name = "DIR")]
        keep_mail: Option<PathBuf>,
    },
    /// Runs the given scenario files.
    Run {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the scenario reports (JSON) to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the scenario reports as one self-contained HTML page to this file:
        /// verdicts, counts, skips by reason, every finding by kind, replay commands.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Write every delivered message as an .eml file (exact bytes) under
        /// DIR/<scenario>/<mailbox>/.
        #[arg(long, value_name = "DIR")]
        keep_mail: Option<PathBuf>,
    },
    /// Writes a generated scenario file: parameters and a seed, expanded the same way on
    /// every machine.
    Generate {
        #[arg(long)]
        name: String,
        #[arg(long)]
        seed: u64,
        /// Midnight (UTC, RFC 3339) of the first day.
        #[arg(long, default_value = "2026-11-22T00:00:00Z")]
        start: DateTime<Utc>,
        #[arg(long, default_value_t = 1)]
        days: u32,
        #[arg(long, default_value_t = 50)]
        employees: usize,
        #[arg(long, default_value_t = 40)]
        external_contacts: usize,
        #[arg(long, default_value_t = 3000)]
        items_per_day: usize,
        /// A day (from 1) whose daily run is missed; may be repeated.
        #[arg(long = "missed-run")]
        missed_runs: Vec<u32>,
        /// Leave out the 10 MiB boundary items.
        #[arg(long)]
        no_boundary_cases: bool,
        /// Share of items (0 to 1) the provider lists late, up to six hours after their
        /// archive time; those near a day's end are found by the next run's look-back.
        #[arg(long, default_value_t = 0.0)]
        late_rate: f64,
        /// Share of text items (0 to 1) the provider sends again with changed text.
        #[arg(long, default_value_t = 0.0)]
        revision_rate: f64,
        /// Write the expanded (explicit) scenario instead of the parameters.
        #[arg(long)]
        explicit: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// Load-tests the daily import: generates a day from the seed, measures the fastest a
    /// raw client can post to the fake mailbox (the ceiling), then the connector on the
    /// same fakes, reconciles every item, and reports the rates, their ratio, latency,
    /// throttling, memory and CPU. Exits 0 only if nothing was lost or duplicated.
    Load {
        #[arg(long, default_value_t = 200)]
        employees: usize,
        #[arg(long, default_value_t = 100)]
        external_contacts: usize,
        #[arg(long, default_value_t = 20_000)]
        items_per_day: usize,
        #[arg(long, default_value_t = 1)]
        days: u32,
        /// text: no attachments; realistic: the generator's mix of files.
        #[arg(long, value_enum, default_value = "realistic")]
        mix: scenarios::load::Mix,
        /// off: no limit; graph: Exchange Online's per-mailbox defaults.
        #[arg(long, value_enum, default_value = "off")]
        throttling: scenarios::load::Throttling,
        /// Share of Graph requests that fail (503, or a lost import answer), seeded.
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// process: the connector binary as a child (its own memory and CPU figures).
        #[arg(long, value_enum, default_value = "process")]
        connector: scenarios::load::ConnectorMode,
        /// The connector binary (default: the one beside this program, built if absent).
        #[arg(long, value_name = "PATH")]
        connector_bin: Option<PathBuf>,
        /// Requests in flight, for the connector and the raw client alike.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Requests the raw client sends in phase 1 (default: one per item, 1,000 to 20,000).
        #[arg(long)]
        ceiling_requests: Option<u64>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Midnight (UTC, RFC 3339) of the first day (default: days before today's).
        #[arg(long)]
        start: Option<DateTime<Utc>>,
        /// Write the report (JSON) to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the report as a self-contained HTML page with charts to this file.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Runs many small seeded organisations through seeded faults on both sides and
    /// crashes of the connector, reconciles each, and prints a table and a summary. Each
    /// seed expands to one explicit scenario; a failing one prints the command that
    /// replays it and is saved as a scenario file. Exits 0 only if every seed passed.
    Chaos {
        /// How many seeds to run.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Seeds run at once (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Run every seed twice and fail a seed whose two outcomes differ (what landed,
        /// skips, findings, faults drawn, crash points, retries), naming the first
        /// difference.
        #[arg(long)]
        check_determinism: bool,
        /// Where a failing seed's scenario is written (chaos-SEED.json).
        #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/recorded"))]
        save: PathBuf,
        /// Do not write failing seeds' scenarios.
        #[arg(long)]
        no_save: bool,
        /// Write every seed's scenario, passing or not, under this directory (to look at
        /// a seed, or to edit it into a recorded scenario).
        #[arg(long, value_name = "DIR")]
        write_all: Option<PathBuf>,
        /// Write every seed's result (JSON) to this file.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Makes a failing scenario smaller while it still fails (drops faults, crash points,
    /// items, unreadable items, early runs, one step at a time) and writes the result.
    Shrink {
        file: PathBuf,
        /// Where the smaller scenario goes.
        #[arg(long)]
        out: PathBuf,
        /// At most this many runs of the scenario.
        #[arg(long, default_value_t = 300)]
        budget: usize,
    },
    /// Starts both fakes loaded with a scenario, prints their URLs, a ready connector
    /// configuration and the mailbox viewer's URL with the file holding its admin token,
    /// and runs until interrupted.
    Serve { file: PathBuf },
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
                let id = scenarios::reconcile::short(&f.item_id);
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
) -> anyhow::Result<Vec<ScenarioReport>> {
    let mut reports = Vec::new();
    for file in files {
        let scenario = Scenario::load(file)?;
        eprintln!(
            "running {} ({} items, {} run(s))",
            scenario.name,
            scenario.source_items(),
            scenario.runs.len()
        );
        let work = scenarios::harness::temp_dir(&format!("scenario-{}", scenario.name));
        let replay = format!("cargo run --release -p scenarios -- run {}", file.display());
        let started = std::time::Instant::now();
        let outcome = scenarios::runner::run(&scenario, &work, replay).await;
        // The work directory holds the connector's state and staged data: removed
        // whether the run succeeded or not.
        let _ = std::fs::remove_dir_all(&work);
        let outcome = outcome.with_context(|| format!("running {}", file.display()))?;
        if let Some(dir) = keep_mail {
            let n = scenarios::keep_mail::write(&outcome.landed, dir, &scenario.name)?;
            eprintln!("  {n} messages kept under {}", dir.display());
        }
        let retries: u64 = outcome.runs.iter().map(|r| r.retries).sum();
        eprintln!(
            "  {} deliveries in {:.1}s ({} retries)",
            outcome.runs.iter().map(|r| r.deliveries).sum::<u64>(),
            started.elapsed().as_secs_f64(),
            retries
        );
        reports.push(outcome.report);
    }
    Ok(reports)
}

/// Refuses a report path that cannot be written now, rather than after the runs.
fn check_writable(paths: &[&Option<PathBuf>]) -> anyhow::Result<()> {
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
        std::fs::write(path, scenarios::html::scenario_report(reports))
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

async fn main_inner() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Replay {
            dir,
            report,
            html,
            keep_mail,
        } => {
            check_writable(&[&report, &html])?;
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            if files.is_empty() {
                anyhow::bail!("no scenario files in {}", dir.display());
            }
            let reports = run_files(&files, keep_mail.as_deref()).await?;
            finish(&reports, report.as_deref(), html.as_deref())
        }
        Command::Run {
            files,
            report,
            html,
            keep_mail,
        } => {
            check_writable(&[&report, &html])?;
            let reports = run_files(&files, keep_mail.as_deref()).await?;
            finish(&reports, report.as_deref(), html.as_deref())
        }
        Command::Generate {
            name,
            seed,
            start,
            days,
            employees,
            external_contacts,
            items_per_day,
            missed_runs,
            no_boundary_cases,
            late_rate,
            revision_rate,
            explicit,
            out,
        } => {
            let params = GeneratorParams {
                seed,
                start,
                days,
                employees,
                external_contacts,
                items_per_day,
                missed_runs,
                boundary_cases: !no_boundary_cases,
                late_rate,
                revision_rate,
            };
            let file = serde_json::json!({"name": name, "description": "", "generate": params, "runs": []});
            let mut scenario = Scenario::parse(&file.to_string())?;
            if explicit {
                scenario.generate = None;
            }
            std::fs::write(&out, scenario.to_file_json())
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({}; {} items)",
                out.display(),
                scenario.description,
                scenario.items.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Load {
            employees,
            external_contacts,
            items_per_day,
            days,
            mix,
            throttling,
            fault_rate,
            connector,
            connector_bin,
            concurrency,
            ceiling_requests,
            seed,
            start,
            report,
            html,
        } => {
            let start = start.unwrap_or_else(|| {
                let today = Utc::now()
                    .date_naive()
                    .and_time(chrono::NaiveTime::MIN)
                    .and_utc();
                today - chrono::TimeDelta::days(i64::from(days))
            });
            let params = scenarios::load::LoadParams {
                employees,
                external_contacts,
                items_per_day,
                days,
                mix,
                throttling,
                fault_rate,
                connector,
                connector_bin,
                concurrency,
                seed,
                ceiling_requests: ceiling_requests
                    .unwrap_or((items_per_day as u64 * u64::from(days)).clamp(1_000, 20_000)),
                start,
            };
            params.check()?;
            // Refused now rather than after an hour of load.
            check_writable(&[&report, &html])?;
            let work = scenarios::harness::temp_dir("load");
            let outcome = scenarios::load::run(&params, &work).await;
            let _ = std::fs::remove_dir_all(&work);
            let outcome = outcome?;
            println!("{}", outcome.table());
            if let Some(path) = &report {
                std::fs::write(path, serde_json::to_string_pretty(&outcome)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &html {
                std::fs::write(path, scenarios::load::html::page(&outcome)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(if outcome.verdict == Verdict::Pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Chaos {
            seeds,
            from,
            jobs,
            check_determinism,
            save,
            no_save,
            write_all,
            report,
        } => {
            if seeds == 0 {
                anyhow::bail!("--seeds must be at least 1");
            }
            if let Some(dir) = &write_all {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                for seed in from..from.saturating_add(seeds) {
                    let path = dir.join(format!("chaos-{seed}.json"));
                    std::fs::write(
                        &path,
                        scenarios::chaos::scenario_for_seed(seed)?.to_file_json(),
                    )
                    .with_context(|| format!("writing {}", path.display()))?;
                }
            }
            check_writable(&[&report])?;
            // Half the seeds with crash points run the connector binary: make sure it is
            // today's before the first seed's clock starts.
            scenarios::harness::connector_binary(None)?;
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            eprintln!(
                "chaos: seeds {from} to {}, {jobs} at a time{}",
                from + seeds - 1,
                if check_determinism {
                    ", each twice (determinism checked)"
                } else {
                    ""
                }
            );
            let started = std::time::Instant::now();
            let mut done = 0u64;
            let results = scenarios::chaos::run(
                from,
                seeds,
                jobs,
                check_determinism,
                (!no_save).then_some(save.as_path()),
                |r| {
                    done += 1;
                    eprintln!(
                        "[{done}/{seeds}] seed {:<6} {} {:>4} items {:>5} deliveries {} crash(es) {:>5.1}s",
                        r.seed,
                        if r.passed { "pass" } else { "FAIL" },
                        r.items,
                        r.deliveries,
                        r.crashes,
                        r.seconds
                    );
                },
            )
            .await?;
            println!(
                "{:>8} {:>6} {:>10} {:>5} {:>4} {:>10} {:>6} {:>7} {:>7} {:>7}  verdict",
                "seed",
                "items",
                "deliveries",
                "lost",
                "dup",
                "wrong-skip",
                "other",
                "crashes",
                "retries",
                "seconds"
            );
            for r in &results {
                println!(
                    "{:>8} {:>6} {:>10} {:>5} {:>4} {:>10} {:>6} {:>7} {:>7} {:>7.1}  {}",
                    r.seed,
                    r.items,
                    r.deliveries,
                    r.lost,
                    r.duplicated,
                    r.wrongly_skipped,
                    r.other_findings,
                    r.crashes,
                    r.retries,
                    r.seconds,
                    if r.passed { "pass" } else { "FAIL" }
                );
            }
            for r in results.iter().filter(|r| !r.passed) {
                println!("\nFAILED seed {}: {}", r.seed, r.description);
                if let Some(d) = &r.diverged {
                    println!("  not deterministic: the second run differed in {d}");
                }
                for line in &r.details {
                    println!("  {line}");
                }
                println!("  replay: {}", r.replay);
                if let Some(path) = &r.saved {
                    println!(
                        "  saved: {} (scenarios run {} replays it)",
                        path.display(),
                        path.display()
                    );
                }
            }
            println!(
                "\n{}",
                scenarios::chaos::summary(&results, started.elapsed().as_secs_f64())
            );
            if let Some(path) = &report {
                std::fs::write(path, serde_json::to_string_pretty(&results)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(if results.iter().all(|r| r.passed) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Shrink { file, out, budget } => {
            check_writable(&[&Some(out.clone())])?;
            let scenario = Scenario::load(&file)?;
            if !scenarios::chaos::fails(&scenario).await {
                anyhow::bail!(
                    "{} does not fail: there is nothing to shrink",
                    file.display()
                );
            }
            let (items, crashes) = (scenario.source_items(), scenario.crashes.len());
            let (small, tries) = scenarios::chaos::shrink(scenario, budget).await;
            std::fs::write(&out, small.to_file_json())
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} -> {}: {items} items and {crashes} crash point(s) down to {} and {}, in {tries} runs",
                file.display(),
                out.display(),
                small.source_items(),
                small.crashes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { file } => {
            let scenario = Scenario::load(&file)?;
            let work = scenarios::harness::temp_dir(&format!("serve-{}", scenario.name));
            // A fresh admin token for the viewer, in a file only this user can read: the
            // token itself is never printed.
            let admin_token = mock_common::new_token("adm_");
            let token_path = work.join("viewer-admin-token");
            {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&token_path)
                    .and_then(|mut f| f.write_all(admin_token.as_bytes()))
                    .with_context(|| format!("writing {}", token_path.display()))?;
            }
            let fakes = Fakes::for_scenario_with_viewer(&scenario, &admin_token).await?;
            drop(admin_token);
            let mut mapping = match &scenario.mapping_csv {
                Some(text) => {
                    std::fs::write(work.join("mapping.csv"), text)?;
                    "csv = \"mapping.csv\"\n".to_owned()
                }
                None => String::new(),
            };
            if let Some(region) = &scenario.mapping_default_region {
                mapping.push_str(&format!(
                    "default_region = {}\n",
                    serde_json::to_string(region)?
                ));
            }
            let config = format!(
                "state_dir = \"state\"\n\n[provider]\nurl = \"{}\"\nusername = \"{PROVIDER_USER}\"\npassword_env = \"TELEMESSAGE_PASSWORD\"\n\n[microsoft365]\ntenant = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_env = \"M365_CLIENT_SECRET\"\ngraph_url = \"{}\"\nlogin_url = \"{}\"\n\n[mapping]\nautomatic = {}\n{mapping}\n[import]\nsize_limit_bytes = {}\n",
                fakes.provider_url,
                scenario.tenant_domain,
                fakes.mailbox_url,
                fakes.mailbox_url,
                scenario.automatic_mapping,
                scenario.size_limit
            );
            let config_path = work.join("connector.toml");
            std::fs::write(&config_path, config)?;
            println!("provider (TeleMessage fake): {}", fakes.provider_url);
            println!("Microsoft 365 fake:          {}", fakes.mailbox_url);
            println!("connector configuration:     {}", config_path.display());
            println!("mailbox viewer:              {}/ui/", fakes.mailbox_url);
            println!(
                "viewer admin token file:     {} (paste its content on the viewer's sign-in page)",
                token_path.display()
            );
            println!("\nIn another shell:");
            println!(
                "  export TELEMESSAGE_PASSWORD={} M365_CLIENT_SECRET={}",
                scenarios::harness::PROVIDER_PASSWORD,
                scenarios::harness::CLIENT_SECRET
            );
            for run in &scenario.runs {
                println!(
                    "  cargo run -p connector -- run --config {} --until {}",
                    config_path.display(),
                    run.until.to_rfc3339()
                );
            }
            println!("\nCtrl-C stops both fakes.");
            tokio::signal::ctrl_c().await?;
            drop(fakes);
            let _ = std::fs::remove_dir_all(&work);
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match main_inner().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
