//! `scenarios`: generate, run, replay, load-test, chaos-test and serve WhatsApp archiving
//! scenarios. Each command lives in `scenarios::cli`.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's allocator: `scenarios load` holds both fakes, whose
/// worker threads take and free a message body of about 100 KB per request, and glibc
/// kept what they freed in an arena per thread (the runner held 441 MB at the end of the
/// 100,000-item day's import with glibc, 338 MB with mimalloc, same rate).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match scenarios::cli::run(scenarios::cli::Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
