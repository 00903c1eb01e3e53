//! The HTTP surface: the provider API, the admin API and the health check.

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use crate::attachment::{ByteStream, ascii_file_name};
use crate::error::ApiError;
use crate::state::{Fault, ListRequest, State, Surface};
use crate::wire::{LoginRequest, TokenResponse, UsersResponse};

/// The whole fake provider.
pub fn router(state: State) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/auth/token", post(login))
        .route("/api/v1/items", get(list_items))
        .route("/api/v1/attachments/{id}", get(download))
        .route("/api/v1/users", get(users))
        .route("/admin/v1/items", post(admin_append))
        .route("/admin/v1/counters", get(admin_counters))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .layer(axum::extract::DefaultBodyLimit::max(ADMIN_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// Largest login body (a username and a password).
pub const LOGIN_BODY_LIMIT: usize = 16 * 1024;
/// Largest admin body (items appended at run time).
pub const ADMIN_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// Largest body anywhere else (the other calls have none).
pub const OTHER_BODY_LIMIT: usize = 64 * 1024;

/// Every request passes here first: the admin API checks its token before a byte of the
/// body is read, and every body is read only up to its path's limit, refused with 413
/// `request_too_large` as soon as it is over (its `Content-Length` is looked at first).
async fn gate(AxState(state): AxState<State>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let limit = if path == "/api/v1/auth/token" {
        LOGIN_BODY_LIMIT
    } else if path.starts_with("/admin/") {
        if let Err(refused) = admin_only(&state, request.headers()) {
            return refused.into_response();
        }
        ADMIN_BODY_LIMIT
    } else {
        OTHER_BODY_LIMIT
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("the request body is over this path's {limit} bytes"),
        )
        .into_response()
    };
    let (parts, body) = request.into_parts();
    let Some(bytes) = mock_common::serve::read_bounded(&parts.headers, body, limit).await else {
        return too_large();
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn count_requests(AxState(state): AxState<State>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    state.count_request(&format!("{} {route}", request.method()));
    next.run(request).await
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn health() -> &'static str {
    "ok"
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such path")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "method not allowed on this path",
    )
}

async fn login(
    AxState(state): AxState<State>,
    body: Result<axum::Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let axum::Json(request) = body.map_err(|_| {
        ApiError::bad_request(
            "invalid_request",
            "send a JSON body {\"username\": ..., \"password\": ...} with Content-Type: application/json",
        )
    })?;
    let (access_token, expires_in) = state.login(&request.username, &request.password).await?;
    // Drawn once the login is known to be good, so that no refused login is hidden.
    let identity = format!("login {}", request.username);
    if state.roll_fault(Surface::Login, &identity) == Some(Fault::GatewayPage) {
        return Ok(gateway_page());
    }
    Ok(axum::Json(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in,
    })
    .into_response())
}

/// What a gateway in front of a service shows when it cannot reach it, with a status
/// that says all is well: the fault `gateway_page_rate` injects.
fn gateway_page() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        "<!DOCTYPE html><html><head><title>Service temporarily unavailable</title></head><body><h1>We'll be right back</h1><p>The service is undergoing maintenance.</p></body></html>",
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    since: Option<String>,
    until: Option<String>,
    page_size: Option<String>,
    cursor: Option<String>,
}

async fn list_items(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.authenticate(authorization(&headers))?;
    let Query(q) =
        query.map_err(|_| ApiError::bad_request("invalid_request", "malformed query"))?;
    let request = ListRequest {
        since: q.since,
        until: q.until,
        page_size: q.page_size,
        cursor: q.cursor,
    };
    let identity = state.listing_identity(&request);
    let fault = state.roll_fault(Surface::Listing, &identity);
    let transport = state.roll_transport(&identity);
    if let Some(delay) = transport.delay {
        tokio::time::sleep(delay).await;
    }
    match fault {
        Some(Fault::Unavailable) => return Err(ApiError::unavailable()),
        Some(Fault::GatewayPage) => return Ok(gateway_page()),
        Some(Fault::NotEnvelope) => {
            return Ok(
                axum::Json(serde_json::json!({"status": "maintenance", "retry": true}))
                    .into_response(),
            );
        }
        _ => {}
    }
    let mut page = state.list(&request)?;
    if fault == Some(Fault::Truncated) {
        // Half the page, cut on a character boundary, as a dropped connection leaves it.
        let mut cut = page.json.len() / 2;
        while !page.json.is_char_boundary(cut) {
            cut -= 1;
        }
        page.json.truncate(cut);
    }
    let response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        page.json,
    )
        .into_response();
    Ok(cut_if(transport, response).await)
}

