//! `scenarios load`: how fast the connector imports a generated day, measured against
//! the fastest a raw client gets out of the same fake mailbox in the same run.
//!
//! - [`day`] makes the day (the generator, then the traffic mix);
//! - [`ceiling`] is phase 1, a raw `importMime` client with no connector logic;
//! - [`import`] is phase 2, the connector (a child process, or in this process);
//! - [`provider`] and [`mailbox`] are the fakes (each a child process, see [`child`],
//!   or in this process); the reconciliation runs where the fake mailbox is;
//! - [`usage`] reads CPU and peak memory, and samples throughput while a phase runs;
//! - [`report`] is what is printed and written as JSON, [`html`] the page with charts.

pub mod ceiling;
pub mod child;
pub mod day;
pub mod html;
pub mod import;
pub mod mailbox;
pub mod provider;
pub mod report;
pub mod usage;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::harness::Fakes;
use crate::oracle;
pub use report::LoadReport;

/// What goes into the day's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// Every item as text: no attachment anywhere.
    Text,
    /// The generator's mix: about a third of items carry a file (images, voice notes,
    /// documents, a few videos over the size limit).
    Realistic,
}

/// How strict and slow the fake mailbox is (`mock_mailbox::profile`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LoadProfile {
    /// Answers at once, bodies up to 48 MiB: what the machine can do on loopback.
    #[default]
    Lenient,
    /// Graph's 4 MiB request cap and its seeded, long-tailed delays (each request holds
    /// its mailbox's place in flight for its delay): a day as Microsoft 365 would take it.
    Graph,
}

impl LoadProfile {
    /// The fake mailbox's profile, its delays drawn from `latency_seed`.
    pub fn mailbox(self, latency_seed: u64) -> mock_mailbox::profile::Profile {
        match self {
            Self::Lenient => mock_mailbox::profile::Profile::lenient(),
            Self::Graph => {
                mock_mailbox::profile::Profile::graph(Some(mock_mailbox::profile::Latency {
                    seed: latency_seed,
                    ..mock_mailbox::profile::Latency::default()
                }))
            }
        }
    }
}

/// How the fake mailbox throttles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Throttling {
    /// No limit: what the machine can do.
    Off,
    /// Exchange Online's per-mailbox defaults: 10,000 requests per 10 minutes, 4 in
    /// flight, 150 MB of uploads per 5 minutes.
    Graph,
    /// Graph's kind of limits with numbers of your own (`--requests-per-10-minutes`,
    /// `--concurrent-requests`, `--upload-mib-per-5-minutes`).
    Custom,
}

/// Per-mailbox limits for `--throttling custom` (Graph's by default): the fake mailbox
/// enforces them, and the connector paces each mailbox to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::Args)]
pub struct Limits {
    /// With --throttling custom: requests one application may make on one mailbox per
    /// 10 minutes.
    #[arg(long, default_value_t = Limits::default().requests_per_10_minutes)]
    pub requests_per_10_minutes: u64,
    /// With --throttling custom: requests in flight on one mailbox.
    #[arg(long, default_value_t = Limits::default().concurrent_requests)]
    pub concurrent_requests: u32,
    /// With --throttling custom: MiB one application may upload to one mailbox per 5
    /// minutes.
    #[arg(long, default_value_t = Limits::default().upload_mib_per_5_minutes)]
    pub upload_mib_per_5_minutes: u64,
}

impl Default for Limits {
    /// Graph's, as the fake mailbox knows them.
    fn default() -> Self {
        let graph = mock_mailbox::throttle::Limits::default();
        Self {
            requests_per_10_minutes: graph.requests_per_window,
            concurrent_requests: graph.concurrent_requests,
            upload_mib_per_5_minutes: graph.upload_bytes_per_window / (1024 * 1024),
        }
    }
}

