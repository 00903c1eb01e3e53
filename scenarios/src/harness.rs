//! A harness that starts both fakes in-process on ports the OS picks and points a
//! connector at them. Used by the end-to-end tests here and by the scenario runner.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use chrono::{DateTime, Utc};
use connector::Config;
use connector::secret::Secret;
use mock_common::{AdminToken, ManualClock, SharedClock};

/// Where the example files live.
pub fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

/// The credentials of the example dataset and directory (demo values only).
pub const PROVIDER_USER: &str = "contoso-archive";
pub const PROVIDER_PASSWORD: &str = "example-only-password";
pub const TENANT: &str = "contoso.example";
pub const CLIENT_ID: &str = "7c1e5a9b-2f4d-4e8a-b6c3-91d0e2f4a8b5";
pub const CLIENT_SECRET: &str = "example-only-client-secret";

/// An application token from a mock-mailbox at `mailbox_url` for `tenant`, with the
/// example application's credentials (the client-credentials grant, as any client).
pub async fn graph_token(mailbox_url: &str, tenant: &str) -> anyhow::Result<String> {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{mailbox_url}/{tenant}/oauth2/v2.0/token"))
        .form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await?
        .json()
        .await?;
    answer["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no access token in {answer}"))
}

/// Both fakes, serving on loopback.
#[derive(Debug)]
pub struct Fakes {
    pub provider: mock_telemessage::State,
    pub mailbox: mock_mailbox::State,
    pub provider_url: String,
    pub mailbox_url: String,
    pub clock: ManualClock,
    /// The tenant a connector signs in to.
    pub tenant: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The fakes' own runtimes, when they have them ([`Fakes::start_live`]).
    apart: Vec<Apart>,
}

impl Drop for Fakes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // The fakes' own runtimes stop with them.
        self.apart.clear();
    }
}

/// The names of the threads each fake of a load run serves on (see [`Fakes::start_live`]):
/// a thread's name is at most 15 bytes in /proc.
pub const MAILBOX_THREADS: &str = "fake-mailbox";
pub const PROVIDER_THREADS: &str = "fake-provider";

/// A tokio runtime of a fake's own, shut down with the fakes, and waited for: its tasks
/// hold the fake's state, whose temporary files go only with the state. A runtime
/// cannot be dropped inside another, where the fakes may be, so it stops on a thread
/// of its own. (Shut down in the background, a finished load run could end before the
/// tasks had let go: the million-item day left its 1 GB store file behind.)
#[derive(Debug)]
struct Apart(Option<tokio::runtime::Runtime>);

impl Drop for Apart {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            let stopping = std::thread::spawn(move || {
                runtime.shutdown_timeout(std::time::Duration::from_secs(10));
            });
            let _ = stopping.join();
        }
    }
}

/// Serves `router` on a runtime of its own, on two threads named `name`, so that the
/// fake's CPU time can be told from the rest of this process's
/// (`load::usage::threads_cpu`). Idle threads are kept, not ended: an ended thread's
/// CPU time no longer shows under its name.
fn serve_apart(router: Router, name: &str) -> anyhow::Result<(String, Apart)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .thread_keep_alive(std::time::Duration::from_secs(7 * 24 * 3600))
        .enable_all()
        .build()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}", listener.local_addr()?);
    let listener = {
        let _inside = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    runtime.spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((url, Apart(Some(runtime))))
}

pub(crate) async fn serve(router: Router) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((url, task))
}

impl Fakes {
    /// Starts both fakes; `wrap_mailbox` may put a layer around the mailbox router (to
    /// crash a client at a chosen request, say). The fakes' clock starts at `now`.
    pub async fn start(
        dataset: &mock_telemessage::Dataset,
        directory: &mock_mailbox::Directory,
        now: DateTime<Utc>,
        wrap_mailbox: impl FnOnce(Router) -> Router,
    ) -> anyhow::Result<Self> {
        Self::start_wrapped(dataset, directory, now, |r| r, wrap_mailbox).await
    }

    /// As [`Fakes::start`], with a layer around the provider's router too.
    pub async fn start_wrapped(
        dataset: &mock_telemessage::Dataset,
        directory: &mock_mailbox::Directory,
        now: DateTime<Utc>,
        wrap_provider: impl FnOnce(Router) -> Router,
        wrap_mailbox: impl FnOnce(Router) -> Router,
    ) -> anyhow::Result<Self> {
        Self::start_on_clock(
            dataset,
            directory,
            now,
            (mock_mailbox::Config::default(), AdminToken::disabled()),
            wrap_provider,
            wrap_mailbox,
        )
        .await
    }

