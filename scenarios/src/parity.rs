//! `scenarios parity`: one fixed list of probes, run the same way against any Graph (the
//! fake under either profile, or a development tenant of Microsoft 365), so that where
//! the fake differs from the real service shows as a difference in two tables rather than
//! as a surprise in production. It works in a scratch folder of one mailbox it is given
//! and removes everything it made. docs/mailbox-api.md, "Parity", lists the probes.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

/// Where the probes go. The secret is never printed or written.
pub struct Target {
    pub graph_url: String,
    pub login_url: String,
    pub tenant: String,
    pub client_id: String,
    pub secret: String,
    pub mailbox: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("graph_url", &self.graph_url)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("secret", &"(redacted)")
            .field("mailbox", &self.mailbox)
            .finish()
    }
}

/// One probe's answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Probe {
    pub name: String,
    /// The HTTP status, `None` if no answer came.
    pub status: Option<u16>,
    /// Graph's error code, when it answered with one.
    pub code: Option<String>,
    /// Headers that matter for the probe (`Retry-After`, `Location`), by name.
    pub headers: BTreeMap<String, String>,
    pub ms: f64,
    pub note: String,
}

/// Latency percentiles of one kind of request, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

/// What `parity.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Parity {
    pub graph_url: String,
    pub mailbox: String,
    pub probes: Vec<Probe>,
    /// By kind: `read` (GET), `create` (a folder), `import` (importMime), `upload` (a
    /// chunk).
    pub latency: BTreeMap<String, Percentiles>,
}

/// The sizes of the importMime probes, as base64 request bodies, in MiB: under, at and
/// over Graph's documented 4 MB, and well above.
pub const IMPORT_MIB: [f64; 6] = [1.0, 3.0, 3.9, 4.1, 8.0, 14.0];

const MIB: f64 = 1024.0 * 1024.0;

struct Session {
    http: reqwest::Client,
    target: Target,
    token: String,
    timings: BTreeMap<&'static str, Vec<f64>>,
    probes: Vec<Probe>,
}