/// The answer, with its body broken off half-way when the transport drew a reset.
async fn cut_if(transport: mock_common::transport::Drawn, response: Response) -> Response {
    if transport.reset && response.status().is_success() {
        mock_common::transport::cut_body(response).await
    } else {
        response
    }
}

async fn download(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.authenticate(authorization(&headers))?;
    let identity = format!("download {id}");
    let fault = state.roll_fault(Surface::Download, &identity);
    let transport = state.roll_transport(&identity);
    if let Some(delay) = transport.delay {
        tokio::time::sleep(delay).await;
    }
    match fault {
        Some(Fault::Unavailable) => return Err(ApiError::unavailable()),
        Some(Fault::GatewayPage) => return Ok(gateway_page()),
        _ => {}
    }
    let source = state
        .attachment(&id)
        .ok_or_else(|| ApiError::not_found("no attachment with that id"))?;
    let corrupt_at =
        (fault == Some(Fault::Corrupt) && source.size > 0).then(|| source.seed % source.size);
    let content_type = HeaderValue::from_str(&source.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        ascii_file_name(&source.file_name)
    ))
    .unwrap_or(HeaderValue::from_static("attachment"));
    if fault == Some(Fault::Empty) {
        // The headers of a file, and no bytes.
        let mut response = Body::empty().into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, content_type);
        h.insert(header::CONTENT_DISPOSITION, disposition);
        return Ok(response);
    }
    let size = source.size;
    let counter = state.clone();
    let stream = futures_util::stream::unfold(
        (ByteStream::new(source.seed, size), 0u64),
        move |(mut bytes, offset)| {
            let counter = counter.clone();
            async move {
                let chunk = bytes.next_chunk()?;
                let len = chunk.len() as u64;
                counter.count_bytes(len);
                let chunk = match corrupt_at {
                    Some(at) if (offset..offset + len).contains(&at) => {
                        let mut altered = chunk.to_vec();
                        altered[(at - offset) as usize] ^= 0xFF;
                        altered.into()
                    }
                    _ => chunk,
                };
                Some((Ok::<_, Infallible>(chunk), (bytes, offset + len)))
            }
        },
    );
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(header::CONTENT_DISPOSITION, disposition);
    Ok(cut_if(transport, response).await)
}

async fn users(
    AxState(state): AxState<State>,
    headers: HeaderMap,
) -> Result<axum::Json<UsersResponse>, ApiError> {
    state.authenticate(authorization(&headers))?;
    Ok(axum::Json(UsersResponse {
        users: state.employees().to_vec(),
    }))
}

fn admin_only(state: &State, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.admin().admits(authorization(headers)) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "invalid_token",
            "the admin API needs the admin token",
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendRequest {
    #[serde(default)]
    items: Vec<Value>,
    #[serde(default)]
    raw_items: Vec<Value>,
}

async fn admin_append(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    body: Result<axum::Json<AppendRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    admin_only(&state, &headers)?;
    let axum::Json(request) = body.map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("expected {{\"items\": [...]}}: {e}"),
        )
    })?;
    let appended = state
        .append(request.items, request.raw_items)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "appended": appended })),
    )
        .into_response())
}

async fn admin_counters(
    AxState(state): AxState<State>,
    headers: HeaderMap,
) -> Result<axum::Json<crate::state::CountersSnapshot>, ApiError> {
    admin_only(&state, &headers)?;
    Ok(axum::Json(state.counters()))
}
