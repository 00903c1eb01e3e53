//! The provider client: login, listing pages of a window, downloading attachments with
//! their size and SHA-256 checked.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::wire;
use crate::http::{describe, path_segment};
use crate::retry::{Attempt, RetryPolicy, retry_after, transient};
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider refused the login for {username}: {code} ({message})")]
    Login {
        username: String,
        code: String,
        message: String,
    },
    #[error("the provider answered {status} {code}: {message} (request {request_id})")]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("cannot reach the provider: {0}")]
    Transport(String),
    #[error("a listing page is larger than the {limit}-byte bound (import.max_page_bytes)")]
    PageTooLarge { limit: u64 },
    #[error("the provider's answer could not be read: {0}")]
    Decode(String),
    /// A success status whose body is not what the API promises (a gateway's HTML page,
    /// another JSON document): a transient fault, tried again; this is the error after
    /// the last try. Never carries a value from a JSON body, only its field names.
    #[error(
        "the provider's {endpoint} answered {status} with {content_type}, not what its API promises ({problem}); the answer began: {snippet}"
    )]
    NotTheApi {
        endpoint: &'static str,
        status: u16,
        content_type: String,
        problem: String,
        snippet: String,
    },
    /// A listing page whose body broke off or came cut short, after every try.
    #[error("a listing page came broken (cut short or its connection dropped): {0}")]
    BrokenPage(String),
    #[error("attachment {id}: {problem}")]
    Attachment { id: String, problem: String },
    #[error("staging file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug)]
struct Session {
    token: Secret,
    refresh_after: Instant,
}

/// One connection to the provider; cheap to share.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    base: String,
    username: String,
    password: Secret,
    session: Arc<Mutex<Option<Session>>>,
    retry: Arc<RetryPolicy>,
    /// Set once the provider refuses the credentials: they are never sent again by this
    /// client (the provider locks an account after a few refusals).
    refused: Arc<std::sync::Mutex<Option<(String, String)>>>,
    max_page_bytes: u64,
}

