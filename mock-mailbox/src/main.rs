//! `mock-mailbox --listen ADDR --directory FILE`: the fake Microsoft 365 as a process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mock_mailbox::profile::{Latency, Profile};
use mock_mailbox::store::Storage;
use mock_mailbox::{Config, Directory, Limits, State, router};

/// A faithful fake of the Microsoft identity platform's token endpoint and the Microsoft
/// Graph mail API subset in docs/mailbox-api.md.
///
/// Point a Graph client's base URL at http://HOST:PORT/v1.0 (or /beta for importMime) and
/// its login URL at http://HOST:PORT. Prints exactly one line, `listening on
/// http://HOST:PORT`, on stdout once bound; logs go to stderr (RUST_LOG sets the level).
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
    /// Directory file: tenants, applications, users (see docs/examples/mailbox-directory.json).
    #[arg(long)]
    directory: PathBuf,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, default_value_t = 3599)]
    token_lifetime: u32,
    /// Requests one application may make on one mailbox per 10 minutes.
    #[arg(long, default_value_t = 10_000)]
    requests_per_window: u64,
    /// Requests one application may have in flight on one mailbox.
    #[arg(long, default_value_t = 4)]
    concurrent_requests: u32,
    /// Bytes one application may upload to one mailbox per 5 minutes.
    #[arg(long, default_value_t = 150 * 1024 * 1024)]
    upload_bytes_per_window: u64,
    /// Requests one application may make across all mailboxes and tenants per 10
    /// seconds (Microsoft documents 130,000).
    #[arg(long, default_value_t = 130_000)]
    application_requests_per_10_seconds: u64,
    /// Keep message bytes in files under this directory (each distinct message once)
    /// rather than under a temporary directory removed at exit.
    #[arg(long, value_name = "DIR", conflicts_with = "in_memory")]
    store: Option<PathBuf>,
    /// Keep message bytes in memory (quicker for small tests; a big day will not fit).
    #[arg(long)]
    in_memory: bool,
    /// full: keep every message's exact bytes. summary: keep only what Graph lists and
    /// searches, the SHA-256 of each message and attachment, and the header section;
    /// `$value` then answers 501 ErrorContentNotRetained (for days bigger than the disk;
    /// the header sections and texts go to a temporary file, about 1 KB a message).
    #[arg(long, value_enum, default_value = "full")]
    retain: Retain,
    /// File holding the admin token for the /admin inspection API and the web viewer at
    /// /ui/ (sign in with the token). Without it (or MOCK_MAILBOX_ADMIN_TOKEN), the
    /// inspection API refuses every request and the viewer is off.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// lenient: bodies up to 48 MiB, answers at once (for tests that need no time).
    /// graph: as Microsoft Graph is documented: a Graph request body above
    /// --max-request-bytes (4 MiB) is answered 413 RequestEntityTooLarge and nothing is
    /// stored; each request is answered after a seeded, long-tailed delay by kind
    /// (docs/mailbox-api.md, "Profiles"), during which it counts among its mailbox's
    /// requests in flight.
    #[arg(long, value_enum, default_value = "lenient")]
    profile: ProfileArg,
    /// The largest Graph request body, in bytes (default: the profile's, 4 MiB under
    /// graph, 48 MiB under lenient). Microsoft documents 4 MB for MIME payloads and
    /// upload chunks but no figure for importMime itself: an assumption to test both ways.
    #[arg(long)]
    max_request_bytes: Option<usize>,
    /// Under --profile graph, whether requests take Graph's time (on) or answer at once
    /// with Graph's rules still enforced (off).
    #[arg(long, value_enum, default_value = "on")]
    latency: OnOff,
    /// Whether a file may be attached (POST .../attachments or an upload session) to a
    /// message that is not a draft, such as an imported one. Microsoft documents
    /// attachments on "a message" without saying: allow follows the documentation,
    /// refuse answers 403 ErrorAccessDenied, so a connector can be tested under both.
    #[arg(long, value_enum, default_value = "allow")]
    attachments_on_non_drafts: AllowRefuse,
    /// The seed of the latency draws (each request's delay is drawn from what it is and
    /// its attempt number, so a run replays).
    #[arg(long, default_value_t = 0)]
    latency_seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProfileArg {
    Lenient,
    Graph,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AllowRefuse {
    Allow,
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// How much of each message the fake keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Retain {
    Full,
    Summary,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mock_common::serve::init_logging(args.log_format);
    if args.retain == Retain::Summary && (args.store.is_some() || args.in_memory) {
        anyhow::bail!(
            "--retain summary keeps no message bytes, so --store and --in-memory do not apply: give one or the other"
        );
    }
    let admin = mock_common::serve::admin_token(
        args.admin_token_file.as_deref(),
        "MOCK_MAILBOX_ADMIN_TOKEN",
    )?;
    let directory = Directory::from_file(&args.directory)?;
    let config = Config {
        token_lifetime: chrono::Duration::seconds(i64::from(args.token_lifetime)),
        limits: Limits {
            requests_per_window: args.requests_per_window,
            concurrent_requests: args.concurrent_requests,
            upload_bytes_per_window: args.upload_bytes_per_window,
            application_requests_per_window: args.application_requests_per_10_seconds,
            ..Limits::default()
        },
        storage: if args.retain == Retain::Summary {
            Storage::Summary
        } else if args.in_memory {
            Storage::Memory
        } else {
            Storage::Disk { dir: args.store }
        },
        profile: {
            let mut profile = match args.profile {
                ProfileArg::Lenient => Profile::lenient(),
                ProfileArg::Graph if args.latency == OnOff::On => Profile::graph(Some(Latency {
                    seed: args.latency_seed,
                    ..Latency::default()
                })),
                ProfileArg::Graph => Profile::graph(None),
            };
            if let Some(cap) = args.max_request_bytes {
                profile.max_request_bytes = cap;
            }
            profile
        },
        attachments_on_non_drafts: args.attachments_on_non_drafts == AllowRefuse::Allow,
    };
    let state = State::new(
        &directory,
        Arc::new(mock_common::SystemClock),
        config,
        admin,
    )
    .with_context(|| format!("loading {}", args.directory.display()))?;
    tracing::info!(tenants = state.tenants().len(), "directory loaded");
    mock_common::serve::serve(args.listen, router(state)).await
}
