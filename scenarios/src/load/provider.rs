//! The fake provider of a load run: in a process of its own (the default for figures, so
//! that its memory and CPU are its own), or in this one (tests).
//!
//! The child is this same program, `scenarios load-provider --shell FILE` (hidden from
//! `--help`). It prints `listening on http://HOST:PORT` once bound, then reads its
//! standard input a line at a time:
//! - a JSON object is one of the day's items (schema JSON, as the generator drew it);
//!   items are kept in the provider's own temporary file, not in memory;
//! - an empty line ends the day: it answers `loaded N`;
//! - `usage` answers its own CPU time and peak resident memory, as one JSON line;
//! - the end of its input stops it, its temporary file removed (Ctrl-C likewise).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::usage::{self, Cpu, Rusage};
use crate::Scenario;

/// Items the child adds to its store at a time.
const BATCH: usize = 1_000;

/// The fake provider of a load run.
#[derive(Debug)]
pub enum Provider {
    InProcess(mock_telemessage::State),
    Child(Box<ChildProvider>),
}

/// The provider's figures once the import is over.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// The child's peak resident memory over its whole life (`None` in this process).
    pub peak_rss_bytes: Option<u64>,
}

impl Provider {
    /// The fake provider in this process (already serving, from `Fakes`), its items kept
    /// in a temporary file.
    pub fn in_process(state: mock_telemessage::State) -> anyhow::Result<Self> {
        state
            .keep_items_on_disk()
            .context("the fake provider cannot make its temporary item file")?;
        Ok(Self::InProcess(state))
    }

