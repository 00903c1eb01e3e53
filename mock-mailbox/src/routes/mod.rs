//! The HTTP surface: the token endpoint, the Graph mail subset, the inspection API and
//! the health check; the web viewer's routes come from [`crate::ui`].

mod admin;
mod attachments;
mod graph;
mod token;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};

use crate::error::GraphError;
use crate::state::State;

/// Largest Graph request body: the base64 of a 35 MB message (Exchange Online's default
/// largest message) and a little more. Enforced while the body is read.
pub const BODY_LIMIT: usize = 48 * 1024 * 1024;

/// The whole fake Microsoft 365.
pub fn router(state: State) -> Router {
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/{root}/oauth2/v2.0/token", post(token::token))
        .route("/{root}/users/{user}", get(graph::get_user))
        .route(
            "/{root}/users/{user}/mailFolders",
            get(graph::list_folders).post(graph::create_folder),
        )
        .route(
            "/{root}/users/{user}/mailFolders/{folder}",
            get(graph::get_folder).delete(graph::delete_folder),
        )
        .route(
            "/{root}/users/{user}/mailFolders/{folder}/messages",
            get(graph::list_folder_messages).post(graph::create_draft_in_folder),
        )
        .route(
            "/{root}/users/{user}/mailFolders/{folder}/importMime",
            post(graph::import_mime),
        )
        .route(
            "/{root}/users/{user}/messages",
            get(graph::list_messages).post(graph::create_draft),
        )
        .route(
            "/{root}/users/{user}/messages/{message}",
            get(graph::get_message).delete(graph::delete_message),
        )
        .route(
            "/{root}/users/{user}/messages/{message}/$value",
            get(graph::get_mime),
        )
        .route(
            "/{root}/users/{user}/messages/{message}/attachments",
            get(attachments::list).post(attachments::add),
        )
        .route(
            "/{root}/users/{user}/messages/{message}/attachments/createUploadSession",
            post(attachments::create_session),
        )
        .route(
            "/{root}/users/{user}/messages/{message}/attachments/{attachment}",
            get(attachments::get_one),
        )
        .route(
            "/{root}/users/{user}/messages/{message}/attachments/{attachment}/$value",
            get(attachments::get_value),
        )
        .route(
            "/api/v2.0/{user}/{message}/{session}",
            axum::routing::put(attachments::put_chunk).delete(attachments::cancel),
        )
        .route("/admin/v1/tenants", get(admin::tenants))
        .route("/admin/v1/mailboxes/{user}/folders", get(admin::folders))
        .route("/admin/v1/mailboxes/{user}/messages", get(admin::messages))
        .route(
            "/admin/v1/mailboxes/{user}/messages/{message}/mime",
            get(admin::mime),
        )
        .route("/admin/v1/counters", get(admin::counters))
        .route("/admin/v1/reset", post(admin::reset));
    crate::ui::routes(router)
        .fallback(|uri: axum::http::Uri| async move {
            let segment = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
            GraphError::bad_request(format!(
                "Resource not found for the segment '{}'.",
                mock_common::clip(&segment, 100)
            ))
        })
        .method_not_allowed_fallback(|| async {
            GraphError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Request_BadRequest",
                "The HTTP method is not allowed for the requested resource.",
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The internal header that names what a request is about, for the seeded faults.
pub(crate) const FAULT_IDENTITY: &str = "x-mock-fault-identity";
/// The internal header that carries a mail call's delay (microseconds) from the gate to
/// the handler, which serves it while the call holds its place in the throttle.
pub(crate) const DELAY: &str = "x-mock-delay-us";

/// A path whose handler takes a place among its mailbox's requests in flight (a mail
/// call: `/{root}/users/{user}/...`, or a chunk to an upload URL); its delay is served
/// there.
fn is_mail_call(path: &str) -> bool {
    if Surface::of(path) == Surface::Upload {
        return true;
    }
    let mut segments = path.trim_start_matches('/').split('/');
    segments.nth(1) == Some("users") && segments.nth(1).is_some()
}

/// What a path is, for the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// `/health` and the web viewer (which checks its own session and limits its form).
    Open,
    /// The identity platform's token endpoint.
    Token,
    /// The inspection API.
    Admin,
    /// Graph.
    Graph,
    /// An upload session's URL: pre-authenticated by the credential in its query, no
    /// bearer token (its handler checks both).
    Upload,
}

impl Surface {
    fn of(path: &str) -> Self {
        if path == "/health" || path == "/ui" || path.starts_with("/ui/") {
            Self::Open
        } else if path.starts_with("/api/v2.0/") {
            Self::Upload
        } else if path.starts_with("/admin/") {
            Self::Admin
        } else if path.ends_with("/oauth2/v2.0/token") {
            Self::Token
        } else {
            Self::Graph
        }
    }

    fn body_limit(self) -> usize {
        match self {
            Self::Token => TOKEN_BODY_LIMIT,
            Self::Admin => ADMIN_BODY_LIMIT,
            Self::Open | Self::Graph | Self::Upload => BODY_LIMIT,
        }
    }

    fn too_large(self, limit: usize) -> axum::response::Response {
        use axum::response::IntoResponse;
        match self {
            Self::Token => crate::error::TokenError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                9002313,
                format!(
                    "Invalid request. Request is malformed or invalid: the body is over {TOKEN_BODY_LIMIT} bytes."
                ),
            )
            .into_response(),
            _ => GraphError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("The request body is too large: at most {limit} bytes."),
            )
            .into_response(),
        }
    }
}

