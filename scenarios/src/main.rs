//! `scenarios`: the scenario runner (issue 5). Until it exists, `replay` says what can be
//! run today instead of pretending to reconcile anything.

use clap::{Parser, Subcommand};

/// Generates organisations and days of WhatsApp traffic, runs the connector against the
/// fakes and reconciles every item against every mailbox.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay every recorded scenario under scenarios/recorded/ and print the reconciliation.
    Replay,
}

fn main() {
    match Args::parse().command {
        Command::Replay => {
            println!("The scenario runner is not built yet, so there is nothing to replay.");
            println!("What runs today:");
            println!(
                "  cargo run -p mock-telemessage -- --dataset docs/examples/telemessage-dataset.json"
            );
            println!("  cargo test --workspace");
            println!("See README.md for a walk-through of the fake provider with curl.");
        }
    }
}
