//! `scenarios run|replay --html FILE`: the scenario reports as one self-contained page
//! (inlined CSS, no script, nothing fetched), in the look the viewer and the load report
//! share (`mock_common::page`). A summary first, then each scenario: its verdict, the
//! counts of the terminal table, skips by reason against what the rules expect, every
//! finding grouped by kind, and the command that replays it.

use maud::{Markup, html};
use mock_common::page::document;

use crate::reconcile::{Finding, ScenarioReport, Verdict, short};

/// Findings of one kind shown in full; past this, a count of the rest (the JSON report
/// has them all).
const SHOWN_PER_KIND: usize = 500;

/// The whole page.
pub fn scenario_report(reports: &[ScenarioReport]) -> String {
    let failed = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .count();
    let sum = |f: fn(&ScenarioReport) -> usize| reports.iter().map(f).sum::<usize>();
    document(
        "Scenario report",
        html! {},
        html! {
            h1 { "Scenario report" }
            @if failed == 0 {
                p.pass #verdict { "PASS: every scenario reconciled, nothing lost, duplicated or misdelivered" }
            } @else {
                p.fail #verdict { "FAIL: " (failed) " of " (reports.len()) " scenario(s) did not reconcile" }
            }
            div.cards {
                div.card { b { (reports.len()) } "scenarios" }
                div.card { b.pass { (reports.len() - failed) } "passed" }
                div.card { b.fail[failed > 0] { (failed) } "failed" }
                div.card { b { (sum(|r| r.source_items)) } "source items" }
                div.card { b { (sum(|r| r.expected_deliveries)) } "deliveries expected" }
                div.card { b { (sum(|r| r.found_deliveries)) } "deliveries found" }
            }
            (summary_table(reports))
            @for (i, r) in reports.iter().enumerate() { (scenario(i, r)) }
        },
    )
    .into_string()
}

fn verdict(v: Verdict) -> Markup {
    match v {
        Verdict::Pass => html! { span.pass { "pass" } },
        Verdict::Fail => html! { span.fail { "FAIL" } },
    }
}

fn summary_table(reports: &[ScenarioReport]) -> Markup {
    html! {
        table #summary {
            thead { tr {
                th { "scenario" } th.num { "items" } th.num { "expected" } th.num { "found" }
                th.num { "missing" } th.num { "dup" } th.num { "unexpected" } th.num { "misplaced" }
                th.num { "wrong-skip" } th.num { "fields" } th.num { "content" } th.num { "accounting" }
                th { "verdict" }
            } }
            tbody {
                @for (i, r) in reports.iter().enumerate() {
                    tr {
                        td { a href=(format!("#s-{i}")) { (r.name) } }
                        td.num { (r.source_items) }
                        td.num { (r.expected_deliveries) }
                        td.num { (r.found_deliveries) }
                        td.num { (r.missing.len()) }
                        td.num { (r.duplicates.len()) }
                        td.num { (r.unexpected.len()) }
                        td.num { (r.misplaced.len()) }
                        td.num { (r.wrongly_skipped.len()) }
                        td.num { (r.field_errors.len()) }
                        td.num { (r.content_errors.len()) }
                        td.num { (r.accounting_errors.len()) }
                        td { (verdict(r.verdict)) }
                    }
                }
            }
        }
    }
}

