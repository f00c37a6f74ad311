//! Block storage (spec §8): list, detail, create (attached to an instance), delete, attach and
//! detach. The writes are parse → [`crate::service::volumes`] → render.

use axum::extract::State;
use axum::{Extension, Json};
use openwinv_store::{PageQuery, VolumeFilter, VolumeRecord};
use openwinv_wire::volumes::{BlockStorage, BlockStorageReceipt};
use openwinv_wire::{Envelope, ErrorCode};

use super::{Accepted, Reply, accepted};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::input::{Path, Query};
use crate::service::Input;
use crate::service::volumes::{self as svc, CreateVolume};

pub use crate::service::volumes::{DESCRIPTION_MAX, MAX_PER_INSTANCE, NAME_MAX};

pub fn to_wire(state: &AppState, r: VolumeRecord) -> BlockStorage {
    BlockStorage {
        created_at: state.timestamp(r.created_at),
        block_storage_id: r.block_storage_id.into(),
        name: r.name,
        description: r.description,
        kind: r.kind,
        size: u32::try_from(r.size).unwrap_or(u32::MAX),
        status: r.status.to_string(),
        zone_id: r.zone_id,
        instance_id: r.instance_id.map(String::from),
    }
}

// ---------------------------------------------------------------------------------------------
// Reads

/// Volumes of the account, filtered and paginated.
#[utoipa::path(get, path = "/v1/block-storages", tag = "block storage",
    params(
        ("zone_id" = Option<String>, Query), ("name" = Option<String>, Query, description = "substring"),
        ("type" = Option<String>, Query, description = "exact block storage type"),
        ("instance_id" = Option<String>, Query, description = "attached to this instance [ext]"),
        ("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query),
    ),
    responses((status = 200, body = Envelope<Vec<BlockStorage>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Query,
) -> Reply<BlockStorage> {
    let page = q.page(openwinv_wire::envelope::Page::DEFAULT_SIZE)?;
    let catalog = state.catalog.get();
    let zone_id = q.str("zone_id").map(str::to_owned);
    if let Some(z) = &zone_id
        && !catalog.zones.iter().any(|x| &x.id == z)
    {
        return Err(ApiError::new(
            ErrorCode::IdInvalid,
            format!("The query parameter `zone_id` names no zone: `{z}`."),
        ));
    }
    let kind = q.str("type").map(str::to_owned);
    if let Some(k) = &kind
        && !catalog.block_storage_types.iter().any(|t| &t.kind == k)
    {
        return Err(svc::unknown_type(&catalog, "type", k));
    }
    let filter = VolumeFilter {
        zone_id,
        name: q.str("name").map(str::to_owned),
        kind,
        instance_id: q.str("instance_id").map(str::to_owned),
    };
    let (rows, total) =
        state.store.list_volumes(&caller.account_id, &filter, PageQuery::new(page.page_size, page.offset())).await?;
    let rows = rows.into_iter().map(|r| to_wire(&state, r)).collect();
    Ok(Json(Envelope::page(rows, page, total as u64)))
}

/// One volume; another account's or an unknown id is 404.
#[utoipa::path(get, path = "/v1/block-storages/{block_storage_id}", tag = "block storage",
    params(("block_storage_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<BlockStorage>>), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn detail(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Reply<BlockStorage> {
    let r = state.store.volume(&caller.account_id, &id).await?.ok_or_else(|| svc::volume_not_found(&id))?;
    Ok(Json(Envelope::rows(vec![to_wire(&state, r)])))
}

// ---------------------------------------------------------------------------------------------
// Writes

/// Creates a volume in the instance's zone, attached to it.
#[utoipa::path(post, path = "/v1/block-storages", tag = "block storage",
    request_body = CreateVolume,
    responses((status = 202, body = Envelope<Vec<BlockStorageReceipt>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 403, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Input(input): Input<CreateVolume>,
) -> Accepted<BlockStorageReceipt> {
    Ok(accepted(svc::create(&state, &caller, input).await?))
}

/// Deletes a detached volume.
#[utoipa::path(delete, path = "/v1/block-storages/{block_storage_id}", tag = "block storage",
    params(("block_storage_id" = String, Path)),
    responses((status = 202, body = Envelope<Vec<BlockStorageReceipt>>), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Accepted<BlockStorageReceipt> {
    Ok(accepted(svc::delete(&state, &caller, &id).await?))
}

/// Attaches a detached volume to an instance of its zone.
#[utoipa::path(post, path = "/v1/block-storages/{block_storage_id}/attach/{instance_id}", tag = "block storage",
    params(("block_storage_id" = String, Path), ("instance_id" = String, Path)),
    responses((status = 202, body = Envelope<Vec<BlockStorageReceipt>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 403, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn attach(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, instance_id)): Path<(String, String)>,
) -> Accepted<BlockStorageReceipt> {
    Ok(accepted(svc::attach(&state, &caller, &id, &instance_id).await?))
}

/// Detaches an attached volume; it is kept, `available`.
#[utoipa::path(post, path = "/v1/block-storages/{block_storage_id}/detach", tag = "block storage",
    params(("block_storage_id" = String, Path)),
    responses((status = 202, body = Envelope<Vec<BlockStorageReceipt>>), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn detach(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Accepted<BlockStorageReceipt> {
    Ok(accepted(svc::detach(&state, &caller, &id).await?))
}
