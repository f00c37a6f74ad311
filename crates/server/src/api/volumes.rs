//! Block storage (spec §8): list, detail, create (attached to an instance), delete, attach and
//! detach.
//!
//! Mutations validate completely, then move the volume to its transitional status and write the
//! operation in one transaction (which also checks the instance, the zone, the per-instance
//! limit and the account's storage quota), and answer 202 with `X-Operation-Id`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::{Extension, Json};
use openwinv_store::volumes::status;
use openwinv_store::{NewOperation, PageQuery, VolumeFilter, VolumeRecord, VolumeRefused, ids};
use openwinv_wire::volumes::{BlockStorage, BlockStorageReceipt};
use openwinv_wire::{Envelope, ErrorCode};
use serde_json::Value;

use super::Reply;
use crate::AppState;
use crate::api::capabilities::{self, Feature};
use crate::auth::Caller;
use crate::catalog::{BlockStorageTypeDef, CatalogFile};
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Path, Query, enum_error, text_field};
use crate::sagas::volume::Kind;

/// Volumes one instance may have (`connection_limit.block_storage`, spec §7).
pub const MAX_PER_INSTANCE: i64 = super::instances::MAX_VOLUMES as i64;
pub const NAME_MAX: usize = 64;
pub const DESCRIPTION_MAX: usize = 255;
/// The type of a volume asked for with an instance when none is given [iwinv].
pub const DEFAULT_TYPE: &str = "ssd";

type Accepted = ApiResult<(StatusCode, HeaderMap, Json<Envelope<Vec<BlockStorageReceipt>>>)>;

fn accepted(
    operation_id: &str,
    row: BlockStorageReceipt,
) -> (StatusCode, HeaderMap, Json<Envelope<Vec<BlockStorageReceipt>>>) {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(operation_id) {
        h.insert(openwinv_wire::headers::OPERATION_ID, v);
    }
    (StatusCode::ACCEPTED, h, Json(Envelope::rows(vec![row])))
}

pub fn volume_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("The block storage `{id}`"))
}

fn instance_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("The instance `{id}`"))
}

pub fn to_wire(state: &AppState, r: VolumeRecord) -> BlockStorage {
    BlockStorage {
        created_at: state.timestamp(r.created_at),
        block_storage_id: r.block_storage_id,
        name: r.name,
        description: r.description,
        kind: r.kind,
        size: u32::try_from(r.size).unwrap_or(u32::MAX),
        status: r.status,
        zone_id: r.zone_id,
        instance_id: r.instance_id,
    }
}

/// A new volume's name when none is given.
pub fn default_name() -> String {
    format!("volume-{}", ids::random_base62(6).to_lowercase())
}

/// Looks up a block-storage type for a volume in `zone_id`. Unknown → `CHECK_PARAM_ENUM` (an enum
/// whose values come from the catalog, spec §3); not offered in the zone → `UNAVAILABLE_COMBINATION`.
pub fn storage_type<'c>(
    catalog: &'c CatalogFile,
    field: &str,
    kind: &str,
    zone_id: &str,
) -> ApiResult<&'c BlockStorageTypeDef> {
    let t = catalog
        .block_storage_types
        .iter()
        .find(|t| t.kind == kind)
        .ok_or_else(|| unknown_type(catalog, field, kind))?;
    if t.zones.as_ref().is_some_and(|z| !z.iter().any(|z| z == zone_id)) {
        return Err(ApiError::new(
            ErrorCode::UnavailableCombination,
            format!("The block storage type `{kind}` is not offered in the zone `{zone_id}`."),
        ));
    }
    Ok(t)
}

/// `CHECK_PARAM_ENUM` naming `field` and the catalog's types.
fn unknown_type(catalog: &CatalogFile, field: &str, kind: &str) -> ApiError {
    let known: Vec<&str> = catalog.block_storage_types.iter().map(|t| t.kind.as_str()).collect();
    enum_error(field, kind, &known)
}