impl ProviderClient {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        username: &str,
        password: Secret,
        retry: Arc<RetryPolicy>,
    ) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            username: username.to_owned(),
            password,
            session: Arc::default(),
            retry,
            refused: Arc::default(),
            max_page_bytes: 64 * 1024 * 1024,
        }
    }

    /// The largest listing page read; a larger one is an error, not an allocation.
    pub fn with_max_page_bytes(mut self, limit: u64) -> Self {
        self.max_page_bytes = limit;
        self
    }

    /// Logs in (again), replacing the current token.
    pub async fn login(&self) -> Result<Secret, ProviderError> {
        let mut session = self.session.lock().await;
        self.login_locked(&mut session).await
    }

    async fn login_locked(&self, session: &mut Option<Session>) -> Result<Secret, ProviderError> {
        if let Some((code, message)) = self.refused.lock().expect("lock poisoned").clone() {
            return Err(ProviderError::Login {
                username: self.username.clone(),
                code,
                message,
            });
        }
        let body =
            serde_json::json!({"username": self.username, "password": self.password.expose()});
        let url = format!("{}/api/v1/auth/token", self.base);
        // A login that did not get through, or a busy provider (not 429: too many logins
        // is a refusal to wait out, not to push), is tried again.
        let (url, body) = (&url, &body);
        let token = self
            .retry
            .run("provider login", true, |_| async move {
                // Too many logins is a refusal to wait out, not to push: a 429 is final.
                match attempt_of(self.http.post(url).json(body).send().await, false).await {
                    Attempt::Done(r) => json_attempt::<wire::TokenResponse>(r, "login").await,
                    Attempt::Again {
                        error,
                        retry_after,
                        throttled,
                    } => Attempt::Again {
                        error,
                        retry_after,
                        throttled,
                    },
                    Attempt::Uncertain { error, retry_after } => {
                        Attempt::Uncertain { error, retry_after }
                    }
                    Attempt::Fatal(e) => Attempt::Fatal(e),
                }
            })
            .await;
        let token = match token {
            Ok(r) => r,
            Err(ProviderError::Api { code, message, .. }) => {
                if code == "invalid_credentials" {
                    *self.refused.lock().expect("lock poisoned") =
                        Some((code.clone(), message.clone()));
                }
                return Err(ProviderError::Login {
                    username: self.username.clone(),
                    code,
                    message,
                });
            }
            Err(other) => return Err(other),
        };
        // Refresh a minute early (or at half-life for short tokens).
        let lifetime = Duration::from_secs(token.expires_in);
        let margin = Duration::from_secs(60).min(lifetime / 2);
        let secret = Secret::new(token.access_token);
        *session = Some(Session {
            token: secret.clone(),
            refresh_after: Instant::now() + lifetime - margin,
        });
        tracing::info!(username = %self.username, "logged in to the provider");
        Ok(secret)
    }

    async fn token(&self) -> Result<Secret, ProviderError> {
        let mut session = self.session.lock().await;
        match &*session {
            Some(s) if Instant::now() < s.refresh_after => Ok(s.token.clone()),
            _ => self.login_locked(&mut session).await,
        }
    }

    /// Sends an authenticated GET with retries: transient failures back off, a 401 logs in
    /// again once.
    async fn get(
        &self,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, ProviderError> {
        let relogged = &std::sync::atomic::AtomicBool::new(false);
        self.retry
            .run("provider request", true, |_| async move {
                let token = match self.token().await {
                    Ok(token) => token,
                    Err(e) => return Attempt::Fatal(e),
                };
                let sent = self
                    .http
                    .get(url)
                    .query(query)
                    .bearer_auth(token.expose())
                    .send()
                    .await;
                match sent {
                    // A token refused: log in again, once.
                    Ok(r)
                        if r.status() == reqwest::StatusCode::UNAUTHORIZED
                            && !relogged.swap(true, std::sync::atomic::Ordering::Relaxed) =>
                    {
                        tracing::info!("provider token refused; logging in again");
                        let error = error_of(r).await;
                        match self.login().await {
                            Ok(_) => Attempt::Again {
                                error,
                                retry_after: Some(Duration::ZERO),
                                throttled: false,
                            },
                            Err(e) => Attempt::Fatal(e),
                        }
                    }
                    sent => attempt_of(sent, true).await,
                }
            })
            .await
    }

    /// The employees registered for archiving.
    pub async fn users(&self) -> Result<Vec<wire::Participant>, ProviderError> {
        let url = format!("{}/api/v1/users", self.base);
        let url = &url;
        let users: wire::Users = self
            .retry
            .run("provider users", true, |_| async move {
                match self.get(url, &[]).await {
                    Ok(r) => json_attempt(r, "list of users").await,
                    Err(e) => Attempt::Fatal(e),
                }
            })
            .await?;
        Ok(users.users)
    }

    /// One page of the window `[since, until)`: the first with `cursor` `None`.
    pub async fn page(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<wire::Page, ProviderError> {
        let query = listing_query(since, until, cursor, page_size);
        // A page whose body breaks off (a connection dropped mid-body) or that cannot be
        // read as a page (cut short: the answer said 200 but half of it came) is asked for
        // again, like any transient failure: a listing is a GET and safe to repeat.
        self.retry
            .run("listing page", true, async |_| {
                match self.read_page(&query).await {
                    Ok(page) => Attempt::Done(page),
                    Err(e @ (ProviderError::BrokenPage(_) | ProviderError::NotTheApi { .. })) => {
                        Attempt::again(e)
                    }
                    Err(e) => Attempt::Fatal(e),
                }
            })
            .await
    }

    /// The one item of a page of one that is larger than the page bound, read as a
    /// stream in bounded memory: its first `max_page_bytes` bytes (for the quarantine),
    /// its whole length, and the cursor of the page after it, so that the listing goes
    /// on past it.
    pub async fn oversized_item(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        cursor: Option<&str>,
    ) -> Result<OversizedItem, ProviderError> {
        let query = listing_query(since, until, cursor, 1);
        let query = &query;
        self.retry
            .run("oversized item", true, |_| async move {
                match self.scan_oversized(query).await {
                    Ok(found) => Attempt::Done(found),
                    Err(e @ (ProviderError::BrokenPage(_) | ProviderError::NotTheApi { .. })) => {
                        Attempt::again(e)
                    }
                    Err(e) => Attempt::Fatal(e),
                }
            })
            .await
    }

    async fn scan_oversized(
        &self,
        query: &[(&str, String)],
    ) -> Result<OversizedItem, ProviderError> {
        let response = self
            .get(&format!("{}/api/v1/items", self.base), query)
            .await?;
        let (status, content_type) = (response.status().as_u16(), content_type(&response));
        let mut scan = EnvelopeScan::new(self.max_page_bytes as usize);
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ProviderError::BrokenPage(describe(&e)))?;
            scan.feed(&chunk);
        }
        let (envelope, kept, total) = scan.finish();
        let page: wire::Page = serde_json::from_slice(&envelope)
            .map_err(|e| not_the_api("listing page", status, &content_type, &envelope, &e))?;
        Ok(OversizedItem {
            kept,
            total_bytes: total,
            next_cursor: page.next_cursor,
        })
    }

    async fn read_page(&self, query: &[(&str, String)]) -> Result<wire::Page, ProviderError> {
        let response = self
            .get(&format!("{}/api/v1/items", self.base), query)
            .await?;
        let limit = self.max_page_bytes;
        let (status, content_type) = (response.status().as_u16(), content_type(&response));
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(ProviderError::PageTooLarge { limit });
        }
        let mut bytes = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ProviderError::BrokenPage(describe(&e)))?;
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(ProviderError::PageTooLarge { limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        // Only the envelope is read here; each item stays raw, so that one unreadable
        // item cannot make the page unreadable. A page that is not JSON at all came cut.
        serde_json::from_slice(&bytes).map_err(|e| {
            if e.is_eof() && looks_like_json(&content_type) {
                ProviderError::BrokenPage(format!("{} bytes, then nothing: {e}", bytes.len()))
            } else {
                not_the_api("listing page", status, &content_type, &bytes, &e)
            }
        })
    }

    /// Downloads an attachment to `dest`, checking its size and SHA-256; a mismatch or a
    /// broken transfer is tried again, up to the retry limit.
    pub async fn download(
        &self,
        id: &str,
        size: u64,
        sha256: &str,
        dest: &Path,
    ) -> Result<(), ProviderError> {
        let url = format!("{}/api/v1/attachments/{}", self.base, path_segment(id));
        let url = &url;
        let outcome = self
            .retry
            .run("attachment download", true, |_| async move {
                match self.download_once(url, id, size, sha256, dest).await {
                    Ok(None) => Attempt::Done(()),
                    Ok(Some(problem)) => Attempt::again(ProviderError::Attachment {
                        id: id.to_owned(),
                        problem,
                    }),
                    Err(e) => Attempt::Fatal(e),
                }
            })
            .await;
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        outcome
    }

    /// One try of a download into `dest`: `None` if it came whole with the right size and
    /// SHA-256, else what was wrong with it.
    async fn download_once(
        &self,
        url: &str,
        id: &str,
        size: u64,
        sha256: &str,
        dest: &Path,
    ) -> Result<Option<String>, ProviderError> {
        let io = |source| ProviderError::Io {
            path: dest.display().to_string(),
            source,
        };
        let response = self.get(url, &[]).await?;
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut stream = response.bytes_stream();
        let mut broken = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if received > size {
                        broken = Some(format!("more than the {size} bytes announced"));
                        break;
                    }
                    hasher.update(&chunk);
                    file.write_all(&chunk).await.map_err(io)?;
                }
                Err(e) => {
                    broken = Some(format!("transfer broke: {}", describe(&e)));
                    break;
                }
            }
        }
        file.flush().await.map_err(io)?;
        let digest = crate::digest::hex(&hasher.finalize());
        let problem = match broken {
            Some(p) => p,
            None if received != size => format!("received {received} bytes, the item says {size}"),
            None if digest != sha256 => {
                format!("SHA-256 {digest} differs from the item's {sha256}")
            }
            None => return Ok(None),
        };
        tracing::warn!(attachment = id, %problem, "attachment download did not verify");
        Ok(Some(problem))
    }
}

