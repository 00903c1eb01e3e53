//! `mock-telemessage --listen ADDR --dataset FILE`: the fake provider as a process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mock_telemessage::{Config, Dataset, State, router};

/// A faithful fake of the TeleMessage WhatsApp archive API (docs/telemessage-api.md).
///
/// Prints exactly one line, `listening on http://HOST:PORT`, on stdout once bound; logs go
/// to stderr (RUST_LOG sets the level). Stops on Ctrl-C or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Log lines on stderr as text (coloured only on a terminal, never with NO_COLOR)
    /// or as JSON lines (timestamp, level, target, message, fields).
    #[arg(long, value_name = "text|json", default_value = "text")]
    log_format: mock_common::serve::LogFormat,
    /// Dataset file: accounts, employees, items, faults (see docs/examples/telemessage-dataset.json).
    #[arg(long)]
    dataset: PathBuf,
    /// Lifetime of the bearer tokens it issues, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime: u32,
    /// File holding the admin token for the /admin API. Without it (or
    /// MOCK_TELEMESSAGE_ADMIN_TOKEN), the admin API refuses every request.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mock_common::serve::init_logging(args.log_format);
    let admin = mock_common::serve::admin_token(
        args.admin_token_file.as_deref(),
        "MOCK_TELEMESSAGE_ADMIN_TOKEN",
    )?;
    let dataset = Dataset::from_file(&args.dataset)?;
    let config = Config {
        token_lifetime: chrono::Duration::seconds(i64::from(args.token_lifetime)),
        ..Config::default()
    };
    let state = State::new(&dataset, Arc::new(mock_common::SystemClock), config, admin)
        .with_context(|| format!("loading {}", args.dataset.display()))?;
    tracing::info!(items = state.counters().items_held, "dataset loaded");
    mock_common::serve::serve(args.listen, router(state)).await
}
