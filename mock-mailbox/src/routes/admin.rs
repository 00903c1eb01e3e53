//! The inspection API (not Graph): what tests and people use to see inside the fake.
//! Behind its own admin token; closed when none is configured.

use std::collections::HashMap;

use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::authorization;
use crate::error::GraphError;
use crate::state::State;

fn admin_only(state: &State, headers: &HeaderMap) -> Result<(), GraphError> {
    if state.admin().admits(authorization(headers)) {
        Ok(())
    } else {
        Err(GraphError::invalid_token(
            "The inspection API needs the admin token.",
        ))
    }
}

fn no_mailbox(user: &str) -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "ErrorInvalidUser",
        format!("No mailbox for '{user}'."),
    )
}

pub async fn tenants(
    AxState(state): AxState<State>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    admin_only(&state, &headers)?;
    let tenants: Vec<_> = state
        .tenants()
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "domain": t.domain,
                "applications": t.applications.iter().map(|a| json!({
                    "client_id": a.client_id, "display_name": a.display_name, "permissions": a.permissions,
                })).collect::<Vec<_>>(),
                "users": t.users,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "tenants": tenants })).into_response())
}

pub async fn folders(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Result<Response, GraphError> {
    admin_only(&state, &headers)?;
    let folders = state
        .inspect_folders(&user)
        .ok_or_else(|| no_mailbox(&user))?;
    Ok(axum::Json(json!({ "folders": folders })).into_response())
}

pub async fn messages(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path(user): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, GraphError> {
    admin_only(&state, &headers)?;
    let include = params
        .get("include_recoverable")
        .is_some_and(|v| v == "true");
    let messages = state
        .inspect_messages(&user, include)
        .map_err(|e| match e {
            crate::state::InspectError::NoMailbox => no_mailbox(&user),
            crate::state::InspectError::Read(e) => e.into(),
        })?;
    Ok(axum::Json(json!({ "messages": messages })).into_response())
}

pub async fn mime(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((user, message)): Path<(String, String)>,
) -> Result<Response, GraphError> {
    admin_only(&state, &headers)?;
    let content = state
        .inspect_content(&user, &message)
        .ok_or_else(GraphError::item_not_found)?;
    let mime = content.mime()?;
    Ok(([(axum::http::header::CONTENT_TYPE, "message/rfc822")], mime).into_response())
}

pub async fn counters(
    AxState(state): AxState<State>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    admin_only(&state, &headers)?;
    Ok(axum::Json(state.counters()).into_response())
}

pub async fn reset(
    AxState(state): AxState<State>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    admin_only(&state, &headers)?;
    state.reset();
    Ok(StatusCode::NO_CONTENT.into_response())
}