    /// As [`Fakes::start_wrapped`], the fake Microsoft 365 with `mailbox` settings (its
    /// profile, whether it takes attachments on imported messages).
    pub async fn start_with_mailbox(
        dataset: &mock_telemessage::Dataset,
        directory: &mock_mailbox::Directory,
        now: DateTime<Utc>,
        mailbox: mock_mailbox::Config,
        wrap_provider: impl FnOnce(Router) -> Router,
        wrap_mailbox: impl FnOnce(Router) -> Router,
    ) -> anyhow::Result<Self> {
        Self::start_on_clock(
            dataset,
            directory,
            now,
            (mailbox, AdminToken::disabled()),
            wrap_provider,
            wrap_mailbox,
        )
        .await
    }

    /// As [`Fakes::start_wrapped`], the mailbox's inspection API and web viewer opened by
    /// `admin` (disabled everywhere else in the harness).
    async fn start_on_clock(
        dataset: &mock_telemessage::Dataset,
        directory: &mock_mailbox::Directory,
        now: DateTime<Utc>,
        (mailbox, admin): (mock_mailbox::Config, AdminToken),
        wrap_provider: impl FnOnce(Router) -> Router,
        wrap_mailbox: impl FnOnce(Router) -> Router,
    ) -> anyhow::Result<Self> {
        let clock = ManualClock::new(now);
        let shared: SharedClock = Arc::new(clock.clone());
        let throttled_clock = clock.clone();
        Self::launch(
            dataset,
            directory,
            shared,
            (mailbox, admin),
            clock,
            (wrap_provider, move |r| {
                wrap_mailbox(time_passes_while_throttled(r, throttled_clock))
            }),
            false,
        )
        .await
    }

    /// Both fakes on the system's clock, the mailbox with the given settings (its
    /// throttling limits, say): for load tests, where time passes for real. Each fake
    /// serves on threads of its own ([`MAILBOX_THREADS`], [`PROVIDER_THREADS`]), so
    /// that a load run gives each one's CPU time.
    pub async fn start_live(
        dataset: &mock_telemessage::Dataset,
        directory: &mock_mailbox::Directory,
        mailbox: mock_mailbox::Config,
    ) -> anyhow::Result<Self> {
        Self::launch(
            dataset,
            directory,
            Arc::new(mock_common::SystemClock),
            (mailbox, AdminToken::disabled()),
            ManualClock::new(Utc::now()),
            (|r| r, |r| r),
            true,
        )
        .await
    }

    async fn launch(
        dataset: &mock_telemessage::Dataset,
        directory: &mock_mailbox::Directory,
        shared: SharedClock,
        (mailbox_config, admin): (mock_mailbox::Config, AdminToken),
        clock: ManualClock,
        (wrap_provider, wrap_mailbox): (
            impl FnOnce(Router) -> Router,
            impl FnOnce(Router) -> Router,
        ),
        apart: bool,
    ) -> anyhow::Result<Self> {
        let provider = mock_telemessage::State::new(
            dataset,
            shared.clone(),
            mock_telemessage::Config::default(),
            AdminToken::disabled(),
        )?;
        let mailbox = mock_mailbox::State::new(directory, shared, mailbox_config, admin)?;
        let provider_router = wrap_provider(mock_telemessage::router(provider.clone()));
        let mailbox_router = wrap_mailbox(mock_mailbox::router(mailbox.clone()));
        let (provider_url, mailbox_url, tasks, apart) = if apart {
            let (provider_url, a) = serve_apart(provider_router, PROVIDER_THREADS)?;
            let (mailbox_url, b) = serve_apart(mailbox_router, MAILBOX_THREADS)?;
            (provider_url, mailbox_url, Vec::new(), vec![a, b])
        } else {
            let (provider_url, a) = serve(provider_router).await?;
            let (mailbox_url, b) = serve(mailbox_router).await?;
            (provider_url, mailbox_url, vec![a, b], Vec::new())
        };
        Ok(Self {
            provider,
            mailbox,
            provider_url,
            mailbox_url,
            clock,
            tenant: TENANT.into(),
            tasks,
            apart,
        })
    }

