//! The fake as a process writes log lines a file or a log shipper can take: no escape
//! codes when stderr is not a terminal, JSON lines with `--log-format json`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

/// Starts the fake with `format`, asks its health check once, stops it: its stderr.
fn logs(format: &str) -> String {
    let examples = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/telemessage-dataset.json"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-telemessage"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--dataset",
            examples,
            "--log-format",
            format,
        ])
        .env("RUST_LOG", "debug")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .to_owned();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn log_lines_carry_no_escape_codes_in_a_pipe_and_are_json_on_request() {
    let text = logs("text");
    assert!(text.contains(" INFO "), "{text}");
    assert!(!text.contains('\u{1b}'), "escape codes in a pipe: {text:?}");
    let json = logs("json");
    let mut lines = 0;
    for line in json.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        lines += 1;
    }
    assert!(lines > 0, "something was logged: {json}");
}
