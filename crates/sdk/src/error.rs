//! The one error type of the SDK: what the API refused, what the network failed, what could not be
//! read, and what was misconfigured, kept apart so callers can react to each.

use std::time::Duration;

use openwinv_wire::ErrorCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with the iwinv error envelope.
    #[error("{error_code}: {message}")]
    Api {
        /// HTTP status of the answer.
        status: u16,
        /// The parsed `error_code`; `None` when the server used one this SDK does not know.
        code: Option<ErrorCode>,
        /// The `error_code` exactly as sent.
        error_code: String,
        message: String,
        /// Seconds from the `Retry-After` header, when the server sent one.
        retry_after: Option<u64>,
    },
    /// The request could not be sent or the answer could not be received.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The answer was not the envelope the call expected.
    #[error("cannot read the answer (HTTP {status}): {message}")]
    Decode {
        status: u16,
        message: String,
        /// The start of the body, for diagnosis.
        body: String,
    },
    /// The client is not set up correctly (missing key, bad endpoint).
    #[error("{0}")]
    Config(String),
    /// Waiting for an operation gave up; the operation goes on on the server.
    #[error(
        "the operation {operation_id} was still running after {:.1} s",
        waited.as_secs_f64()
    )]
    Timeout { operation_id: String, waited: Duration },
}

impl Error {
    /// The catalog code of an API error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { code, .. } => *code,
            _ => None,
        }
    }

    /// True when no connection to the endpoint could be made (refused, unreachable, DNS).
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Http(e) if e.is_connect())
    }
}
