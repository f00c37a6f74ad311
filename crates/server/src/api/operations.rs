//! Operations (spec §12) [ext]: every 202 answer names one in `X-Operation-Id`; this is where a
//! client follows it.

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use openwinv_store::operations::{FAILED, RUNNING, SUCCEEDED};
use openwinv_store::{OperationRecord, PageQuery};
use openwinv_wire::Envelope;
use openwinv_wire::operations::Operation;

use crate::AppState;
use crate::api::Reply;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::input::Path;
use crate::input::Query;

/// The statuses `GET /v1/operations?status=` accepts.
const STATUSES: [&str; 3] = [RUNNING, SUCCEEDED, FAILED];

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/operations", get(list)).route("/v1/operations/{operation_id}", get(show))
}

/// The reason shown to the client. Failures of our own database are described, not quoted: the
/// detail is in the server log.
fn public_error(message: &str) -> String {
    match message.find("store: ") {
        Some(at) => format!("{}an internal error of the service (logged)", &message[..at]),
        None => message.to_owned(),
    }
}

pub fn to_wire(state: &AppState, r: OperationRecord) -> Operation {
    let error = if r.status == FAILED {
        Some(public_error(r.error.as_deref().unwrap_or("the operation failed")))
    } else {
        None
    };
    Operation {
        created_at: state.timestamp(r.created_at),
        finished_at: r.finished_at.map(|t| state.timestamp(t)),
        error,
        operation_id: r.operation_id.into(),
        kind: r.kind,
        resource_id: r.resource_id,
        status: r.status,
    }
}

/// The caller's operations [ext], newest first, paged like every list (spec §4), with `total`.
#[utoipa::path(get, path = "/v1/operations", tag = "operations",
    params(
        ("status" = Option<String>, Query, description = "running, succeeded or failed"),
        ("resource_id" = Option<String>, Query, description = "only the operations of this instance or volume"),
        ("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query)),
    responses((status = 200, body = Envelope<Vec<Operation>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>, q: Query) -> Reply<Operation> {
    let page = q.page(openwinv_wire::envelope::Page::DEFAULT_SIZE)?;
    let status = q.one_of("status", &STATUSES)?;
    let (rows, total) = state
        .store
        .list_operations(
            &caller.account_id,
            status.as_deref(),
            q.str("resource_id"),
            PageQuery::new(page.page_size, page.offset()),
        )
        .await?;
    let rows = rows.into_iter().map(|r| to_wire(&state, r)).collect();
    Ok(Json(Envelope::page(rows, page, total as u64)))
}

/// One operation of the caller's account.
#[utoipa::path(get, path = "/v1/operations/{operation_id}", tag = "operations",
    params(("operation_id" = String, Path, description = "the id from an X-Operation-Id header")),
    responses((status = 200, body = Envelope<Vec<Operation>>), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Reply<Operation> {
    let rec = state
        .store
        .operation(&id)
        .await?
        .filter(|op| op.account_id == caller.account_id)
        .ok_or_else(|| ApiError::not_found(format!("The operation `{id}`")))?;
    Ok(Json(Envelope::rows(vec![to_wire(&state, rec)])))
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_failures_are_not_quoted() {
        assert_eq!(
            super::public_error("step `boot` failed: store: error returned from database: near \"x\""),
            "step `boot` failed: an internal error of the service (logged)"
        );
        assert_eq!(super::public_error("step `boot` failed: no capacity"), "step `boot` failed: no capacity");
    }
}
