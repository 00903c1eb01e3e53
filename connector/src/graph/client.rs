//! The Graph client. Every request goes through [`GraphClient::send`]: a fresh token
//! (refreshed before it expires, and again on each 401, up to the retry limit), at most 4
//! requests in flight per mailbox, `Retry-After` honoured on 429 and 503, backoff with
//! jitter on other transient failures, up to the retry limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::{Mutex, Semaphore};

use super::wire;
use crate::http::{describe, path_segment as segment};
use crate::retry::{Attempt, RetryPolicy, retry_after, transient};
use crate::secret::Secret;

/// Requests one application may have in flight on one mailbox (Exchange's limit).
pub const PER_MAILBOX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("Microsoft 365 refused the application's sign-in: {error}: {description}")]
    Token { error: String, description: String },
    #[error("Graph answered {status} {code}: {message} (request-id {request_id})")]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("cannot reach Microsoft 365: {0}")]
    Transport(String),
    #[error("Graph's answer could not be read: {0}")]
    Decode(String),
}

impl GraphError {
    /// Whether the request may have taken effect although it failed (a 5xx, a timeout, a
    /// broken connection).
    pub fn uncertain(&self) -> bool {
        matches!(self, Self::Transport(_))
            || matches!(self, Self::Api { status, .. } if *status >= 500)
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A successful Graph answer, its body read to the end.
#[derive(Debug)]
pub struct Answer(bytes::Bytes);

impl Answer {
    /// The body as `T`; a complete body that is not what Graph sends is `Decode`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, GraphError> {
        serde_json::from_slice(&self.0).map_err(|e| GraphError::Decode(e.to_string()))
    }
}

/// A Microsoft 365 user, as Graph names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub id: String,
    pub user_principal_name: String,
}

/// What looking for the archive folder found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderLookup {
    Found(String),
    Missing,
    /// The user has no mailbox Graph can reach (not a valid Microsoft 365 user for mail).
    NoMailbox,
}

#[derive(Debug)]
struct Token {
    value: Secret,
    refresh_after: Instant,
}

/// A message as `importMime` takes it: its MIME in base64, encoded once and shared by
/// every mailbox and every attempt (cloning it copies no bytes).
#[derive(Debug, Clone)]
pub struct ImportBody(bytes::Bytes);

impl ImportBody {
    pub fn encode(mime: &[u8]) -> Self {
        Self(bytes::Bytes::from(STANDARD.encode(mime)))
    }

    /// The length as sent.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    graph: String,
    login: String,
    tenant: String,
    client_id: String,
    secret: Secret,
    token: Arc<Mutex<Option<Token>>>,
    mailboxes: Arc<std::sync::Mutex<HashMap<String, Arc<Semaphore>>>>,
    retry: Arc<RetryPolicy>,
    /// Set once the identity platform refuses the client secret: it is never sent again
    /// by this client.
    refused: Arc<std::sync::Mutex<Option<(String, String)>>>,
    /// Each mailbox's schedule against Graph's budgets, or only its `Retry-After`.
    pacer: Arc<super::pace::Pacer>,
    /// Requests on the wire at once, all mailboxes together (`None`: unbounded). Held
    /// from sending a request until its answer's head arrives, never while the request
    /// waits for its mailbox.
    wire: Option<Arc<Semaphore>>,
    /// Each archive folder's import address, by user and folder id, parsed once: every
    /// delivery asks for one, and parsing it again each time was a twentieth of the
    /// connector's CPU on text items. One entry per folder ever imported into.
    import_urls: Arc<std::sync::Mutex<ImportUrls>>,
    /// The largest request body Graph takes (bytes): a file attached after import goes
    /// by one POST only when it fits, and upload chunks are no larger.
    max_request: u64,
}

type ImportUrls = HashMap<String, HashMap<String, reqwest::Url>>;

