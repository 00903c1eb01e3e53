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

/// mimalloc (v3) keeps freed pages for a second before it hands them back. The fakes'
/// threads free a few hundred KB per request (the body, its decoding), so at a few
/// thousand requests a second that second is hundreds of MB: a 20,000-item `realistic`
/// day's ceiling left the runner 187 MB heavier. Handing them back sooner costs page
/// faults when the memory is taken again: 100 ms took the runner's peak on a
/// 100,000-item day from 443 to 394 MB at no cost in speed; 0 ms to 322 MB, but with the
/// fake mailbox 20 % slower, which would flatter the ratio (docs/load-testing.md).
/// Arenas reserved from here on (a big day outgrows the first, of 1 GiB, reserved before
/// `main` runs) are committed as they are used rather than at once; set with the delay,
/// not measured apart.
fn hand_back_freed_memory() {
    // Their numbers in mimalloc's `mi_option_e` (mimalloc.h, the same in v2 and v3), which
    // the bindings lack.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // mimalloc's own variable, if set, says otherwise (to compare).
    let delay = std::env::var("MIMALLOC_PURGE_DELAY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PURGE_DELAY_MS);
    #[allow(unsafe_code)]
    // SAFETY: `mi_option_set` only stores a number that mimalloc reads where it uses the
    // option; it may be called at any time, from any thread.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, delay);
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
    }
}

/// How long mimalloc keeps freed pages before it hands them back, in milliseconds.
const PURGE_DELAY_MS: std::ffi::c_long = 100;

fn main() -> ExitCode {
    hand_back_freed_memory();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(run())
}

async fn run() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(mock_common::serve::colour_on_stderr())
        .init();
    match scenarios::cli::run(scenarios::cli::Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