    /// The example dataset and directory of docs/examples.
    pub async fn examples(
        now: DateTime<Utc>,
        wrap_mailbox: impl FnOnce(Router) -> Router,
    ) -> anyhow::Result<Self> {
        let dataset =
            mock_telemessage::Dataset::from_file(&examples().join("telemessage-dataset.json"))?;
        let directory =
            mock_mailbox::Directory::from_file(&examples().join("mailbox-directory.json"))?;
        Self::start(&dataset, &directory, now, wrap_mailbox).await
    }

    /// A connector configuration pointing at these fakes.
    pub fn config(&self, state_dir: &Path, mapping_csv: Option<PathBuf>) -> Config {
        Config {
            provider_url: self.provider_url.clone(),
            provider_username: PROVIDER_USER.into(),
            provider_password: Secret::new(PROVIDER_PASSWORD),
            provider_password_from: "provider.password_env (the test harness)".into(),
            tenant: self.tenant.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(CLIENT_SECRET),
            client_secret_from: "microsoft365.client_secret_env (the test harness)".into(),
            graph_url: self.mailbox_url.clone(),
            login_url: self.mailbox_url.clone(),
            automatic_mapping: true,
            mapping_csv,
            unmapped_mailbox: None,
            mapping_region: None,
            folder: "WhatsApp Archiver".into(),
            size_limit: connector::size::DEFAULT_LIMIT,
            phone_address_domain: "whatsapp.invalid".into(),
            concurrency: 4,
            page_size: 5,
            max_attempts: 6,
            max_page_bytes: 64 * 1024 * 1024,
            max_request_bytes: connector::size::DEFAULT_MAX_REQUEST,
            memory_budget: connector::config::DEFAULT_MEMORY_BUDGET as usize,
            held_runs: 5,
            held_days: 7,
            settle_delay: chrono::TimeDelta::minutes(15),
            look_back: chrono::TimeDelta::hours(24),
            state_dir: state_dir.to_path_buf(),
            metrics_textfile: None,
            daily_at: chrono::NaiveTime::from_hms_opt(2, 0, 0).expect("a valid time"),
            // The fakes' clock stands still in scenarios: a 429 is answered by time
            // passing for them (below), which real-time pacing would only slow down.
            pacing: None,
        }
    }

    /// A connector configuration for a scenario on these fakes: its size limit, its
    /// mapping settings (the file's region for national numbers included).
    pub fn scenario_config(
        &self,
        scenario: &crate::Scenario,
        state_dir: &Path,
        mapping_csv: Option<PathBuf>,
    ) -> anyhow::Result<Config> {
        let mut config = self.config(state_dir, mapping_csv);
        config.size_limit = scenario.size_limit;
        if scenario.connector_defaults {
            (config.folder, config.size_limit) = connector::config::import_defaults();
        }
        config.automatic_mapping = scenario.automatic_mapping;
        config.unmapped_mailbox = scenario.unmapped_mailbox.clone();
        config.mapping_region = match &scenario.mapping_default_region {
            Some(code) => Some(code.parse().map_err(|_| {
                anyhow::anyhow!("mapping_default_region {code:?} is not an ISO 3166 code")
            })?),
            None => None,
        };
        Ok(config)
    }

    /// Every mailbox's contents as (mailbox, folder, Message-ID), sorted: what a
    /// comparison of two runs looks at.
    pub fn contents(&self) -> Vec<(String, String, String)> {
        let mut all = Vec::new();
        for tenant in self.mailbox.tenants() {
            for user in &tenant.users {
                // A user without a mailbox has nothing to show; one with a mailbox the
                // view cannot show is a broken harness, never an empty mailbox.
                let messages = match self
                    .mailbox
                    .inspect_messages(&user.user_principal_name, true)
                {
                    Ok(messages) => messages,
                    Err(mock_mailbox::state::InspectError::NoMailbox) => {
                        assert!(
                            !user.mailbox_enabled,
                            "the mock mailbox cannot show {}",
                            user.user_principal_name
                        );
                        continue;
                    }
                    Err(e) => panic!(
                        "the mock mailbox cannot show {}: {e}",
                        user.user_principal_name
                    ),
                };
                // A version Litigation Hold kept when a file was attached after import is
                // not a copy.
                for m in messages.into_iter().filter(|m| !m.replaced) {
                    all.push((
                        user.user_principal_name.clone(),
                        m.folder.clone(),
                        m.internet_message_id.clone().unwrap_or_default(),
                    ));
                }
            }
        }
        all.sort();
        all
    }
}