/// The query of a listing page: the window for the first page, the cursor after it.
fn listing_query(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    cursor: Option<&str>,
    page_size: u32,
) -> Vec<(&'static str, String)> {
    let mut query = vec![("page_size", page_size.to_string())];
    match cursor {
        Some(c) => query.push(("cursor", c.to_owned())),
        None => {
            query.push((
                "since",
                since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ));
            query.push((
                "until",
                until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ));
        }
    }
    query
}

/// An item too large for any page: what of it was kept, and where the listing goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedItem {
    /// Its first bytes, up to the page bound (`import.max_page_bytes`).
    pub kept: Vec<u8>,
    /// Its whole length as listed, in bytes.
    pub total_bytes: u64,
    pub next_cursor: Option<String>,
}

/// Reads a listing page's JSON as it streams by, keeping the envelope around its `items`
/// array whole (it is small: the window and the cursor) and of the array's content only
/// its first `keep` bytes. Strings and escapes are followed, so no byte inside an item's
/// text is taken for the envelope's structure.
#[derive(Debug)]
struct EnvelopeScan {
    keep: usize,
    envelope: Vec<u8>,
    kept: Vec<u8>,
    total: u64,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// The last string read at depth 1 (a key, or a value), its first bytes.
    last_key: Vec<u8>,
    /// Inside the `items` array: its depth once opened.
    in_items: bool,
    /// The envelope alone may not grow without bound either.
    envelope_cap: usize,
}

