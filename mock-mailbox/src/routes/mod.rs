//! The HTTP surface: the token endpoint, the Graph mail subset, the inspection API and
//! the health check.

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
    Router::new()
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
        .route("/admin/v1/reset", post(admin::reset))
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
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
