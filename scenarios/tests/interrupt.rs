//! What `scenarios load` leaves in the temporary directory (a day's messages may take many
//! GB there): nothing, when it ends and when Ctrl-C stops it in the middle; then it says
//! so, and its connector child does not outlive it.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// Processes whose command line names `path`, by pid (a connector child names its
/// configuration file, in the run's work directory).
fn processes_naming(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// What is in `dir`.
fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Whether `holds` comes true, asked again and again (no sleep) up to a bound.
fn eventually(mut holds: impl FnMut() -> bool) -> bool {
    (0..100_000).any(|_| {
        std::thread::yield_now();
        holds()
    })
}

#[test]
fn an_interrupted_load_run_leaves_no_file_and_no_connector_behind() {
    // The run's own temporary directory: everything it makes goes there.
    let tmp = scenarios::harness::temp_dir("interrupted-load");
    let mut run = Command::new(env!("CARGO_BIN_EXE_scenarios"))
        .args(["load", "--items-per-day", "20000", "--employees", "20"])
        .args([
            "--external-contacts",
            "10",
            "--mix",
            "text",
            "--retain",
            "full",
        ])
        .args(["--ceiling-requests", "500", "--seed", "3"])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(run.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let importing = line.starts_with("load: phase 2");
        said.push(line);
        if importing {
            break;
        }
    }
    assert!(
        said.last().is_some_and(|l| l.starts_with("load: phase 2")),
        "the run never reached its import:\n{}",
        said.join("\n")
    );
    // Interrupted once its connector is running: it is started just after that line.
    // A 20,000-item day takes far longer to import than this takes to see it.
    let connector_running = eventually(|| !processes_naming(&tmp).is_empty());
    assert!(connector_running, "no connector child was seen running");
    let interrupted = Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    said.extend(lines.map(Result::unwrap));
    let status = run.wait().unwrap();

    assert_eq!(status.code(), Some(1), "{}", said.join("\n"));
    assert!(
        said.iter()
            .any(|l| l.contains("interrupted: the load run stopped")),
        "{}",
        said.join("\n")
    );
    let left = entries(&tmp);
    assert!(left.is_empty(), "left behind: {left:?}");
    // Killed as the program ended, and gone once the kernel has done it (a zombie has no
    // command line left). A connector that was not killed would also stop by itself once
    // it finds the fakes gone, so this catches a connector left running for good, not
    // one left running for a while: tried with the kill on drop taken out, it passed.
    let gone = eventually(|| processes_naming(&tmp).is_empty());
    assert!(
        gone,
        "the connector outlived its load run: {:?}",
        processes_naming(&tmp)
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_finished_load_run_leaves_no_file_behind() {
    let tmp = scenarios::harness::temp_dir("finished-load");
    let run = Command::new(env!("CARGO_BIN_EXE_scenarios"))
        .args(["load", "--items-per-day", "300", "--employees", "10"])
        .args(["--external-contacts", "5", "--retain", "full"])
        .args(["--ceiling-requests", "100", "--seed", "5"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    // The table (stdout) says why a run failed; the progress lines (stderr) how far it got.
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(run.status.code(), Some(0), "{said}");
    let left = entries(&tmp);
    assert!(left.is_empty(), "left behind: {left:?}\n{said}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