impl Limits {
    /// What the fake mailbox enforces under `throttling`.
    pub fn for_mailbox(&self, throttling: Throttling) -> mock_mailbox::throttle::Limits {
        match throttling {
            Throttling::Off => mock_mailbox::throttle::Limits::unlimited(),
            Throttling::Graph => mock_mailbox::throttle::Limits::default(),
            Throttling::Custom => mock_mailbox::throttle::Limits {
                requests_per_window: self.requests_per_10_minutes,
                concurrent_requests: self.concurrent_requests,
                upload_bytes_per_window: self.upload_mib_per_5_minutes * 1024 * 1024,
                ..mock_mailbox::throttle::Limits::default()
            },
        }
    }

    /// What the connector paces each mailbox to under `throttling` (nothing when the
    /// fake sets no limit).
    pub fn for_pacing(&self, throttling: Throttling) -> Option<connector::graph::pace::Budget> {
        match throttling {
            Throttling::Off => None,
            Throttling::Graph => Some(connector::graph::pace::Budget::graph()),
            Throttling::Custom => Some(connector::graph::pace::Budget {
                requests: self.requests_per_10_minutes,
                upload_bytes: self.upload_mib_per_5_minutes * 1024 * 1024,
                ..connector::graph::pace::Budget::graph()
            }),
        }
    }

    /// The flags that give these limits to a child.
    fn args(&self) -> [String; 6] {
        [
            "--requests-per-10-minutes".into(),
            self.requests_per_10_minutes.to_string(),
            "--concurrent-requests".into(),
            self.concurrent_requests.to_string(),
            "--upload-mib-per-5-minutes".into(),
            self.upload_mib_per_5_minutes.to_string(),
        ]
    }
}

/// How much of each message the fake mailbox keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Retain {
    /// `full` if the day's estimated messages fit on the disk with room to spare, else
    /// `summary` (said on the terminal and in the report).
    Auto,
    /// Every message's exact bytes, on disk (each distinct message once).
    Full,
    /// Each message's summary and SHA-256s (of the message and of every attachment), no
    /// bytes: for days larger than the disk. The reconciliation checks the same things.
    Summary,
}

/// Where the connector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorMode {
    /// The `connector` binary as a child process: its memory and CPU are its own.
    Process,
    /// The connector library inside this process (its figures mix with the fakes').
    InProcess,
}

/// Where the fakes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FakesMode {
    /// Each in a child process (this program, `load-provider` and `load-mailbox`): their
    /// memory and CPU are their own. The reconciliation runs in the fake mailbox's, after
    /// its peak is read.
    Process,
    /// Inside this process, each on threads of its own (their memory mixes with the
    /// runner's).
    InProcess,
}

/// The parameters of a load run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LoadParams {
    pub employees: usize,
    pub external_contacts: usize,
    pub items_per_day: usize,
    pub days: u32,
    pub mix: Mix,
    pub throttling: Throttling,
    /// The numbers of `--throttling custom` (Graph's otherwise).
    pub limits: Limits,
    /// The connector paces each mailbox to the budgets (with `--throttling graph` or
    /// `custom` only: with no limits there is nothing to pace to).
    pub pacing: bool,
    /// Share of Graph requests answered 503 (half of it as lost import answers).
    pub fault_rate: f64,
    pub connector: ConnectorMode,
    pub retain: Retain,
    #[serde(skip)]
    pub connector_bin: Option<PathBuf>,
    /// Another program in place of our connector (`--connector-cmd`), run once per
    /// scheduled run with the conformance kit's handover (docs/conformance.md).
    #[serde(skip)]
    pub under: crate::conformance::UnderTest,
    pub fakes: FakesMode,
    /// The program to run as the fakes' children (`PROGRAM load-provider`, `PROGRAM
    /// load-mailbox`): by default this one, which must then be `scenarios`.
    #[serde(skip)]
    pub fakes_program: Option<PathBuf>,
    /// Requests in flight, for the connector and the raw client alike.
    pub concurrency: usize,
    pub seed: u64,
    /// The fake mailbox's profile (`lenient` in reports written before it existed).
    #[serde(default)]
    pub profile: LoadProfile,
    /// The seed of the fake mailbox's delays under `graph`.
    #[serde(default)]
    pub latency_seed: u64,
    /// How many requests the raw client sends in phase 1.
    pub ceiling_requests: u64,
    /// Midnight (UTC) of the first day; the day is in the past so that every item exists.
    pub start: DateTime<Utc>,
}

