//! The load report: printed as a table, written as JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::LoadParams;
use super::ceiling::{Capacity, CeilingFigures};
use super::import::ImportFigures;
use super::usage::{Cpu, Rusage};
use crate::model::Scenario;
use crate::reconcile::{ScenarioReport, Verdict};

/// Everything a load run measured.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub params: LoadParams,
    pub cores: usize,
    pub day: Day,
    /// The raw client at the connector's own number of requests in flight: the
    /// like-for-like comparison the ratio is taken against.
    pub ceiling: CeilingFigures,
    /// The fake's capacity: the ceiling with more in flight until the rate stops rising.
    pub capacity: Capacity,
    pub import: ImportFigures,
    /// The connector's deliveries per second over the raw client's stored messages per
    /// second, in the same run against the same fake.
    pub ratio: f64,
    /// The least time Graph's own limits allow for the day's requests, and the import's
    /// time against it (`None` when the fake answered at once: nothing to bound by).
    pub graph_bound: Option<GraphBound>,
    pub mailboxes: MailboxUse,
    pub resources: Resources,
    pub accounting: Accounting,
    pub reconciliation: Reconciliation,
    /// `pass` only if the reconciliation found nothing lost, duplicated or wrong.
    pub verdict: Verdict,
    pub total_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Day {
    pub items: usize,
    pub employees: usize,
    pub mailboxes: usize,
    pub expected_deliveries: usize,
    pub description: String,
}

/// Requests per mailbox in phase 2, and the share of Graph's per-mailbox budgets
/// (10,000 requests per 10 minutes, 150 MB per 5 minutes) the busiest one used.
#[derive(Debug, Serialize)]
pub struct MailboxUse {
    pub mailboxes_used: usize,
    pub requests_min: u64,
    pub requests_median: u64,
    pub requests_max: u64,
    pub throttled: u64,
    pub max_request_budget_share: f64,
    pub max_upload_budget_share: f64,
    /// Every mailbox, the busiest (by upload share) first.
    pub per_mailbox: Vec<MailboxShare>,
}

/// One mailbox's use of Graph's budgets over phase 2.
#[derive(Debug, Serialize)]
pub struct MailboxShare {
    pub mailbox: String,
    pub requests: u64,
    pub upload_bytes: u64,
    pub request_share: f64,
    pub upload_share: f64,
}

/// The day's Graph bound: for each mailbox, the least time its requests could take under
/// Graph's limits (10,000 requests per 10 minutes, 150 MB per 5 minutes, 4 in flight) at
/// the latency the fake served them with; the day's bound is the largest of these.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphBound {
    pub seconds: f64,
    /// The mailbox that sets the bound.
    pub mailbox: String,
    /// What bounds it there: `in_flight` (its requests' time over 4), `requests` (the
    /// 10-minute request windows it needs) or `upload` (the 5-minute upload windows).
    pub bound_by: String,
    /// Its admitted requests, their summed delay (seconds) and bytes uploaded.
    pub requests: u64,
    pub busy_seconds: f64,
    pub upload_bytes: u64,
    /// The import's wall time over the bound (1.0: as fast as Graph allows).
    pub import_over_bound: f64,
}

