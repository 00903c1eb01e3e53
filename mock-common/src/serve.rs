//! Start-up shared by the fake servers' binaries: logging to stderr, the admin token
//! from a file or the environment, binding, the one `listening on` line on stdout, and
//! a graceful stop on Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

use crate::AdminToken;

/// Logs go to stderr so that stdout carries only the `listening on` line. `RUST_LOG`
/// picks the level (default `info`); `format` the form of each line.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour_on_stderr()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// The form of log lines: text for people, JSON lines for log shippers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?} is not a log format: text or json")),
        }
    }
}

/// Colour only for a person at a terminal: never in a file or a pipe, never with
/// `NO_COLOR` set to anything (no-color.org).
pub fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Reads the admin token from `file` if given, else from the environment variable `env`.
/// With neither, the inspection API stays closed to everyone.
pub fn admin_token(file: Option<&Path>, env: &str) -> anyhow::Result<AdminToken> {
    let token = match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the admin token file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var(env).ok().map(|t| t.trim().to_owned()),
    };
    match token {
        Some(t) if t.len() >= 16 => Ok(AdminToken::new(&t)),
        Some(_) => anyhow::bail!("the admin token must be at least 16 characters long"),
        None => {
            tracing::warn!(
                "no admin token given (file or {env}): the inspection API refuses every request"
            );
            Ok(AdminToken::disabled())
        }
    }
}

/// Binds `addr`, prints exactly `listening on http://HOST:PORT` on stdout, and serves
/// until Ctrl-C or SIGTERM.
pub async fn serve(addr: SocketAddr, app: Router) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{local}")?;
        out.flush()?;
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// A request's body read up to `limit` bytes, or `None` as soon as it is over: a
/// `Content-Length` over the limit is refused before a byte is read, and a body without
/// one is refused once what came exceeds it. The caller answers 413 in its own shape.
pub async fn read_bounded(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Option<axum::body::Bytes> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return None;
    }
    axum::body::to_bytes(body, limit).await.ok()
}
