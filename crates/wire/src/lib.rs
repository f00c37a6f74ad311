//! Wire types of the iwinv IaaS API v1, shared by the server, the SDK and the CLI.
//!
//! Everything that crosses the wire lives here once: the response envelope, the error catalog,
//! the resource rows, and request signing. The store and the server map into these types; they
//! never define their own JSON shapes.

pub mod admin;
pub mod billing;
pub mod catalog;
pub mod envelope;
pub mod error;
pub mod firewalls;
pub mod hosts;
pub mod images;
pub mod instances;
pub mod keys;
pub mod operations;
pub mod signing;
pub mod standin;
pub mod volumes;

pub use envelope::{Envelope, ErrorEnvelope};
pub use error::ErrorCode;

/// Header names of the signed-request scheme (spec §2).
pub mod headers {
    pub const TIMESTAMP: &str = "x-iwinv-timestamp";
    pub const CREDENTIAL: &str = "x-iwinv-credential";
    pub const SIGNATURE: &str = "x-iwinv-signature";
    pub const REQUEST_ID: &str = "x-request-id";
    pub const OPERATION_ID: &str = "x-operation-id";
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
    pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
    pub const RATELIMIT_LIMIT: &str = "ratelimit-limit";
    pub const RATELIMIT_REMAINING: &str = "ratelimit-remaining";
    pub const RATELIMIT_RESET: &str = "ratelimit-reset";
    /// [ext] The server clock in Unix seconds, on every answer (beside `Date`), so that a client
    /// whose timestamp was refused can learn the skew.
    pub const SERVER_TIME: &str = "x-openwinv-server-time";
}