impl GraphBound {
    /// The bound of a day whose per-mailbox usage is `usage`, under `limits`, for an
    /// import that took `wall_seconds`. `None` if no request was delayed (the fake
    /// answered at once: there is no latency to bound by).
    pub fn of(
        usage: &[mock_mailbox::state::UsageRow],
        limits: &mock_mailbox::throttle::Limits,
        wall_seconds: f64,
    ) -> Option<Self> {
        let windows = |amount: u64, per_window: u64, window: f64| {
            if amount == 0 || per_window == 0 {
                0.0
            } else {
                ((amount - 1) / per_window) as f64 * window
            }
        };
        let mut best: Option<Self> = None;
        for row in usage {
            let u = &row.usage;
            let admitted = u.requests.saturating_sub(u.throttled);
            let busy = u.busy_micros as f64 / 1e6;
            let candidates = [
                (
                    "in_flight",
                    busy / f64::from(limits.concurrent_requests.max(1)),
                ),
                (
                    "requests",
                    windows(
                        admitted,
                        limits.requests_per_window,
                        limits.request_window.as_seconds_f64(),
                    ),
                ),
                (
                    "upload",
                    windows(
                        u.bytes_received,
                        limits.upload_bytes_per_window,
                        limits.upload_window.as_seconds_f64(),
                    ),
                ),
            ];
            let (by, seconds) = candidates
                .into_iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .expect("three candidates");
            if best.as_ref().is_none_or(|b| seconds > b.seconds) {
                best = Some(Self {
                    seconds,
                    mailbox: row.mailbox.clone(),
                    bound_by: by.to_owned(),
                    requests: admitted,
                    busy_seconds: busy,
                    upload_bytes: u.bytes_received,
                    import_over_bound: 0.0,
                });
            }
        }
        let mut bound =
            best.filter(|b| b.seconds > 0.0 && usage.iter().any(|r| r.usage.busy_micros > 0))?;
        bound.import_over_bound = wall_seconds / bound.seconds;
        Some(bound)
    }
}

#[derive(Debug, Serialize)]
pub struct Resources {
    /// The connector child process (`None` when it ran in this process).
    pub connector: Option<Rusage>,
    /// The most attachment bytes the connector kept staged at once (its run reports'
    /// `peak_staging_bytes`, the largest run's).
    pub connector_peak_staging_bytes: u64,
    /// The connector's state directory after the import (SQLite state, anything staged).
    pub connector_state_bytes: u64,
    /// This process, at its peak: the generator, the raw client, the connector's
    /// management (and with `--fakes in-process` both fakes and the reconciliation).
    pub runner_peak_rss_bytes: u64,
    /// The fake provider's process at its peak (`None` with `--fakes in-process`): the
    /// day's index, its items on disk.
    pub provider_peak_rss_bytes: Option<u64>,
    /// The fake mailbox's process at its peak through both phases, before the
    /// reconciliation reads it (`None` with `--fakes in-process`).
    pub mailbox_peak_rss_bytes: Option<u64>,
    /// The same process at its peak once the reconciliation ran there (`None` with
    /// `--fakes in-process`).
    pub reconcile_peak_rss_bytes: Option<u64>,
    /// Bytes the fake mailbox wrote to its store in phase 2 (each distinct message once).
    pub mailbox_disk_bytes: u64,
    /// What the fake mailbox kept: `full` bytes, or `summary` and hashes only.
    pub mailbox_retain: super::Retain,
    /// The fake mailbox's own data in memory after the import, estimated from it
    /// (messages stored, distinct contents, bytes): the fake's figure apart from the
    /// runner's RSS.
    pub mailbox_memory: mock_mailbox::state::Memory,
    /// The runner's CPU time in each phase (the raw client in the ceiling, the progress
    /// sampling; with `--fakes in-process` both fakes too). The names are older than the
    /// fakes' own processes; scripts read them.
    pub fakes_cpu_ceiling: Cpu,
    pub fakes_cpu_import: Cpu,
    /// Each fake's own CPU time: from its process, or with `--fakes in-process` from the
    /// threads it serves on.
    pub each_fake_cpu: super::usage::EachFake,
}

/// The day's accounting, in the shape of Microsoft's connector logs: items from the
/// provider; deliveries available after fan-out to mailboxes, and where each went.
#[derive(Debug, Serialize)]
pub struct Accounting {
    pub items_from_provider: usize,
    pub items_fetched: u64,
    pub deliveries_planned: usize,
    pub delivered: u64,
    pub already_delivered: u64,
    pub failed: u64,
    /// Items skipped (whole, or their file), by reason.
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// delivered + already delivered + failed = deliveries planned, and every item was
    /// fetched (true, unchecked, when the connector under test wrote no run report).
    pub adds_up: bool,
    /// Whether the connector wrote a run report for every run.
    pub reported: bool,
}