impl Fakes {
    /// Both fakes loaded with a scenario: its employees and items on the provider side,
    /// its users in one tenant on the Microsoft 365 side, with the example credentials.
    pub async fn for_scenario(
        scenario: &crate::Scenario,
        wrap_mailbox: impl FnOnce(Router) -> Router,
    ) -> anyhow::Result<Self> {
        Self::for_scenario_wrapped(scenario, |r| r, wrap_mailbox).await
    }

    /// As [`Fakes::for_scenario`], with a layer around each fake's router. The fake
    /// Microsoft 365 takes the scenario's profile (`mailbox_profile`).
    pub async fn for_scenario_wrapped(
        scenario: &crate::Scenario,
        wrap_provider: impl FnOnce(Router) -> Router,
        wrap_mailbox: impl FnOnce(Router) -> Router,
    ) -> anyhow::Result<Self> {
        let (dataset, directory) = fixtures(scenario)?;
        let now = scenario.end() + chrono::TimeDelta::hours(1);
        let mut fakes = Self::start_on_clock(
            &dataset,
            &directory,
            now,
            (mailbox_config(scenario), AdminToken::disabled()),
            wrap_provider,
            wrap_mailbox,
        )
        .await?;
        fakes.tenant = scenario.tenant_domain.clone();
        Ok(fakes)
    }

    /// As [`Fakes::for_scenario`], with the mailbox's web viewer (and inspection API)
    /// opened by `admin_token`: for `scenarios serve` and the viewer's browser test.
    pub async fn for_scenario_with_viewer(
        scenario: &crate::Scenario,
        admin_token: &str,
    ) -> anyhow::Result<Self> {
        let (dataset, directory) = fixtures(scenario)?;
        let now = scenario.end() + chrono::TimeDelta::hours(1);
        let mut fakes = Self::start_on_clock(
            &dataset,
            &directory,
            now,
            (mailbox_config(scenario), AdminToken::new(admin_token)),
            |r| r,
            |r| r,
        )
        .await?;
        fakes.tenant = scenario.tenant_domain.clone();
        Ok(fakes)
    }
}

/// The fake Microsoft 365's settings for a scenario: its profile, else Graph's rules
/// (the 4 MiB request cap) without its delays. The cap is a rule, as the 10 MiB limit
/// is: a scenario that passes only because the fake takes what Microsoft 365 refuses
/// proves nothing. Delays are left to `scenarios load` and to scenarios that ask.
fn mailbox_config(scenario: &crate::Scenario) -> mock_mailbox::Config {
    mock_mailbox::Config {
        profile: scenario.mailbox_profile.as_ref().map_or_else(
            || mock_mailbox::profile::Profile::graph(None),
            |p| p.profile(),
        ),
        ..mock_mailbox::Config::default()
    }
}

/// A scenario as the fakes load it: the provider's dataset (its employees and items)
/// and the Microsoft 365 directory (its users in one tenant), with the example
/// credentials.
pub fn fixtures(
    scenario: &crate::Scenario,
) -> anyhow::Result<(mock_telemessage::Dataset, mock_mailbox::Directory)> {
    fixtures_of(scenario, true)
}

/// The fakes' fixtures without the provider's schema items: for a day too big to copy
/// into a JSON document, whose items go in with `mock_telemessage::State::load_items`.
pub fn fixtures_without_items(
    scenario: &crate::Scenario,
) -> anyhow::Result<(mock_telemessage::Dataset, mock_mailbox::Directory)> {
    fixtures_of(scenario, false)
}

