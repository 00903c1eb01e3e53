//! The two error shapes Microsoft uses: the identity platform's for the token endpoint,
//! Graph's for everything else. Both carry ids a support engineer can quote, and never
//! anything secret.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A Graph error: `{"error": {"code", "message", "innerError": {"request-id", "date", ...}}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
    /// A seeded fault (marked on the response for a harness, never sent).
    pub injected: bool,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            injected: false,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn invalid_token(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }

    pub fn access_denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        )
    }

    pub fn item_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )
    }

    /// Graph's answer when the service itself fails (here: the message store).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ErrorInternalServerError",
            "An internal server error occurred. The operation failed.",
        )
    }

    /// The fake's own answer to `$value` when it keeps summaries only (`--retain
    /// summary`, docs/mailbox-api.md): not a Graph error, and not one to retry.
    pub fn not_retained() -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "ErrorContentNotRetained",
            "This mock mailbox runs with --retain summary: it keeps each message's summary and hashes, not its bytes.",
        )
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Marks the answer as a seeded fault.
    pub fn injected(mut self) -> Self {
        self.injected = true;
        self
    }
}

/// A message the fake cannot read back: refused as not kept (summary retention), or an
/// internal error, logged, for a store that fails to read its own file.
impl From<crate::store::ReadError> for GraphError {
    fn from(e: crate::store::ReadError) -> Self {
        match e {
            crate::store::ReadError::NotRetained => Self::not_retained(),
            crate::store::ReadError::Io(e) => {
                tracing::error!(error = %e, "a stored message cannot be read back");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let request_id = mock_common::request_id();
        let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        tracing::info!(status = self.status.as_u16(), code = self.code, %request_id, "graph error answer");
        let body = json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": date,
                    "request-id": request_id,
                    "client-request-id": request_id,
                }
            }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert("request-id", v.clone());
            headers.insert("client-request-id", v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                ),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.injected {
            response
                .extensions_mut()
                .insert(mock_common::transport::Injected);
        }
        response
    }
}

/// An identity-platform error: `{"error", "error_description", "error_codes", "timestamp",
/// "trace_id", "correlation_id", "error_uri"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenError {
    pub status: StatusCode,
    pub error: &'static str,
    pub aadsts: u32,
    pub description: String,
}

impl TokenError {
    pub fn new(
        status: StatusCode,
        error: &'static str,
        aadsts: u32,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            aadsts,
            description: description.into(),
        }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let trace_id = mock_common::request_id();
        let correlation_id = mock_common::request_id();
        let timestamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
        tracing::info!(status = self.status.as_u16(), error = self.error, aadsts = self.aadsts, %trace_id, "token error answer");
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                self.aadsts, self.description
            ),
            "error_codes": [self.aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.aadsts),
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
