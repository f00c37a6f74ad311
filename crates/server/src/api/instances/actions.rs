//! Edit, delete, the power and image actions, and the remote console.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use openwinv_engine::{NoParams, Operation};
use openwinv_store::instances::status;
use openwinv_store::{InstanceRecord, NewOperation, Refused, ids};
use openwinv_wire::instances::*;
use openwinv_wire::{Envelope, ErrorCode};

use crate::AppState;
use crate::api::Reply;
use crate::api::capabilities::{self, Feature};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Encoding, Path, Query, enum_error, text_field};
use crate::sagas::instance::{Kind, reboot, rebuild, resize, shutdown, start};

use super::*;

/// Renames or re-describes an instance; allowed in any state but deletion.
#[utoipa::path(put, path = "/v1/instances/{instance_id}", tag = "instances",
    params(("instance_id" = String, Path), ("fields" = Option<u64>, Query)),
    request_body = crate::openapi::schemas::InstanceChanges,
    responses((status = 200, body = Envelope<Vec<Instance>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn edit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Query,
    encoding: Encoding,
    body: Body,
) -> Reply<Instance> {
    let mask = fields_mask(&q)?;
    let name = body.encoded_str("name", encoding)?.map(|n| text_field("name", &n, 1, NAME_MAX)).transpose()?;
    let description = body
        .encoded_str("description", encoding)?
        .map(|d| text_field("description", &d, 0, DESCRIPTION_MAX))
        .transpose()?;
    if name.is_none() && description.is_none() {
        return Err(ApiError::new(ErrorCode::RequiredPostParamMissing, "Give `name`, `description`, or both."));
    }
    let current = state.store.instance(&caller.account_id, &id).await?.ok_or_else(|| instance_not_found(&id))?;
    if is_deleting(&state, &current).await? {
        return Err(busy(&id));
    }
    let description = description.map(|d| if d.is_empty() { None } else { Some(d) });
    let desc_ref = description.as_ref().map(|d| d.as_deref());
    if !state.store.edit_instance(&caller.account_id, &id, name.as_deref(), desc_ref).await? {
        return Err(instance_not_found(&id));
    }
    let r = instance_view_row(&state, &caller, &id, mask).await?;
    Ok(Json(Envelope::rows(views(&state, std::slice::from_ref(&r), mask, &host_of(&headers)).await?)))
}

async fn is_deleting(state: &AppState, r: &InstanceRecord) -> ApiResult<bool> {
    match &r.operation_id {
        None => Ok(false),
        Some(op) => Ok(state.store.operation(op).await?.is_some_and(|o| o.kind == Kind::Delete.name())),
    }
}

fn busy(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::DeletedOrWorkingInstance,
        format!("The instance `{id}` is being created, is in the middle of an operation, or is being deleted."),
    )
}

// ---------------------------------------------------------------------------------------------
// Operations

/// Starts an operation of `kind` on an instance and answers 202.
async fn begin(state: &AppState, caller: &Caller, id: &str, kind: Kind, params: String) -> ApiResult<String> {
    let operation_id = ids::new_id("OP");
    let op = NewOperation {
        operation_id: &operation_id,
        account_id: &caller.account_id,
        kind: kind.name(),
        resource_id: id,
        params: &params,
        now_ms: state.clock.unix_ms(),
    };
    match state.store.begin_instance_operation(&caller.account_id, id, kind.allowed_from(), &op).await? {
        Ok(()) => {
            state.engine.wake();
            Ok(operation_id)
        }
        Err(r) => Err(refusal(id, kind, r)),
    }
}

