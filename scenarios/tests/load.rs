//! `scenarios load` at a small size, in this process: both phases run, every item
//! reconciles, the accounting adds up, and the report carries every field scripts read.
//! (Speed is reported by the command, never asserted here.)

use scenarios::load::{ConnectorMode, FakesMode, LoadParams, LoadProfile, Mix, Retain, Throttling};
use scenarios::reconcile::Verdict;

fn params(mix: Mix, retain: Retain) -> LoadParams {
    LoadParams {
        employees: 12,
        external_contacts: 10,
        items_per_day: 300,
        days: 1,
        mix,
        throttling: Throttling::Graph,
        limits: Default::default(),
        // As the connector runs by default: each mailbox paced to Graph's budgets (a
        // quiet mailbox may use a window's budget at once, so a small day never waits).
        pacing: true,
        fault_rate: 0.0,
        connector: ConnectorMode::InProcess,
        retain,
        connector_bin: None,
        under: Default::default(),
        fakes: FakesMode::InProcess,
        fakes_program: None,
        concurrency: 4,
        seed: 11,
        profile: LoadProfile::Lenient,
        latency_seed: 0,
        ceiling_requests: 200,
        start: scenarios::harness::t("2026-11-20T00:00:00Z"),
    }
}

/// Every key path of a JSON value, arrays read through their first element.
fn paths(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{prefix}.{k}");
                out.push(p.clone());
                paths(v, &p, out);
            }
        }
        serde_json::Value::Array(list) => {
            if let Some(first) = list.first() {
                paths(first, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_load_run_reconciles_adds_up_and_reports_every_figure() {
    let work = scenarios::harness::temp_dir("load-test");
    // Summaries only: the reconciliation checks every attachment by the SHA-256 the fake
    // took on arrival, with no bytes kept.
    let report = scenarios::load::run(&params(Mix::Realistic, Retain::Summary), &work)
        .await
        .unwrap();
    std::fs::remove_dir_all(&work).unwrap();
    assert_eq!(
        report.verdict,
        Verdict::Pass,
        "{:#?}",
        report.reconciliation
    );
    let a = &report.accounting;
    assert!(a.adds_up);
    assert_eq!(a.items_from_provider, report.day.items);
    assert_eq!(
        a.delivered + a.already_delivered + a.failed,
        a.deliveries_planned as u64
    );
    assert!(a.delivered > 300, "every item fans out to its mailboxes");
    assert_eq!(report.ceiling.stored, 200, "every raw request was stored");
    // The fake's capacity starts from the ceiling at the connector's own in-flight count
    // and doubles it, up to every mailbox's 4, until the rate stops rising.
    let steps = &report.capacity.steps;
    assert_eq!(steps[0].concurrency, 4);
    assert_eq!(steps[0].per_second, report.ceiling.per_second);
    let most_useful = 4 * report.day.mailboxes;
    for pair in steps.windows(2) {
        assert_eq!(
            pair[1].concurrency,
            (pair[0].concurrency * 2).min(most_useful),
            "{steps:?}"
        );
    }
    let best = steps.iter().map(|s| s.per_second).fold(0.0, f64::max);
    assert_eq!(report.capacity.per_second, best);
    assert!(report.capacity.per_second >= report.ceiling.per_second);
    assert!(!report.capacity.saturated_by.is_empty());
    assert_eq!(report.import.deliveries, a.delivered);
    assert!(report.ratio > 0.0);
    let latency = &report.import.latency[0];
    assert_eq!(latency.count, a.delivered, "one latency per delivery");
    assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
    // A summary mailbox writes each distinct message's header section and text, not
    // the messages the connector posted.
    let uploaded: u64 = report
        .mailboxes
        .per_mailbox
        .iter()
        .map(|m| m.upload_bytes)
        .sum();
    let disk = report.resources.mailbox_disk_bytes;
    assert!(disk > 0 && disk * 2 < uploaded, "{disk} of {uploaded}");
    assert_eq!(report.resources.mailbox_retain, Retain::Summary);
    assert!(
        report.resources.connector_state_bytes > 0,
        "the connector's state is on disk"
    );
    // Each fake's CPU time is read from its own threads: some for the mailbox that
    // stored every import, and never more than the whole process's in the phase (the
    // kernel counts threads in 10 ms ticks).
    let each = report.resources.each_fake_cpu;
    let whole = report.resources.fakes_cpu_import;
    let mailbox = each.mailbox_import.user_seconds + each.mailbox_import.system_seconds;
    let provider = each.provider_import.user_seconds + each.provider_import.system_seconds;
    assert!(mailbox > 0.0, "{each:?}");
    assert!(
        mailbox + provider <= whole.user_seconds + whole.system_seconds + 0.05,
        "{each:?} within {whole:?}"
    );
    let memory = report.resources.mailbox_memory;
    assert_eq!(
        memory.messages, a.delivered,
        "every stored delivery counted"
    );
    assert!(memory.contents > 0 && memory.contents < memory.messages);
    assert!(memory.bytes > memory.messages * 100);

    // The page: self-contained (nothing fetched), with its four charts and the verdict.
    let page = scenarios::load::html::page(&report).unwrap();
    assert_eq!(page.matches("<svg").count(), 4, "four charts");
    assert!(page.contains("PASS: every item reconciled"));
    assert!(page.contains(&format!("{:.1} %", report.ratio * 100.0)));
    for outside in ["src=\"http", "href=\"http", "<script", "@import", "url("] {
        assert!(!page.contains(outside), "the page must not load {outside}");
    }
    // The shape scripts rely on.
    let json = serde_json::to_value(&report).unwrap();
    let mut keys = Vec::new();
    paths(&json, "", &mut keys);
    insta::assert_snapshot!(keys.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_mix_carries_no_file_and_still_reconciles() {
    let work = scenarios::harness::temp_dir("load-test-text");
    // The fakes in processes of their own, as `scenarios load` runs them by default: the
    // connector must have fetched the day from the provider's and delivered it to the
    // mailbox's (the fakes started here hold nothing), and the reconciliation must have
    // read that mailbox.
    let mut p = params(Mix::Text, Retain::Full);
    p.fakes = FakesMode::Process;
    p.fakes_program = Some(env!("CARGO_BIN_EXE_scenarios").into());
    let report = scenarios::load::run(&p, &work).await.unwrap();
    std::fs::remove_dir_all(&work).unwrap();
    assert_eq!(report.verdict, Verdict::Pass);
    assert_eq!(report.accounting.items_from_provider, report.day.items);
    // Each fake's memory is its own; the reconciliation's comes after the mailbox's.
    let r = &report.resources;
    let provider_peak = r.provider_peak_rss_bytes.unwrap();
    let mailbox_peak = r.mailbox_peak_rss_bytes.unwrap();
    assert!(provider_peak > 1_000_000, "{provider_peak}");
    assert!(mailbox_peak > 1_000_000, "{mailbox_peak}");
    assert!(r.reconcile_peak_rss_bytes.unwrap() >= mailbox_peak);
    // The fake mailbox's figures came from its process: every delivery it stored.
    assert_eq!(r.mailbox_memory.messages, report.accounting.delivered);
    assert!(r.each_fake_cpu.mailbox_import.user_seconds > 0.0);
    assert!(
        report.resources.mailbox_disk_bytes > 0,
        "the fake kept the bytes on disk"
    );
    assert!(
        !report
            .accounting
            .skipped_by_reason
            .keys()
            .any(|k| k.starts_with("attachment")),
        "{:?}",
        report.accounting.skipped_by_reason
    );
}

#[test]
fn bad_parameters_are_refused_before_anything_starts() {
    let mut p = params(Mix::Text, Retain::Auto);
    p.employees = 0;
    p.items_per_day = 0;
    p.start = chrono::Utc::now();
    let e = p.check().unwrap_err().to_string();
    assert!(e.contains("--employees must be at least 1"), "{e}");
    assert!(e.contains("--items-per-day must be at least 1"), "{e}");
    assert!(e.contains("in the future"), "{e}");
}

/// What the fake provider's process `pid` holds in its item file, read through its open
/// descriptor (the file has no name), and whether any file of its has a name.
fn item_file_of(pid: u32) -> (Option<String>, bool) {
    let named = format!("mock-telemessage-items-{pid}-");
    let has_name = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(&named));
    let held = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .find(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|to| to.to_string_lossy().contains(&named))
        })
        .map(|fd| std::fs::read_to_string(fd.path()).unwrap());
    (held, has_name)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_child_holds_the_day_on_disk_and_leaves_nothing_behind() {
    use scenarios::load::provider::Provider;
    let work = scenarios::harness::temp_dir("load-provider-child");
    let p = params(Mix::Text, Retain::Auto);
    let mut day = scenarios::load::day::DayStream::new(&p).unwrap();
    let part = day.next_part(5).unwrap();
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_scenarios"));
    let shell = scenarios::load::write_shell(&day.shell, &work).unwrap();

    let mut provider = Provider::child(program, &shell).await.unwrap();
    let pid = provider.pid().unwrap();
    provider.load_items(&part.items).await.unwrap();
    provider.loaded(part.items.len()).await.unwrap();
    let (held, has_name) = item_file_of(pid);
    let held = held.expect("its items are in a file of its own");
    assert!(!has_name, "the file has no name to leave behind");
    for item in &part.items {
        assert!(
            held.contains(item["id"].as_str().unwrap()),
            "the file holds every item"
        );
    }
    let finished = provider.finish().await.unwrap();
    assert!(finished.peak_rss_bytes.unwrap() > 1_000_000);

    // Telling it a different count is refused, naming both.
    let mut provider = Provider::child(program, &shell).await.unwrap();
    provider.load_items(&part.items).await.unwrap();
    let e = provider.loaded(part.items.len() + 1).await.unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "holds {} items of the {}",
            part.items.len(),
            part.items.len() + 1
        )),
        "{e}"
    );
    drop(provider);

    // An item the provider cannot take stops it, with an error.
    let mut provider = Provider::child(program, &shell).await.unwrap();
    provider
        .load_items(&[serde_json::json!({"id": "no-such-shape"})])
        .await
        .unwrap();
    let e = provider.loaded(1).await.unwrap_err();
    assert!(
        e.to_string().contains("the fake provider's process exited"),
        "{e}"
    );
    std::fs::remove_dir_all(&work).unwrap();
}

