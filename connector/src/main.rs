//! `connector`: the daily import of WhatsApp items into Microsoft 365 mailboxes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use connector::errors::exit;
use connector::store::Store;
use connector::{Config, Connector, RunReport};

/// Imports WhatsApp items archived by TeleMessage into each participant's Microsoft 365
/// mailbox, in the folder `WhatsApp Archiver`.
///
/// Secrets are never given on the command line or in the configuration file: the
/// configuration names an environment variable or a file for each. Logs go to stderr
/// (RUST_LOG sets the level).
///
/// Exit status: 0 success (every item delivered or skipped with a reason); 1 an internal
/// error (state database or staging directory unusable; nothing is lost); 2 a usage or
/// configuration error (command line, configuration file, mapping file); 3 a service
/// could not be reached or refused to log in (nothing imported); 4 the run finished but
/// some deliveries failed (their items are held and the next runs try them again) or
/// some items need a person (`connector held list`); 5 another run holds the state
/// directory (this one did nothing).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on stderr as text (coloured only at a terminal, never with NO_COLOR) or
    /// as JSON lines (timestamp, level, target, message, fields, the run's run_id).
    /// Default: the configuration's log.format, else text.
    #[arg(long, global = true, value_enum)]
    log_format: Option<connector::ops::LogFormat>,
}