/// Why an operation on an instance cannot start, as the client sees it.
fn refusal(id: &str, kind: Kind, r: Refused) -> ApiError {
    match r {
        Refused::NotFound => instance_not_found(id),
        Refused::From(s) if s == status::PENDING || s == status::WORK => busy(id),
        Refused::From(s) => ApiError::new(
            ErrorCode::CheckParam,
            format!(
                "The instance `{id}` is {s}; {} is allowed only from {}.",
                kind.name().trim_start_matches("instance."),
                kind.allowed_from().join(" or ")
            ),
        )
        .with_status(StatusCode::CONFLICT),
        Refused::Busy => ApiError::new(
            ErrorCode::DeletedOrWorkingInstance,
            format!(
                "A volume of the instance `{id}` is being created, attached or detached; try again when it is done."
            ),
        ),
    }
}

fn work_receipt(id: &str, operation_id: String) -> (StatusCode, HeaderMap, Json<Envelope<Vec<ActionReceipt>>>) {
    accepted(
        &[operation_id],
        vec![ActionReceipt { instance_id: id.to_owned(), status: "work".into(), block_storage: None }],
    )
}

/// Deletes an instance; its volumes are detached and kept.
#[utoipa::path(delete, path = "/v1/instances/{instance_id}", tag = "instances", params(("instance_id" = String, Path)),
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Accepted<ActionReceipt> {
    let operation_id = ids::new_id("OP");
    let op = NewOperation {
        operation_id: &operation_id,
        account_id: &caller.account_id,
        kind: Kind::Delete.name(),
        resource_id: &id,
        params: NoParams::ENCODED,
        now_ms: state.clock.unix_ms(),
    };
    // Attached volumes are detached and kept; the receipt names them.
    let kept = state
        .store
        .begin_instance_delete(&caller.account_id, &id, Kind::Delete.allowed_from(), &op)
        .await?
        .map_err(|r| refusal(&id, Kind::Delete, r))?;
    state.engine.wake();
    Ok(accepted(
        &[operation_id],
        vec![ActionReceipt { instance_id: id, status: "deleting".into(), block_storage: Some(kept) }],
    ))
}

#[utoipa::path(post, path = "/v1/instances/{instance_id}/start", tag = "instances", params(("instance_id" = String, Path)),
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Accepted<ActionReceipt> {
    let op = begin(&state, &caller, &id, Kind::Start, start::Start::encode(&NoParams {})).await?;
    Ok(work_receipt(&id, op))
}

