//! The service layer between HTTP and the store: typed inputs, one call per write, typed results.
//!
//! A write's input is a plain struct ([`instances::CreateInstance`], [`volumes::CreateVolume`], …)
//! read once from a body in any of its three encodings by one extractor, [`Input`], through
//! [`FromBody`]: that step checks the shape of each field (a string, an integer, a list) and
//! names the field it refuses. The service function then validates against the catalog and the
//! store in the order the spec sets (a closed zone before anything else, say), starts the
//! operation in one transaction and returns what was accepted. The same structs carry the
//! OpenAPI request schemas (`utoipa::ToSchema`), so the document and the parser cannot drift.
//!
//! Callers: the `/v1` handlers (parse → call → render), the web console (which builds the input
//! from its forms) and the operator's seeding. No caller here knows HTTP status codes or headers;
//! errors are [`ApiError`], which carries the iwinv code.

pub mod capabilities;
pub mod firewalls;
pub mod instances;
pub mod named_text;
pub mod volumes;

use axum::extract::{FromRequest, Request};
use openwinv_store::ids::OperationId;

use crate::error::ApiError;
use crate::input::{Body, Encoding};

/// A typed input read from a request body by field name, so that every refusal names its field.
pub trait FromBody: Sized {
    fn from_body(body: &Body, encoding: Encoding) -> Result<Self, ApiError>;
}

/// The one extractor of typed inputs: JSON, `application/x-www-form-urlencoded` or
/// `multipart/form-data` (through [`Body`], which enforces spec §1), then [`FromBody`].
#[derive(Debug, Clone)]
pub struct Input<T>(pub T);

impl<S: Send + Sync, T: FromBody> FromRequest<S> for Input<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let encoding = Encoding::of(req.headers());
        let body = Body::from_request(req, state).await?;
        T::from_body(&body, encoding).map(Input)
    }
}

/// A write the engine finishes: the operations it started and the rows of the 202 answer.
#[derive(Debug, Clone)]
pub struct Accepted<T> {
    pub operation_ids: Vec<OperationId>,
    pub rows: Vec<T>,
}

impl<T> Accepted<T> {
    pub fn one(operation_id: OperationId, row: T) -> Accepted<T> {
        Accepted { operation_ids: vec![operation_id], rows: vec![row] }
    }
}

pub fn instance_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("The instance `{id}`"))
}
