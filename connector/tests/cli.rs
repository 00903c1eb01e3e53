//! The `connector` binary as a person or a script meets it: exit codes with one meaning
//! each, configuration errors that point at the place and never show a secret, and the
//! held list's commands. No test here reaches a service: the runs stop before they
//! would, or aim at a loopback port nothing listens on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{TimeDelta, Utc};

const SECRET: &str = "Sup3r-S3cret-Pa55";

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("connector-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn connector(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_connector"))
        .args(args)
        .env("CLI_TEST_PASSWORD", SECRET)
        .env("CLI_TEST_CLIENT_SECRET", "client-secret-value")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A configuration that loads, with `provider_url` for the provider.
fn good_config(d: &Path, provider_url: &str) -> PathBuf {
    let path = d.join("connector.toml");
    std::fs::write(
        &path,
        format!(
            r#"state_dir = "state"
[provider]
url = "{provider_url}"
username = "contoso-archive"
password_env = "CLI_TEST_PASSWORD"
[microsoft365]
tenant = "contoso.example"
client_id = "7c1e5a9b-2f4d-4e8a-b6c3-91d0e2f4a8b5"
client_secret_env = "CLI_TEST_CLIENT_SECRET"
graph_url = "http://127.0.0.1:9"
login_url = "http://127.0.0.1:9"
[import]
max_attempts = 1
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn help_documents_every_exit_status() {
    let out = connector(&["--help"]);
    assert!(out.status.success());
    let help = text(&out);
    for needle in [
        "0 success",
        "1 an internal",
        "2 a usage or",
        "3 a service",
        "4 the run finished",
        "5 another run holds",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn usage_errors_exit_2_before_anything_is_contacted() {
    let d = dir("usage");
    let config = good_config(&d, "http://127.0.0.1:9");
    let config = config.to_str().unwrap();
    let now = Utc::now();
    let future = (now + TimeDelta::days(1)).to_rfc3339();
    let until = (now - TimeDelta::days(1)).to_rfc3339();
    let since = now.to_rfc3339();
    for (args, says) in [
        (
            vec!["run", "--config", config, "--until", "yesterday"],
            "not an RFC 3339 time",
        ),
        (
            vec!["run", "--config", config, "--until", &future],
            "is in the future",
        ),
        (
            vec![
                "run", "--config", config, "--until", &until, "--since", &since,
            ],
            "is not before --until",
        ),
        (vec!["run"], "--config"),
    ] {
        let out = connector(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_run_beside_another_exits_5_naming_the_holder_and_touches_nothing() {
    let d = dir("busy");
    let config = good_config(&d, "http://127.0.0.1:9");
    let state = d.join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Another run, as far as the binary can tell: this process holds the lock.
    let held = connector::lock::RunLock::acquire(&state, Utc::now()).unwrap();
    for args in [
        vec!["run", "--config", config.to_str().unwrap()],
        vec!["state", "set-aside", "--config", config.to_str().unwrap()],
    ] {
        let out = connector(&args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {said}");
        assert!(
            said.contains("another run holds the state directory")
                && said.contains(&format!("process {}", std::process::id())),
            "{args:?}: {said}"
        );
    }
    assert!(
        !state.join("state.sqlite").exists(),
        "the refused run opened no state"
    );
    drop(held);
    // Free again: a damaged state is named, set aside, and kept for a person.
    std::fs::write(state.join("state.sqlite"), vec![0x5a; 4096]).unwrap();
    let out = connector(&["held", "list", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is damaged"), "{}", text(&out));
    let out = connector(&["state", "set-aside", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("moved"), "{}", text(&out));
    let kept: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("state.sqlite.set-aside-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(!state.join("state.sqlite").exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_unreachable_provider_exits_3_and_names_the_setting() {
    let d = dir("unreachable");
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let config = good_config(&d, &url);
    let out = connector(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--until",
        "2026-11-23T00:00:00Z",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    let error = all.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(
        error.contains(&format!(
            "cannot reach the provider at {url} (setting provider.url)"
        )),
        "{error}"
    );
    assert!(error.contains("could not connect"), "the cause: {error}");
    assert!(!all.contains(SECRET));
    std::fs::remove_dir_all(&d).unwrap();
}

/// Every kind of malformed configuration a person writes, each holding the secret: the
/// error names file, line, column and key, and shows the secret nowhere.
#[test]
fn configuration_errors_point_at_the_place_and_never_show_the_secret() {
    let d = dir("config");
    let base = std::fs::read_to_string(good_config(&d, "http://127.0.0.1:9")).unwrap();
    let cases = [
        (
            "misspelled key",
            base.replace(
                "password_env = \"CLI_TEST_PASSWORD\"",
                &format!("passwrd = \"{SECRET}\""),
            ),
        ),
        (
            "unterminated string",
            base.replace(
                "password_env = \"CLI_TEST_PASSWORD\"",
                &format!("password_env = \"{SECRET}"),
            ),
        ),
        (
            "unquoted value",
            base.replace(
                "password_env = \"CLI_TEST_PASSWORD\"",
                &format!("password_env = {SECRET}"),
            ),
        ),
        (
            "a secret where a number belongs",
            base.replace("max_attempts = 1", &format!("max_attempts = \"{SECRET}\"")),
        ),
        (
            "a secret written inline",
            base.replace(
                "password_env = \"CLI_TEST_PASSWORD\"",
                &format!("password = \"{SECRET}\""),
            ),
        ),
        (
            "a secret as a table name",
            format!("{base}\n[{SECRET}]\nx = 1\n"),
        ),
        (
            "a duplicated key",
            base.replace(
                "username = \"contoso-archive\"",
                &format!("username = \"contoso-archive\"\nusername = \"{SECRET}\""),
            ),
        ),
    ];
    let mut messages = Vec::new();
    for (name, toml) in cases {
        let path = d.join("bad.toml");
        std::fs::write(&path, &toml).unwrap();
        for command in ["run", "check"] {
            let out = connector(&[command, "--config", path.to_str().unwrap()]);
            let all = text(&out);
            assert_eq!(out.status.code(), Some(2), "{name}: {all}");
            assert!(!all.contains(SECRET), "{name}: the secret leaked:\n{all}");
            if command == "run" {
                let error = all
                    .lines()
                    .find(|l| l.starts_with("error: "))
                    .unwrap_or_else(|| panic!("{name}: no error line in {all}"));
                messages.push(format!(
                    "{name}: {}",
                    error.replace(&d.display().to_string(), "<dir>")
                ));
            }
        }
    }
    insta::assert_snapshot!(messages.join("\n"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_held_list_can_be_listed_retried_and_given_up_without_secrets() {
    use connector::store::Store;
    let d = dir("held");
    let config = good_config(&d, "http://127.0.0.1:9");
    let config = config.to_str().unwrap();
    let now = Utc::now();
    {
        std::fs::create_dir_all(d.join("state")).unwrap();
        let store = Store::open(&d.join("state/state.sqlite")).unwrap();
        for id in ["wa-stuck-1", "wa-stuck-2"] {
            store.hold(id, "{}", 1, "Graph answered 503", now).unwrap();
            store.mark_needs_person(id).unwrap();
        }
    }
    // Needs no secret: the commands only look at the state.
    let list = Command::new(env!("CARGO_BIN_EXE_connector"))
        .args(["held", "list", "--config", config])
        .output()
        .unwrap();
    assert_eq!(list.status.code(), Some(4), "{}", text(&list));
    let listed = text(&list);
    assert!(
        listed.contains("wa-stuck-1\tNEEDS A PERSON\truns 1"),
        "{listed}"
    );
    assert!(listed.contains("Graph answered 503"));

    let retry = connector(&["held", "retry", "--config", config, "wa-stuck-1"]);
    assert!(retry.status.success(), "{}", text(&retry));
    let unknown = connector(&["held", "retry", "--config", config, "wa-nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown).contains("not on the held list: wa-nope"));

    let no_reason = connector(&[
        "held",
        "give-up",
        "--config",
        config,
        "--reason",
        " ",
        "wa-stuck-2",
    ]);
    assert_eq!(no_reason.status.code(), Some(2));
    let give_up = connector(&[
        "held",
        "give-up",
        "--config",
        config,
        "--reason",
        "the sender's phone was wiped; the provider confirms the item is gone",
        "wa-stuck-2",
    ]);
    assert!(give_up.status.success(), "{}", text(&give_up));

    let store = Store::open(&d.join("state/state.sqlite")).unwrap();
    let held = store.held().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].item_id, "wa-stuck-1");
    assert!(!held[0].needs_person && held[0].runs == 0, "{held:?}");
    let skips = store.skips_of_window(1).unwrap();
    assert_eq!(skips.len(), 1);
    assert_eq!(skips[0].reason, "given_up");
    assert!(
        skips[0]
            .detail
            .contains("the provider confirms the item is gone")
    );
    let after = connector(&["held", "list", "--config", config]);
    assert!(after.status.success(), "nothing needs a person any more");
    std::fs::remove_dir_all(&d).unwrap();
}