fn fixtures_of(
    scenario: &crate::Scenario,
    with_items: bool,
) -> anyhow::Result<(mock_telemessage::Dataset, mock_mailbox::Directory)> {
    let no_items = Vec::new();
    let mut dataset = serde_json::json!({
        "accounts": [{"username": PROVIDER_USER, "password": PROVIDER_PASSWORD}],
        "employees": scenario.employees,
        "items": if with_items { &scenario.items } else { &no_items },
        "raw_items": scenario.raw_items,
        "raw_text_items": scenario.raw_text_items,
    });
    if let Some(faults) = &scenario.provider_faults {
        dataset["faults"] = faults.clone();
    }
    if let Some(visibility) = &scenario.visibility {
        dataset["visibility"] = serde_json::to_value(visibility)?;
    }
    let users: Vec<serde_json::Value> = scenario
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            serde_json::json!({
                "id": format!("00000000-0000-4000-8000-{:012x}", i + 1),
                "userPrincipalName": u.upn, "mail": u.upn, "displayName": u.name, "mailboxEnabled": u.mailbox,
            })
        })
        .collect();
    let mut directory = serde_json::json!({"tenants": [{
        "id": "5c3a1d2e-0000-4000-8000-00000000c0de",
        "domain": scenario.tenant_domain,
        "applications": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                          "permissions": ["User.Read.All", "Mail.ReadWrite", "Mail-Advanced.ReadWrite.All"]}],
        "users": users,
    }]});
    if let Some(faults) = &scenario.mailbox_faults {
        directory["faults"] = faults.clone();
    }
    let dataset = mock_telemessage::Dataset::from_json(&dataset.to_string())?;
    let directory = mock_mailbox::Directory::from_json(&directory.to_string())?;
    Ok((dataset, directory))
}

/// Crash points over the requests of both fakes together, counted from 1: when the Nth
/// request has taken effect its answer never comes, and [`Crashes::crashed`] wakes whoever
/// then stops the client dead. The client cannot know whether that request landed.
#[derive(Debug, Clone, Default)]
pub struct Crashes {
    seen: Arc<std::sync::atomic::AtomicU64>,
    points: Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>,
    hit: Arc<std::sync::atomic::AtomicU64>,
    crashed: Arc<tokio::sync::Notify>,
    /// Lets the held-back answers go once the client is gone, so that no request of
    /// the fake waits for ever (and keeps the fake's state alive with it).
    released: Arc<tokio::sync::Notify>,
}

impl Crashes {
    pub fn new(points: &[u64]) -> Self {
        Self {
            points: Arc::new(std::sync::Mutex::new(points.iter().copied().collect())),
            ..Self::default()
        }
    }

    /// Requests seen so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Crash points reached so far.
    pub fn hit(&self) -> u64 {
        self.hit.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves when a crash point is reached.
    pub async fn crashed(&self) {
        self.crashed.notified().await;
    }

    /// The stopped client is gone: the answers held back at crash points go now (to
    /// nobody).
    pub fn release(&self) {
        self.released.notify_waiters();
    }

    /// Counts the requests through a fake's router and holds back the crashing answer.
    pub fn layer(&self) -> impl FnOnce(Router) -> Router + use<> {
        let crashes = self.clone();
        move |router: Router| {
            router.layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let crashes = crashes.clone();
                    async move {
                        use std::sync::atomic::Ordering;
                        let n = crashes.seen.fetch_add(1, Ordering::SeqCst) + 1;
                        let response = next.run(request).await;
                        let crash = crashes.points.lock().expect("lock poisoned").remove(&n);
                        if crash {
                            // Registered before the client is told, so the release that
                            // follows the stop cannot be missed.
                            let released = crashes.released.notified();
                            tokio::pin!(released);
                            released.as_mut().enable();
                            crashes.hit.fetch_add(1, Ordering::SeqCst);
                            crashes.crashed.notify_one();
                            released.await;
                        }
                        response
                    }
                },
            ))
        }
    }
}

/// The fakes' clock stands still between requests. A throttled client is told how long
/// to wait (`Retry-After`) and waits, scaled down in tests; this layer makes that much
/// time pass for the fakes too, so throttling windows end as they would. Seeded 429s
/// (marked [`mock_common::transport::Injected`]) leave the clock alone.
fn time_passes_while_throttled(router: Router, clock: ManualClock) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let clock = clock.clone();
            async move {
                let response = next.run(request).await;
                // A seeded 429 storm is not the fake's throttling: no window to wait out,
                // and time moved by it would move what the provider lists.
                if response.status() == axum::http::StatusCode::TOO_MANY_REQUESTS
                    && response
                        .extensions()
                        .get::<mock_common::transport::Injected>()
                        .is_none()
                    && let Some(seconds) = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<f64>().ok())
                {
                    clock.advance(chrono::TimeDelta::milliseconds((seconds * 1000.0) as i64));
                }
                response
            }
        },
    ))
}