impl EnvelopeScan {
    fn new(keep: usize) -> Self {
        Self {
            keep,
            envelope: Vec::new(),
            kept: Vec::new(),
            total: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            last_key: Vec::new(),
            in_items: false,
            envelope_cap: 1 << 20,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        let mut to_envelope = !self.in_items;
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            } else if self.depth == 1 && !self.in_items && self.last_key.len() < 16 {
                self.last_key.push(b);
            }
        } else {
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 && !self.in_items {
                        self.last_key.clear();
                    }
                }
                b'[' if self.depth == 1 && !self.in_items && self.last_key == b"items" => {
                    // The array opens: its bracket is the envelope's, its content is not.
                    self.envelope.push(b);
                    self.depth += 1;
                    self.in_items = true;
                    return;
                }
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.in_items && self.depth == 1 {
                        // The array closes.
                        self.in_items = false;
                        to_envelope = true;
                    }
                }
                _ => {}
            }
        }
        if to_envelope {
            if self.envelope.len() < self.envelope_cap {
                self.envelope.push(b);
            }
        } else {
            self.total += 1;
            if self.kept.len() < self.keep {
                self.kept.push(b);
            }
        }
    }

    /// The envelope with an empty `items` array, the content kept, and its length.
    fn finish(self) -> (Vec<u8>, Vec<u8>, u64) {
        (self.envelope, self.kept, self.total)
    }
}

