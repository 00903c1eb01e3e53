//! `POST /{tenant}/oauth2/v2.0/token`, the client-credentials grant.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::error::TokenError;
use crate::state::{State, TokenRequest};

pub async fn token(
    AxState(state): AxState<State>,
    Path(tenant): Path<String>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Result<axum::Json<Value>, TokenError> {
    let Form(form) = form.map_err(|_| {
        TokenError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        )
    })?;
    let (access_token, expires_in) = state.issue_token(&tenant, form).await?;
    Ok(axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": access_token,
    })))
}