/// The `connector` binary: the one given, or the one beside this program. Under cargo
/// (`cargo run`, `cargo test`) it is built first with the same profile, once per process,
/// so that a scenario never runs yesterday's connector: cargo does nothing if it is
/// fresh. Without cargo, a binary older than this program is named in a warning.
pub fn connector_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        anyhow::ensure!(
            path.is_file(),
            "--connector-bin {}: no such file",
            path.display()
        );
        return Ok(path.to_path_buf());
    }
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(path) = BUILT.get() {
        return Ok(path.clone());
    }
    let me = std::env::current_exe().context("finding this program's own path")?;
    let mut dir = me.parent().context("this program's directory")?;
    // A test program lives in `target/<profile>/deps`, the binaries one level up.
    if dir.file_name().is_some_and(|n| n == "deps")
        && let Some(up) = dir.parent()
    {
        dir = up;
    }
    let beside = dir.join(format!("connector{}", std::env::consts::EXE_SUFFIX));
    match std::env::var_os("CARGO") {
        Some(cargo) => {
            let release = dir.file_name().is_some_and(|n| n == "release");
            let mut build = std::process::Command::new(cargo);
            build.args(["build", "--quiet", "-p", "connector", "--bin", "connector"]);
            if release {
                build.arg("--release");
            }
            let status = build.status().context("running cargo build -p connector")?;
            anyhow::ensure!(status.success(), "cargo build -p connector failed");
            anyhow::ensure!(
                beside.is_file(),
                "cargo built the connector, but not at {}: pass --connector-bin",
                beside.display()
            );
        }
        None => {
            anyhow::ensure!(
                beside.is_file(),
                "no connector binary at {}: build it (cargo build --release -p connector) or pass --connector-bin",
                beside.display()
            );
            let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            // One `cargo build` of both links this program last, a little after the
            // binary: only a gap longer than a build says the binary is from before.
            if let (Some(bin), Some(mine)) = (modified(&beside), modified(&me))
                && bin + std::time::Duration::from_secs(300) < mine
            {
                eprintln!(
                    "warning: {} is older than this program; rebuild it (cargo build --release -p connector) to test today's connector",
                    beside.display()
                );
            }
        }
    }
    Ok(BUILT.get_or_init(|| beside).clone())
}

/// The connector's configuration file (TOML) for `config`, as the harness built it:
/// the same settings the library gets, so the binary runs as the library does. Secrets
/// are named by environment variable (`TELEMESSAGE_PASSWORD`, `M365_CLIENT_SECRET`), never
/// written. `region` is the mapping file's country code, if any.
pub fn connector_toml(config: &Config, region: Option<&str>) -> String {
    let s = |v: &str| serde_json::to_string(v).expect("a string serialises");
    let path = |p: &Path| s(&p.display().to_string());
    let mut mapping = format!("automatic = {}\n", config.automatic_mapping);
    if let Some(csv) = &config.mapping_csv {
        mapping.push_str(&format!("csv = {}\n", path(csv)));
    }
    if let Some(region) = region {
        mapping.push_str(&format!("default_region = {}\n", s(region)));
    }
    if let Some(catch_all) = &config.unmapped_mailbox {
        mapping.push_str(&format!("unmapped_mailbox = {}\n", s(catch_all)));
    }
    format!(
        "state_dir = {state}\n\n\
         [provider]\nurl = {provider}\nusername = {user}\npassword_env = \"TELEMESSAGE_PASSWORD\"\n\n\
         [microsoft365]\ntenant = {tenant}\nclient_id = {client}\nclient_secret_env = \"M365_CLIENT_SECRET\"\n\
         graph_url = {graph}\nlogin_url = {login}\n\n\
         [mapping]\n{mapping}\n\
         [import]\nfolder = {folder}\nsize_limit_bytes = {size}\nphone_address_domain = {domain}\n\
         concurrency = {concurrency}\npage_size = {page}\nmax_attempts = {attempts}\n\
         max_page_bytes = {page_bytes}\nheld_runs = {held_runs}\nheld_days = {held_days}\n\
         settle_delay_minutes = {settle}\nlook_back_hours = {look_back}\n\n\
         [pacing]\n{pacing}",
        state = path(&config.state_dir),
        provider = s(&config.provider_url),
        user = s(&config.provider_username),
        tenant = s(&config.tenant),
        client = s(&config.client_id),
        graph = s(&config.graph_url),
        login = s(&config.login_url),
        folder = s(&config.folder),
        size = config.size_limit,
        domain = s(&config.phone_address_domain),
        concurrency = config.concurrency,
        page = config.page_size,
        attempts = config.max_attempts,
        page_bytes = config.max_page_bytes,
        held_runs = config.held_runs,
        held_days = config.held_days,
        settle = config.settle_delay.num_minutes(),
        look_back = config.look_back.num_hours(),
        pacing = match config.pacing {
            Some(b) => format!(
                "enabled = true\nrequests_per_10_minutes = {}\nupload_mib_per_5_minutes = {}\n",
                b.requests,
                b.upload_bytes / (1024 * 1024)
            ),
            None => "enabled = false\n".to_owned(),
        },
    )
}

