//! The fake as a process writes log lines a file or a log shipper can take: no escape
//! codes when stderr is not a terminal, JSON lines with `--log-format json`.

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/examples/telemessage-dataset.json"
);

#[test]
fn log_lines_carry_no_escape_codes_in_a_pipe_and_are_json_on_request() {
    mock_common::log_capture::check_log_forms(
        env!("CARGO_BIN_EXE_mock-telemessage"),
        &["--dataset", EXAMPLE],
    );
}