impl LoadParams {
    /// Refuses what cannot make a load run, before anything starts.
    pub fn check(&self) -> anyhow::Result<()> {
        let mut wrong = Vec::new();
        if self.employees == 0 {
            wrong.push("--employees must be at least 1".to_owned());
        }
        if self.items_per_day == 0 {
            wrong.push("--items-per-day must be at least 1".to_owned());
        }
        if self.days == 0 {
            wrong.push("--days must be at least 1".to_owned());
        }
        // Graph allows 4 in flight per mailbox: 8,192 is 2,048 mailboxes' worth.
        if self.concurrency == 0 || self.concurrency > 8192 {
            wrong.push("--concurrency must be 1 to 8192".to_owned());
        }
        if self.ceiling_requests == 0 {
            wrong.push("--ceiling-requests must be at least 1".to_owned());
        }
        if self.throttling != Throttling::Custom && self.limits != Limits::default() {
            wrong.push(
                "--requests-per-10-minutes, --concurrent-requests and --upload-mib-per-5-minutes apply to --throttling custom only".to_owned(),
            );
        }
        let l = &self.limits;
        if l.requests_per_10_minutes == 0
            || l.concurrent_requests == 0
            || l.upload_mib_per_5_minutes == 0
        {
            wrong.push("each limit of --throttling custom must be at least 1".to_owned());
        }
        if !(0.0..=0.5).contains(&self.fault_rate) {
            wrong.push("--fault-rate must be between 0 and 0.5".to_owned());
        }
        let end = self.start + chrono::TimeDelta::days(i64::from(self.days));
        if end > Utc::now() {
            wrong.push(format!(
                "the last day ends at {}, in the future: the connector only imports items that exist (use an earlier --start)",
                end.to_rfc3339()
            ));
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", wrong.join("\n"))
        }
    }
}