/// What one attempt of a provider request came to: a success is done; a transient
/// answer (a 429 only if `retry_429`) or a connection that failed is tried again; any
/// other answer, or a request that cannot be built (an id too long for a URL, which fails
/// the same way every time), is final. Every provider request is safe to repeat.
async fn attempt_of(
    sent: Result<reqwest::Response, reqwest::Error>,
    retry_429: bool,
) -> Attempt<reqwest::Response, ProviderError> {
    match sent {
        Ok(r) if r.status().is_success() => Attempt::Done(r),
        Ok(r)
            if transient(r.status())
                && (retry_429 || r.status() != reqwest::StatusCode::TOO_MANY_REQUESTS) =>
        {
            let wait = retry_after(r.headers());
            Attempt::Again {
                error: error_of(r).await,
                retry_after: wait,
                throttled: false,
            }
        }
        Ok(r) => Attempt::Fatal(error_of(r).await),
        Err(e) if e.is_builder() => Attempt::Fatal(ProviderError::Transport(describe(&e))),
        Err(e) => Attempt::again(ProviderError::Transport(describe(&e))),
    }
}

/// The body of a success as `T`, or, when it is not `T` (a gateway's page, another
/// JSON document, a body cut short), a transient fault to try again.
async fn json_attempt<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    endpoint: &'static str,
) -> Attempt<T, ProviderError> {
    let (status, content_type) = (response.status().as_u16(), content_type(&response));
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Attempt::again(ProviderError::Transport(describe(&e))),
    };
    match serde_json::from_slice(&bytes) {
        Ok(value) => Attempt::Done(value),
        Err(e) => Attempt::again(not_the_api(endpoint, status, &content_type, &bytes, &e)),
    }
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "no content type".to_owned(),
            |v| crate::http::clip(v, 80),
        )
}

fn looks_like_json(content_type: &str) -> bool {
    content_type.starts_with("application/json") || content_type == "no content type"
}

/// What a person needs to know of an answer that is not the API's: where, what status,
/// what content type, why it was refused, and how it began. A JSON body shows only its
/// field names, never a value (a token or a password could be one).
fn not_the_api(
    endpoint: &'static str,
    status: u16,
    content_type: &str,
    body: &[u8],
    error: &serde_json::Error,
) -> ProviderError {
    let snippet = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(fields)) => format!(
            "a JSON object with the fields {}",
            crate::http::clip(&fields.keys().cloned().collect::<Vec<_>>().join(", "), 120)
        ),
        Ok(other) => format!("a JSON {}", json_kind(&other)),
        Err(_) if body.is_empty() => "nothing (an empty body)".into(),
        Err(_) => format!(
            "{:?}",
            crate::http::clip(&String::from_utf8_lossy(&body[..body.len().min(400)]), 120)
        ),
    };
    ProviderError::NotTheApi {
        endpoint,
        status,
        content_type: content_type.to_owned(),
        problem: format!("{} bytes: {error}", body.len()),
        snippet,
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

async fn error_of(response: reqwest::Response) -> ProviderError {
    let status = response.status().as_u16();
    match response.json::<wire::ErrorBody>().await {
        Ok(body) => ProviderError::Api {
            status,
            code: body.error.code,
            message: body.error.message,
            request_id: body.error.request_id,
        },
        Err(_) => ProviderError::Api {
            status,
            code: "unknown".into(),
            message: "no error body".into(),
            request_id: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_read_around_its_items_whatever_their_text_holds() {
        let page = br#"{"window":{"since":"a"},"items":[{"id":"wa-1","text":"] } \" [ \\\"items\": [","x":[1,[2]]}],"next_cursor":"c-2"}"#;
        for keep in [0, 5, 1000] {
            // Fed a byte at a time and whole: the same.
            for split in [1, page.len()] {
                let mut scan = EnvelopeScan::new(keep);
                for chunk in page.chunks(split) {
                    scan.feed(chunk);
                }
                let (envelope, kept, total) = scan.finish();
                assert_eq!(
                    String::from_utf8(envelope).unwrap(),
                    r#"{"window":{"since":"a"},"items":[],"next_cursor":"c-2"}"#
                );
                let item = br#"{"id":"wa-1","text":"] } \" [ \\\"items\": [","x":[1,[2]]}"#;
                assert_eq!(total, item.len() as u64);
                assert_eq!(kept, item[..keep.min(item.len())]);
            }
        }
    }
}
