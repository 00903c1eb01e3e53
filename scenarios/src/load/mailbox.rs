//! The fake mailbox of a load run, and the reconciliation that reads it: in a process of
//! their own (the default for figures), or in this one (tests).
//!
//! The child (`scenarios load-mailbox`, see [`super::child`]) serves Graph and answers:
//! - `imports`: messages stored by `importMime` so far;
//! - `reset`: empties every mailbox (after the ceiling);
//! - `figures`: its counters, its own data's size and the bytes its store wrote;
//! - `reconcile {JSON}`: reads back every copy and checks it against the day drawn again
//!   ([`Check`]), answering a [`Reconciled`]. Its peak memory before that is the fake
//!   mailbox's own; the reconciliation runs after it, where the copies are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::child::Child;
use super::usage::{self, Cpu};
use super::{Limits, LoadParams, Retain, Throttling};
use crate::reconcile::ScenarioReport;
use crate::{oracle, reconcile};

/// The fake mailbox of a load run.
#[derive(Debug, Clone)]
pub enum Mailbox {
    InProcess(mock_mailbox::State),
    Child(Arc<tokio::sync::Mutex<Child>>),
}

/// What the fake mailbox says of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub counters: mock_mailbox::state::Counters,
    pub memory: mock_mailbox::state::Memory,
    /// Bytes its store has written since it started.
    pub bytes_written: u64,
}

/// What the reconciliation is given besides the mailbox: the day's parameters (to draw
/// it again), what the first draw found, and the connector's run reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct Check {
    pub params: LoadParams,
    /// The scenario without items, as written by [`super::write_shell`].
    pub shell: PathBuf,
    /// The files' hashes from the first draw ([`super::day::DayStream::save_hashes`]).
    pub hashes: PathBuf,
    pub long_ids: BTreeMap<String, String>,
    pub source_items: usize,
    pub deliveries: usize,
    pub runs: Vec<connector::report::RunReport>,
    /// The rules the connector is judged by, and whether it wrote a report for every
    /// run (see `Reconciliation::judged`).
    pub rules: crate::conformance::Rules,
    pub have_reports: bool,
}

/// The reconciliation's outcome.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reconciled {
    pub report: ScenarioReport,
    pub seconds: f64,
}

/// The fake mailbox's settings for a load run.
pub fn config(
    retain: Retain,
    limits: mock_mailbox::throttle::Limits,
    profile: mock_mailbox::profile::Profile,
) -> mock_mailbox::Config {
    mock_mailbox::Config {
        profile,
        storage: match retain {
            // Message bytes on disk, each distinct message once: a big day does not fit
            // in RAM.
            Retain::Full | Retain::Auto => mock_mailbox::store::Storage::Disk { dir: None },
            Retain::Summary => mock_mailbox::store::Storage::Summary,
        },
        limits,
        ..mock_mailbox::Config::default()
    }
}

impl Mailbox {
    /// Starts `program load-mailbox` for the scenario in `shell_path`
    /// ([`super::write_shell`]), with `p`'s throttling, and waits until it listens.
    pub async fn child(
        program: &Path,
        shell_path: &Path,
        retain: Retain,
        p: &LoadParams,
    ) -> anyhow::Result<Self> {
        let args = child_args(shell_path, retain, p);
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let child = Child::start("fake mailbox", program, "load-mailbox", &args).await?;
        Ok(Self::Child(Arc::new(tokio::sync::Mutex::new(child))))
    }

    /// Where the child listens (`None` in this process: the `Fakes`' own URL).
    pub async fn url(&self) -> Option<String> {
        match self {
            Self::InProcess(_) => None,
            Self::Child(c) => Some(c.lock().await.url.clone()),
        }
    }

    /// Messages stored by `importMime` so far.
    pub async fn imports(&self) -> anyhow::Result<u64> {
        match self {
            Self::InProcess(state) => Ok(state.counters().imports),
            Self::Child(c) => {
                let line = c.lock().await.ask("imports").await?;
                line.parse()
                    .with_context(|| format!("the fake mailbox said {line:?}, not a count"))
            }
        }
    }

