//! The HTTP surface: the token endpoint, the Graph mail subset, the inspection API and
//! the health check; the web viewer's routes come from [`crate::ui`].

mod admin;
mod graph;
mod token;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};

use crate::error::GraphError;
use crate::state::State;

/// Largest request body accepted: base64 of a message well above Exchange's own limits.
pub const BODY_LIMIT: usize = 200 * 1024 * 1024;

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
            get(graph::get_folder),
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
            GraphError::bad_request(format!("Resource not found for the segment '{segment}'."))
        })
        .method_not_allowed_fallback(|| async {
            GraphError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Request_BadRequest",
                "The HTTP method is not allowed for the requested resource.",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            name_for_faults,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The internal header that names what a request is about, for the seeded faults.
pub(crate) const FAULT_IDENTITY: &str = "x-mock-fault-identity";

/// Names each request by what it is about (method, path, query and the SHA-256 of its
/// body), so that a seeded fault is decided by the request and its attempt number, never
/// by arrival order. Only when faults are configured: the body is read ahead for it. The
/// header is always removed from what the client sent, so no client can choose it.
async fn name_for_faults(
    axum::extract::State(state): axum::extract::State<State>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use sha2::Digest;
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(FAULT_IDENTITY);
    if !state.faults_configured() {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "The request body is too large.",
        )
        .into_response();
    };
    let digest = sha2::Sha256::new()
        .chain_update(parts.method.as_str())
        .chain_update(b" ")
        .chain_update(parts.uri.path())
        .chain_update(b"?")
        .chain_update(parts.uri.query().unwrap_or_default())
        .chain_update(b" ")
        .chain_update(&bytes)
        .finalize();
    let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    if let Ok(value) = axum::http::HeaderValue::from_str(&name) {
        parts.headers.insert(FAULT_IDENTITY, value);
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