/// Largest token request (a form of four short fields).
pub const TOKEN_BODY_LIMIT: usize = 64 * 1024;
/// Largest inspection API request.
pub const ADMIN_BODY_LIMIT: usize = 64 * 1024;

/// Every request passes here first. Who is calling is checked before a byte of the body is
/// read (a Graph token, or the admin token for the inspection API): an anonymous or forged
/// request is answered from its headers alone. Then the body is read up to the surface's
/// limit, refused with 413 in the surface's own error shape as soon as it is over (its
/// `Content-Length` is looked at first). Last, when seeded faults are configured, the
/// request is named by what it is about (method, path, query and the SHA-256 of its body)
/// so that a fault is decided by the request and its attempt number, never by arrival
/// order. The naming header is always removed from what the client sent, so no client can
/// choose it.
async fn gate(
    axum::extract::State(state): axum::extract::State<State>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use sha2::Digest;
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(FAULT_IDENTITY);
    parts.headers.remove(DELAY);
    let surface = Surface::of(parts.uri.path());
    if surface == Surface::Open {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    match surface {
        Surface::Graph => {
            if let Err(refused) = state.authenticate(authorization(&parts.headers)) {
                return refused.into_response();
            }
        }
        Surface::Admin => {
            if !state.admin().admits(authorization(&parts.headers)) {
                return GraphError::invalid_token("The inspection API needs the admin token.")
                    .into_response();
            }
        }
        Surface::Token | Surface::Open | Surface::Upload => {}
    }
    // Graph's request cap is the profile's (4 MiB under `graph`).
    let limit = match surface {
        Surface::Graph | Surface::Upload => state.profile().max_request_bytes,
        other => other.body_limit(),
    };
    let Some(bytes) = mock_common::serve::read_bounded(&parts.headers, body, limit).await else {
        return surface.too_large(limit);
    };
    if matches!(surface, Surface::Graph | Surface::Upload)
        && (state.faults_configured() || state.profile().latency.is_some())
    {
        let named_path = stable_path(&state, surface, parts.uri.path());
        // An upload URL's query is its credential, different for each session: left out,
        // and the chunk named by its range instead.
        let query = match surface {
            Surface::Upload => parts
                .headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
            _ => parts.uri.query().unwrap_or_default(),
        };
        let digest = sha2::Sha256::new()
            .chain_update(parts.method.as_str())
            .chain_update(b" ")
            .chain_update(named_path.as_bytes())
            .chain_update(b"?")
            .chain_update(query)
            .chain_update(b" ")
            .chain_update(&bytes)
            .finalize();
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let kind = crate::profile::RequestKind::of(&parts.method, parts.uri.path());
        let (delay, reset) = state.request_delay(&name, kind, bytes.len());
        if let Ok(value) = axum::http::HeaderValue::from_str(&name) {
            parts.headers.insert(FAULT_IDENTITY, value);
        }
        // In Graph a request is in flight from its arrival to its answer: a mail call's
        // delay is served by its handler once it holds its place in the throttle.
        if is_mail_call(parts.uri.path()) {
            parts.headers.insert(
                DELAY,
                axum::http::HeaderValue::from(delay.as_micros() as u64),
            );
        } else if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let response = next
            .run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await;
        return if reset && response.status().is_success() {
            mock_common::transport::cut_body(response).await
        } else {
            response
        };
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// A request's path as its seeded draws know it: the same for the same request in every
/// run. A message's Graph id is numbered in the order messages arrived, which varies with
/// a client's concurrency, so a path naming one (its attachments, an upload session on
/// it) names it by its Message-ID instead; an upload URL's session id is random, so it
/// is named by the mailbox and the message alone.
fn stable_path(state: &State, surface: Surface, path: &str) -> String {
    let message_id = |user: &str, id: &str| {
        state
            .read_mailbox(user, |m| {
                m.message(id)
                    .and_then(|m| m.content.internet_message_id().map(str::to_owned))
            })
            .flatten()
    };
    let segments: Vec<&str> = path.split('/').collect();
    match surface {
        Surface::Upload => {
            // /api/v2.0/Users('{user}')/Messages('{id}')/AttachmentSessions('{session}')
            let inner = |s: &str, prefix: &str| {
                s.strip_prefix(prefix)
                    .and_then(|s| s.strip_suffix("')"))
                    .map(str::to_owned)
            };
            let user = segments.get(3).and_then(|s| inner(s, "Users('"));
            let id = segments.get(4).and_then(|s| inner(s, "Messages('"));
            match (user, id) {
                (Some(user), Some(id)) => {
                    let named = message_id(&user, &id).unwrap_or(id);
                    format!("/upload/{user}/{named}")
                }
                _ => "/upload".to_owned(),
            }
        }
        _ => {
            // /{root}/users/{user}/messages/{id}/...
            if segments.get(2) == Some(&"users")
                && segments.get(4) == Some(&"messages")
                && segments.len() > 5
                && let Some(named) = message_id(segments[3], segments[5])
            {
                let mut out: Vec<&str> = segments.clone();
                out[5] = &named;
                return out.join("/");
            }
            path.to_owned()
        }
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
