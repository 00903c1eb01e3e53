//! `scenarios parity`: the same probes against any Graph (see `crate::parity`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Runs a fixed list of probes (importMime of 1 to 14 MiB, look-up by internetMessageId,
/// $value, a file by one POST and by an upload session on an imported message, the 404
/// and 429 answers, latency by kind of request) against a Graph endpoint and one scratch
/// mailbox, in a folder it creates and removes with everything it made. Prints a table
/// and writes parity.json (no secret in either).
///
/// Against the fake: `--fake graph` or `--fake lenient` (no tenant needed). Against a
/// development tenant of Microsoft 365: `--graph-url https://graph.microsoft.com
/// --login-url https://login.microsoftonline.com --tenant TENANT --client-id ID --mailbox
/// scratch@tenant`, the secret in the environment variable named by --secret-env. It
/// never points at Microsoft unless told to.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Probe the fake Microsoft 365 of the examples under this profile instead of a URL.
    #[arg(long, value_enum, conflicts_with_all = ["graph_url", "login_url", "tenant", "client_id", "mailbox"])]
    pub fake: Option<super::serve::ProfileArg>,
    #[arg(long, requires_all = ["login_url", "tenant", "client_id", "mailbox"])]
    pub graph_url: Option<String>,
    #[arg(long)]
    pub login_url: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub client_id: Option<String>,
    /// The environment variable holding the client secret.
    #[arg(long, default_value = "GRAPH_CLIENT_SECRET")]
    pub secret_env: String,
    /// A scratch mailbox: the probes create a folder there and remove it.
    #[arg(long)]
    pub mailbox: Option<String>,
    #[arg(long, default_value = "parity.json")]
    pub report: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (target, _server) = match (args.fake, args.graph_url) {
        (Some(profile), _) => {
            let spec = profile.spec();
            let (target, task) = crate::parity::fake_target(spec.profile()).await?;
            (target, Some(task))
        }
        (None, Some(graph_url)) => {
            let secret = std::env::var(&args.secret_env).with_context(|| {
                format!(
                    "the client secret is read from the environment variable {}, which is not set",
                    args.secret_env
                )
            })?;
            let need = |v: Option<String>, flag: &str| {
                v.with_context(|| format!("{flag} is needed with --graph-url"))
            };
            (
                crate::parity::Target {
                    graph_url: graph_url.trim_end_matches('/').to_owned(),
                    login_url: need(args.login_url, "--login-url")?,
                    tenant: need(args.tenant, "--tenant")?,
                    client_id: need(args.client_id, "--client-id")?,
                    secret,
                    mailbox: need(args.mailbox, "--mailbox")?,
                },
                None,
            )
        }
        (None, None) => anyhow::bail!(
            "say where to probe: --fake graph|lenient, or --graph-url with --login-url, --tenant, --client-id and --mailbox"
        ),
    };
    let parity = crate::parity::run(target).await?;
    println!("{}", parity.table());
    std::fs::write(&args.report, serde_json::to_vec_pretty(&parity)?)
        .with_context(|| format!("writing {}", args.report.display()))?;
    eprintln!("parity: written to {}", args.report.display());
    Ok(ExitCode::SUCCESS)
}
