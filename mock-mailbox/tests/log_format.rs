//! The fake as a process writes log lines a file or a log shipper can take: no escape
//! codes when stderr is not a terminal, JSON lines with `--log-format json`.

use mock_common::log_capture::process_logs;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/examples/mailbox-directory.json"
);

#[test]
fn log_lines_carry_no_escape_codes_in_a_pipe_and_are_json_on_request() {
    let text = process_logs(
        env!("CARGO_BIN_EXE_mock-mailbox"),
        &["--directory", EXAMPLE],
        "text",
    );
    assert!(text.contains(" INFO "), "{text}");
    assert!(!text.contains('\u{1b}'), "escape codes in a pipe: {text:?}");
    let json = process_logs(
        env!("CARGO_BIN_EXE_mock-mailbox"),
        &["--directory", EXAMPLE],
        "json",
    );
    assert!(!json.is_empty());
    for line in json.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
}
