//! `scenarios generate`: writes a generated scenario file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::Scenario;
use crate::generate::GeneratorParams;

/// The arguments of `scenarios generate` (its help is on `super::Command`).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub seed: u64,
    /// Midnight (UTC, RFC 3339) of the first day.
    #[arg(long, default_value = "2026-11-22T00:00:00Z")]
    pub start: DateTime<Utc>,
    #[arg(long, default_value_t = 1)]
    pub days: u32,
    #[arg(long, default_value_t = 50)]
    pub employees: usize,
    #[arg(long, default_value_t = 40)]
    pub external_contacts: usize,
    #[arg(long, default_value_t = 3000)]
    pub items_per_day: usize,
    /// A day (from 1) whose daily run is missed; may be repeated.
    #[arg(long = "missed-run")]
    pub missed_runs: Vec<u32>,
    /// Leave out the 10 MiB boundary items.
    #[arg(long)]
    pub no_boundary_cases: bool,
    /// Share of items (0 to 1) the provider lists late, up to six hours after their
    /// archive time; those near a day's end are found by the next run's look-back.
    #[arg(long, default_value_t = 0.0)]
    pub late_rate: f64,
    /// Share of text items (0 to 1) the provider sends again with changed text.
    #[arg(long, default_value_t = 0.0)]
    pub revision_rate: f64,
    /// Write the expanded (explicit) scenario instead of the parameters.
    #[arg(long)]
    pub explicit: bool,
    #[arg(long)]
    pub out: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let params = GeneratorParams {
        seed: args.seed,
        start: args.start,
        days: args.days,
        employees: args.employees,
        external_contacts: args.external_contacts,
        items_per_day: args.items_per_day,
        missed_runs: args.missed_runs,
        boundary_cases: !args.no_boundary_cases,
        late_rate: args.late_rate,
        revision_rate: args.revision_rate,
    };
    let file =
        serde_json::json!({"name": args.name, "description": "", "generate": params, "runs": []});
    let mut scenario = Scenario::parse(&file.to_string())?;
    let out = args.out;
    if args.explicit {
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