    /// Empties every mailbox.
    pub async fn reset(&self) -> anyhow::Result<()> {
        match self {
            Self::InProcess(state) => state.reset(),
            Self::Child(c) => {
                let line = c.lock().await.ask("reset").await?;
                anyhow::ensure!(line == "reset", "the fake mailbox said {line:?} to reset");
            }
        }
        Ok(())
    }

    /// Its CPU time so far: the child's own, or the threads it serves on here.
    pub async fn cpu(&self) -> anyhow::Result<Cpu> {
        Ok(match self {
            Self::InProcess(_) => usage::threads_cpu(crate::harness::MAILBOX_THREADS),
            Self::Child(c) => c.lock().await.usage().await?.cpu(),
        })
    }

    /// Its peak resident memory so far (`None` in this process).
    pub async fn peak_rss_bytes(&self) -> anyhow::Result<Option<u64>> {
        Ok(match self {
            Self::InProcess(_) => None,
            Self::Child(c) => Some(c.lock().await.usage().await?.max_rss_bytes),
        })
    }

    pub async fn figures(&self) -> anyhow::Result<Figures> {
        match self {
            Self::InProcess(state) => Ok(figures(state)),
            Self::Child(c) => {
                let line = c.lock().await.ask("figures").await?;
                serde_json::from_str(&line).context("the fake mailbox's figures")
            }
        }
    }

    /// Reconciles every item against every mailbox.
    pub async fn reconcile(&self, check: Check) -> anyhow::Result<Reconciled> {
        match self {
            Self::InProcess(state) => {
                let state = state.clone();
                // A minute of checking on a big day: not on the runtime's threads.
                tokio::task::spawn_blocking(move || reconcile_day(&state, &check)).await?
            }
            Self::Child(c) => {
                let line = format!("reconcile {}", serde_json::to_string(&check)?);
                let answer = c.lock().await.ask(&line).await?;
                serde_json::from_str(&answer).context("the fake mailbox's reconciliation")
            }
        }
    }

    /// Stops the child, its store removed; its peak resident memory over its whole
    /// life, the reconciliation's included (`None` in this process).
    pub async fn finish(self) -> anyhow::Result<Option<u64>> {
        match self {
            Self::InProcess(_) => Ok(None),
            Self::Child(c) => {
                let child = Arc::try_unwrap(c)
                    .map_err(|_| anyhow::anyhow!("the fake mailbox is still in use"))?
                    .into_inner();
                Ok(Some(child.stop().await?.max_rss_bytes))
            }
        }
    }
}

fn figures(state: &mock_mailbox::State) -> Figures {
    Figures {
        counters: state.counters(),
        memory: state.memory(),
        bytes_written: state.store().bytes_written(),
    }
}

