//! `scenarios chaos`: many small seeded organisations, each through faults on both sides
//! and crashes of the connector, each reconciled. A seed expands to one explicit
//! [`Scenario`] (so a failing seed is a scenario file that replays exactly), runs, and
//! passes only if every item landed exactly once or was skipped for the right reason.
//! With `--check-determinism` every seed runs twice and the two outcomes must be the
//! same; a seed that does not replay is a failure of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::DateTime;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::conformance::UnderTest;
use crate::generate::GeneratorParams;
use crate::model::{MailboxProfile, Scenario};
use crate::reconcile::Verdict;
use crate::runner::Outcome;

/// Midnight of every chaos organisation's first day.
const START: &str = "2026-11-22T00:00:00Z";

/// The one command that replays a seed (under the profile it ran with).
pub fn replay_command(seed: u64, profile: Option<&MailboxProfile>, under: &UnderTest) -> String {
    let profile = match profile.map(|p| p.name) {
        Some(mock_mailbox::profile::ProfileName::Graph) => " --profile graph",
        _ => "",
    };
    format!(
        "cargo run --release -p scenarios -- chaos --seeds 1 --from {seed}{profile}{}",
        under.flags()
    )
}

/// A seed's organisation, traffic, faults and crashes, written out.
pub fn scenario_for_seed(seed: u64) -> anyhow::Result<Scenario> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6368_616f_7321);
    let days = rng.random_range(1..=3u32);
    let missed_runs = (1..days).filter(|_| rng.random_bool(0.3)).collect();
    let params = GeneratorParams {
        seed,
        start: DateTime::parse_from_rfc3339(START)
            .expect("a valid time")
            .to_utc(),
        days,
        employees: rng.random_range(2..=30),
        external_contacts: rng.random_range(1..=20),
        items_per_day: rng.random_range(10..=200),
        missed_runs,
        boundary_cases: rng.random_bool(0.05),
        late_rate: if rng.random_bool(0.3) {
            rng.random_range(0.01..0.1)
        } else {
            0.0
        },
        revision_rate: if rng.random_bool(0.3) {
            rng.random_range(0.005..0.05)
        } else {
            0.0
        },
    };
    let mut scenario = crate::generate::generate(&params)?;
    scenario.name = format!("chaos-{seed}");
    scenario.seed = Some(seed);
    scenario.generate = None;
    let mut kinds = Vec::new();
    if rng.random_bool(0.6) {
        let (unavailable, corrupt) = (rng.random_range(0.0..0.15), rng.random_range(0.0..0.1));
        let truncated = rng.random_range(0.0..0.1);
        scenario.provider_faults = Some(serde_json::json!({
            "seed": rng.random_range(0..u32::MAX),
            "unavailable_rate": unavailable,
            "corrupt_download_rate": corrupt,
            "truncated_page_rate": truncated,
        }));
        kinds.push(format!(
            "provider 503 {:.0}%, corrupt downloads {:.0}% and pages cut short {:.0}%",
            unavailable * 100.0,
            corrupt * 100.0,
            truncated * 100.0
        ));
    }
    let mut graph_faults = None;
    if rng.random_bool(0.6) {
        let (unavailable, lost) = (rng.random_range(0.0..0.1), rng.random_range(0.0..0.15));
        let revoked = if rng.random_bool(0.5) {
            rng.random_range(0.0..0.05)
        } else {
            0.0
        };
        scenario.mailbox_faults = Some(serde_json::json!({
            "seed": rng.random_range(0..u32::MAX),
            "unavailable_rate": unavailable,
            "lost_import_response_rate": lost,
            "revoked_token_rate": revoked,
        }));
        graph_faults = Some((unavailable, lost, revoked));
    }
    // Crash points over about the mailbox requests such a day makes (one or two per
    // delivery); one past the end is simply never reached.
    let requests = (scenario.source_items() as u64 * 2).max(10);
    let crashes = rng.random_range(0..=3usize);
    let mut points: Vec<u64> = (0..crashes)
        .map(|_| rng.random_range(1..=requests))
        .collect();
    points.sort_unstable();
    points.dedup();
    scenario.crashes = points;
    // With a crash the connector runs one request at a time, so that "the Nth request"
    // is the same request in every run of the seed.
    scenario.concurrency = Some(if scenario.crashes.is_empty() {
        [1, 4, 8][rng.random_range(0..3)]
    } else {
        1
    });
    // A revoked token fails every request in flight with it, and which ones those are
    // depends on timing: revocations are drawn only where requests go one at a time.
    if let Some((unavailable, lost, revoked)) = graph_faults {
        let revoked = if scenario.concurrency == Some(1) {
            revoked
        } else {
            0.0
        };
        if let Some(faults) = scenario.mailbox_faults.as_mut() {
            faults["revoked_token_rate"] = revoked.into();
        }
        kinds.push(format!(
            "Graph 503 {:.0}%, lost import answers {:.0}% and tokens revoked {:.1}%",
            unavailable * 100.0,
            lost * 100.0,
            revoked * 100.0
        ));
    }
    // The transport (slow answers, bodies cut half-way) on either side and 429 storms
    // on Microsoft 365: drawn after everything above, which stays as it was.
    for (side, faults) in [
        ("provider", &mut scenario.provider_faults),
        ("Graph", &mut scenario.mailbox_faults),
    ] {
        if !rng.random_bool(0.5) {
            continue;
        }
        let seed = rng.random_range(0..u32::MAX);
        let faults = faults.get_or_insert_with(|| serde_json::json!({ "seed": seed }));
        let (slow, reset) = (rng.random_range(0.0..0.2), rng.random_range(0.0..0.05));
        faults["slow_rate"] = slow.into();
        faults["slow_max_ms"] = 15.into();
        faults["reset_rate"] = reset.into();
        let mut kind = format!(
            "{side} slow answers {:.0}% and bodies cut {:.1}%",
            slow * 100.0,
            reset * 100.0
        );
        if side == "Graph" {
            let storm = rng.random_range(0.0..0.1);
            faults["throttle_storm_rate"] = storm.into();
            kind.push_str(&format!(" and 429 storms {:.0}%", storm * 100.0));
        }
        kinds.push(kind);
    }
    // The archive folder deleted for good, a mailbox disabled or its user deleted, by a
    // person mid-run. Which import meets them is the same in every run only when
    // requests go one at a time: drawn at concurrency 1 only.
    if scenario.concurrency == Some(1) && rng.random_bool(0.3) {
        let seed = rng.random_range(0..u32::MAX);
        let faults = scenario
            .mailbox_faults
            .get_or_insert_with(|| serde_json::json!({ "seed": seed }));
        let (folder, gone) = (rng.random_range(0.0..0.02), rng.random_range(0.0..0.01));
        faults["folder_deleted_rate"] = folder.into();
        faults["mailbox_disabled_rate"] = gone.into();
        kinds.push(format!(
            "archive folders deleted {:.1}% and mailboxes gone {:.1}% of imports",
            folder * 100.0,
            gone * 100.0
        ));
    }
    // Hostile items at a low rate (drawn last as well).
    if rng.random_bool(0.4) {
        let rate = rng.random_range(0.005..0.03);
        let done = crate::hostile::sprinkle(&mut scenario, &mut rng, rate);
        if !done.is_empty() {
            let count: usize = done.values().sum();
            let names: Vec<&str> = done.keys().map(|k| k.name()).collect();
            kinds.push(format!("{count} hostile item(s): {}", names.join(", ")));
        }
    }
    // Half the seeds with crash points run the `connector` binary and kill it with
    // SIGKILL; the others abort its task in this process.
    if !scenario.crashes.is_empty() && rng.random_bool(0.5) {
        scenario.crash_by = crate::model::CrashBy::Sigkill;
    }
    // Answers that say 200 but are not the API's (a gateway's page on a login, listing
    // or download, a maintenance JSON on a listing, an empty download): drawn after
    // everything above, which stays as it was for every seed.
    if rng.random_bool(0.4) {
        let seed = rng.random_range(0..u32::MAX);
        let faults = scenario
            .provider_faults
            .get_or_insert_with(|| serde_json::json!({ "seed": seed }));
        let (page, foreign, empty) = (
            rng.random_range(0.0..0.08),
            rng.random_range(0.0..0.08),
            rng.random_range(0.0..0.08),
        );
        faults["gateway_page_rate"] = page.into();
        faults["not_envelope_rate"] = foreign.into();
        faults["empty_download_rate"] = empty.into();
        kinds.push(format!(
            "provider gateway pages {:.0}%, foreign JSON pages {:.0}% and empty downloads {:.0}% (each a 200)",
            page * 100.0,
            foreign * 100.0,
            empty * 100.0
        ));
    }
    scenario.description = format!(
        "Chaos seed {seed}: {} employees, {} items over {days} day(s){}; {}; {} crash point(s){}; concurrency {}.",
        params.employees,
        scenario.source_items(),
        if params.missed_runs.is_empty() {
            String::new()
        } else {
            format!(", runs missed on day(s) {:?}", params.missed_runs)
        },
        if kinds.is_empty() {
            "no seeded faults".to_owned()
        } else {
            kinds.join("; ")
        },
        scenario.crashes.len(),
        if scenario.crash_by == crate::model::CrashBy::Sigkill {
            " (the binary, killed with SIGKILL)"
        } else {
            ""
        },
        scenario.concurrency.unwrap_or(1),
    );
    Ok(scenario)
}