#[derive(Debug, Serialize)]
pub struct Reconciliation {
    pub expected: usize,
    pub found: usize,
    pub missing: usize,
    pub duplicates: usize,
    pub unexpected: usize,
    pub misplaced: usize,
    pub wrongly_skipped: usize,
    pub field_errors: usize,
    pub content_errors: usize,
    pub seconds: f64,
    /// The first findings, for a person to start from.
    pub first_findings: Vec<String>,
}

/// What [`LoadReport::new`] is made from.
#[derive(Debug)]
pub struct Parts<'a> {
    pub params: LoadParams,
    pub scenario: &'a Scenario,
    pub source_items: usize,
    pub ceiling: CeilingFigures,
    pub capacity: Capacity,
    pub imported: ImportFigures,
    pub reconciliation: ScenarioReport,
    pub reconcile_seconds: f64,
    pub counters: mock_mailbox::state::Counters,
    pub fakes_ceiling_cpu: Cpu,
    pub fakes_import_cpu: Cpu,
    pub each_fake_cpu: super::usage::EachFake,
    pub runner_peak_rss_bytes: u64,
    pub provider_peak_rss_bytes: Option<u64>,
    pub mailbox_peak_rss_bytes: Option<u64>,
    pub reconcile_peak_rss_bytes: Option<u64>,
    pub mailbox_disk_bytes: u64,
    pub mailbox_retain: super::Retain,
    pub mailbox_memory: mock_mailbox::state::Memory,
    pub total_seconds: f64,
}

impl LoadReport {
    pub fn new(p: Parts<'_>) -> Self {
        let r = &p.reconciliation;
        let wall = p.imported.wall_seconds.max(1e-9);
        // Graph's budgets (even with no limit, to show which would bind first), or the
        // custom ones.
        let graph = match p.params.throttling {
            super::Throttling::Custom => p.params.limits.for_mailbox(super::Throttling::Custom),
            _ => mock_mailbox::throttle::Limits::default(),
        };
        let request_budget = graph.requests_per_window as f64
            * (wall / graph.request_window.as_seconds_f64()).max(1.0);
        let upload_budget = graph.upload_bytes_per_window as f64
            * (wall / graph.upload_window.as_seconds_f64()).max(1.0);
        let mut per_mailbox: Vec<MailboxShare> = p
            .counters
            .per_application_mailbox
            .iter()
            .map(|u| MailboxShare {
                mailbox: u.mailbox.clone(),
                requests: u.usage.requests,
                upload_bytes: u.usage.bytes_received,
                request_share: u.usage.requests as f64 / request_budget,
                upload_share: u.usage.bytes_received as f64 / upload_budget,
            })
            .collect();
        per_mailbox.sort_by(|a, b| b.upload_share.total_cmp(&a.upload_share));
        let mut requests: Vec<u64> = per_mailbox.iter().map(|m| m.requests).collect();
        requests.sort_unstable();
        let mailboxes = MailboxUse {
            mailboxes_used: requests.len(),
            requests_min: requests.first().copied().unwrap_or(0),
            requests_median: requests.get(requests.len() / 2).copied().unwrap_or(0),
            requests_max: requests.last().copied().unwrap_or(0),
            throttled: p.counters.throttled,
            max_request_budget_share: requests.last().copied().unwrap_or(0) as f64 / request_budget,
            // The list is sorted by upload share, busiest first.
            max_upload_budget_share: per_mailbox.first().map_or(0.0, |m| m.upload_share),
            per_mailbox,
        };
        let i = &p.imported;
        let accounting = Accounting {
            items_from_provider: p.source_items,
            items_fetched: i.items_fetched,
            deliveries_planned: r.expected_deliveries,
            delivered: i.deliveries,
            already_delivered: i.already_delivered,
            failed: i.failed,
            skipped_by_reason: i.skipped_by_reason.clone(),
            adds_up: !i.reported
                || (i.deliveries + i.already_delivered + i.failed == r.expected_deliveries as u64
                    && i.items_fetched == p.source_items as u64),
            reported: i.reported,
        };
        let first_findings = r
            .findings()
            .into_iter()
            .flat_map(|(what, list)| {
                list.iter().take(5).map(move |f| {
                    format!(
                        "{what}: item {} {}: {}",
                        crate::reconcile::short(&f.item_id),
                        f.mailbox.as_deref().unwrap_or(""),
                        f.detail
                    )
                })
            })
            .collect();
        let reconciliation = Reconciliation {
            expected: r.expected_deliveries,
            found: r.found_deliveries,
            missing: r.missing.len(),
            duplicates: r.duplicates.len(),
            unexpected: r.unexpected.len(),
            misplaced: r.misplaced.len(),
            wrongly_skipped: r.wrongly_skipped.len(),
            field_errors: r.field_errors.len(),
            content_errors: r.content_errors.len(),
            seconds: p.reconcile_seconds,
            first_findings,
        };
        // Graph's own limits, whatever the fake enforced: the bound is what Microsoft 365
        // would allow.
        let graph_bound = GraphBound::of(
            &p.counters.per_application_mailbox,
            &mock_mailbox::throttle::Limits::default(),
            p.imported.wall_seconds,
        );
        let verdict = if r.verdict == Verdict::Pass && accounting.adds_up {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            day: Day {
                items: p.source_items,
                employees: p.params.employees,
                mailboxes: p.scenario.users.iter().filter(|u| u.mailbox).count(),
                expected_deliveries: r.expected_deliveries,
                description: p.scenario.description.clone(),
            },
            ratio: p.imported.per_second / p.ceiling.per_second.max(1e-9),
            graph_bound,
            params: p.params,
            ceiling: p.ceiling,
            capacity: p.capacity,
            resources: Resources {
                connector: p.imported.connector,
                connector_peak_staging_bytes: p
                    .imported
                    .reports
                    .iter()
                    .map(|r| r.peak_staging_bytes)
                    .max()
                    .unwrap_or(0),
                connector_state_bytes: p.imported.state_bytes,
                runner_peak_rss_bytes: p.runner_peak_rss_bytes,
                provider_peak_rss_bytes: p.provider_peak_rss_bytes,
                mailbox_peak_rss_bytes: p.mailbox_peak_rss_bytes,
                reconcile_peak_rss_bytes: p.reconcile_peak_rss_bytes,
                mailbox_disk_bytes: p.mailbox_disk_bytes,
                mailbox_retain: p.mailbox_retain,
                mailbox_memory: p.mailbox_memory,
                fakes_cpu_ceiling: p.fakes_ceiling_cpu,
                fakes_cpu_import: p.fakes_import_cpu,
                each_fake_cpu: p.each_fake_cpu,
            },
            import: p.imported,
            mailboxes,
            accounting,
            reconciliation,
            verdict,
            total_seconds: p.total_seconds,
        }
    }