/// Whether a connector run ended with a report to read: 0 (complete) or 4 (finished
/// with deliveries failed or items held).
pub fn run_finished(status: std::process::ExitStatus) -> bool {
    status.success() || status.code() == Some(4)
}

/// The last 20 lines of a run's log (nothing if it cannot be read), for the error that
/// says why the run failed.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut tail: Vec<&str> = text.lines().rev().take(20).collect();
    tail.reverse();
    tail.join("\n")
}

/// Writes the scenario's mapping file (if it has one) into `work`; answers its path.
pub fn write_mapping(scenario: &crate::Scenario, work: &Path) -> anyhow::Result<Option<PathBuf>> {
    match &scenario.mapping_csv {
        Some(text) => {
            let path = work.join("mapping.csv");
            std::fs::write(&path, text)?;
            Ok(Some(path))
        }
        None => Ok(None),
    }
}

/// A fresh, empty directory under the system's temporary directory, each call's own (by
/// process and a number): tests of one binary run at once, and may share a name.
pub fn temp_dir(name: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wa-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// A fixed clock for the connector.
pub fn fixed_clock(at: DateTime<Utc>) -> connector::run::Clock {
    Arc::new(move || at)
}

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("an RFC 3339 time")
        .to_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime with one task that holds `held` until it is dropped.
    fn runtime_holding(held: &Arc<()>) -> tokio::runtime::Runtime {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let in_task = held.clone();
        runtime.spawn(async move {
            let _kept = in_task;
            std::future::pending::<()>().await
        });
        runtime
    }

    #[test]
    fn a_fakes_own_runtime_has_let_go_of_what_its_tasks_held_once_dropped() {
        let held = Arc::new(());
        drop(Apart(Some(runtime_holding(&held))));
        assert_eq!(Arc::strong_count(&held), 1, "a task still holds it");
    }

    #[tokio::test]
    async fn so_it_has_when_dropped_inside_another_runtime() {
        let held = Arc::new(());
        drop(Apart(Some(runtime_holding(&held))));
        assert_eq!(Arc::strong_count(&held), 1, "a task still holds it");
    }
}

#[cfg(test)]
mod profile_tests {
    use super::*;

    #[test]
    fn a_scenarios_profile_reaches_the_fake_mailbox() {
        let file = r#"{"name": "p", "users": [], "employees": [], "items": [], "runs": [],
            "mailbox_profile": {"name": "graph", "max_request_bytes": 1000}}"#;
        let scenario: crate::Scenario = serde_json::from_str(file).unwrap();
        let config = mailbox_config(&scenario);
        assert_eq!(
            config.profile.name,
            mock_mailbox::profile::ProfileName::Graph
        );
        assert_eq!(config.profile.max_request_bytes, 1000);
        assert_eq!(config.profile.latency, None, "no delays unless asked for");
        let unsaid: crate::Scenario = serde_json::from_str(
            r#"{"name": "p", "users": [], "employees": [], "items": [], "runs": []}"#,
        )
        .unwrap();
        assert_eq!(
            mailbox_config(&unsaid).profile,
            mock_mailbox::profile::Profile::graph(None),
            "Graph's rules, without its delays, unless the scenario says otherwise"
        );
    }
}