/// A message whose base64 is about `body_bytes` long, with Message-ID `<id>`.
fn message_of(id: &str, body_bytes: usize) -> Vec<u8> {
    let head = format!(
        "From: Parity Probe <parity@parity.invalid>\r\nTo: Parity Probe <parity@parity.invalid>\r\nSubject: parity probe {id}\r\nDate: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"probe.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    );
    let mime_len = body_bytes * 3 / 4;
    let content_len = mime_len.saturating_sub(head.len()) * 57 / 78;
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ content_len as u64;
    let content: Vec<u8> = (0..content_len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    let mut out = head.into_bytes();
    for line in STANDARD.encode(&content).as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Session {
    /// Sends `request`, times it under `kind`, and answers its status, Graph error code,
    /// the headers asked for and the body.
    async fn send(
        &mut self,
        kind: &'static str,
        request: reqwest::RequestBuilder,
        keep: &[&str],
    ) -> (
        Option<u16>,
        Option<String>,
        BTreeMap<String, String>,
        Vec<u8>,
        f64,
    ) {
        let started = Instant::now();
        let answer = request.send().await;
        let (status, headers, body) = match answer {
            Ok(r) => {
                let status = r.status().as_u16();
                let headers = keep
                    .iter()
                    .filter_map(|h| {
                        r.headers()
                            .get(*h)
                            .and_then(|v| v.to_str().ok())
                            .map(|v| ((*h).to_owned(), v.to_owned()))
                    })
                    .collect();
                let body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                (Some(status), headers, body)
            }
            Err(_) => (None, BTreeMap::new(), Vec::new()),
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.timings.entry(kind).or_default().push(ms);
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        (status, code, headers, body, ms)
    }

    fn record(
        &mut self,
        name: impl Into<String>,
        (status, code, headers, ms): (Option<u16>, Option<String>, BTreeMap<String, String>, f64),
        note: impl Into<String>,
    ) {
        self.probes.push(Probe {
            name: name.into(),
            status,
            code,
            headers,
            ms,
            note: note.into(),
        });
    }

    fn users(&self) -> String {
        format!(
            "{}/v1.0/users/{}",
            self.target.graph_url, self.target.mailbox
        )
    }
}

/// Runs every probe against `target`; removes what it made even when a probe fails.
pub async fn run(target: Target) -> anyhow::Result<Parity> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()?;
    let token_url = format!(
        "{}/{}/oauth2/v2.0/token",
        target.login_url.trim_end_matches('/'),
        target.tenant
    );
    let answer = http
        .post(&token_url)
        .form(&[
            ("client_id", target.client_id.as_str()),
            ("client_secret", target.secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .with_context(|| format!("asking {token_url} for a token"))?;
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    let Some(token) = body["access_token"].as_str().map(str::to_owned) else {
        anyhow::bail!(
            "{token_url} gave no token ({status}: {}): check the tenant, the client id and the secret",
            body["error"].as_str().unwrap_or("no error code")
        );
    };
    let mut s = Session {
        http,
        target,
        token,
        timings: BTreeMap::new(),
        probes: Vec::new(),
    };
    let nonce = mock_common::new_token("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>();
    let folder_name = format!("parity-probe-{nonce}");
    let request = s
        .http
        .post(format!("{}/mailFolders", s.users()))
        .bearer_auth(&s.token)
        .json(&serde_json::json!({"displayName": folder_name}));
    let (status, code, headers, body, ms) = s.send("create", request, &[]).await;
    s.record(
        "scratch folder created",
        (status, code, headers, ms),
        folder_name.clone(),
    );
    let folder = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .context("the scratch folder could not be created: nothing else can be probed")?;
    let mut made: Vec<String> = Vec::new();
    let outcome = probe_all(&mut s, &folder, &nonce, &mut made).await;
    // Clean up whatever happened.
    for id in &made {
        let request = s
            .http
            .delete(format!("{}/messages/{id}", s.users()))
            .bearer_auth(&s.token);
        let _ = s.send("other", request, &[]).await;
    }
    let request = s
        .http
        .delete(format!("{}/mailFolders/{folder}", s.users()))
        .bearer_auth(&s.token);
    let (status, code, headers, _, ms) = s.send("other", request, &[]).await;
    s.record(
        "scratch folder removed",
        (status, code, headers, ms),
        format!("{} message(s) removed first", made.len()),
    );
    outcome?;
    let latency = s
        .timings
        .iter()
        .filter(|(k, _)| **k != "other")
        .map(|(k, v)| {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            (
                (*k).to_owned(),
                Percentiles {
                    count: v.len(),
                    p50_ms: at(0.5),
                    p95_ms: at(0.95),
                    max_ms: at(1.0),
                },
            )
        })
        .collect();
    Ok(Parity {
        graph_url: s.target.graph_url.clone(),
        mailbox: s.target.mailbox.clone(),
        probes: s.probes,
        latency,
    })
}

async fn probe_all(
    s: &mut Session,
    folder: &str,
    nonce: &str,
    made: &mut Vec<String>,
) -> anyhow::Result<()> {
    let import_url = format!(
        "{}/beta/users/{}/mailFolders/{folder}/importMime",
        s.target.graph_url, s.target.mailbox
    );
    let mut first: Option<(String, String, Vec<u8>)> = None;
    for mib in IMPORT_MIB {
        let id = format!("parity-{nonce}-{mib}@parity.invalid");
        let mime = message_of(&id, (mib * MIB) as usize);
        let body = STANDARD.encode(&mime);
        let sent = body.len();
        let request = s
            .http
            .post(&import_url)
            .bearer_auth(&s.token)
            .header("content-type", "text/plain")
            .body(body);
        let (status, code, headers, answer, ms) = s.send("import", request, &[]).await;
        let graph_id = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        if let Some(graph_id) = &graph_id {
            made.push(graph_id.clone());
            if first.is_none() {
                first = Some((graph_id.clone(), id.clone(), mime));
            }
        }
        let note = match status {
            Some(_) => format!("{sent} bytes of base64"),
            None => format!(
                "{sent} bytes of base64; no answer: the connection closed while the body was being sent (refused before it was read)"
            ),
        };
        s.record(
            format!("importMime {mib} MiB"),
            (status, code, headers, ms),
            note,
        );
    }
    let Some((graph_id, message_id, mime)) = first else {
        anyhow::bail!("no message could be imported: the other probes need one");
    };
    // Look-up by internetMessageId, then the bytes back.
    let request = s
        .http
        .get(format!("{}/messages", s.users()))
        .bearer_auth(&s.token)
        .query(&[
            ("$filter", format!("internetMessageId eq '<{message_id}>'")),
            ("$select", "id".into()),
        ]);
    let (status, code, headers, body, ms) = s.send("read", request, &[]).await;
    let found = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["value"].as_array().map(Vec::len))
        .unwrap_or(0);
    s.record(
        "look-up by internetMessageId",
        (status, code, headers, ms),
        format!("{found} found"),
    );
    let request = s
        .http
        .get(format!("{}/messages/{graph_id}/$value", s.users()))
        .bearer_auth(&s.token);
    let (status, code, headers, body, ms) = s.send("read", request, &[]).await;
    s.record(
        "$value",
        (status, code, headers, ms),
        if body == mime {
            "the bytes sent, exactly".to_owned()
        } else {
            format!("{} bytes, not the {} sent", body.len(), mime.len())
        },
    );
    // A file by one POST, then one by an upload session.
    let small = vec![7u8; 1024 * 1024];
    let request = s
        .http
        .post(format!("{}/messages/{graph_id}/attachments", s.users()))
        .bearer_auth(&s.token)
        .json(
            &serde_json::json!({"@odata.type": "#microsoft.graph.fileAttachment",
            "name": "probe-1mib.bin", "contentBytes": STANDARD.encode(&small)}),
        );
    let (status, code, headers, _, ms) = s.send("other", request, &[]).await;
    s.record(
        "attachment by one POST (1 MiB, imported message)",
        (status, code, headers, ms),
        "",
    );
    let size = 5 * 1024 * 1024;
    let request = s
        .http
        .post(format!(
            "{}/messages/{graph_id}/attachments/createUploadSession",
            s.users()
        ))
        .bearer_auth(&s.token)
        .json(
            &serde_json::json!({"AttachmentItem": {"attachmentType": "file",
            "name": "probe-5mib.bin", "size": size}}),
        );
    let (status, code, headers, body, ms) = s.send("create", request, &[]).await;
    s.record(
        "createUploadSession (5 MiB, imported message)",
        (status, code, headers, ms),
        "",
    );
    let upload_url = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["uploadUrl"].as_str().map(str::to_owned));
    if let Some(url) = upload_url {
        let file = vec![9u8; size];
        let mut first_byte = 0;
        while first_byte < size {
            let last = (first_byte + 4 * 1024 * 1024).min(size);
            // The upload URL is pre-authenticated: no bearer token. Never printed.
            let request = s
                .http
                .put(&url)
                .header(
                    "content-range",
                    format!("bytes {first_byte}-{}/{size}", last - 1),
                )
                .body(file[first_byte..last].to_vec());
            let (status, code, headers, _, ms) = s.send("upload", request, &["location"]).await;
            let headers = headers
                .into_keys()
                .map(|k| (k, "(present)".to_owned()))
                .collect();
            s.record(
                format!("upload chunk bytes {first_byte}-{}", last - 1),
                (status, code, headers, ms),
                "",
            );
            first_byte = last;
        }
    }
    // Error shapes: 404, and a burst over the concurrency limit for a 429.
    let request = s
        .http
        .get(format!("{}/messages/AAMkAparityNoSuchMessage", s.users()))
        .bearer_auth(&s.token);
    let (status, code, headers, _, ms) = s.send("read", request, &[]).await;
    s.record(
        "404: a message that is not there",
        (status, code, headers, ms),
        "",
    );
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let request = s
            .http
            .get(format!("{}/messages", s.users()))
            .bearer_auth(&s.token)
            .query(&[("$top", "1")]);
        burst.spawn(async move { request.send().await });
    }
    let mut throttled = None;
    while let Some(joined) = burst.join_next().await {
        let Ok(Ok(answer)) = joined else { continue };
        if throttled.is_none() && answer.status().as_u16() == 429 {
            let retry_after = answer
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let code = answer
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            throttled = Some((code, retry_after));
        }
    }
    let (code, headers, note) = match throttled {
        Some((code, retry_after)) => (
            code,
            BTreeMap::from([("retry-after".to_owned(), retry_after)]),
            "a 429 among 16 reads sent at once".to_owned(),
        ),
        None => (
            None,
            BTreeMap::new(),
            "no 429 among 16 reads sent at once".to_owned(),
        ),
    };
    s.record(
        "429: 16 reads at once on one mailbox",
        (throttled_status(&note), code, headers, 0.0),
        note,
    );
    Ok(())
}

fn throttled_status(note: &str) -> Option<u16> {
    note.starts_with("a 429").then_some(429)
}

impl Parity {
    /// The table for a person.
    pub fn table(&self) -> String {
        let mut out = vec![format!(
            "parity probes against {} ({})",
            self.graph_url, self.mailbox
        )];
        out.push(format!(
            "{:<52} {:>6} {:<28} {:>8}  note",
            "probe", "status", "code", "ms"
        ));
        for p in &self.probes {
            let headers: Vec<String> = p.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            out.push(format!(
                "{:<52} {:>6} {:<28} {:>8.0}  {}{}",
                p.name,
                p.status.map_or("-".to_owned(), |s| s.to_string()),
                p.code.as_deref().unwrap_or("-"),
                p.ms,
                p.note,
                if headers.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", headers.join(", "))
                }
            ));
        }
        for (kind, l) in &self.latency {
            out.push(format!(
                "latency {kind:<8} {} requests: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
                l.count, l.p50_ms, l.p95_ms, l.max_ms
            ));
        }
        out.join("\n")
    }

    /// The probes whose status differs from `other`'s, by name.
    pub fn differences(&self, other: &Parity) -> Vec<(String, Option<u16>, Option<u16>)> {
        self.probes
            .iter()
            .filter_map(|p| {
                let theirs = other.probes.iter().find(|o| o.name == p.name)?;
                (theirs.status != p.status).then(|| (p.name.clone(), p.status, theirs.status))
            })
            .collect()
    }
}

/// The fake Microsoft 365 of the examples (docs/examples/mailbox-directory.json) under
/// `profile`, served on loopback: a target for the probes. Answers the target and the
/// server's task.
pub async fn fake_target(
    profile: mock_mailbox::profile::Profile,
) -> anyhow::Result<(Target, tokio::task::JoinHandle<()>)> {
    let directory = mock_mailbox::Directory::from_file(
        &crate::harness::examples().join("mailbox-directory.json"),
    )?;
    let state = mock_mailbox::State::new(
        &directory,
        std::sync::Arc::new(mock_common::SystemClock),
        mock_mailbox::Config {
            profile,
            ..mock_mailbox::Config::default()
        },
        mock_common::AdminToken::disabled(),
    )?;
    let (url, task) = crate::harness::serve(mock_mailbox::router(state)).await?;
    Ok((
        Target {
            graph_url: url.clone(),
            login_url: url,
            tenant: crate::harness::TENANT.into(),
            client_id: crate::harness::CLIENT_ID.into(),
            secret: crate::harness::CLIENT_SECRET.into(),
            mailbox: "alice.archer@contoso.example".into(),
        },
        task,
    ))
}
