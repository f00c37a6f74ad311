//! `ApiError`: every failure a handler can return, rendered as the iwinv error envelope.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
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
            message: message.into(),
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
