//! The `scenarios` command line: one module per command, each with its arguments and
//! what it does; `main.rs` only parses and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod chaos;
pub mod generate;
pub mod load;
pub mod parity;
pub mod replay;
mod reports;
pub mod run;
pub mod serve;
pub mod shrink;

/// Runs organisations' days of WhatsApp traffic through the connector against the fakes
/// and reconciles every item against every mailbox.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replays every recorded scenario (scenarios/recorded/*.json) and prints the
    /// reconciliation; exits 0 only if every one passes.
    Replay(replay::Args),
    /// Runs the given scenario files.
    Run(run::Args),
    /// Writes a generated scenario file: parameters and a seed, expanded the same way on
    /// every machine.
    Generate(generate::Args),
    /// Load-tests the daily import: generates a day from the seed, measures the fastest a
    /// raw client can post to the fake mailbox (the ceiling), then the connector on the
    /// same fakes, reconciles every item, and reports the rates, their ratio, latency,
    /// throttling, memory and CPU. Exits 0 only if nothing was lost or duplicated.
    Load(load::Args),
    /// Runs many small seeded organisations through seeded faults on both sides and
    /// crashes of the connector, reconciles each, and prints a table and a summary. Each
    /// seed expands to one explicit scenario; a failing one prints the command that
    /// replays it and is saved as a scenario file. Exits 0 only if every seed passed.
    Chaos(chaos::Args),
    /// Makes a failing scenario smaller while it still fails (drops faults, crash points,
    /// items, unreadable items, early runs, one step at a time) and writes the result.
    Shrink(shrink::Args),
    /// Starts both fakes loaded with a scenario, prints their URLs, a ready connector
    /// configuration and the mailbox viewer's URL with the file holding its admin token,
    /// and runs until interrupted.
    Serve(serve::Args),
    /// Runs the same probes against any Graph (the fake under a profile, or a development
    /// tenant) and prints where they answer differently: request caps, error shapes,
    /// upload sessions, latency.
    Parity(parity::Args),
    /// The fake provider of `scenarios load`, as its child process (not for people).
    #[command(hide = true)]
    LoadProvider(crate::load::provider::ChildArgs),
    /// The fake mailbox of `scenarios load`, as its child process (not for people).
    #[command(hide = true)]
    LoadMailbox(crate::load::mailbox::ChildArgs),
}

/// Runs the command the line asked for.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => replay::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Generate(args) => generate::run(args).await,
        Command::Load(args) => load::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
        Command::Shrink(args) => shrink::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Parity(args) => parity::run(args).await,
        Command::LoadProvider(args) => crate::load::provider::serve_child(&args.shell)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::LoadMailbox(args) => crate::load::mailbox::serve_child(args)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}
