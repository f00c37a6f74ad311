//! `POST /v1/instances`.

use axum::Extension;
use axum::extract::State;
use openwinv_wire::Envelope;
use openwinv_wire::instances::CreateReceipt;

use crate::AppState;
use crate::api::{Accepted, accepted};
use crate::auth::Caller;
use crate::service::Input;
use crate::service::instances::{self as svc, CreateInstance};

/// Creates 1–10 instances, all or none.
#[utoipa::path(post, path = "/v1/instances", tag = "instances",
    request_body = CreateInstance,
    responses((status = 202, body = Envelope<Vec<CreateReceipt>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 403, body = openwinv_wire::ErrorEnvelope),
        (status = 500, description = "The zone is closed for new instances (DEV_CHECK_RETURN) [iwinv]", body = openwinv_wire::ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Input(input): Input<CreateInstance>,
) -> Accepted<CreateReceipt> {
    Ok(accepted(svc::create(&state, &caller, input).await?))
}