fn scenario(i: usize, r: &ScenarioReport) -> Markup {
    let reasons: std::collections::BTreeSet<&String> = r
        .skipped_by_reason
        .keys()
        .chain(r.expected_skips_by_reason.keys())
        .collect();
    let findings: Vec<(&str, &Vec<Finding>)> = r
        .findings()
        .into_iter()
        .filter(|(_, list)| !list.is_empty())
        .collect();
    html! {
        section.scenario id=(format!("s-{i}")) {
            h2 { (r.name) " " (verdict(r.verdict)) }
            p.muted {
                (r.source_items) " items; " (r.expected_deliveries) " deliveries expected, "
                (r.found_deliveries) " found"
                @if let Some(seed) = r.seed { "; seed " (seed) }
            }
            @if reasons.is_empty() {
                p { "Skipped: none." }
            } @else {
                table.skips {
                    thead { tr { th { "skip reason" } th.num { "skipped" } th.num { "the rules expect" } } }
                    tbody {
                        @for reason in reasons {
                            tr {
                                td { code { (reason) } }
                                td.num { (r.skipped_by_reason.get(reason).copied().unwrap_or(0)) }
                                td.num { (r.expected_skips_by_reason.get(reason).copied().unwrap_or(0)) }
                            }
                        }
                    }
                }
            }
            @if let Some(error) = &r.error {
                p.fail { "The scenario could not be run to its end, so nothing was reconciled: " (error) }
            }
            @if let Some(rules) = r.rules {
                p { "Judged by the " code { (rules.name()) } " rules (docs/conformance.md)." }
            }
            @for why in &r.not_checked {
                p.muted { "Not checked: " (why) }
            }
            @if r.connector_failures > 0 {
                p.fail { "The connector's last run left " (r.connector_failures) " deliveries failed, items held or items needing a person." }
            }
            @if findings.is_empty() {
                p { "No findings." }
            }
            @for (kind, list) in findings {
                h3 { (kind) " (" (list.len()) ")" }
                table.findings data-kind=(kind) {
                    thead { tr { th { "item" } th { "mailbox" } th { "what" } } }
                    tbody {
                        @for f in list.iter().take(SHOWN_PER_KIND) {
                            tr {
                                td { code { (short(&f.item_id)) } }
                                td { (f.mailbox.as_deref().unwrap_or("")) }
                                td { (f.detail) }
                            }
                        }
                    }
                }
                @if list.len() > SHOWN_PER_KIND {
                    p.muted { "... and " (list.len() - SHOWN_PER_KIND) " more (the JSON report, --report, has them all)" }
                }
            }
            p { "Replay: " }
            pre { (r.replay) }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn report(name: &str, verdict: Verdict) -> ScenarioReport {
        ScenarioReport {
            source_items: 3,
            expected_deliveries: 5,
            found_deliveries: 4,
            skipped_by_reason: BTreeMap::from([("item_too_large".into(), 1)]),
            expected_skips_by_reason: BTreeMap::from([
                ("item_too_large".into(), 1),
                ("no_target_mailbox".into(), 2),
            ]),
            verdict,
            ..ScenarioReport::empty(
                name.into(),
                Some(7),
                format!("cargo run --release -p scenarios -- run {name}.json"),
            )
        }
    }

    #[test]
    fn the_page_sums_up_groups_findings_by_kind_and_escapes_them() {
        let mut failing = report("hostile <names>", Verdict::Fail);
        failing.missing.push(Finding {
            item_id: "wa-1".into(),
            mailbox: Some("alice@contoso.example".into()),
            detail: "<script>alert(1)</script> never landed".into(),
        });
        for n in 0..(SHOWN_PER_KIND + 2) {
            failing.duplicates.push(Finding {
                item_id: format!("wa-d{n}"),
                mailbox: None,
                detail: "twice".into(),
            });
        }
        let page = scenario_report(&[report("calm", Verdict::Pass), failing]);
        assert!(page.contains("FAIL: 1 of 2 scenario(s) did not reconcile"));
        assert!(!page.contains("<script>"), "a finding is text");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; never landed"));
        assert!(page.contains("hostile &lt;names&gt;"));
        assert!(page.contains("<h3>missing (1)</h3>"));
        assert!(page.contains(&format!("<h3>duplicate ({})</h3>", SHOWN_PER_KIND + 2)));
        assert!(page.contains("... and 2 more"));
        assert_eq!(page.matches("wa-d").count(), SHOWN_PER_KIND);
        assert!(page.contains("cargo run --release -p scenarios -- run calm.json"));
        // Skips by reason, against what the rules expect (one reason never seen).
        assert!(page.contains("<code>no_target_mailbox</code></td><td class=\"num\">0</td><td class=\"num\">2</td>"), "{page}");
        assert!(page.contains("No findings."), "the passing one");
        assert!(
            page.contains(mock_common::page::CSS),
            "the shared look, inlined"
        );
        let mut foreign = report("foreign", Verdict::Pass);
        foreign.rules = Some(crate::conformance::Rules::Core);
        foreign.not_checked =
            crate::conformance::not_checked(crate::conformance::Rules::Core, false);
        let page = scenario_report(&[foreign]);
        assert!(
            page.contains("Judged by the <code>core</code> rules"),
            "{page}"
        );
        assert!(
            page.contains("Not checked: skip reasons, notices"),
            "{page}"
        );
        assert!(
            page.contains("Not checked: our wording (rules core)"),
            "{page}"
        );
        let all_pass = scenario_report(&[report("calm", Verdict::Pass)]);
        assert!(all_pass.contains("PASS: every scenario reconciled"));
    }
}
