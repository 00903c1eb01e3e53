//! A fake of a load run in a process of its own: this same program, run with a hidden
//! command (`load-provider`, `load-mailbox`), so that the fake's memory and CPU are its
//! own. What both sides of that arrangement share:
//!
//! - the child prints `listening on http://HOST:PORT` once bound, then reads its standard
//!   input a line at a time and answers some lines with one line on its standard output;
//! - `usage` is answered by every child: its own CPU time and peak resident memory, as a
//!   JSON line;
//! - the end of its input stops it (Ctrl-C likewise), its temporary files removed: the
//!   runner is never asked to kill it, which would leave them behind.

use std::ffi::OsStr;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter, Lines};
use tokio::process::{ChildStdin, ChildStdout};

use super::usage::Rusage;

/// The runner's end of a child fake.
#[derive(Debug)]
pub struct Child {
    /// Which fake, for errors.
    name: &'static str,
    process: tokio::process::Child,
    /// `None` once closed, which stops it.
    input: Option<BufWriter<ChildStdin>>,
    output: Lines<BufReader<ChildStdout>>,
    /// Where it listens.
    pub url: String,
}

impl Child {
    /// Starts `program command args…` and waits until it listens.
    pub async fn start(
        name: &'static str,
        program: &Path,
        command: &str,
        args: &[&OsStr],
    ) -> anyhow::Result<Self> {
        let mut process = tokio::process::Command::new(program)
            .arg(command)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its errors and progress lines show where the runner's do.
            .stderr(Stdio::inherit())
            // Not killed when dropped: its input closes and it stops by itself.
            .spawn()
            .with_context(|| format!("starting the {name} ({})", program.display()))?;
        let input =
            BufWriter::with_capacity(1 << 20, process.stdin.take().context("the child's input")?);
        let output = BufReader::new(process.stdout.take().context("the child's output")?).lines();
        let mut child = Self {
            name,
            process,
            input: Some(input),
            output,
            url: String::new(),
        };
        let line = child.answer().await?;
        child.url = line
            .strip_prefix("listening on ")
            .with_context(|| format!("the {name} said {line:?}, not where it listens"))?
            .to_owned();
        Ok(child)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    /// Writes `bytes` (whole lines) without waiting for an answer.
    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let written = match &mut self.input {
            Some(input) => input.write_all(bytes).await,
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        match written {
            Ok(()) => Ok(()),
            Err(e) => Err(self.gone(e).await),
        }
    }

    /// Says `line` and reads the answer.
    pub async fn ask(&mut self, line: &str) -> anyhow::Result<String> {
        let written = async {
            let input = self.input.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
            input.write_all(line.as_bytes()).await?;
            input.write_all(b"\n").await?;
            input.flush().await
        }
        .await;
        if let Err(e) = written {
            return Err(self.gone(e).await);
        }
        self.answer().await
    }

    /// Its CPU time and peak resident memory so far.
    pub async fn usage(&mut self) -> anyhow::Result<Rusage> {
        let line = self.ask("usage").await?;
        serde_json::from_str(&line)
            .with_context(|| format!("the {}'s usage line {line:?}", self.name))
    }

    /// Its last usage, then it stops: its input closed, its exit waited for.
    pub async fn stop(mut self) -> anyhow::Result<Rusage> {
        let usage = self.usage().await?;
        self.input = None;
        let name = self.name;
        let status = self
            .process
            .wait()
            .await
            .with_context(|| format!("waiting for the {name}"))?;
        anyhow::ensure!(status.success(), "the {name} exited with {status}");
        Ok(usage)
    }

    async fn answer(&mut self) -> anyhow::Result<String> {
        match self.output.next_line().await {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(self.gone(std::io::ErrorKind::UnexpectedEof.into()).await),
            Err(e) => Err(self.gone(e).await),
        }
    }

    /// The error for a pipe that broke: the child stopped (its own error is above). A
    /// pipe breaks only as the child exits, so it is waited for.
    async fn gone(&mut self, e: std::io::Error) -> anyhow::Error {
        let status = match self.process.wait().await {
            Ok(status) => format!("exited with {status}"),
            Err(_) => "stopped answering".to_owned(),
        };
        anyhow::anyhow!(
            "the {}'s process {status} ({e}); its errors, if any, are above",
            self.name
        )
    }
}

impl Drop for Child {
    /// A runner stopped early (Ctrl-C, an error) closes the child's input here, and
    /// gives it a moment to stop and remove its files before going on to end: a check
    /// of the temporary directory once the runner is gone then finds nothing. Not for
    /// ever: a child in the middle of a reconciliation stops only after it, by itself.
    fn drop(&mut self) {
        self.input = None;
        for _ in 0..1_000 {
            match self.process.try_wait() {
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
                _ => return,
            }
        }
    }
}

/// The child's side: serves `router` on a port of its own, says where, then gives each
/// line of its input to `handle`, whose answer (if any) goes out as one line; `usage`
/// is answered here. Returns at the end of its input or on Ctrl-C; an error of `handle`
/// stops it too.
pub async fn serve(
    router: axum::Router,
    mut handle: impl FnMut(&str) -> anyhow::Result<Option<String>>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let mut out = std::io::stdout();
    writeln!(out, "listening on http://{address}")?;
    out.flush()?;
    // Its input is read on a thread of its own; the lines come here, where Ctrl-C is
    // heard too.
    let (lines, mut incoming) = tokio::sync::mpsc::channel::<std::io::Result<String>>(4096);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if lines.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let outcome = loop {
        let line = tokio::select! {
            line = incoming.recv() => line,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        let line = match line {
            None => break Ok(()),
            Some(Err(e)) => break Err(anyhow::Error::from(e).context("reading its input")),
            Some(Ok(line)) => line,
        };
        let answer = if line == "usage" {
            Ok(Some(serde_json::to_string(&Rusage::own())?))
        } else {
            handle(&line)
        };
        match answer {
            Ok(Some(answer)) => {
                writeln!(out, "{answer}")?;
                out.flush()?;
            }
            Ok(None) => {}
            Err(e) => break Err(e),
        }
    };
    // The fake's state goes with the last handle on it: the server's (its connections'
    // tasks go with the runtime, as the program ends).
    server.abort();
    outcome
}
