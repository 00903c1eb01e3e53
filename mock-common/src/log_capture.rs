//! Captures log output in memory, for tests that check what a server logs (above all,
//! that no secret is ever logged).

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything logged on this thread at any level, while the guard lives.
#[derive(Debug, Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Starts capturing on the current thread; capture stops when the guard drops. Use it
    /// from a current-thread runtime (`#[tokio::test]`'s default) so tasks log here too.
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture lock poisoned")).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("capture lock poisoned")
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks what a fake's binary (started with `args`) writes to a pipe: text lines with
/// no escape codes, and with `--log-format json` JSON objects with a timestamp and a
/// level, one per line. For the tests that check what a log shipper gets from each fake.
pub fn check_log_forms(binary: &str, args: &[&str]) {
    let text = process_logs(binary, args, "text");
    assert!(text.contains(" INFO "), "{text}");
    assert!(!text.contains('\u{1b}'), "escape codes in a pipe: {text:?}");
    let json = process_logs(binary, args, "json");
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

/// The log lines a fake's binary writes to a pipe in `format` (`text` or `json`): it is
/// started with `args` and `--log-format`, its health check asked once, then it is
/// stopped.
fn process_logs(binary: &str, args: &[&str], format: &str) -> String {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    let mut child = Command::new(binary)
        .args(["--listen", "127.0.0.1:0", "--log-format", format])
        .args(args)
        .env("RUST_LOG", "debug")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the fake starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("its stdout"))
        .read_line(&mut line)
        .expect("its listening line");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .expect("a listening line")
        .to_owned();
    let mut stream = std::net::TcpStream::connect(addr).expect("it listens");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n")
        .expect("a request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    child.kill().expect("it stops");
    let out = child.wait_with_output().expect("its output");
    String::from_utf8(out.stderr).expect("UTF-8 logs")
}