impl Command {
    /// The configuration file the command reads.
    fn config(&self) -> &std::path::Path {
        match self {
            Command::Run { config, .. }
            | Command::Check { config, .. }
            | Command::Schedule { config, .. } => config,
            Command::Held { action } => match action {
                HeldAction::List { config }
                | HeldAction::Retry { config, .. }
                | HeldAction::GiveUp { config, .. } => config,
            },
            Command::State { action } => match action {
                StateAction::SetAside { config } => config,
            },
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One import run: every item archived since the end of the last run (the previous
    /// 24 hours the first time), missed days included, day by day.
    ///
    /// Items earlier runs could not deliver are tried first. Every window closes whatever
    /// one item does: an item whose delivery fails is held and tried again by the next
    /// runs (import.held_runs runs or import.held_days days), then needs a person.
    ///
    /// Exit status: 0 success; 1 internal error; 2 usage or configuration error; 3 a
    /// service unreachable or refusing the login; 4 some deliveries failed or some items
    /// need a person; 5 another run holds the state directory.
    Run {
        /// Configuration file (TOML); see docs/examples/connector.toml.
        #[arg(long)]
        config: PathBuf,
        /// End of the window (RFC 3339); default: now.
        #[arg(long, value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        /// Take the window again from this time (RFC 3339); deliveries already made are
        /// not repeated.
        #[arg(long, value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        /// Write the run report (JSON) to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        #[command(flatten)]
        harness: Harness,
    },
    /// Logs in to both sides, checks the mapping file and says where each registered
    /// employee's items would go. Imports nothing (but with --probe).
    Check {
        #[arg(long)]
        config: PathBuf,
        /// Also find out, once, what the tenant accepts: imports two small test messages
        /// (just under and just above import.max_request_bytes) and attaches a 3.5 MiB
        /// file to one by an upload session, in a scratch folder of this mailbox (an
        /// address or user id) that it removes; then says which path large files will
        /// take. Needs Mail.ReadWrite, as the import does.
        #[arg(long, value_name = "MAILBOX")]
        probe: Option<String>,
    },
    /// Runs every day at the configured time (schedule.daily_at_utc), until stopped. The
    /// configuration and its secrets are read again before each run, so a corrected
    /// password is taken without a restart.
    Schedule {
        #[arg(long)]
        config: PathBuf,
        /// Directory for one JSON report per run.
        #[arg(long)]
        report_dir: Option<PathBuf>,
    },
    /// The held list: items whose delivery failed when their window closed. Lists them,
    /// puts items that need a person back to be tried by the next run, or gives up on
    /// them (recorded, with the reason, as a skip `given_up`). Needs no secrets.
    Held {
        #[command(subcommand)]
        action: HeldAction,
    },
    /// The state database: what to do when it is damaged.
    State {
        #[command(subcommand)]
        action: StateAction,
    },
}

#[derive(Debug, Subcommand)]
enum StateAction {
    /// Moves a damaged state database aside (renamed `state.sqlite.set-aside-TIME`, kept
    /// for a person to read), so that the next run begins a new state. A run on a new
    /// state looks every message up in its mailbox before sending it, so nothing is
    /// imported twice; give --since to take again the days the old state had not closed.
    /// Refused while a run holds the state directory.
    SetAside {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum HeldAction {
    /// Lists every held item and every file owed (an item delivered without its file,
    /// which the next runs fetch again): id, runs failed, since when, last error, and
    /// whether it needs a person.
    List {
        #[arg(long)]
        config: PathBuf,
    },
    /// Puts items (or their owed files) back to be tried by the next run (all that need a
    /// person when no id is given), counting their runs from zero.
    Retry {
        #[arg(long)]
        config: PathBuf,
        /// Item ids; none means every item that needs a person.
        item_ids: Vec<String>,
    },
    /// Gives up on items: they leave the held list and are recorded as skipped
    /// (`given_up`) with the reason, which an auditor will read.
    GiveUp {
        #[arg(long)]
        config: PathBuf,
        /// Why (for the audit trail).
        #[arg(long)]
        reason: String,
        #[arg(required = true)]
        item_ids: Vec<String>,
    },
}

/// Settings only the test harness uses, to run this binary exactly as it runs the
/// library (`scenarios chaos` kills it with SIGKILL at a seeded moment). Hidden from
/// `--help`: a daily import never needs them.
#[derive(Debug, clap::Args)]
struct Harness {
    /// The run's clock stands still at this time (RFC 3339) instead of following the
    /// system clock.
    #[arg(long, hide = true, value_parser = parse_time)]
    harness_now: Option<DateTime<Utc>>,
    /// Retry delays in milliseconds, `BASE,MAX` (waits on `Retry-After` are capped at MAX).
    #[arg(long, hide = true, value_parser = parse_delays)]
    harness_retry_ms: Option<(u64, u64)>,
    /// Commit delivery records every N records, never by time.
    #[arg(long, hide = true)]
    harness_commit_every: Option<usize>,
}

fn parse_delays(s: &str) -> Result<(u64, u64), String> {
    let (base, max) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected BASE,MAX in milliseconds"))?;
    let ms = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|e| format!("{v:?} is not a number of milliseconds: {e}"))
    };
    Ok((ms(base)?, ms(max)?))
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-23T00:00:00Z: {e}"))
}

/// An error for the command line: what to print and the exit status.
#[derive(Debug)]
enum CliError {
    Connector(connector::ConnectorError),
    Other(anyhow::Error),
}

impl From<connector::ConnectorError> for CliError {
    fn from(e: connector::ConnectorError) -> Self {
        Self::Connector(e)
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

fn connector(config: &std::path::Path) -> Result<Connector, connector::ConnectorError> {
    let config = Config::load(config)?;
    Connector::new(config, Arc::new(Utc::now))
}

/// A run inside a span carrying its `run_id`, so that every line it logs names it.
async fn in_span<T>(started: DateTime<Utc>, run: impl std::future::Future<Output = T>) -> T {
    use tracing::Instrument;
    let run_id = connector::ops::run_id(started);
    run.instrument(tracing::info_span!("run", run_id = %run_id))
        .await
}

/// The run's figures for monitoring; a file that cannot be written is logged, never a
/// reason to fail a run that imported.
fn write_metrics(path: &std::path::Path, outcome: &Result<RunReport, connector::ConnectorError>) {
    let ended = match outcome {
        Ok(report) => connector::ops::Ended::Report(report),
        Err(e) => connector::ops::Ended::Failed {
            exit_status: e.exit_code(),
            at: Utc::now(),
        },
    };
    if let Err(e) = connector::ops::write_metrics(path, &ended) {
        tracing::error!(path = %path.display(), "the metrics file cannot be written: {e}");
    }
}

fn write_report(report: &RunReport, path: &std::path::Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(path, json + "\n")
        .with_context(|| format!("writing the report {}", path.display()))
}

/// Success, or a usage error naming the ids that are not on the held list.
fn all_known(unknown: &[String]) -> Result<ExitCode, CliError> {
    if unknown.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(connector::ConnectorError::Usage(format!(
            "not on the held list: {}",
            unknown.join(", ")
        ))
        .into())
    }
}

/// The record key of a held item, named as `held list` shows it (or by its key).
fn held_key(held: &[connector::store::Held], named: &str) -> Option<String> {
    held.iter()
        .find(|h| h.item_id == named || connector::store::display_key(&h.item_id) == named)
        .map(|h| h.item_id.clone())
}

/// One line per row of a waiting list: id, state (`labels`: still tried, needs a
/// person), runs failed, since when, last error.
fn print_waiting(rows: &[connector::store::Held], labels: (&str, &str)) {
    for row in rows {
        println!(
            "{}\t{}\truns {}\tsince {}\t{}",
            connector::store::display_key(&row.item_id),
            if row.needs_person { labels.1 } else { labels.0 },
            row.runs,
            row.first_failed_at.to_rfc3339(),
            row.last_error
        );
    }
}

fn held(action: HeldAction) -> Result<ExitCode, CliError> {
    let config = match &action {
        HeldAction::List { config }
        | HeldAction::Retry { config, .. }
        | HeldAction::GiveUp { config, .. } => config,
    };
    let state_dir = connector::config::state_dir_of(config)?;
    let store = Store::open(&state_dir.join("state.sqlite"))?;
    let now = Utc::now();
    match action {
        HeldAction::List { .. } => {
            let held = store.held()?;
            let owed = store.owed_files()?;
            if held.is_empty() {
                println!("no held items: every item is delivered or skipped with a reason");
            }
            print_waiting(&owed, ("file owed", "FILE OWED, NEEDS A PERSON"));
            print_waiting(&held, ("waiting", "NEEDS A PERSON"));
            let need_person = held.iter().filter(|h| h.needs_person).count()
                + owed.iter().filter(|o| o.needs_person).count();
            Ok(if need_person == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(exit::INCOMPLETE)
            })
        }
        HeldAction::Retry { item_ids, .. } => {
            let held = store.held()?;
            let owed = store.owed_files()?;
            let ids: Vec<String> = if item_ids.is_empty() {
                held.iter()
                    .chain(&owed)
                    .filter(|h| h.needs_person)
                    .map(|h| connector::store::display_key(&h.item_id))
                    .collect()
            } else {
                item_ids
            };
            let mut unknown = Vec::new();
            for id in &ids {
                let mut known = false;
                if let Some(key) = held_key(&held, id)
                    && store.retry_held(&key, now)?
                {
                    println!("{id}: the next run tries it again");
                    known = true;
                }
                if let Some(key) = held_key(&owed, id)
                    && store.retry_owed(&key, now)?
                {
                    println!("{id}: the next run fetches its file again");
                    known = true;
                }
                if !known {
                    unknown.push(id.clone());
                }
            }
            all_known(&unknown)
        }
        HeldAction::GiveUp {
            reason, item_ids, ..
        } => {
            if reason.trim().is_empty() {
                return Err(connector::ConnectorError::Usage(
                    "--reason must say why (an auditor will read it)".into(),
                )
                .into());
            }
            let held = store.held()?;
            let mut unknown = Vec::new();
            for id in &item_ids {
                let Some(h) =
                    held_key(&held, id).and_then(|k| held.iter().find(|h| h.item_id == k))
                else {
                    unknown.push(id.clone());
                    continue;
                };
                let detail = format!(
                    "{} given up by a person on {}: {}; it had failed in {} run(s), last: {}",
                    connector::store::display_key(&h.item_id),
                    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    reason.trim(),
                    h.runs,
                    h.last_error
                );
                let (provider_id, _) = connector::store::split_key(&h.item_id);
                store.record_skip(
                    provider_id,
                    connector::report::SkipReason::GivenUp,
                    &detail,
                    h.window_id,
                    now,
                )?;
                store.release(&h.item_id)?;
                println!("{id}: given up and recorded as skipped (given_up)");
            }
            all_known(&unknown)
        }
    }
}

async fn main_inner(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Run {
            config,
            until,
            since,
            report,
            harness,
        } => {
            let mut connector = match harness.harness_now {
                Some(now) => Connector::new(Config::load(&config)?, Arc::new(move || now))?,
                None => connector(&config)?,
            };
            if let Some((base, max)) = harness.harness_retry_ms {
                connector = connector.with_retry_delays(
                    std::time::Duration::from_millis(base),
                    std::time::Duration::from_millis(max),
                );
            }
            if let Some(n) = harness.harness_commit_every {
                connector = connector.with_group_commit(connector::store::GroupCommit {
                    max_records: n.max(1),
                    max_delay: std::time::Duration::MAX,
                });
            }
            let now = harness.harness_now.unwrap_or_else(Utc::now);
            let metrics = connector.config().metrics_textfile.clone();
            let outcome = in_span(now, connector.run(until.unwrap_or(now), since)).await;
            if let Some(path) = &metrics {
                write_metrics(path, &outcome);
            }
            let outcome = outcome?;
            println!("{}", outcome.summary());
            if let Some(path) = report {
                write_report(&outcome, &path)?;
            }
            Ok(if outcome.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(exit::INCOMPLETE)
            })
        }
        Command::Check { config, probe } => {
            let connector = connector(&config)?;
            for line in connector.check().await? {
                println!("{line}");
            }
            if let Some(mailbox) = probe {
                for line in connector.probe(&mailbox).await? {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Held { action } => held(action),
        Command::State {
            action: StateAction::SetAside { config },
        } => {
            let state_dir = connector::config::state_dir_of(&config)?;
            std::fs::create_dir_all(&state_dir)
                .with_context(|| format!("state directory {}", state_dir.display()))?;
            let now = Utc::now();
            // Not while a run is using it.
            let _lock = connector::lock::RunLock::acquire(&state_dir, now)?;
            let path = state_dir.join("state.sqlite");
            match connector::store::set_aside(&path, now)? {
                Some(to) => println!(
                    "moved {} aside to {}; the next run begins a new state and looks every message up before sending it",
                    path.display(),
                    to.display()
                ),
                None => println!("no state database at {}: nothing to move", path.display()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule { config, report_dir } => {
            // Checked once at start, so a broken configuration fails at once.
            let at = Config::load(&config)?.daily_at;
            loop {
                let now = Utc::now();
                let next = connector::run::next_daily_run(now, at);
                tracing::info!(next = %next, "waiting for the next daily run");
                tokio::select! {
                    () = tokio::time::sleep((next - now).to_std().unwrap_or_default()) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                }
                let (outcome, metrics) = match connector(&config) {
                    Ok(c) => {
                        let metrics = c.config().metrics_textfile.clone();
                        (in_span(Utc::now(), c.run(Utc::now(), None)).await, metrics)
                    }
                    Err(e) => (Err(e), None),
                };
                if let Some(path) = &metrics {
                    write_metrics(path, &outcome);
                }
                match outcome {
                    // Never beside another run: today's is skipped, and the next one
                    // starts where the last closed window ended, so nothing is lost.
                    Err(e @ connector::ConnectorError::Busy { .. }) => {
                        tracing::warn!("today's run is skipped: {e}");
                    }
                    Ok(outcome) => {
                        tracing::info!("run finished:\n{}", outcome.summary());
                        if let Some(dir) = &report_dir {
                            let path = dir.join(format!(
                                "run-{}.json",
                                outcome.started_at.format("%Y%m%dT%H%M%SZ")
                            ));
                            if let Err(e) = write_report(&outcome, &path) {
                                tracing::error!("{e:#}");
                            }
                        }
                    }
                    // Nothing is lost: the next run starts where the last closed window
                    // ended. A refused secret is not sent again until it changes.
                    Err(e) => tracing::error!("run failed: {e}"),
                }
            }
        }
    }
}

/// Blocks from this size up are mapped on their own and handed back when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const LARGE_BLOCK: libc::c_int = 128 * 1024;

/// glibc's allocator serves large blocks by `mmap`, but each one freed raises that
/// threshold (up to 32 MiB), after which import bodies (150 KB to 4 MB, by the hundred)
/// are carved from the heap and the holes they leave stay with the process. Setting the
/// threshold keeps it where it is: on a realistic 20,000-item day at concurrency 512 the
/// connector's peak RSS went from 327 to 212 MB at the same rate, for more system time
/// (docs/load-testing.md, "Memory by bytes"). mimalloc, tried the same way, held 725 MB.
fn hand_back_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[allow(unsafe_code)]
        // SAFETY: `mallopt` only sets one of the allocator's tunables; it runs before the
        // runtime starts any thread, and a refusal (0) leaves glibc's default.
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BLOCK) };
        if set == 0 {
            eprintln!(
                "warning: the allocator's mmap threshold could not be set; memory may stay higher"
            );
        }
    }
}

/// Each request on the wire holds a socket, and `import.concurrency` may be above the
/// 1,024 open files many systems allow a process by default (the soft limit): raised to
/// the hard limit the system sets, as far as it goes. A limit still too low shows as
/// failed connections, retried, and a warning here.
fn allow_a_socket_per_request() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        #[allow(unsafe_code)]
        // SAFETY: both calls only read or write the `rlimit` passed by reference.
        let raised = unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && (limit.rlim_cur >= limit.rlim_max || {
                    limit.rlim_cur = limit.rlim_max;
                    libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
                })
        };
        if !raised {
            eprintln!(
                "warning: the limit on open files could not be raised; a high import.concurrency may fail to connect"
            );
        }
    }
}

/// The connector runs on one thread. Its work is one task that drives every item and
/// delivery, and on a multi-threaded runtime each request and each answer crossed
/// between that task and the connection's, waking a parked thread each time: on the
/// text mix that cost more CPU than the requests themselves (docs/load-testing.md,
/// "One thread"). Files are still read and written on tokio's blocking threads.
fn main() -> ExitCode {
    hand_back_large_blocks();
    allow_a_socket_per_request();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    runtime.block_on(run_cli())
}

async fn run_cli() -> ExitCode {
    let cli = Cli::parse();
    let format = cli
        .log_format
        .or_else(|| connector::config::log_format_of(cli.command.config()))
        .unwrap_or_default();
    connector::ops::init_logs(format);
    match main_inner(cli).await {
        Ok(code) => code,
        Err(CliError::Connector(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(CliError::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::INTERNAL)
        }
    }
}