/// What two runs of a seed must agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    pub verdict: String,
    /// Every delivered copy: (mailbox, folder, Message-ID), sorted.
    pub landed: Vec<(String, String, String)>,
    pub skipped_by_reason: BTreeMap<String, usize>,
    pub findings: usize,
    /// Seeded faults injected: (provider, mailbox).
    pub faults: (u64, u64),
    pub retries: u64,
    pub crashes: u64,
}

impl Fingerprint {
    fn of(outcome: &Outcome) -> Self {
        let mut landed: Vec<(String, String, String)> = outcome
            .landed
            .values()
            .flatten()
            .map(|c| {
                (
                    c.mailbox.to_string(),
                    c.folder.to_string(),
                    c.content()
                        .internet_message_id()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        landed.sort();
        let r = &outcome.report;
        Self {
            verdict: format!("{:?}", r.verdict),
            landed,
            skipped_by_reason: r.skipped_by_reason.clone(),
            findings: r.findings().iter().map(|(_, l)| l.len()).sum(),
            faults: outcome.faults_injected,
            retries: outcome.runs.iter().map(|r| r.retries).sum(),
            crashes: outcome.crashes,
        }
    }

    /// The first point where two runs differ, said as a person reads it.
    pub fn first_difference(&self, other: &Self) -> Option<String> {
        if self.verdict != other.verdict {
            return Some(format!("verdict {} then {}", self.verdict, other.verdict));
        }
        if self.landed != other.landed {
            let at = self
                .landed
                .iter()
                .zip(&other.landed)
                .position(|(a, b)| a != b)
                .unwrap_or(self.landed.len().min(other.landed.len()));
            return Some(format!(
                "what landed, at copy {at}: {:?} then {:?} ({} then {} copies)",
                self.landed.get(at),
                other.landed.get(at),
                self.landed.len(),
                other.landed.len()
            ));
        }
        if self.skipped_by_reason != other.skipped_by_reason {
            return Some(format!(
                "skips {:?} then {:?}",
                self.skipped_by_reason, other.skipped_by_reason
            ));
        }
        if self.findings != other.findings {
            return Some(format!(
                "findings {} then {}",
                self.findings, other.findings
            ));
        }
        if self.faults != other.faults {
            return Some(format!(
                "faults drawn (provider, mailbox) {:?} then {:?}",
                self.faults, other.faults
            ));
        }
        if self.crashes != other.crashes {
            return Some(format!(
                "crash points reached {} then {}",
                self.crashes, other.crashes
            ));
        }
        if self.retries != other.retries {
            return Some(format!("retries {} then {}", self.retries, other.retries));
        }
        None
    }
}

/// One seed's result.
#[derive(Debug, Clone, Serialize)]
pub struct SeedResult {
    pub seed: u64,
    pub description: String,
    pub passed: bool,
    pub items: usize,
    pub deliveries: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub wrongly_skipped: usize,
    /// Every other finding (unexpected, misplaced, fields, content, accounting).
    pub other_findings: usize,
    pub crashes: u64,
    pub faults: (u64, u64),
    pub retries: u64,
    pub seconds: f64,
    /// With `--check-determinism`: where the second run first differed, if it did.
    pub diverged: Option<String>,
    /// The findings of a failing seed, first few of each kind.
    pub details: Vec<String>,
    pub replay: String,
    /// Where the failing seed's scenario was saved.
    pub saved: Option<PathBuf>,
}

async fn run_once(scenario: &Scenario, work: &Path, under: &UnderTest) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(work)?;
    let replay = replay_command(
        scenario.seed.unwrap_or_default(),
        scenario.mailbox_profile.as_ref(),
        under,
    );
    let outcome = crate::runner::run_judged(scenario, work, replay, under).await;
    let _ = std::fs::remove_dir_all(work);
    outcome
}

/// A seed's scenario, its fake Microsoft 365 under `profile` (the seed's own, lenient,
/// when `None`).
pub fn scenario_under(seed: u64, profile: Option<&MailboxProfile>) -> anyhow::Result<Scenario> {
    let mut scenario = scenario_for_seed(seed)?;
    if let Some(profile) = profile {
        scenario.mailbox_profile = Some(profile.clone());
    }
    Ok(scenario)
}

/// Runs one seed (twice with `check_determinism`), under `profile` if given.
pub async fn run_seed(
    seed: u64,
    check_determinism: bool,
    profile: Option<&MailboxProfile>,
    under: &UnderTest,
) -> anyhow::Result<SeedResult> {
    let scenario = scenario_under(seed, profile)?;
    let started = Instant::now();
    let work = crate::harness::temp_dir(&format!("chaos-{seed}"));
    // A connector run that stops with an error fails the seed (its items are then not
    // where they belong); it does not stop the other seeds.
    let stopped = |e: anyhow::Error| SeedResult {
        seed,
        description: scenario.description.clone(),
        passed: false,
        items: scenario.source_items(),
        deliveries: 0,
        lost: 0,
        duplicated: 0,
        wrongly_skipped: 0,
        other_findings: 1,
        crashes: 0,
        faults: (0, 0),
        retries: 0,
        seconds: started.elapsed().as_secs_f64(),
        diverged: None,
        details: vec![format!("a connector run stopped with an error: {e:#}")],
        replay: replay_command(seed, profile, under),
        saved: None,
    };
    let outcome = match run_once(&scenario, &work, under).await {
        Ok(outcome) => outcome,
        Err(e) => return Ok(stopped(e)),
    };
    let diverged = if check_determinism {
        match run_once(&scenario, &work.with_extension("again"), under).await {
            Ok(again) => Fingerprint::of(&outcome).first_difference(&Fingerprint::of(&again)),
            Err(e) => Some(format!("the second run stopped with an error: {e:#}")),
        }
    } else {
        None
    };
    let r = &outcome.report;
    let other = r.unexpected.len()
        + r.misplaced.len()
        + r.field_errors.len()
        + r.content_errors.len()
        + r.accounting_errors.len();
    let mut details = Vec::new();
    for (kind, list) in r.findings() {
        for f in list.iter().take(5) {
            details.push(format!(
                "{kind}: item {} {}: {}",
                crate::reconcile::short(&f.item_id),
                f.mailbox.as_deref().unwrap_or(""),
                f.detail
            ));
        }
    }
    if r.connector_failures > 0 {
        details.push(format!(
            "the last run left {} deliveries failed, items held or items needing a person",
            r.connector_failures
        ));
    }
    Ok(SeedResult {
        seed,
        description: scenario.description.clone(),
        passed: r.verdict == Verdict::Pass && diverged.is_none(),
        items: scenario.source_items(),
        deliveries: r.expected_deliveries,
        lost: r.missing.len(),
        duplicated: r.duplicates.len(),
        wrongly_skipped: r.wrongly_skipped.len(),
        other_findings: other,
        crashes: outcome.crashes,
        faults: outcome.faults_injected,
        retries: outcome.runs.iter().map(|r| r.retries).sum(),
        seconds: started.elapsed().as_secs_f64(),
        diverged,
        details,
        replay: replay_command(seed, profile, under),
        saved: None,
    })
}

/// Runs a failing seed's scenario may take to shrink before it is saved.
pub const SHRINK_BUDGET: usize = 150;

/// Whether a scenario fails: it runs and its reconciliation does not pass.
pub async fn fails(scenario: &Scenario, under: &UnderTest) -> bool {
    let work = crate::harness::temp_dir(&format!("shrink-{}", scenario.name));
    match run_once(scenario, &work, under).await {
        Ok(outcome) => outcome.report.verdict == Verdict::Fail,
        // A connector run that stops with an error fails too.
        Err(_) => true,
    }
}

/// Makes a failing scenario smaller while it still fails: drops seeded faults, crash
/// points, then items (halves, quarters, ... down to one at a time; where a removal
/// alone no longer fails, again with the crash points moved back in proportion, since
/// fewer items make fewer requests), unreadable items, and runs other than the last,
/// keeping each change only if the scenario still fails.
/// At most `budget` runs. Answers the smallest failing scenario found and the runs used.
pub async fn shrink(scenario: Scenario, budget: usize, under: &UnderTest) -> (Scenario, usize) {
    let mut best = scenario;
    let mut tries = 0usize;
    macro_rules! attempt {
        ($candidate:expr) => {{
            let candidate: Scenario = $candidate;
            if tries >= budget {
                false
            } else {
                tries += 1;
                if fails(&candidate, under).await {
                    best = candidate;
                    true
                } else {
                    false
                }
            }
        }};
    }
    for which in ["provider", "mailbox"] {
        let mut c = best.clone();
        match which {
            "provider" if c.provider_faults.is_some() => c.provider_faults = None,
            "mailbox" if c.mailbox_faults.is_some() => c.mailbox_faults = None,
            _ => continue,
        }
        attempt!(c);
    }
    let mut i = 0;
    while i < best.crashes.len() {
        let mut c = best.clone();
        c.crashes.remove(i);
        if !attempt!(c) {
            i += 1;
        }
    }
    // Items: remove chunks, halving the chunk size down to one item.
    let mut chunk = best.items.len().div_ceil(2).max(1);
    loop {
        let mut start = 0;
        while start < best.items.len() {
            let mut c = best.clone();
            let end = (start + chunk).min(c.items.len());
            c.items.drain(start..end);
            if attempt!(c.clone()) {
                continue;
            }
            // Fewer items make fewer requests: the same crash, moved back in proportion.
            if !c.crashes.is_empty() {
                let (before, after) = (best.items.len() as u64, c.items.len() as u64);
                for point in &mut c.crashes {
                    *point = (*point * after / before.max(1)).max(1);
                }
                if attempt!(c) {
                    continue;
                }
            }
            start += chunk;
        }
        if chunk == 1 || tries >= budget {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    let mut i = 0;
    while i < best.raw_items.len() {
        let mut c = best.clone();
        c.raw_items.remove(i);
        if !attempt!(c) {
            i += 1;
        }
    }
    while best.runs.len() > 1 {
        let mut c = best.clone();
        c.runs.remove(0);
        if !attempt!(c) {
            break;
        }
    }
    (best, tries)
}

/// The seeds `from .. from + seeds`, `jobs` at a time, each result reported to
/// `progress` as it comes. Failing seeds' scenarios are written under `save` (when given).
pub async fn run(
    from: u64,
    seeds: u64,
    jobs: usize,
    check_determinism: bool,
    save: Option<&Path>,
    (profile, under): (Option<MailboxProfile>, &UnderTest),
    mut progress: impl FnMut(&SeedResult),
) -> anyhow::Result<Vec<SeedResult>> {
    let jobs = jobs.max(1);
    let mut pending = tokio::task::JoinSet::new();
    let mut next = from;
    let end = from.saturating_add(seeds);
    let mut results = Vec::new();
    loop {
        while pending.len() < jobs && next < end {
            let seed = next;
            next += 1;
            let (profile, under) = (profile.clone(), under.clone());
            pending.spawn(async move {
                (
                    seed,
                    run_seed(seed, check_determinism, profile.as_ref(), &under).await,
                )
            });
        }
        let Some(done) = pending.join_next().await else {
            break;
        };
        let (seed, result) = done?;
        let mut result = result.map_err(|e| anyhow::anyhow!("seed {seed}: {e:#}"))?;
        if !result.passed
            && let Some(dir) = save
        {
            // Shrunk first when the seed failed its reconciliation (a seed that only
            // failed to replay the same is kept whole: that is what it shows).
            let mut scenario = scenario_under(seed, profile.as_ref())?;
            if result.diverged.is_none() {
                let before = scenario.source_items();
                let (small, tries) = shrink(scenario, SHRINK_BUDGET, under).await;
                tracing::info!(seed, before, after = small.source_items(), tries, "shrunk");
                scenario = small;
            }
            let path = dir.join(format!("chaos-{seed}.json"));
            std::fs::create_dir_all(dir)?;
            std::fs::write(&path, scenario.to_file_json())?;
            result.saved = Some(path);
        }
        progress(&result);
        results.push(result);
    }
    results.sort_by_key(|r| r.seed);
    Ok(results)
}

/// The summary line and table of a chaos run.
pub fn summary(results: &[SeedResult], wall: f64) -> String {
    let passed = results.iter().filter(|r| r.passed).count();
    let sum = |f: fn(&SeedResult) -> usize| results.iter().map(f).sum::<usize>();
    let seconds: Vec<f64> = results.iter().map(|r| r.seconds).collect();
    let mean = seconds.iter().sum::<f64>() / seconds.len().max(1) as f64;
    let max = seconds.iter().copied().fold(0.0, f64::max);
    format!(
        "{} runs: {passed} passed, {} failed; items lost {}, duplicated {}, wrongly skipped {}, other findings {}, not deterministic {}; crash points reached {}; {:.1} s per seed (max {:.1} s), {:.0} s in all",
        results.len(),
        results.len() - passed,
        sum(|r| r.lost),
        sum(|r| r.duplicated),
        sum(|r| r.wrongly_skipped),
        sum(|r| r.other_findings),
        results.iter().filter(|r| r.diverged.is_some()).count(),
        results.iter().map(|r| r.crashes).sum::<u64>(),
        mean,
        max,
        wall,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_expands_to_the_same_scenario() {
        for seed in [0, 1, 7, 12345] {
            let a = scenario_for_seed(seed).unwrap();
            let b = scenario_for_seed(seed).unwrap();
            assert_eq!(a, b, "seed {seed}");
            assert_eq!(a.name, format!("chaos-{seed}"));
            assert!(
                a.generate.is_none(),
                "explicit, so a saved seed replays as is"
            );
            if !a.crashes.is_empty() {
                assert_eq!(a.concurrency, Some(1));
            }
            // The file form reads back to the same scenario.
            let back = Scenario::parse(&a.to_file_json()).unwrap();
            let (x, y) = (
                serde_json::to_value(&back).unwrap(),
                serde_json::to_value(&a).unwrap(),
            );
            for (key, value) in x.as_object().unwrap() {
                assert_eq!(
                    Some(value),
                    y.get(key),
                    "seed {seed}: {key} changes in the file form"
                );
            }
            assert_eq!(back, a, "seed {seed}");
        }
        assert_ne!(
            scenario_for_seed(1).unwrap().items,
            scenario_for_seed(2).unwrap().items
        );
    }

    #[test]
    fn a_difference_is_named_where_it_first_shows() {
        let base = Fingerprint {
            verdict: "Pass".into(),
            landed: vec![("a".into(), "f".into(), "<1@x>".into())],
            skipped_by_reason: BTreeMap::new(),
            findings: 0,
            faults: (1, 2),
            retries: 3,
            crashes: 0,
        };
        assert_eq!(base.first_difference(&base.clone()), None);
        let mut other = base.clone();
        other.retries = 4;
        assert_eq!(
            base.first_difference(&other).as_deref(),
            Some("retries 3 then 4")
        );
        other.landed.push(("b".into(), "f".into(), "<1@x>".into()));
        assert!(
            base.first_difference(&other)
                .unwrap()
                .starts_with("what landed, at copy 1")
        );
    }
}