/// `--throttling custom`: the fake mailbox enforces the numbers given, the connector
/// paces to them, and the numbers are refused without it.
#[test]
fn custom_limits_reach_the_fake_and_the_connector() {
    use scenarios::load::Limits;
    let mine = Limits {
        requests_per_10_minutes: 600,
        concurrent_requests: 2,
        upload_mib_per_5_minutes: 20,
    };
    let fake = mine.for_mailbox(Throttling::Custom);
    assert_eq!(
        (
            fake.requests_per_window,
            fake.concurrent_requests,
            fake.upload_bytes_per_window
        ),
        (600, 2, 20 * 1024 * 1024)
    );
    let pace = mine.for_pacing(Throttling::Custom).unwrap();
    assert_eq!((pace.requests, pace.upload_bytes), (600, 20 * 1024 * 1024));
    // Graph's own, whatever the numbers, and nothing at all with no limit.
    let graph = mine.for_mailbox(Throttling::Graph);
    assert_eq!(graph.requests_per_window, 10_000);
    assert_eq!(
        mine.for_pacing(Throttling::Graph),
        Some(connector::graph::pace::Budget::graph())
    );
    assert_eq!(mine.for_pacing(Throttling::Off), None);
    assert!(mine.for_mailbox(Throttling::Off).requests_per_window > 1_000_000_000);

    let mut p = params(Mix::Text, Retain::Auto);
    p.limits = mine;
    let e = p.check().unwrap_err().to_string();
    assert!(e.contains("apply to --throttling custom only"), "{e}");
    p.throttling = Throttling::Custom;
    p.check().unwrap();
    p.limits.concurrent_requests = 0;
    let e = p.check().unwrap_err().to_string();
    assert!(e.contains("must be at least 1"), "{e}");
}

