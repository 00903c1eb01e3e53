//! A bounded flood of hostile requests against one fake, as an attacker would send them,
//! while a prober checks `/health`: the figures of issue 13's point 7 (the fakes stay
//! under 300 MB and answer health checks in under 50 ms at p99). Loopback only; the
//! flood stops by itself.
//!
//! ```sh
//! cargo build --release -p mock-mailbox -p mock-telemessage
//! cargo run --release -p tests --example flood -- wrong-secret
//! ```
//!
//! Attacks: `wrong-secret` (mailbox token endpoint, a known client with a wrong secret),
//! `wrong-password` (provider login, a new made-up username each time: a spray),
//! `long-username` (provider login with a 1.9 MB username), `anonymous-upload` (a 200 MB
//! importMime body with no token), `long-folder-name` (a 50 MB folder name with a valid
//! token). Options: `--clients N` (200), `--seconds S` (20). `FLOOD_BIN_DIR` runs the
//! fakes built elsewhere (an older commit, to compare).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tests::CLIENT_ID;

struct Fake {
    child: Child,
    url: String,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn start(binary: &str, data_flag: &str, data: &str) -> Fake {
    // FLOOD_BIN_DIR: another build of the fakes (an older commit, to compare).
    let dir = std::env::var_os("FLOOD_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release"));
    let path = dir.join(binary);
    assert!(
        path.exists(),
        "{} is not built: cargo build --release -p mock-mailbox -p mock-telemessage",
        path.display()
    );
    let mut child = Command::new(path)
        .args(["--listen", "127.0.0.1:0", data_flag])
        .arg(root().join(data))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the fake starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("a listening line").unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Fake { child, url }
}

/// (resident now, peak resident) in bytes, from /proc.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let attack = args.first().cloned().unwrap_or_else(|| {
        eprintln!("usage: flood wrong-secret|wrong-password|long-username|anonymous-upload|long-folder-name [--clients N] [--seconds S]");
        std::process::exit(2);
    });
    let option = |name: &str, default: u64| {
        args.windows(2)
            .find(|w| w[0] == name)
            .and_then(|w| w[1].parse().ok())
            .unwrap_or(default)
    };
    let clients = option("--clients", 200) as usize;
    let seconds = option("--seconds", 20);

    let fake = match attack.as_str() {
        "wrong-secret" | "anonymous-upload" | "long-folder-name" => start(
            "mock-mailbox",
            "--directory",
            "docs/examples/mailbox-directory.json",
        ),
        "wrong-password" | "long-username" => start(
            "mock-telemessage",
            "--dataset",
            "docs/examples/telemessage-dataset.json",
        ),
        other => panic!("unknown attack {other}"),
    };
    let pid = fake.child.id();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let token = if attack == "long-folder-name" {
        tests::graph_token(&fake.url, "contoso.example")
            .await
            .unwrap()
    } else {
        String::new()
    };
    let upload = bytes::Bytes::from(vec![b'A'; 200 * 1024 * 1024]);
    let long_login = bytes::Bytes::from(
        serde_json::json!({"username": "u".repeat(1_900_000), "password": "wrong"}).to_string(),
    );
    let folder_body =
        serde_json::json!({ "displayName": "f".repeat(50 * 1024 * 1024) }).to_string();
    let folder_body = bytes::Bytes::from(folder_body);

    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
    let mut attackers = Vec::new();
    for client in 0..clients {
        let (http, url, stop, statuses) = (
            http.clone(),
            fake.url.clone(),
            stop.clone(),
            statuses.clone(),
        );
        let (attack, upload, long_login, folder_body, token) = (
            attack.clone(),
            upload.clone(),
            long_login.clone(),
            folder_body.clone(),
            token.clone(),
        );
        attackers.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let request = match attack.as_str() {
                    "wrong-secret" => http
                        .post(format!("{url}/contoso.example/oauth2/v2.0/token"))
                        .form(&[
                            ("client_id", CLIENT_ID),
                            ("client_secret", "a-wrong-secret"),
                            ("scope", "https://graph.microsoft.com/.default"),
                            ("grant_type", "client_credentials"),
                        ]),
                    "wrong-password" => {
                        // A made-up name each time (a spray): every one costs a check.
                        sent += 1;
                        http.post(format!("{url}/api/v1/auth/token")).json(
                            &serde_json::json!({"username": format!("guess-{client}-{sent}"), "password": "wrong"}),
                        )
                    }
                    "long-username" => http
                        .post(format!("{url}/api/v1/auth/token"))
                        .header("content-type", "application/json")
                        .body(long_login.clone()),
                    "anonymous-upload" => http
                        .post(format!(
                            "{url}/beta/users/alice.archer@contoso.example/mailFolders/inbox/importMime"
                        ))
                        .header("content-type", "text/plain")
                        .body(upload.clone()),
                    _ => http
                        .post(format!(
                            "{url}/v1.0/users/alice.archer@contoso.example/mailFolders"
                        ))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(folder_body.clone()),
                };
                let status = match request.send().await {
                    Ok(answer) => {
                        let status = answer.status().as_u16().to_string();
                        let _ = answer.bytes().await;
                        status
                    }
                    Err(_) => "connection closed".to_owned(),
                };
                *statuses.lock().unwrap().entry(status).or_default() += 1;
            }
        }));
    }

    // The prober: one health check every 10 ms, on its own connection, thread and
    // runtime, so that the attackers' work in this process does not count as the fake's.
    let health_url = format!("{}/health", fake.url);
    let prober = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let mut health = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            let mut peak_rss = 0;
            let mut failed = 0;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(seconds) {
                let sent = Instant::now();
                match client.get(&health_url).send().await {
                    Ok(a) if a.status().is_success() => {
                        health.record(sent.elapsed().as_micros() as u64).unwrap();
                    }
                    _ => failed += 1,
                }
                peak_rss = peak_rss.max(memory(pid).0);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (health, peak_rss, failed)
        })
    });
    let (health, peak_rss, failed_probes) =
        tokio::task::spawn_blocking(move || prober.join().unwrap())
            .await
            .unwrap();
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        let _ = a.await;
    }
    let (rss, hwm) = memory(pid);
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("attack:            {attack} ({clients} clients, {seconds} s)");
    println!("answers:           {:?}", statuses.lock().unwrap());
    println!(
        "health:            {} probes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {failed_probes} failed",
        health.len(),
        health.value_at_quantile(0.5) as f64 / 1000.0,
        health.value_at_quantile(0.99) as f64 / 1000.0,
        health.max() as f64 / 1000.0
    );
    println!(
        "fake memory:       peak RSS {:.0} MB (sampled {:.0} MB), at the end {:.0} MB",
        mb(hwm),
        mb(peak_rss),
        mb(rss)
    );
}