/// Checks a size (GB) against the type's bounds.
pub fn check_size(field: &str, size: i64, t: &BlockStorageTypeDef) -> ApiResult<()> {
    if size < i64::from(t.min) || size > i64::from(t.max) {
        return Err(ApiError::param(format!(
            "The field `{field}` must be {} to {} GB for the type `{}`, not {size}.",
            t.min, t.max, t.kind
        )));
    }
    Ok(())
}

/// An optional name: 1–64 characters, default `volume-…`.
pub fn name_field(field: &str, v: Option<String>) -> ApiResult<String> {
    match v {
        Some(n) => text_field(field, &n, 1, NAME_MAX),
        None => Ok(default_name()),
    }
}

/// An optional description: 0–255 characters; empty is none.
pub fn description_field(field: &str, v: Option<String>) -> ApiResult<Option<String>> {
    match v {
        Some(d) => Ok(Some(text_field(field, &d, 0, DESCRIPTION_MAX)?).filter(|d| !d.is_empty())),
        None => Ok(None),
    }
}

/// Turns a refusal of the store into the answer the spec asks for. `instance_in_body`: an
/// unknown instance named in the body is `ID_INVALID`, in the path `NOT_FOUND`.
fn refused(r: VolumeRefused, volume_id: &str, instance_id: &str, instance_in_body: bool, quota_gb: i64) -> ApiError {
    match r {
        VolumeRefused::VolumeNotFound => volume_not_found(volume_id),
        VolumeRefused::InstanceNotFound if instance_in_body => ApiError::new(
            ErrorCode::IdInvalid,
            format!("The body field `instance_id` names no instance: `{instance_id}`."),
        ),
        VolumeRefused::InstanceNotFound => instance_not_found(instance_id),
        VolumeRefused::Volume { status, attached } => {
            let why = if status::is_busy(&status) {
                format!("is {status}, in the middle of an operation")
            } else if attached {
                format!("is {status} and attached to an instance")
            } else {
                format!("is {status}")
            };
            ApiError::new(ErrorCode::InUse, format!("The block storage `{volume_id}` {why}."))
        }
        VolumeRefused::OtherZone { volume, instance } => ApiError::new(
            ErrorCode::UnavailableCombination,
            format!(
                "The block storage `{volume_id}` is in the zone `{volume}` and the instance `{instance_id}` in `{instance}`; they must be in the same zone."
            ),
        ),
        VolumeRefused::Instance(s) => ApiError::new(
            ErrorCode::DeletedOrWorkingInstance,
            format!(
                "The instance `{instance_id}` is {s}; volumes are attached only to an instance that is active or off and not in the middle of an operation."
            ),
        ),
        VolumeRefused::TooMany => ApiError::quota(format!(
            "The instance `{instance_id}` has {MAX_PER_INSTANCE} volumes already, the most it may have."
        )),
        VolumeRefused::Quota { used } => ApiError::quota(format!(
            "This account may hold at most {quota_gb} GB of block storage and holds {used} GB; the field `size` would exceed that."
        )),
    }
}

fn new_operation<'a>(
    state: &AppState,
    caller: &'a Caller,
    operation_id: &'a str,
    kind: Kind,
    resource_id: &'a str,
) -> NewOperation<'a> {
    NewOperation {
        operation_id,
        account_id: &caller.account_id,
        kind: kind.name(),
        resource_id,
        params: openwinv_engine::NoParams::ENCODED,
        now_ms: state.clock.unix_ms(),
    }
}

async fn storage_quota(state: &AppState, caller: &Caller) -> ApiResult<i64> {
    let account = state
        .store
        .account_by_id(&caller.account_id)
        .await?
        .ok_or_else(|| ApiError::internal("the caller's account is gone"))?;
    Ok(crate::quota::of(&account).block_storage_gb)
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
        return Err(unknown_type(&catalog, "type", k));
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
    let r = state.store.volume(&caller.account_id, &id).await?.ok_or_else(|| volume_not_found(&id))?;
    Ok(Json(Envelope::rows(vec![to_wire(&state, r)])))
}

