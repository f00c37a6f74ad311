//! Edit, delete, the power and image actions, and the remote console.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use openwinv_wire::Envelope;
use openwinv_wire::instances::{ActionReceipt, Instance, RemoteConsole};

use super::view::{fields_mask, host_of, instance_view_row, views};
use crate::AppState;
use crate::api::{Accepted, Reply, accepted};
use crate::auth::Caller;
use crate::input::{Path, Query};
use crate::service::Input;
use crate::service::instances::{self as svc, EditInstance, RebootInstance, RebuildInstance, ResizeInstance};

/// Renames or re-describes an instance; allowed in any state but deletion.
#[utoipa::path(put, path = "/v1/instances/{instance_id}", tag = "instances",
    params(("instance_id" = String, Path), ("fields" = Option<u64>, Query)),
    request_body = EditInstance,
    responses((status = 200, body = Envelope<Vec<Instance>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn edit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Query,
    Input(input): Input<EditInstance>,
) -> Reply<Instance> {
    let mask = fields_mask(&q)?;
    svc::edit(&state, &caller, &id, input).await?;
    let r = instance_view_row(&state, &caller, &id, mask).await?;
    Ok(Json(Envelope::rows(views(&state, std::slice::from_ref(&r), mask, &host_of(&headers)).await?)))
}

/// Deletes an instance; its volumes are detached and kept.
#[utoipa::path(delete, path = "/v1/instances/{instance_id}", tag = "instances", params(("instance_id" = String, Path)),
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Accepted<ActionReceipt> {
    Ok(accepted(svc::delete(&state, &caller, &id).await?))
}

#[utoipa::path(post, path = "/v1/instances/{instance_id}/start", tag = "instances", params(("instance_id" = String, Path)),
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Accepted<ActionReceipt> {
    Ok(accepted(svc::start(&state, &caller, &id).await?))
}

/// Hard power-off, as iwinv documents.
#[utoipa::path(post, path = "/v1/instances/{instance_id}/shutdown", tag = "instances", params(("instance_id" = String, Path)),
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn shutdown(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Accepted<ActionReceipt> {
    Ok(accepted(svc::shutdown(&state, &caller, &id).await?))
}

#[utoipa::path(post, path = "/v1/instances/{instance_id}/reboot", tag = "instances", params(("instance_id" = String, Path)),
    request_body = Option<RebootInstance>,
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn reboot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Input(input): Input<RebootInstance>,
) -> Accepted<ActionReceipt> {
    Ok(accepted(svc::reboot(&state, &caller, &id, input).await?))
}

/// Reinstalls from `image_id` (default: the current image) with a new password; keeps addresses.
#[utoipa::path(post, path = "/v1/instances/{instance_id}/rebuild", tag = "instances", params(("instance_id" = String, Path)),
    request_body = Option<RebuildInstance>,
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn rebuild(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Input(input): Input<RebuildInstance>,
) -> Accepted<ActionReceipt> {
    Ok(accepted(svc::rebuild(&state, &caller, &id, input).await?))
}

/// Changes the flavor; the disk may grow but never shrink.
#[utoipa::path(post, path = "/v1/instances/{instance_id}/resize", tag = "instances", params(("instance_id" = String, Path)),
    request_body = ResizeInstance,
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn resize(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Input(input): Input<ResizeInstance>,
) -> Accepted<ActionReceipt> {
    Ok(accepted(svc::resize(&state, &caller, &id, input).await?))
}

/// A one-time, 5-minute link to the instance's console.
#[utoipa::path(get, path = "/v1/instances/{instance_id}/remote-console", tag = "instances", params(("instance_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<RemoteConsole>>), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn remote_console(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply<RemoteConsole> {
    let (link, expires) = svc::remote_console(&state, &caller, &id, &host_of(&headers)).await?;
    Ok(Json(Envelope::rows(vec![RemoteConsole {
        instance_id: id,
        kind: "serial".into(),
        link,
        expires_at: state.timestamp(expires),
    }])))
}