/// Hard power-off, as iwinv documents.
#[utoipa::path(post, path = "/v1/instances/{instance_id}/shutdown", tag = "instances", params(("instance_id" = String, Path)),
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn shutdown(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Accepted<ActionReceipt> {
    let params = shutdown::Shutdown::encode(&NoParams {});
    let op = begin(&state, &caller, &id, Kind::Shutdown, params).await?;
    Ok(work_receipt(&id, op))
}

#[utoipa::path(post, path = "/v1/instances/{instance_id}/reboot", tag = "instances", params(("instance_id" = String, Path)),
    request_body = Option<crate::openapi::schemas::Reboot>,
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn reboot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Accepted<ActionReceipt> {
    let hard = match body.str("type")?.as_deref() {
        None | Some("SOFT") => false,
        Some("HARD") => true,
        Some(other) => return Err(enum_error("type", other, &["SOFT", "HARD"])),
    };
    let op = begin(&state, &caller, &id, Kind::Reboot, reboot::Reboot::encode(&reboot::Params { hard })).await?;
    Ok(work_receipt(&id, op))
}

/// Reinstalls from `image_id` (default: the current image) with a new password; keeps addresses.
#[utoipa::path(post, path = "/v1/instances/{instance_id}/rebuild", tag = "instances", params(("instance_id" = String, Path)),
    request_body = Option<crate::openapi::schemas::Rebuild>,
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn rebuild(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Accepted<ActionReceipt> {
    let current = state.store.instance(&caller.account_id, &id).await?.ok_or_else(|| instance_not_found(&id))?;
    let catalog = state.catalog.get();
    let image_id = body.str("image_id")?.filter(|s| !s.is_empty()).unwrap_or_else(|| current.image_id.clone());
    let image = catalog.images.iter().find(|i| i.id == image_id).ok_or_else(|| id_invalid("image_id", &image_id))?;
    let flavor = catalog.flavors.iter().find(|f| f.id == current.flavor_id);
    if !image.zones.contains(&current.zone_id) || flavor.is_some_and(|f| !f.supports(image)) {
        return Err(ApiError::new(
            ErrorCode::UnavailableCombination,
            format!("The image `{image_id}` cannot run on this instance's flavor and zone."),
        ));
    }
    if is_windows(image) && current.ssh_keys != "[]" {
        return Err(ApiError::new(
            ErrorCode::UnavailableSshKey,
            "This instance has SSH keys, which a Windows image cannot use.",
        ));
    }
    let sealed = state.sealer.seal(&new_password());
    let params = rebuild::Rebuild::encode(&rebuild::Params { image_id, password_sealed: sealed });
    let op = begin(&state, &caller, &id, Kind::Rebuild, params).await?;
    Ok(work_receipt(&id, op))
}

/// Changes the flavor; the disk may grow but never shrink.
#[utoipa::path(post, path = "/v1/instances/{instance_id}/resize", tag = "instances", params(("instance_id" = String, Path)),
    request_body = crate::openapi::schemas::Resize,
    responses((status = 202, body = Envelope<Vec<ActionReceipt>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn resize(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Accepted<ActionReceipt> {
    let flavor_id = body.required_str("flavor_id")?;
    let current = state.store.instance(&caller.account_id, &id).await?.ok_or_else(|| instance_not_found(&id))?;
    let catalog = state.catalog.get();
    let flavor =
        catalog.flavors.iter().find(|f| f.id == flavor_id).ok_or_else(|| id_invalid("flavor_id", &flavor_id))?;
    let old = catalog.flavors.iter().find(|f| f.id == current.flavor_id);
    let unavailable =
        |why: &str| ApiError::new(ErrorCode::UnavailableFlavor, format!("The flavor `{flavor_id}` {why}."));
    if flavor_id == current.flavor_id {
        return Err(unavailable("is the instance's flavor already"));
    }
    if old.is_some_and(|o| flavor.disk < o.disk) {
        return Err(unavailable("has a smaller disk, and disks cannot shrink"));
    }
    if !flavor.zones.contains(&current.zone_id) || !flavor.provide || flavor.status != "on" {
        return Err(unavailable("cannot be ordered in this instance's zone"));
    }
    if let Some(image) = catalog.images.iter().find(|i| i.id == current.image_id)
        && !flavor.supports(image)
    {
        return Err(ApiError::new(
            ErrorCode::UnavailableCombination,
            format!("The flavor `{flavor_id}` does not support the image `{}`.", current.image_id),
        ));
    }
    let op = begin(&state, &caller, &id, Kind::Resize, resize::Resize::encode(&resize::Params { flavor_id })).await?;
    Ok(work_receipt(&id, op))
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
    let r = state.store.instance(&caller.account_id, &id).await?.ok_or_else(|| instance_not_found(&id))?;
    capabilities::require(&state, Feature::Consoles, "A remote console")?;
    if r.status != status::ACTIVE {
        return Err(ApiError::new(
            ErrorCode::CheckConsole,
            format!("The instance `{id}` is {}; the console needs it active.", r.status),
        ));
    }
    let (link, expires) = console_link(&state, &r, &host_of(&headers)).await?;
    Ok(Json(Envelope::rows(vec![RemoteConsole {
        instance_id: id,
        kind: "serial".into(),
        link,
        expires_at: state.timestamp(expires),
    }])))
}

/// The page a console link opens (no credentials: the token is the credential, once): the browser
/// console (see `crate::console`).
pub async fn console_page(
    State(state): State<AppState>,
    Extension(hub): Extension<std::sync::Arc<crate::console::Hub>>,
    Path(token): Path<String>,
) -> Response {
    crate::console::page(&state, &hub, &token).await
}