/// Reads back every copy from `mailbox`, then draws the day again from its seed, part by
/// part: each part's outcomes are worked out, checked against what landed, and dropped.
pub fn reconcile_day(mailbox: &mock_mailbox::State, check: &Check) -> anyhow::Result<Reconciled> {
    let t = Instant::now();
    let scenario = super::read_shell(&check.shell)?;
    let landed =
        reconcile::landed(&scenario, &check.long_ids, mailbox).context("reading what landed")?;
    eprintln!(
        "load: the copies of {} items read back in {:.1}s; drawing the day again to check them (RSS of the fake mailbox's process {:.0} MB)",
        landed.len(),
        t.elapsed().as_secs_f64(),
        usage::rss_now_mb()
    );
    let mut reconciliation = reconcile::Reconciliation::new(
        &scenario,
        Default::default(),
        &landed,
        &check.runs,
        "scenarios load (same parameters)".into(),
    )
    .judged(check.rules, check.have_reports);
    let mut again = super::day::DayStream::again_from(&check.params, &check.hashes)?;
    // The next part is drawn and worked out on another core while this one is checked
    // (smaller parts than the first draw's: up to three are held at a time).
    std::thread::scope(|scope| {
        let (parts, worked_out) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            while let Some(part) = again.next_part(super::CHUNK / 4) {
                if parts.send(oracle::expected(&part)).is_err() {
                    break;
                }
            }
        });
        for part in worked_out {
            reconciliation.check_part(&part);
        }
    });
    let report = reconciliation.finish();
    // The same seed draws the same day; if it ever did not, no verdict would mean much.
    if (report.source_items, report.expected_deliveries) != (check.source_items, check.deliveries) {
        anyhow::bail!(
            "the day drawn again to reconcile it differs from the day imported: {} items and {} deliveries against {} and {}",
            report.source_items,
            report.expected_deliveries,
            check.source_items,
            check.deliveries
        );
    }
    drop(landed);
    Ok(Reconciled {
        report,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// The arguments of `load-mailbox` for a run with `p`'s throttling.
fn child_args(shell: &Path, retain: Retain, p: &LoadParams) -> Vec<std::ffi::OsString> {
    let name = |v: Option<clap::builder::PossibleValue>| {
        v.map(|v| v.get_name().to_owned()).unwrap_or_default()
    };
    let mut args: Vec<std::ffi::OsString> = vec![
        "--shell".into(),
        shell.into(),
        "--retain".into(),
        name(clap::ValueEnum::to_possible_value(&retain)).into(),
        "--throttling".into(),
        name(clap::ValueEnum::to_possible_value(&p.throttling)).into(),
        "--profile".into(),
        name(clap::ValueEnum::to_possible_value(&p.profile)).into(),
        "--latency-seed".into(),
        p.latency_seed.to_string().into(),
    ];
    args.extend(p.limits.args().into_iter().map(Into::into));
    args
}

/// The child's side: the fake mailbox for the scenario in `args.shell`, on the system
/// clock, and the reconciliation when asked (see the module's documentation).
pub async fn serve_child(args: ChildArgs) -> anyhow::Result<()> {
    let scenario = super::read_shell(&args.shell)?;
    let (_, directory) = crate::harness::fixtures_without_items(&scenario)?;
    drop(scenario);
    let state = mock_mailbox::State::new(
        &directory,
        Arc::new(mock_common::SystemClock),
        config(
            args.retain,
            args.limits.for_mailbox(args.throttling),
            args.profile.mailbox(args.latency_seed),
        ),
        mock_common::AdminToken::disabled(),
    )?;
    drop(directory);
    let router = mock_mailbox::router(state.clone());
    super::child::serve(router, |line| {
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        Ok(Some(match command {
            "imports" => state.counters().imports.to_string(),
            "reset" => {
                state.reset();
                "reset".to_owned()
            }
            "figures" => serde_json::to_string(&figures(&state))?,
            "reconcile" => {
                let check: Check = serde_json::from_str(rest).context("the reconcile command")?;
                serde_json::to_string(&reconcile_day(&state, &check)?)?
            }
            other => anyhow::bail!("unknown command {other:?}"),
        }))
    })
    .await
}

/// `scenarios load-mailbox`: the fake mailbox of `scenarios load`, as its child.
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
    /// The scenario whose tenant and mailboxes it serves (JSON, no items).
    #[arg(long)]
    pub shell: PathBuf,
    #[arg(long, value_enum)]
    pub retain: Retain,
    #[arg(long, value_enum)]
    pub throttling: Throttling,
    #[command(flatten)]
    pub limits: Limits,
    #[arg(long, value_enum, default_value = "lenient")]
    pub profile: super::LoadProfile,
    #[arg(long, default_value_t = 0)]
    pub latency_seed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the runner gives the fake mailbox's process is what that process reads.
    #[test]
    fn the_child_is_started_with_the_runs_retention_and_limits() {
        #[derive(clap::Parser)]
        struct Line {
            #[command(flatten)]
            args: ChildArgs,
        }
        let mut p = crate::load::day::tests::params();
        p.throttling = Throttling::Custom;
        p.profile = super::super::LoadProfile::Graph;
        p.latency_seed = 9;
        p.limits = Limits {
            requests_per_10_minutes: 600,
            concurrent_requests: 2,
            upload_mib_per_5_minutes: 20,
        };
        let args = child_args(Path::new("/w/shell.json"), Retain::Summary, &p);
        let line: Line =
            clap::Parser::try_parse_from(std::iter::once("load-mailbox".into()).chain(args))
                .unwrap();
        assert_eq!(line.args.shell, Path::new("/w/shell.json"));
        assert_eq!(line.args.retain, Retain::Summary);
        assert_eq!(line.args.throttling, Throttling::Custom);
        assert_eq!(line.args.limits, p.limits);
        assert_eq!(line.args.profile, super::super::LoadProfile::Graph);
        assert_eq!(line.args.latency_seed, 9);
    }
}
