//! The fake provider of a load run: in a process of its own (the default for figures, so
//! that its memory and CPU are its own), or in this one (tests).
//!
//! The child (`scenarios load-provider --shell FILE`, see [`super::child`]) reads the
//! day from its input: a line holding a JSON object is one of the day's items (schema
//! JSON, as the generator drew it), kept in the provider's own temporary file rather
//! than in memory; an empty line ends the day and is answered `loaded N`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde_json::Value;

use super::child::Child;
use super::usage::{self, Cpu};

/// Items the child adds to its store at a time.
const BATCH: usize = 1_000;

/// The fake provider of a load run.
#[derive(Debug)]
pub enum Provider {
    InProcess(mock_telemessage::State),
    Child(Box<Child>),
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

    /// Starts `program load-provider` with the accounts and employees of the scenario in
    /// `shell_path` ([`super::write_shell`]), and waits until it listens.
    pub async fn child(program: &Path, shell_path: &Path) -> anyhow::Result<Self> {
        let child = Child::start(
            "fake provider",
            program,
            "load-provider",
            &["--shell".as_ref(), shell_path.as_os_str()],
        )
        .await?;
        Ok(Self::Child(Box::new(child)))
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
            Self::Child(c) => c.pid(),
        }
    }

    /// Adds a part of the day.
    pub async fn load_items(&mut self, items: &[Value]) -> anyhow::Result<()> {
        match self {
            Self::InProcess(state) => {
                state.load_items(items)?;
            }
            Self::Child(c) => {
                let mut lines = Vec::with_capacity(items.len() * 1024);
                for item in items {
                    serde_json::to_writer(&mut lines, item)?;
                    lines.push(b'\n');
                }
                c.send(&lines).await?;
            }
        }
        Ok(())
    }

    /// Ends the day; the child answers how many items it holds, which must be `drawn`.
    pub async fn loaded(&mut self, drawn: usize) -> anyhow::Result<()> {
        if let Self::Child(c) = self {
            let line = c.ask("").await?;
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
            Self::Child(c) => Ok(Finished {
                peak_rss_bytes: Some(c.stop().await?.max_rss_bytes),
            }),
        }
    }
}

/// The child's side: serves the provider with the scenario's accounts and employees from
/// `shell`, and the day's items from its input (see the module's documentation).
pub async fn serve_child(shell: &Path) -> anyhow::Result<()> {
    let scenario = super::read_shell(shell)?;
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
    let mut batch = Vec::with_capacity(BATCH);
    let mut held = 0usize;
    let router = mock_telemessage::router(state.clone());
    super::child::serve(router, |line| {
        if line.starts_with('{') {
            let item = serde_json::from_str::<Value>(line)
                .with_context(|| format!("item {} of the day", held + batch.len() + 1))?;
            batch.push(item);
            if batch.len() == BATCH {
                held += state.load_items(&batch)?;
                batch.clear();
            }
            return Ok(None);
        }
        anyhow::ensure!(line.is_empty(), "unknown command {line:?}");
        held += state.load_items(&batch)?;
        batch.clear();
        Ok(Some(format!("loaded {held}")))
    })
    .await
}

/// `scenarios load-provider`: the fake provider of `scenarios load`, as its child.
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
    /// The scenario whose accounts and employees it serves (JSON, no items).
    #[arg(long)]
    pub shell: PathBuf,
}
