//! `scenarios chaos`: many seeded organisations through faults and crashes, each reconciled.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::reports::check_writable;

/// The arguments of `scenarios chaos` (its help is on `super::Command`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many seeds to run.
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Seeds run at once (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Run every seed twice and fail a seed whose two outcomes differ (what landed,
    /// skips, findings, faults drawn, crash points, retries), naming the first
    /// difference.
    #[arg(long)]
    pub check_determinism: bool,
    /// Where a failing seed's scenario is written (chaos-SEED.json).
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/recorded"))]
    pub save: PathBuf,
    /// Do not write failing seeds' scenarios.
    #[arg(long)]
    pub no_save: bool,
    /// Write every seed's scenario, passing or not, under this directory (to look at
    /// a seed, or to edit it into a recorded scenario).
    #[arg(long, value_name = "DIR")]
    pub write_all: Option<PathBuf>,
    /// Write every seed's result (JSON) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The fake Microsoft 365's profile for every seed: graph (the default: Graph's 4 MiB
    /// request cap and upload sessions; no delays, so that seeds stay quick) or lenient
    /// (bodies up to 48 MiB).
    #[arg(long, value_enum)]
    pub profile: Option<super::serve::ProfileArg>,
    #[command(flatten)]
    pub connector: crate::conformance::ConnectorArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        seeds,
        from,
        jobs,
        check_determinism,
        save,
        no_save,
        write_all,
        report,
        profile,
        connector,
    } = args;
    let under = connector.under_test();
    // Graph's rules only: a chaos seed is judged by what lands, not by how long it took.
    let profile = profile.map(|p| crate::model::MailboxProfile {
        latency: None,
        ..p.spec()
    });
    if seeds == 0 {
        anyhow::bail!("--seeds must be at least 1");
    }
    if let Some(dir) = &write_all {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for seed in from..from.saturating_add(seeds) {
            let path = dir.join(format!("chaos-{seed}.json"));
            std::fs::write(
                &path,
                crate::chaos::scenario_under(seed, profile.as_ref())?.to_file_json(),
            )
            .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    check_writable(&[&report])?;
    // Half the seeds with crash points run the connector binary: make sure it is
    // today's before the first seed's clock starts.
    if matches!(under, crate::conformance::UnderTest::Ours) {
        crate::harness::connector_binary(None)?;
    }
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
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
    let results = crate::chaos::run(
        from,
        seeds,
        jobs,
        check_determinism,
        (!no_save).then_some(save.as_path()),
        (profile, &under),
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
        crate::chaos::summary(&results, started.elapsed().as_secs_f64())
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
