//! `ApiError`: every failure a handler can return, rendered as the iwinv error envelope; and the
//! one place where a rejection of the framework itself (an extractor's or the router's plain-text
//! answer) becomes that envelope too.
//!
//! Messages quote the client's values between backticks; a quoted value longer than
//! [`ECHO_MAX`] characters is cut there with `…`, so that a 1 MB id never makes a 1 MB answer.

use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openwinv_wire::{ErrorCode, ErrorEnvelope};

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub message: String,
    /// Extra headers (rate-limit ones); boxed to keep `Result<_, ApiError>` small.
    pub headers: Option<Box<HeaderMap>>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            status: StatusCode::from_u16(code.http_status()).expect("catalog statuses are valid"),
            message: clip_quoted(message.into()),
            headers: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl ToString) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            self.headers.get_or_insert_with(Default::default).insert(name, v);
        }
        self
    }

    pub fn not_found(what: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} was not found."))
    }

    pub fn param(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::CheckParam, message)
    }

    pub fn missing_body(field: &str) -> ApiError {
        ApiError::new(ErrorCode::RequiredPostParamMissing, format!("The body field `{field}` is required."))
    }

    /// An account quota or per-instance limit: `LIMIT_EXCEEDED` with 403.
    pub fn quota(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::LimitExceeded, message).with_status(StatusCode::FORBIDDEN)
    }

    /// A failure of ours (store, backend). The detail goes to the log, never to the client.
    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "internal error");
        ApiError::new(
            ErrorCode::DevCheckReturn,
            "The service could not complete the request; it has been logged. Try again later.",
        )
    }
}

/// Most characters of one client value an error message repeats.
pub const ECHO_MAX: usize = 64;

/// Longest message; a guard for values that are not quoted (or hold a backtick themselves).
const MESSAGE_MAX: usize = 1024;

/// Cuts every `quoted` span longer than [`ECHO_MAX`] characters to its first [`ECHO_MAX`] and `…`,
/// then the whole message to [`MESSAGE_MAX`].
fn clip_quoted(message: String) -> String {
    if message.len() <= ECHO_MAX {
        return message;
    }
    let mut out = String::with_capacity(message.len().min(MESSAGE_MAX + 8));
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 && part.chars().nth(ECHO_MAX).is_some() {
            out.extend(part.chars().take(ECHO_MAX));
            out.push('…');
        } else {
            out.push_str(part);
        }
    }
    if let Some((cut, _)) = out.char_indices().nth(MESSAGE_MAX) {
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Longest plain-text rejection read back to be wrapped in the envelope.
const REJECTION_TEXT_MAX: usize = 4096;

/// Wraps the framework's own error answers on the API (`/v1`, `/admin/v1`) in the iwinv envelope:
/// axum's extractors and router answer `text/plain`, and an iwinv client parses every answer as
/// JSON. Handlers' errors are already envelopes (JSON) and pass untouched; this is the safety net
/// for whatever rejection input.rs does not turn into a precise message first.
pub async fn envelope_rejections(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/v1/") || req.uri().path().starts_with("/admin/v1/");
    let resp = next.run(req).await;
    let status = resp.status();
    let plain = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| !ct.starts_with("application/json"));
    if !api || !plain || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, REJECTION_TEXT_MAX)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let err = match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => ApiError::new(ErrorCode::NotFound, text),
        StatusCode::UNAUTHORIZED => ApiError::new(ErrorCode::CheckCredential, text),
        StatusCode::TOO_MANY_REQUESTS => ApiError::new(ErrorCode::LimitExceeded, text),
        StatusCode::PAYLOAD_TOO_LARGE => crate::input::too_large(),
        s if s.is_server_error() => ApiError::internal(format!("{s}: {text}")).with_status(s),
        // 415, 422 and the like: malformed input is 400 `CHECK_PARAM` (spec §1).
        _ => ApiError::param(format!("The request is not valid: {text}")).with_status(StatusCode::BAD_REQUEST),
    };
    let err = if err.message.is_empty() { ApiError { message: format!("{status}"), ..err } } else { err };
    let mut resp = err.into_response();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            resp.headers_mut().append(name, value.clone());
        }
    }
    resp
}

impl From<openwinv_store::StoreError> for ApiError {
    fn from(e: openwinv_store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope::new(self.code, self.message);
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(h) = self.headers {
            resp.headers_mut().extend(*h);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quoted_values_are_cut() {
        let long = "x".repeat(1_000_000);
        let e = ApiError::not_found(format!("The instance `{long}`"));
        assert_eq!(e.message, format!("The instance `{}…` was not found.", "x".repeat(ECHO_MAX)));
        let short = ApiError::param("The body field `name` must be a string.");
        assert_eq!(short.message, "The body field `name` must be a string.");
        let unquoted = ApiError::param(format!("bad {long}"));
        assert!(unquoted.message.chars().count() <= MESSAGE_MAX + 1, "{}", unquoted.message.len());
        let korean = ApiError::param(format!("`{}`", "서".repeat(100)));
        assert_eq!(korean.message, format!("`{}…`", "서".repeat(ECHO_MAX)));
    }
}