    /// The report for a person, on the terminal.
    pub fn table(&self) -> String {
        let mut out = Vec::new();
        let mb = |b: u64| format!("{:.0} MB", b as f64 / 1e6);
        let lat = |l: Option<&connector::report::Latency>| match l {
            Some(l) => format!(
                "p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
                l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
            ),
            None => "none".into(),
        };
        let c = &self.ceiling;
        let i = &self.import;
        out.push(format!("day          {}", self.day.description));
        out.push(format!(
            "             {} items, {} mailboxes, {} deliveries expected; {:?} mix, profile {:?}, throttling {:?}, concurrency {}, {} cores",
            self.day.items,
            self.day.mailboxes,
            self.day.expected_deliveries,
            self.params.mix,
            self.params.profile,
            self.params.throttling,
            self.params.concurrency,
            self.cores
        ));
        out.push(format!(
            "ceiling      {} stored of {} posted in {:.1}s: {:.0}/s (mean {} bytes posted); latency {}; 429s {}",
            c.stored,
            c.requests,
            c.wall_seconds,
            c.per_second,
            c.mean_posted_bytes,
            lat(c.latency.as_ref()),
            c.throttled
        ));
        let steps: Vec<String> = self
            .capacity
            .steps
            .iter()
            .map(|s| format!("{:.0}/s at {}", s.per_second, s.concurrency))
            .collect();
        out.push(format!(
            "capacity     the fake's most: {:.0}/s at {} in flight ({}; saturated: {})",
            self.capacity.per_second,
            self.capacity.concurrency,
            steps.join(", "),
            self.capacity.saturated_by
        ));
        out.push(format!(
            "import       {} deliveries in {:.1}s: {:.0}/s; latency (from ready) {}",
            i.deliveries,
            i.wall_seconds,
            i.per_second,
            lat(i.latency.iter().max_by_key(|l| l.p99_ms))
        ));
        out.push(format!(
            "             retries {}, 429s {} ({:.1}s waited on Retry-After), failed {}",
            i.retries,
            i.throttled,
            i.retry_after_wait_ms as f64 / 1000.0,
            i.failed
        ));
        out.push(format!(
            "ratio        connector / ceiling = {:.1} %",
            self.ratio * 100.0
        ));
        match &self.graph_bound {
            Some(b) => out.push(format!(
                "graph bound  {:.1}s: the least time Graph's limits allow, set by {} ({}: {} requests, {:.1}s of answers over 4 in flight, {} uploaded); the import took {:.2} times that",
                b.seconds,
                b.mailbox,
                b.bound_by,
                b.requests,
                b.busy_seconds,
                mb(b.upload_bytes),
                b.import_over_bound
            )),
            None => out.push(
                "graph bound  none: the fake answered at once (use --profile graph for Graph's latency)".into(),
            ),
        }
        let m = &self.mailboxes;
        out.push(format!(
            "mailboxes    {} used; requests min {} / median {} / max {}; busiest used {:.1} % of the request budget and {:.1} % of the upload budget{}",
            m.mailboxes_used,
            m.requests_min,
            m.requests_median,
            m.requests_max,
            m.max_request_budget_share * 100.0,
            m.max_upload_budget_share * 100.0,
            match self.params.throttling {
                super::Throttling::Custom => " (custom limits)",
                _ => " (Graph's)",
            }
        ));
        let r = &self.resources;
        match &r.connector {
            Some(cn) => out.push(format!(
                "connector    peak RSS {}, peak staging {}, state on disk {}, CPU {:.1}s user + {:.1}s system",
                if cn.max_rss_bytes == 0 {
                    "not reported".to_owned()
                } else {
                    mb(cn.max_rss_bytes)
                },
                mb(r.connector_peak_staging_bytes),
                mb(r.connector_state_bytes),
                cn.user_seconds,
                cn.system_seconds
            )),
            None => out.push(format!(
                "connector    ran in this process (its memory and CPU are in the runner's); peak staging {}, state on disk {}",
                mb(r.connector_peak_staging_bytes),
                mb(r.connector_state_bytes)
            )),
        }
        let mm = &r.mailbox_memory;
        out.push(format!(
            "mailbox      holds about {} in memory for {} stored messages ({} distinct): {} B per stored message (estimated from its data)",
            mb(mm.bytes),
            mm.messages,
            mm.contents,
            mm.bytes / mm.messages.max(1)
        ));
        out.push(
            match (
                r.provider_peak_rss_bytes,
                r.mailbox_peak_rss_bytes,
                r.reconcile_peak_rss_bytes,
            ) {
                (Some(provider), Some(mailbox), Some(reconcile)) => format!(
                    "processes    peak RSS: fake provider {}, fake mailbox {} (then {} with the reconciliation in it), runner {}",
                    mb(provider),
                    mb(mailbox),
                    mb(reconcile),
                    mb(r.runner_peak_rss_bytes)
                ),
                _ => format!(
                    "processes    peak RSS: runner {} (both fakes and the reconciliation ran in it)",
                    mb(r.runner_peak_rss_bytes)
                ),
            },
        );
        out.push(format!(
            "fakes        mailbox store {} on disk ({}); CPU of the runner: ceiling {:.1}s+{:.1}s, import {:.1}s+{:.1}s (user+system)",
            mb(r.mailbox_disk_bytes),
            match r.mailbox_retain {
                super::Retain::Summary => "header sections, texts and hashes only",
                _ => "every message's bytes",
            },
            r.fakes_cpu_ceiling.user_seconds,
            r.fakes_cpu_ceiling.system_seconds,
            r.fakes_cpu_import.user_seconds,
            r.fakes_cpu_import.system_seconds
        ));
        let each = &r.each_fake_cpu;
        out.push(format!(
            "             the fake mailbox: ceiling {:.1}s+{:.1}s, import {:.1}s+{:.1}s; the fake provider: import {:.1}s+{:.1}s",
            each.mailbox_ceiling.user_seconds,
            each.mailbox_ceiling.system_seconds,
            each.mailbox_import.user_seconds,
            each.mailbox_import.system_seconds,
            each.provider_import.user_seconds,
            each.provider_import.system_seconds
        ));
        let a = &self.accounting;
        let skips: Vec<String> = a
            .skipped_by_reason
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !a.reported {
            out.push(format!(
                "accounting   not reported: the connector under test wrote no run report; {} messages stored by the fake mailbox (the reconciliation below judges what landed)",
                a.delivered
            ));
        } else {
            out.push(format!(
            "accounting   items from provider {}, fetched {}; deliveries planned {} = delivered {} + already there {} + failed {}: {}",
            a.items_from_provider,
            a.items_fetched,
            a.deliveries_planned,
            a.delivered,
            a.already_delivered,
            a.failed,
            if a.adds_up { "adds up" } else { "DOES NOT ADD UP" }
        ));
        }
        out.push(format!(
            "             skipped items: {}",
            if skips.is_empty() {
                "none".into()
            } else {
                skips.join(", ")
            }
        ));
        let rc = &self.reconciliation;
        out.push(format!(
            "reconcile    {} of {} found; missing {}, duplicates {}, unexpected {}, misplaced {}, wrongly skipped {}, fields {}, content {} ({:.1}s)",
            rc.found,
            rc.expected,
            rc.missing,
            rc.duplicates,
            rc.unexpected,
            rc.misplaced,
            rc.wrongly_skipped,
            rc.field_errors,
            rc.content_errors,
            rc.seconds
        ));
        for f in &rc.first_findings {
            out.push(format!("             {f}"));
        }
        out.push(format!(
            "verdict      {} ({:.0}s in all)",
            match self.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL: the load run lost, duplicated or misdelivered something",
            },
            self.total_seconds
        ));
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mailbox: &str, requests: u64, busy_s: f64, bytes: u64) -> mock_mailbox::state::UsageRow {
        mock_mailbox::state::UsageRow {
            client_id: "app".into(),
            mailbox: mailbox.into(),
            usage: mock_mailbox::throttle::Usage {
                requests,
                throttled: 0,
                bytes_received: bytes,
                busy_micros: (busy_s * 1e6) as u64,
            },
        }
    }

    #[test]
    fn the_bound_is_the_busiest_mailboxs_least_time_under_graphs_limits() {
        let limits = mock_mailbox::throttle::Limits::default();
        // a: 400 s of answers over 4 in flight = 100 s. b: 25,000 requests need three
        // 10-minute windows, so at least 1,200 s. c: 400 MiB need three 5-minute upload
        // windows, 600 s.
        let usage = [
            row("a", 1_000, 400.0, 0),
            row("b", 25_000, 100.0, 0),
            row("c", 100, 10.0, 400 * 1024 * 1024),
        ];
        let bound = GraphBound::of(&usage, &limits, 1_500.0).unwrap();
        assert_eq!(bound.mailbox, "b");
        assert_eq!(bound.bound_by, "requests");
        assert_eq!(bound.seconds, 1_200.0);
        assert_eq!(bound.import_over_bound, 1.25);
        let only_a = GraphBound::of(&usage[..1], &limits, 150.0).unwrap();
        assert_eq!(
            (only_a.bound_by.as_str(), only_a.seconds),
            ("in_flight", 100.0)
        );
        let only_c = GraphBound::of(&usage[2..], &limits, 600.0).unwrap();
        assert_eq!(
            (only_c.bound_by.as_str(), only_c.seconds),
            ("upload", 600.0)
        );
        // Answered at once: nothing to bound by.
        assert_eq!(GraphBound::of(&[row("a", 10, 0.0, 0)], &limits, 1.0), None);
    }
}