/// Runs both phases and the reconciliation, with progress lines on stderr.
pub async fn run(p: &LoadParams, work: &std::path::Path) -> anyhow::Result<LoadReport> {
    p.check()?;
    let started = Instant::now();
    let t = Instant::now();
    let mut day = day::DayStream::new(p)?;
    let total = day.total();
    let limit = day.shell.size_limit;
    // The first part of the day tells how big its messages run, before the fake mailbox
    // is set up to keep them.
    let mut next = day.next_part(CHUNK);
    let first = next.as_ref().map_or(&[][..], |part| &part.items[..]);
    let per_item = first
        .iter()
        .map(|item| day::estimated_message_bytes(item, limit))
        .sum::<u64>()
        / first.len().max(1) as u64;
    let retain = choose_retention(p, per_item, total);
    let (dataset, directory) = crate::harness::fixtures_without_items(&day.shell)?;
    // With the fakes in children, the ones started here stay empty and unasked (nothing
    // of theirs on disk).
    let local = match p.fakes {
        FakesMode::InProcess => mailbox::config(
            retain,
            p.limits.for_mailbox(p.throttling),
            p.profile.mailbox(p.latency_seed),
        ),
        FakesMode::Process => mock_mailbox::Config::default(),
    };
    let mut fakes = Fakes::start_live(&dataset, &directory, local).await?;
    fakes.tenant = day.shell.tenant_domain.clone();
    drop(dataset);
    drop(directory);
    let program = match &p.fakes_program {
        Some(program) => program.clone(),
        None => std::env::current_exe().context("finding this program's own path")?,
    };
    // The organisation, for the children and the reconciliation (written once).
    let shell = write_shell(&day.shell, work)?;
    // The day's items wait in a temporary file, not in memory.
    let mut provider = match p.fakes {
        FakesMode::InProcess => provider::Provider::in_process(fakes.provider.clone())?,
        FakesMode::Process => provider::Provider::child(&program, &shell).await?,
    };
    if let Some(url) = provider.url() {
        fakes.provider_url = url.to_owned();
    }
    let mailbox = match p.fakes {
        FakesMode::InProcess => mailbox::Mailbox::InProcess(fakes.mailbox.clone()),
        FakesMode::Process => mailbox::Mailbox::child(&program, &shell, retain, p).await?,
    };
    if let Some(url) = mailbox.url().await {
        fakes.mailbox_url = url;
    }
    // The day, part by part: what must happen to each part (the oracle, counted and
    // dropped: the day is drawn again to reconcile it), a sample of it for the ceiling's
    // messages, and the part itself into the fake provider (as compact JSON text). Only
    // one part's JSON values and outcomes are held at a time.
    let mut tally = oracle::Tally::default();
    let mut templates = ceiling::Templates::new(total, limit);
    let mut drawn = 0usize;
    while let Some(part) = next {
        tally
            .add(&oracle::expected(&part))
            .context("working out what must happen to the day")?;
        part.items.iter().for_each(|item| templates.offer(item));
        provider
            .load_items(&part.items)
            .await
            .context("loading the day into the fake provider")?;
        let before = drawn;
        drawn += part.items.len();
        // A line every tenth of the day.
        if total > CHUNK && before * 10 / total != drawn * 10 / total {
            eprintln!(
                "  day: {drawn} of {total} items drawn, worked out and loaded ({:.0}s in; runner RSS {:.0} MB)",
                t.elapsed().as_secs_f64(),
                usage::rss_now_mb()
            );
        }
        next = day.next_part(CHUNK);
    }
    provider.loaded(drawn).await?;
    let scenario = day.shell.clone();
    // What the reconciliation needs of this draw, for the process that does it.
    let hashes = work.join("file-hashes");
    day.save_hashes(&hashes)
        .with_context(|| format!("writing {}", hashes.display()))?;
    drop(day);
    eprintln!(
        "load: drew {drawn} items for {} employees over {} day(s), worked out what must happen and loaded the provider in {:.1}s ({:?} mix; runner RSS {:.0} MB)",
        p.employees,
        p.days,
        t.elapsed().as_secs_f64(),
        p.mix,
        usage::rss_now_mb()
    );

    eprintln!(
        "load: phase 1, the ceiling: {} raw importMime requests at concurrency {} (fakes loaded; runner RSS {:.0} MB)",
        p.ceiling_requests,
        p.concurrency,
        usage::rss_now_mb()
    );
    let self_before = usage::Rusage::own();
    let mailbox_before = mailbox.cpu().await?;
    let fanout = tally.deliveries as f64 / tally.source_items.max(1) as f64;
    let posting = ceiling::Posting {
        fakes: &fakes,
        mailbox: &mailbox,
        scenario: &scenario,
        templates: std::sync::Arc::new(templates.messages),
        p,
        fanout,
    };
    let ceiling = ceiling::run(&posting, p.concurrency).await?;
    let fakes_ceiling_cpu = usage::Rusage::own().cpu_since(&self_before);
    let mut each_fake_cpu = usage::EachFake {
        mailbox_ceiling: mailbox.cpu().await?.since(mailbox_before),
        ..Default::default()
    };
    let capacity = ceiling::capacity(&posting, &ceiling).await?;
    mailbox.reset().await?;

    eprintln!(
        "load: phase 2, the import: the connector ({}) at concurrency {} (runner RSS {:.0} MB)",
        match (&p.under, p.connector) {
            (crate::conformance::UnderTest::Command { .. }, _) => "the program under test",
            (_, ConnectorMode::Process) => "child process",
            (_, ConnectorMode::InProcess) => "in this process",
        },
        p.concurrency,
        usage::rss_now_mb()
    );
    let self_before = usage::Rusage::own();
    let mailbox_before = mailbox.cpu().await?;
    let provider_before = provider.cpu().await?;
    let disk_before = mailbox.figures().await?.bytes_written;
    let imported = import::run(&fakes, &mailbox, &scenario, p, work, tally.deliveries).await?;
    let fakes_import_cpu = usage::Rusage::own().cpu_since(&self_before);
    each_fake_cpu.mailbox_import = mailbox.cpu().await?.since(mailbox_before);
    each_fake_cpu.provider_import = provider.cpu().await?.since(provider_before);
    let figures = mailbox.figures().await?;
    // The fake mailbox's process at its peak before the reconciliation reads it.
    let mailbox_peak = mailbox.peak_rss_bytes().await?;

    // Nothing asks the provider for the day any more: the reconciliation draws it again.
    // (Its process is waited for only now, after the import's figures: the connector's
    // CPU is read from this process's waited-for children.)
    let provider = provider.finish().await?;
    eprintln!(
        "load: reconciling every item against every mailbox{} (the fake provider's day let go; runner RSS {:.0} MB)",
        match &mailbox {
            mailbox::Mailbox::Child(_) => " in the fake mailbox's process",
            mailbox::Mailbox::InProcess(_) => "",
        },
        usage::rss_now_mb()
    );
    let reconciled = mailbox
        .reconcile(mailbox::Check {
            params: p.clone(),
            shell,
            hashes,
            long_ids: std::mem::take(&mut tally.long_ids),
            source_items: tally.source_items,
            deliveries: tally.deliveries,
            runs: imported.runs().to_vec(),
            rules: p.under.rules(),
            have_reports: imported.runs().len() == imported.runs,
        })
        .await?;
    let reconcile_peak = mailbox.finish().await?;
    let own = usage::Rusage::own();
    Ok(report::LoadReport::new(report::Parts {
        params: p.clone(),
        scenario: &scenario,
        source_items: tally.source_items,
        ceiling,
        capacity,
        imported,
        reconciliation: reconciled.report,
        reconcile_seconds: reconciled.seconds,
        counters: figures.counters,
        fakes_ceiling_cpu,
        fakes_import_cpu,
        each_fake_cpu,
        runner_peak_rss_bytes: own.max_rss_bytes,
        provider_peak_rss_bytes: provider.peak_rss_bytes,
        mailbox_peak_rss_bytes: mailbox_peak,
        reconcile_peak_rss_bytes: reconcile_peak,
        mailbox_disk_bytes: figures.bytes_written - disk_before,
        mailbox_retain: retain,
        mailbox_memory: figures.memory,
        total_seconds: started.elapsed().as_secs_f64(),
    }))
}