// ---------------------------------------------------------------------------------------------
// Writes

/// Creates a volume in the instance's zone, attached to it.
#[utoipa::path(post, path = "/v1/block-storages", tag = "block storage",
    request_body = crate::openapi::schemas::NewBlockStorage,
    responses((status = 202, body = Envelope<Vec<BlockStorageReceipt>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 403, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn create(State(state): State<AppState>, Extension(caller): Extension<Caller>, body: Body) -> Accepted {
    capabilities::require(&state, Feature::BlockStorage, "A block-storage volume")?;
    let instance_id = body.required_str("instance_id")?;
    let kind = body.required_str("type")?;
    let size = body.int("size")?.ok_or_else(|| ApiError::missing_body("size"))?;
    let name = name_field("name", body.str("name")?)?;
    let description = description_field("description", body.str("description")?)?;
    let instance = state.store.instance(&caller.account_id, &instance_id).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::IdInvalid, format!("The body field `instance_id` names no instance: `{instance_id}`."))
    })?;
    let catalog = state.catalog.get();
    // A closed zone is checked before the type and size (spec §6).
    if catalog.zones.iter().any(|z| z.id == instance.zone_id && z.status != "on") {
        return Err(ApiError::new(
            ErrorCode::DevCheckReturn,
            format!("The zone `{}` is closed for new block storage.", instance.zone_id),
        ));
    }
    let t = storage_type(&catalog, "type", &kind, &instance.zone_id)?;
    check_size("size", size, t)?;
    let quota_gb = storage_quota(&state, &caller).await?;
    let volume_id = ids::new_id("BS");
    let operation_id = ids::new_id("OP");
    let op = new_operation(&state, &caller, &operation_id, Kind::Create, &volume_id);
    let rec = VolumeRecord {
        block_storage_id: volume_id.clone(),
        account_id: caller.account_id.clone(),
        name,
        description,
        kind: t.kind.clone(),
        size,
        status: status::CREATING.into(),
        zone_id: instance.zone_id.clone(),
        instance_id: Some(instance_id.clone()),
        operation_id: Some(operation_id.clone()),
        error_reason: None,
        attached_at: Some(op.now_ms),
        created_at: state.clock.unix(),
    };
    state
        .store
        .create_attached_volume(&rec, &op, MAX_PER_INSTANCE, quota_gb, &*catalog)
        .await?
        .map_err(|r| refused(r, &volume_id, &instance_id, true, quota_gb))?;
    state.engine.wake();
    Ok(accepted(
        &operation_id,
        BlockStorageReceipt {
            block_storage_id: volume_id,
            instance_id: Some(instance_id),
            status: status::CREATING.into(),
        },
    ))
}