/// An OData string literal: quotes doubled.
pub fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl GraphClient {
    pub fn new(
        http: reqwest::Client,
        graph: &str,
        login: &str,
        tenant: &str,
        client_id: &str,
        secret: Secret,
        retry: Arc<RetryPolicy>,
    ) -> Self {
        Self {
            http,
            graph: graph.trim_end_matches('/').to_owned(),
            login: login.trim_end_matches('/').to_owned(),
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            secret,
            token: Arc::default(),
            mailboxes: Arc::default(),
            retry,
            refused: Arc::default(),
            pacer: Arc::new(super::pace::Pacer::unpaced()),
            wire: None,
            import_urls: Arc::default(),
            max_request: crate::size::DEFAULT_MAX_REQUEST,
        }
    }

    /// Paces each mailbox to `budget` (`None`: not paced; a `429` is still honoured).
    pub fn with_pacing(mut self, budget: Option<super::pace::Budget>) -> Self {
        self.pacer =
            Arc::new(budget.map_or_else(super::pace::Pacer::unpaced, super::pace::Pacer::new));
        self
    }

    /// At most `n` requests on the wire at once, whatever mailboxes they are for.
    /// Graph's request cap, for the files attached after import.
    pub fn with_max_request(mut self, bytes: u64) -> Self {
        self.max_request = bytes;
        self
    }

    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.wire = Some(Arc::new(Semaphore::new(n.max(1))));
        self
    }

    /// When `mailbox` may next send, by its pacing and any `Retry-After` it was given.
    pub fn ready_at(&self, mailbox: &str, now: Instant) -> Instant {
        self.pacer.ready_at(mailbox, now)
    }

    async fn fresh_token(&self, force: bool) -> Result<Secret, GraphError> {
        let mut token = self.token.lock().await;
        if !force
            && let Some(t) = &*token
            && Instant::now() < t.refresh_after
        {
            return Ok(t.value.clone());
        }
        if let Some((error, description)) = self.refused.lock().expect("lock poisoned").clone() {
            return Err(GraphError::Token { error, description });
        }
        let url = format!("{}/{}/oauth2/v2.0/token", self.login, segment(&self.tenant));
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose()),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ];
        // Asking for a token is safe to repeat: a busy or unreachable endpoint is asked
        // again; any other answer is read below.
        let (url, form) = (&url, &form);
        let response = self
            .retry
            .run("token request", true, |_| async move {
                match self.http.post(url).form(form).send().await {
                    Ok(r) if r.status().is_server_error() || r.status() == 429 => Attempt::Again {
                        error: GraphError::Transport(format!(
                            "the token endpoint answered {}",
                            r.status()
                        )),
                        retry_after: retry_after(r.headers()),
                        throttled: false,
                    },
                    Ok(r) => Attempt::Done(r),
                    Err(e) => Attempt::again(GraphError::Transport(describe(&e))),
                }
            })
            .await?;
        if !response.status().is_success() {
            let refused: wire::TokenError = response
                .json()
                .await
                .map_err(|e| GraphError::Decode(e.to_string()))?;
            // The description names the application id, never the secret.
            let description = refused
                .error_description
                .split(" Trace ID")
                .next()
                .unwrap_or_default()
                .to_owned();
            if matches!(
                refused.error.as_str(),
                "invalid_client" | "unauthorized_client"
            ) {
                *self.refused.lock().expect("lock poisoned") =
                    Some((refused.error.clone(), description.clone()));
            }
            return Err(GraphError::Token {
                error: refused.error,
                description,
            });
        }
        let issued: wire::TokenResponse = response
            .json()
            .await
            .map_err(|e| GraphError::Decode(e.to_string()))?;
        let lifetime = Duration::from_secs(issued.expires_in);
        let margin = Duration::from_secs(300).min(lifetime / 2);
        let value = Secret::new(issued.access_token);
        *token = Some(Token {
            value: value.clone(),
            refresh_after: Instant::now() + lifetime - margin,
        });
        tracing::info!(tenant = %self.tenant, "signed in to Microsoft 365");
        Ok(value)
    }

    /// Checks the application's credentials by getting a token.
    pub async fn sign_in(&self) -> Result<(), GraphError> {
        self.fresh_token(true).await.map(|_| ())
    }

    fn mailbox_gate(&self, mailbox: &str) -> Arc<Semaphore> {
        let key = super::pace::lane_key(mailbox);
        let mut gates = self.mailboxes.lock().expect("gate lock poisoned");
        if let Some(gate) = gates.get(&*key) {
            return gate.clone();
        }
        gates
            .entry(key.into_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_MAILBOX)))
            .clone()
    }

    /// Sends a request built by `build` (called again for each attempt) on `mailbox`.
    pub async fn send(
        &self,
        mailbox: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Answer, GraphError> {
        self.send_with(mailbox, true, 0, build).await
    }

    /// As [`send`](Self::send); with `retry_uncertain` false, only answers that say the
    /// request was not processed (401, 429) are retried here, and a 5xx or a broken
    /// connection is returned at once: the caller must find out whether it took effect.
    pub async fn send_with(
        &self,
        mailbox: &str,
        retry_uncertain: bool,
        upload_bytes: u64,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Answer, GraphError> {
        let gate = self.mailbox_gate(mailbox);
        let max = self.retry.max_attempts;
        let (gate, build) = (&gate, &build);
        self.retry
            .run("Graph request", retry_uncertain, |attempt| async move {
                let token = match self.fresh_token(false).await {
                    Ok(token) => token,
                    Err(e) => return Attempt::Fatal(e),
                };
                self.pacer.wait(mailbox, upload_bytes).await;
                let sent = {
                    let _slot = gate.acquire().await.expect("gates are never closed");
                    let _on_the_wire = match &self.wire {
                        Some(wire) => Some(wire.acquire().await.expect("never closed")),
                        None => None,
                    };
                    build(&self.http, token.expose()).send().await
                };
                let r = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        return Attempt::Uncertain {
                            error: GraphError::Transport(describe(&e)),
                            retry_after: None,
                        };
                    }
                };
                let status = r.status();
                if status.is_success() {
                    // A success counts only once its whole body is read: a body that
                    // breaks off is a broken connection (the request may have taken
                    // effect), not an answer.
                    return match r.bytes().await {
                        Ok(body) => Attempt::Done(Answer(body)),
                        Err(e) => Attempt::Uncertain {
                            error: GraphError::Transport(describe(&e)),
                            retry_after: None,
                        },
                    };
                }
                let wait = retry_after(r.headers());
                let error = api_error(r).await;
                if status == reqwest::StatusCode::UNAUTHORIZED {
                    // A token refused before its expiry (revoked) was not used: a new one
                    // is fetched and the request sent again, each time counted as a try.
                    // A secret the token endpoint refuses stops here.
                    if attempt >= max {
                        return Attempt::Fatal(error);
                    }
                    tracing::info!(attempt, "Graph refused the token; getting a new one");
                    return match self.fresh_token(true).await {
                        Ok(_) => Attempt::Again {
                            error,
                            retry_after: Some(Duration::ZERO),
                            throttled: false,
                        },
                        Err(e) => Attempt::Fatal(e),
                    };
                }
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    // Throttled: the request was not processed. Nothing more goes to
                    // this mailbox before its Retry-After.
                    if let Some(wait) = wait {
                        let delay = self.retry.delay(attempt, Some(wait));
                        // A refusal of the whole application holds every mailbox.
                        if error.code() == Some("ApplicationThrottled") {
                            self.pacer.application_throttled(delay, Instant::now());
                        }
                        self.pacer.throttled(mailbox, delay, Instant::now());
                    }
                    Attempt::Again {
                        error,
                        retry_after: wait,
                        throttled: true,
                    }
                } else if transient(status) {
                    Attempt::Uncertain {
                        error,
                        retry_after: wait,
                    }
                } else {
                    Attempt::Fatal(error)
                }
            })
            .await
    }

    /// The user with this id or principal name, or `None` if Graph does not know it.
    pub async fn user(&self, address: &str) -> Result<Option<UserRef>, GraphError> {
        let url = format!("{}/v1.0/users/{}", self.graph, segment(address));
        match self
            .send(address, |http, token| {
                http.get(&url)
                    .query(&[("$select", "id,userPrincipalName")])
                    .bearer_auth(token)
            })
            .await
        {
            Ok(r) => {
                let user: wire::User = r.json()?;
                Ok(Some(UserRef {
                    id: user.id,
                    user_principal_name: user.user_principal_name,
                }))
            }
            Err(GraphError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks for a child folder of the root by name.
    pub async fn find_folder(&self, user_id: &str, name: &str) -> Result<FolderLookup, GraphError> {
        let url = format!("{}/v1.0/users/{}/mailFolders", self.graph, segment(user_id));
        let filter = format!("displayName eq {}", odata_string(name));
        let answer = self
            .send(user_id, |http, token| {
                http.get(&url)
                    .query(&[("$filter", filter.as_str()), ("$select", "id,displayName")])
                    .bearer_auth(token)
            })
            .await;
        match answer {
            Ok(r) => {
                let page: wire::Collection<wire::Folder> = r.json()?;
                Ok(page
                    .value
                    .into_iter()
                    .find(|f| f.display_name.eq_ignore_ascii_case(name))
                    .map_or(FolderLookup::Missing, |f| FolderLookup::Found(f.id)))
            }
            Err(GraphError::Api {
                status: 404, code, ..
            }) if code == "MailboxNotEnabledForRESTAPI"
                || code == "ErrorInvalidUser"
                || code == "ResourceNotFound" =>
            {
                Ok(FolderLookup::NoMailbox)
            }
            Err(e) => Err(e),
        }
    }

    /// Finds the folder or creates it; a create that loses a race (`ErrorFolderExists`)
    /// looks again.
    pub async fn ensure_folder(
        &self,
        user_id: &str,
        name: &str,
    ) -> Result<FolderLookup, GraphError> {
        match self.find_folder(user_id, name).await? {
            FolderLookup::Missing => {}
            other => return Ok(other),
        }
        let url = format!("{}/v1.0/users/{}/mailFolders", self.graph, segment(user_id));
        let body = serde_json::json!({ "displayName": name });
        match self
            .send(user_id, |http, token| {
                http.post(&url).json(&body).bearer_auth(token)
            })
            .await
        {
            Ok(r) => {
                let folder: wire::Folder = r.json()?;
                tracing::info!(
                    mailbox = user_id,
                    folder = name,
                    "created the archive folder"
                );
                Ok(FolderLookup::Found(folder.id))
            }
            Err(e) if e.code() == Some("ErrorFolderExists") => {
                match self.find_folder(user_id, name).await? {
                    FolderLookup::Missing => Err(e),
                    found => Ok(found),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a folder of the mailbox (Graph moves it, with what it holds, to Deleted
    /// Items).
    pub async fn delete_folder(&self, user_id: &str, folder_id: &str) -> Result<(), GraphError> {
        let url = format!(
            "{}/v1.0/users/{}/mailFolders/{}",
            self.graph,
            segment(user_id),
            segment(folder_id)
        );
        self.send(user_id, |http, token| http.delete(&url).bearer_auth(token))
            .await
            .map(|_| ())
    }

    /// Imports a finished message into a folder; answers Graph's message id.
    pub async fn import(
        &self,
        user_id: &str,
        folder_id: &str,
        body: &ImportBody,
    ) -> Result<String, GraphError> {
        let url = self.import_url(user_id, folder_id)?;
        let response = self
            .send_with(user_id, false, body.0.len() as u64, |http, token| {
                http.post(url.clone())
                    .header("content-type", "text/plain")
                    .body(body.0.clone())
                    .bearer_auth(token)
            })
            .await?;
        let message: wire::MessageRef = response.json()?;
        Ok(message.id)
    }

    /// Where a message is imported into one folder of one mailbox.
    fn import_url(&self, user_id: &str, folder_id: &str) -> Result<reqwest::Url, GraphError> {
        let mut urls = self.import_urls.lock().expect("lock poisoned");
        if let Some(url) = urls.get(user_id).and_then(|folders| folders.get(folder_id)) {
            return Ok(url.clone());
        }
        let text = format!(
            "{}/beta/users/{}/mailFolders/{}/importMime",
            self.graph,
            segment(user_id),
            segment(folder_id)
        );
        let url = reqwest::Url::parse(&text)
            .map_err(|e| GraphError::Transport(format!("{text} is not a URL: {e}")))?;
        urls.entry(user_id.to_owned())
            .or_default()
            .insert(folder_id.to_owned(), url.clone());
        Ok(url)
    }

    /// The id of the message with this Message-ID in the mailbox, if there is one.
    pub async fn find_message(
        &self,
        user_id: &str,
        internet_message_id: &str,
    ) -> Result<Option<String>, GraphError> {
        let url = format!("{}/v1.0/users/{}/messages", self.graph, segment(user_id));
        let filter = format!("internetMessageId eq {}", odata_string(internet_message_id));
        let response = self
            .send(user_id, |http, token| {
                http.get(&url)
                    .query(&[("$filter", filter.as_str()), ("$select", "id")])
                    .bearer_auth(token)
            })
            .await?;
        let page: wire::Collection<wire::MessageRef> = response.json()?;
        Ok(page.value.into_iter().next().map(|m| m.id))
    }
}

impl GraphClient {
    /// The names of the files attached to a message (its attachments' `name`s).
    pub async fn attachment_names(
        &self,
        user_id: &str,
        message_id: &str,
    ) -> Result<Vec<String>, GraphError> {
        let url = format!(
            "{}/v1.0/users/{}/messages/{}/attachments",
            self.graph,
            segment(user_id),
            segment(message_id)
        );
        let mut names = Vec::new();
        let mut next = Some(url);
        while let Some(url) = next.take() {
            let first = names.is_empty();
            let response = self
                .send(user_id, |http, token| {
                    let request = http.get(&url).bearer_auth(token);
                    if first {
                        request.query(&[("$select", "name"), ("$top", "100")])
                    } else {
                        request
                    }
                })
                .await?;
            let page: wire::Collection<wire::AttachmentRef> = response.json()?;
            names.extend(page.value.into_iter().map(|a| a.name));
            next = page.next_link.filter(|link| link.starts_with(&self.graph));
        }
        Ok(names)
    }

    /// Attaches a file to a message already in the mailbox: by one POST when the file
    /// is under 3 MB and its request fits Graph's cap, else by an upload session in
    /// chunks of at most 4 MiB (and the cap). Either way the attachment appears whole or
    /// not at all. A request that may have taken effect is not sent again here: the
    /// caller looks for the attachment first.
    pub async fn attach(
        &self,
        user_id: &str,
        message_id: &str,
        file: &crate::email::FollowingFile,
        bytes: &bytes::Bytes,
    ) -> Result<(), GraphError> {
        let base = format!(
            "{}/v1.0/users/{}/messages/{}/attachments",
            self.graph,
            segment(user_id),
            segment(message_id)
        );
        let size = bytes.len() as u64;
        // The JSON around contentBytes: a few hundred bytes and the name.
        let post_len = crate::size::base64_len(size) + 1024 + file.name.len() as u64;
        if size < crate::size::SINGLE_POST_FILE && post_len <= self.max_request {
            let body = bytes::Bytes::from(
                serde_json::json!({
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": file.name,
                    "contentType": file.content_type,
                    "contentBytes": STANDARD.encode(bytes),
                })
                .to_string(),
            );
            self.send_with(user_id, false, body.len() as u64, |http, token| {
                http.post(&base)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .bearer_auth(token)
            })
            .await?;
            return Ok(());
        }
        let opened = self
            .send(user_id, |http, token| {
                http.post(format!("{base}/createUploadSession"))
                    .json(&serde_json::json!({"AttachmentItem": {
                        "attachmentType": "file",
                        "name": file.name,
                        "size": size,
                        "contentType": file.content_type,
                    }}))
                    .bearer_auth(token)
            })
            .await?;
        let session: wire::UploadSession = opened.json()?;
        let url = self.upload_url(&session.upload_url)?;
        let chunk = self.max_request.clamp(1, crate::size::MAX_CHUNK) as usize;
        let mut first = 0usize;
        while first < bytes.len() {
            let last = (first + chunk).min(bytes.len());
            let part = bytes.slice(first..last);
            let range = format!("bytes {first}-{}/{}", last - 1, bytes.len());
            // The upload URL carries its own credential: no bearer token goes to it.
            let sent = self
                .send_with(user_id, false, part.len() as u64, |http, _token| {
                    http.put(url.clone())
                        .header("content-range", range.as_str())
                        .body(part.clone())
                })
                .await;
            if let Err(e) = sent {
                // What was taken is of no use to the next try, which opens a new session.
                let _ = self
                    .send_with(user_id, false, 0, |http, _token| http.delete(url.clone()))
                    .await;
                return Err(e);
            }
            first = last;
        }
        Ok(())
    }

    /// The upload URL Graph gave, checked: a URL, and over TLS when Graph itself is.
    /// Never put in an error or a log: its query is a credential.
    fn upload_url(&self, given: &str) -> Result<reqwest::Url, GraphError> {
        let url = reqwest::Url::parse(given).map_err(|_| {
            GraphError::Decode("the upload session's uploadUrl is not a URL".into())
        })?;
        let tls_required = self.graph.starts_with("https://");
        if url.scheme() != "https" && (tls_required || url.scheme() != "http") {
            return Err(GraphError::Decode(
                "the upload session's uploadUrl is not an https URL".into(),
            ));
        }
        Ok(url)
    }
}

async fn api_error(response: reqwest::Response) -> GraphError {
    let status = response.status().as_u16();
    let header_id = response
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match response.json::<wire::ErrorBody>().await {
        Ok(body) => GraphError::Api {
            status,
            code: body.error.code,
            message: body.error.message,
            request_id: body
                .error
                .inner_error
                .and_then(|i| i.request_id)
                .or(header_id)
                .unwrap_or_default(),
        },
        Err(_) => GraphError::Api {
            status,
            code: "unknown".into(),
            message: "no error body".into(),
            request_id: header_id.unwrap_or_default(),
        },
    }
}
