//! The conformance kit judges programs we did not write (docs/conformance.md): a naive
//! connector in Python fails with one finding per mistake planted in it, the mended one
//! passes the core rules, and our own binary, run through the contract's environment by
//! a wrapper script and killed from outside at crash points, passes.
//!
//! The examples need `python3` (its standard library only); `.ci/run` installs it.
//! Where it is missing their tests say so and pass, unless `CI` is set or
//! `CONFORMANCE_PYTHON=required`: then they fail.

use std::path::PathBuf;

use scenarios::conformance::{Rules, UnderTest};
use scenarios::reconcile::Finding;
use scenarios::runner::Outcome;
use scenarios::{Scenario, Verdict};

fn kit() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

fn planted() -> Scenario {
    Scenario::load(&kit().join("planted-mistakes.json")).expect("the planted scenario loads")
}

async fn judge(scenario: &Scenario, command: String, rules: Rules, tag: &str) -> Outcome {
    let work = scenarios::harness::temp_dir(tag);
    let under = UnderTest::Command { command, rules };
    let outcome = scenarios::runner::run_judged(scenario, &work, String::new(), &under)
        .await
        .expect("the scenario runs to its end");
    std::fs::remove_dir_all(&work).expect("work removed");
    outcome
}

/// Whether python3 runs here; where it does not, the test is skipped with a word (or
/// fails, where it is required).
fn have_python(test: &str) -> bool {
    let runs = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let required = std::env::var_os("CI").is_some()
        || std::env::var("CONFORMANCE_PYTHON").is_ok_and(|v| v == "required");
    assert!(
        runs || !required,
        "{test}: python3 is required here but does not run"
    );
    if !runs {
        eprintln!(
            "{test}: skipped, python3 does not run here (set CONFORMANCE_PYTHON=required to fail instead)"
        );
    }
    runs
}

fn python(example: &str) -> String {
    format!("python3 {}", kit().join("examples").join(example).display())
}

/// Whether `list` names `item` in `mailbox` with `detail` in what it says.
fn names(list: &[Finding], item: &str, mailbox: &str, detail: &str) -> bool {
    list.iter().any(|f| {
        f.item_id == item && f.mailbox.as_deref() == Some(mailbox) && f.detail.contains(detail)
    })
}

#[tokio::test]
async fn the_naive_connector_fails_with_a_finding_for_each_planted_mistake() {
    if !have_python("the naive connector") {
        return;
    }
    let outcome = judge(
        &planted(),
        python("naive_connector.py"),
        Rules::Core,
        "conformance-naive",
    )
    .await;
    let r = &outcome.report;
    assert_eq!(r.verdict, Verdict::Fail);
    let all = format!("{r:#?}");
    // 1. The sender only: the recipient's copy is missing.
    assert!(
        names(&r.missing, "t-1", "bob@contoso.example", "not delivered"),
        "{all}"
    );
    // 2. No fall-through: Carol's file address is no user, her email property is.
    assert!(
        names(&r.missing, "t-2", "carol@contoso.example", "not delivered"),
        "{all}"
    );
    // 3. Sent again after a lost answer without looking: three copies.
    assert!(
        names(&r.duplicates, "t-1", "alice@contoso.example", "3 copies"),
        "{all}"
    );
    // 4. The item dropped with its file: not even the sender's copy.
    assert!(
        names(&r.missing, "d-3", "dave@contoso.example", "not delivered"),
        "{all}"
    );
    // 5. The existing folder replaced by the Inbox on the second day.
    assert!(
        names(&r.misplaced, "t-4", "alice@contoso.example", "\"Inbox\""),
        "{all}"
    );
    // Judged by the mailboxes alone, and told so.
    assert!(
        r.not_checked.iter().any(|n| n.contains("no run report")),
        "{all}"
    );
    assert_eq!(r.rules, Some(Rules::Core));
}

#[tokio::test]
async fn the_minimal_connector_passes_the_core_rules_but_not_ours() {
    if !have_python("the minimal connector") {
        return;
    }
    let scenario = planted();
    let core = judge(
        &scenario,
        python("minimal_connector.py"),
        Rules::Core,
        "conformance-minimal",
    )
    .await;
    assert_eq!(core.report.verdict, Verdict::Pass, "{:#?}", core.report);
    assert_eq!(core.report.found_deliveries, 8);
    // Its wording is not ours: no X-WhatsApp-* headers, its own note on the file left
    // out. Judged by our rules, each of those is named.
    let ours = judge(
        &scenario,
        python("minimal_connector.py"),
        Rules::Ours,
        "conformance-minimal-ours",
    )
    .await;
    let r = &ours.report;
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(
        r.content_errors
            .iter()
            .any(|f| f.detail.starts_with("X-WhatsApp-Kind is None")),
        "{r:#?}"
    );
    assert!(
        names(
            &r.field_errors,
            "d-3",
            "dave@contoso.example",
            "no X-WhatsApp-Omitted-Attachment note"
        ),
        "{r:#?}"
    );
}

#[tokio::test]
async fn our_binary_through_the_contract_passes_killed_from_outside() {
    let bin = scenarios::harness::connector_binary(None).expect("the connector binary");
    let command = format!("{} {}", kit().join("ours.sh").display(), bin.display());
    let mut scenario = Scenario::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recorded/rule-mapping-precedence.json"),
    )
    .expect("loads");
    // Killed (SIGKILL to its process group) after the 4th and 9th request to the fake
    // mailbox, and run again each time.
    scenario.crashes = vec![4, 9];
    let outcome = judge(&scenario, command.clone(), Rules::Ours, "conformance-ours").await;
    assert_eq!(outcome.crashes, 2);
    assert_eq!(
        outcome.report.verdict,
        Verdict::Pass,
        "{:#?}",
        outcome.report
    );
    // It writes its run report: the skip reasons were checked too.
    assert!(outcome.report.not_checked.is_empty());
    assert_eq!(outcome.report.skipped_by_reason.get("unmapped"), Some(&2));
    // The planted scenario under the core rules, every import answered 504.
    let planted = judge(&planted(), command, Rules::Core, "conformance-ours-core").await;
    assert_eq!(
        planted.report.verdict,
        Verdict::Pass,
        "{:#?}",
        planted.report
    );
}

#[tokio::test]
async fn a_program_that_fails_is_named_with_its_output_and_leaves_no_secret_behind() {
    let work = scenarios::harness::temp_dir("conformance-fails");
    // It shows the handover file's mode, then fails.
    let under = UnderTest::Command {
        command: r#"stat -c 'mode %a' "$CONNECTOR_CONTEXT_FILE"; exit 7"#.into(),
        rules: Rules::Core,
    };
    let error = scenarios::runner::run_judged(&planted(), &work, String::new(), &under)
        .await
        .unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("exited with exit status: 7"), "{text}");
    assert!(text.contains("mode 600"), "the owner's only: {text}");
    assert!(
        !work.join("connector.handover.json").exists(),
        "the file with the secrets is gone"
    );
    assert!(
        !text.contains(scenarios::harness::PROVIDER_PASSWORD),
        "{text}"
    );
    std::fs::remove_dir_all(&work).unwrap();
}