/// Deletes a detached volume.
#[utoipa::path(delete, path = "/v1/block-storages/{block_storage_id}", tag = "block storage",
    params(("block_storage_id" = String, Path)),
    responses((status = 202, body = Envelope<Vec<BlockStorageReceipt>>), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Accepted {
    let operation_id = ids::new_id("OP");
    let op = new_operation(&state, &caller, &operation_id, Kind::Delete, &id);
    state.store.begin_volume_delete(&caller.account_id, &id, &op).await?.map_err(|r| refused(r, &id, "", false, 0))?;
    state.engine.wake();
    Ok(accepted(
        &operation_id,
        BlockStorageReceipt { block_storage_id: id, instance_id: None, status: status::DELETING.into() },
    ))
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
) -> Accepted {
    capabilities::require(&state, Feature::BlockStorage, "Attaching a block-storage volume")?;
    let operation_id = ids::new_id("OP");
    let op = new_operation(&state, &caller, &operation_id, Kind::Attach, &id);
    state
        .store
        .begin_volume_attach(&caller.account_id, &id, &instance_id, &op, MAX_PER_INSTANCE)
        .await?
        .map_err(|r| refused(r, &id, &instance_id, false, 0))?;
    state.engine.wake();
    Ok(accepted(
        &operation_id,
        BlockStorageReceipt { block_storage_id: id, instance_id: Some(instance_id), status: status::ATTACHING.into() },
    ))
}

/// Detaches an attached volume; it is kept, `available`.
#[utoipa::path(post, path = "/v1/block-storages/{block_storage_id}/detach", tag = "block storage",
    params(("block_storage_id" = String, Path)),
    responses((status = 202, body = Envelope<Vec<BlockStorageReceipt>>), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn detach(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Accepted {
    let operation_id = ids::new_id("OP");
    let op = new_operation(&state, &caller, &operation_id, Kind::Detach, &id);
    let instance_id = match state.store.begin_volume_detach(&caller.account_id, &id, &op).await? {
        Ok(i) => i,
        // Detaching a volume that is not attached makes no sense: `CHECK_PARAM` (spec §8); one
        // in the middle of an operation is busy: `IN_USE`.
        Err(VolumeRefused::Volume { status, attached: _ }) if !status::is_busy(&status) => {
            return Err(ApiError::param(format!(
                "The block storage `{id}` is {status} and attached to no instance; there is nothing to detach."
            ))
            .with_status(StatusCode::CONFLICT));
        }
        Err(VolumeRefused::Instance(s)) => {
            return Err(ApiError::new(
                ErrorCode::DeletedOrWorkingInstance,
                format!("The instance the block storage `{id}` is attached to is {s}; wait until its operation ends."),
            ));
        }
        Err(r) => return Err(refused(r, &id, "", false, 0)),
    };
    state.engine.wake();
    Ok(accepted(
        &operation_id,
        BlockStorageReceipt { block_storage_id: id, instance_id: Some(instance_id), status: status::DETACHING.into() },
    ))
}

/// Volumes asked for with a new instance (`block_storage.N.size`, `.name`, `.type`), validated.
#[derive(Debug, Clone)]
pub struct VolumeRequest {
    pub name: String,
    pub kind: String,
    pub size: i64,
}

/// Reads and validates `block_storage` of `POST /v1/instances` for an instance in `zone_id`.
pub fn requested(body: &Body, catalog: &CatalogFile, zone_id: &str) -> ApiResult<Vec<VolumeRequest>> {
    let items = match body.0.get("block_storage") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Vec::new()),
        Some(_) => {
            return Err(ApiError::param(
                "The body field `block_storage` must be a list of {size, name, type} (form keys `block_storage.N.size`).",
            ));
        }
    };
    if items.len() as i64 > MAX_PER_INSTANCE {
        return Err(ApiError::quota(format!(
            "The body field `block_storage` asks for {} volumes; an instance may have at most {MAX_PER_INSTANCE}.",
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let field = |f: &str| format!("block_storage.{n}.{f}");
        let Value::Object(map) = item else {
            return Err(ApiError::param(format!(
                "The body field `block_storage.{n}` must be an object with `size`, `name` and `type`."
            )));
        };
        let one = Body(map.clone());
        let size = match one.int("size") {
            Ok(Some(s)) => s,
            Ok(None) => return Err(ApiError::missing_body(&field("size"))),
            Err(_) => {
                return Err(ApiError::param(format!("The body field `{}` must be an integer.", field("size"))));
            }
        };
        let kind = match one.str("type") {
            Ok(Some(t)) if !t.trim().is_empty() => t.trim().to_owned(),
            Ok(_) => DEFAULT_TYPE.to_owned(),
            Err(_) => {
                return Err(ApiError::param(format!("The body field `{}` must be a string.", field("type"))));
            }
        };
        let t = storage_type(catalog, &field("type"), &kind, zone_id)?;
        check_size(&field("size"), size, t)?;
        let name = match one.str("name") {
            Ok(v) => name_field(&field("name"), v)?,
            Err(_) => {
                return Err(ApiError::param(format!("The body field `{}` must be a string.", field("name"))));
            }
        };
        out.push(VolumeRequest { name, kind: t.kind.clone(), size });
    }
    Ok(out)
}