/// Writes the day's organisation without items (what a child fake is started with, and
/// what the reconciliation reads) into `work`.
pub fn write_shell(shell: &crate::Scenario, work: &std::path::Path) -> anyhow::Result<PathBuf> {
    let path = work.join("shell.json");
    std::fs::write(&path, serde_json::to_vec(shell)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Reads what [`write_shell`] wrote.
fn read_shell(path: &std::path::Path) -> anyhow::Result<crate::Scenario> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
}

/// Items drawn, worked out and loaded at a time. A part's JSON values are freed once it
/// is loaded, but the allocator keeps their pages for the process: parts of 50,000 items
/// left about 380 MB of the runner's RSS that way on a 100,000-item day, parts of 5,000
/// none to speak of.
const CHUNK: usize = 10_000;

/// `--retain`, with `auto` decided: `summary` when the messages the fake would store (the
/// ceiling's and the import's, from the first part's mean size) and a margin do not fit
/// in the free space of the temporary directory.
fn choose_retention(p: &LoadParams, per_item: u64, items: usize) -> Retain {
    if p.retain != Retain::Auto {
        return p.retain;
    }
    let needed = per_item * (items as u64 + p.ceiling_requests);
    let free = usage::free_disk_bytes(&std::env::temp_dir());
    // Room for the connector's state and staging, and for the rest of the machine.
    let margin = 4_000_000_000 + needed / 5;
    match free {
        Some(free) if needed + margin > free => {
            eprintln!(
                "load: the day's messages need about {:.1} GB and {:.1} GB is free: the fake mailbox keeps header sections, texts and hashes only (--retain summary)",
                needed as f64 / 1e9,
                free as f64 / 1e9
            );
            Retain::Summary
        }
        _ => {
            eprintln!(
                "load: the day's messages need about {:.1} GB{}: the fake mailbox keeps every message's bytes on disk (--retain full)",
                needed as f64 / 1e9,
                free.map_or(String::new(), |f| format!(
                    " and {:.1} GB is free",
                    f as f64 / 1e9
                ))
            );
            Retain::Full
        }
    }
}