    /// Starts `program load-provider` with the scenario's accounts and employees (its
    /// shell, written into `work`), and waits until it listens.
    pub async fn child(program: &Path, shell: &Scenario, work: &Path) -> anyhow::Result<Self> {
        let shell_path = work.join("provider-shell.json");
        std::fs::write(&shell_path, serde_json::to_vec(shell)?)
            .with_context(|| format!("writing {}", shell_path.display()))?;
        let mut child = tokio::process::Command::new(program)
            .arg("load-provider")
            .arg("--shell")
            .arg(&shell_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its errors show where the runner's do.
            .stderr(Stdio::inherit())
            // Not killed when dropped: closing its input stops it, and it removes its
            // item file as it goes (a kill would leave the file behind).
            .spawn()
            .with_context(|| format!("starting the fake provider ({})", program.display()))?;
        let input = BufWriter::with_capacity(
            1 << 20,
            child.stdin.take().context("the fake provider's input")?,
        );
        let output =
            BufReader::new(child.stdout.take().context("the fake provider's output")?).lines();
        let mut provider = ChildProvider {
            child,
            input,
            output,
            url: String::new(),
        };
        let line = provider.answer().await?;
        provider.url = line
            .strip_prefix("listening on ")
            .with_context(|| format!("the fake provider said {line:?}, not where it listens"))?
            .to_owned();
        Ok(Self::Child(Box::new(provider)))
    }

    /// Where the child listens (`None` in this process: the `Fakes`' own URL).
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::InProcess(_) => None,
            Self::Child(c) => Some(&c.url),
        }
    }

    /// The child's process id (`None` in this process).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::InProcess(_) => None,
            Self::Child(c) => c.child.id(),
        }
    }

    /// Adds a part of the day.
    pub async fn load_items(&mut self, items: &[Value]) -> anyhow::Result<()> {
        match self {
            Self::InProcess(state) => {
                state.load_items(items)?;
            }
            Self::Child(c) => {
                let mut line = Vec::with_capacity(4096);
                for item in items {
                    line.clear();
                    serde_json::to_writer(&mut line, item)?;
                    line.push(b'\n');
                    if let Err(e) = c.input.write_all(&line).await {
                        return Err(c.gone(e).await);
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the day; the child answers how many items it holds, which must be `drawn`.
    pub async fn loaded(&mut self, drawn: usize) -> anyhow::Result<()> {
        if let Self::Child(c) = self {
            c.say("").await?;
            let line = c.answer().await?;
            let held: usize = line
                .strip_prefix("loaded ")
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("the fake provider said {line:?}, not `loaded N`"))?;
            anyhow::ensure!(
                held == drawn,
                "the fake provider holds {held} items of the {drawn} drawn"
            );
        }
        Ok(())
    }

    /// The provider's CPU time so far: the child's own, or the threads it serves on here.
    pub async fn cpu(&mut self) -> anyhow::Result<Cpu> {
        Ok(match self {
            Self::InProcess(_) => usage::threads_cpu(crate::harness::PROVIDER_THREADS),
            Self::Child(c) => c.usage().await?.cpu(),
        })
    }

    /// Lets the day go once the import is over: the child reports its peak memory and
    /// stops (its memory back to the machine for the reconciliation); here, the items
    /// are forgotten.
    pub async fn finish(self) -> anyhow::Result<Finished> {
        match self {
            Self::InProcess(state) => {
                state
                    .forget_items()
                    .context("emptying the fake provider's item file")?;
                Ok(Finished {
                    peak_rss_bytes: None,
                })
            }
            Self::Child(c) => {
                let mut c = *c;
                let usage = c.usage().await?;
                let ChildProvider {
                    mut child, input, ..
                } = c;
                drop(input);
                let status = child
                    .wait()
                    .await
                    .context("waiting for the fake provider")?;
                anyhow::ensure!(status.success(), "the fake provider exited with {status}");
                Ok(Finished {
                    peak_rss_bytes: Some(usage.max_rss_bytes),
                })
            }
        }
    }
}

/// The fake provider as a child process, and the pipes to it.
#[derive(Debug)]
pub struct ChildProvider {
    child: Child,
    input: BufWriter<ChildStdin>,
    output: Lines<BufReader<ChildStdout>>,
    url: String,
}

impl ChildProvider {
    async fn say(&mut self, line: &str) -> anyhow::Result<()> {
        let written = async {
            self.input.write_all(line.as_bytes()).await?;
            self.input.write_all(b"\n").await?;
            self.input.flush().await
        }
        .await;
        match written {
            Ok(()) => Ok(()),
            Err(e) => Err(self.gone(e).await),
        }
    }

    async fn answer(&mut self) -> anyhow::Result<String> {
        match self.output.next_line().await {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(self.gone(std::io::ErrorKind::UnexpectedEof.into()).await),
            Err(e) => Err(self.gone(e).await),
        }
    }

    async fn usage(&mut self) -> anyhow::Result<Rusage> {
        self.say("usage").await?;
        let line = self.answer().await?;
        serde_json::from_str(&line)
            .with_context(|| format!("the fake provider's usage line {line:?}"))
    }

    /// The error for a pipe that broke: the child stopped (its own error is above). A
    /// pipe breaks only as the child exits, so it is waited for.
    async fn gone(&mut self, e: std::io::Error) -> anyhow::Error {
        let status = match self.child.wait().await {
            Ok(status) => format!("exited with {status}"),
            Err(_) => "stopped answering".to_owned(),
        };
        anyhow::anyhow!("the fake provider's process {status} ({e}); its errors, if any, are above")
    }
}

/// The child's side: serves the provider with the scenario's accounts and employees from
/// `shell`, and the day's items from its input (see the module's documentation).
pub async fn serve_child(shell: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(shell).with_context(|| format!("reading {}", shell.display()))?;
    let scenario: Scenario =
        serde_json::from_slice(&text).with_context(|| format!("reading {}", shell.display()))?;
    let (dataset, _) = crate::harness::fixtures_without_items(&scenario)?;
    let state = mock_telemessage::State::new(
        &dataset,
        Arc::new(mock_common::SystemClock),
        mock_telemessage::Config::default(),
        mock_common::AdminToken::disabled(),
    )?;
    drop((dataset, scenario));
    state
        .keep_items_on_disk()
        .context("the fake provider cannot make its temporary item file")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let router = mock_telemessage::router(state.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let mut out = std::io::stdout();
    writeln!(out, "listening on http://{address}")?;
    out.flush()?;

    // Its input is read on a thread of its own; the lines come here, where Ctrl-C is
    // heard too.
    let (lines, mut incoming) = tokio::sync::mpsc::channel::<std::io::Result<String>>(4 * BATCH);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if lines.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut batch = Vec::with_capacity(BATCH);
    let mut held = 0usize;
    let outcome = loop {
        let line = tokio::select! {
            line = incoming.recv() => line,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        let line = match line {
            None => break Ok(()),
            Some(Err(e)) => break Err(anyhow::Error::from(e).context("reading the day")),
            Some(Ok(line)) => line,
        };
        if line.starts_with('{') {
            match serde_json::from_str::<Value>(&line) {
                Ok(item) => batch.push(item),
                Err(e) => {
                    break Err(anyhow::anyhow!(
                        "item {} of the day: {e}",
                        held + batch.len() + 1
                    ));
                }
            }
            if batch.len() == BATCH {
                held += state.load_items(&batch)?;
                batch.clear();
            }
            continue;
        }
        match line.as_str() {
            "" => {
                held += state.load_items(&batch)?;
                batch.clear();
                writeln!(out, "loaded {held}")?;
            }
            "usage" => writeln!(out, "{}", serde_json::to_string(&Rusage::own())?)?,
            other => break Err(anyhow::anyhow!("unknown command {other:?}")),
        }
        out.flush()?;
    };
    // The item file goes with the last handle on the state: the server's (its
    // connections' tasks go with the runtime, as the program ends).
    server.abort();
    state.forget_items()?;
    outcome
}

/// `scenarios load-provider`: the fake provider of `scenarios load`, as its child.
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
    /// The scenario whose accounts and employees it serves (JSON, no items).
    #[arg(long)]
    pub shell: PathBuf,
}