/// A program under test that writes no run report (here our binary through the
/// conformance kit's wrapper, its report removed) is judged by what landed: the
/// accounting says it was not reported, deliveries are what the fake stored, and a
/// clean day passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_under_test_without_a_report_is_judged_by_what_landed() {
    let bin = scenarios::harness::connector_binary(None).unwrap();
    let wrapper = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/ours.sh");
    let mut p = params(Mix::Text, Retain::Full);
    p.under = scenarios::conformance::UnderTest::Command {
        command: format!(
            "{} {}; status=$?; rm -f \"$CONNECTOR_REPORT\"; exit $status",
            wrapper.display(),
            bin.display()
        ),
        rules: scenarios::conformance::Rules::Ours,
    };
    let work = scenarios::harness::temp_dir("load-foreign");
    let report = scenarios::load::run(&p, &work).await.unwrap();
    std::fs::remove_dir_all(&work).unwrap();
    assert_eq!(
        report.verdict,
        Verdict::Pass,
        "{:#?}",
        report.reconciliation
    );
    let a = &report.accounting;
    assert!(!a.reported);
    assert_eq!(
        a.delivered, a.deliveries_planned as u64,
        "what the fake stored"
    );
    assert_eq!(report.reconciliation.found, a.deliveries_planned);
    let table = report.table();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("accounting   not reported")),
        "{table}"
    );
}
