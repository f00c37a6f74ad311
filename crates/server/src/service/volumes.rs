//! Block-storage writes (spec §8): create (attached to an instance), delete, attach, detach, and
//! the volumes asked for with a new instance.
//!
//! Each write validates completely, then moves the volume to its transitional status and writes
//! the operation in one transaction (which also checks the instance, the zone, the per-instance
//! limit and the account's storage quota).

use axum::http::StatusCode;
use openwinv_store::ids::{InstanceId, OperationId, VolumeId};
use openwinv_store::volumes::VolumeStatus;
use openwinv_store::{NewOperation, VolumeRecord, VolumeRefused, ids};
use openwinv_wire::ErrorCode;
use openwinv_wire::volumes::BlockStorageReceipt;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{Accepted, FromBody, instance_not_found};
use crate::AppState;
use crate::auth::Caller;
use crate::catalog::{BlockStorageTypeDef, CatalogFile};
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Encoding, enum_error, text_field};
use crate::sagas::volume::Kind;
use crate::service::capabilities::{self, Feature};

/// Volumes one instance may have (`connection_limit.block_storage`, spec §7).
pub const MAX_PER_INSTANCE: i64 = 8;
pub const NAME_MAX: usize = 64;
pub const DESCRIPTION_MAX: usize = 255;
/// The type of a volume asked for with an instance when none is given [iwinv].
pub const DEFAULT_TYPE: &str = "ssd";

pub fn volume_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("The block storage `{id}`"))
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
pub fn unknown_type(catalog: &CatalogFile, field: &str, kind: &str) -> ApiError {
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
            let why = if status.is_busy() {
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
// Writes

/// Body of `POST /v1/block-storages`: made in the instance's zone and attached to it.
// The fields the spec requires are read as options so that the service refuses a missing one
// in the order it always did.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = NewBlockStorage)]
pub struct CreateVolume {
    /// `INSTANCE-…` of this account.
    #[schema(value_type = String, required = true)]
    pub instance_id: Option<String>,
    /// A block storage type (`GET /v1/block-storages/types`).
    #[serde(rename = "type")]
    #[schema(value_type = String, required = true, example = "ssd")]
    pub kind: Option<String>,
    /// GB, within the type's bounds.
    #[schema(value_type = i64, required = true, minimum = 1, example = 20)]
    pub size: Option<i64>,
    pub name: Option<String>,
    pub description: Option<String>,
}

impl FromBody for CreateVolume {
    fn from_body(body: &Body, _: Encoding) -> ApiResult<Self> {
        Ok(CreateVolume {
            instance_id: body.str("instance_id")?,
            kind: body.str("type")?,
            size: body.int("size")?,
            name: body.str("name")?,
            description: body.str("description")?,
        })
    }
}

/// Creates a volume in the instance's zone, attached to it.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    input: CreateVolume,
) -> ApiResult<Accepted<BlockStorageReceipt>> {
    capabilities::require(state, Feature::BlockStorage, "A block-storage volume")?;
    let instance_id = input.instance_id.ok_or_else(|| ApiError::missing_body("instance_id"))?;
    let kind = input.kind.ok_or_else(|| ApiError::missing_body("type"))?;
    let size = input.size.ok_or_else(|| ApiError::missing_body("size"))?;
    let name = name_field("name", input.name)?;
    let description = description_field("description", input.description)?;
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
    let quota_gb = storage_quota(state, caller).await?;
    let volume_id = VolumeId::generate();
    let operation_id = OperationId::generate();
    let op = new_operation(state, caller, &operation_id, Kind::Create, &volume_id);
    let rec = VolumeRecord {
        block_storage_id: volume_id.clone(),
        account_id: caller.account_id.clone(),
        name,
        description,
        kind: t.kind.clone(),
        size,
        status: VolumeStatus::Creating,
        zone_id: instance.zone_id.clone(),
        instance_id: Some(InstanceId::from(instance_id.as_str())),
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
    Ok(Accepted::one(
        operation_id,
        BlockStorageReceipt {
            block_storage_id: volume_id.into(),
            instance_id: Some(instance_id),
            status: VolumeStatus::Creating.as_str().into(),
        },
    ))
}

/// Deletes a detached volume.
pub async fn delete(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Accepted<BlockStorageReceipt>> {
    let operation_id = OperationId::generate();
    let op = new_operation(state, caller, &operation_id, Kind::Delete, id);
    state.store.begin_volume_delete(&caller.account_id, id, &op).await?.map_err(|r| refused(r, id, "", false, 0))?;
    state.engine.wake();
    Ok(Accepted::one(
        operation_id,
        BlockStorageReceipt {
            block_storage_id: id.to_owned(),
            instance_id: None,
            status: VolumeStatus::Deleting.as_str().into(),
        },
    ))
}

/// Attaches a detached volume to an instance of its zone.
pub async fn attach(
    state: &AppState,
    caller: &Caller,
    id: &str,
    instance_id: &str,
) -> ApiResult<Accepted<BlockStorageReceipt>> {
    capabilities::require(state, Feature::BlockStorage, "Attaching a block-storage volume")?;
    let operation_id = OperationId::generate();
    let op = new_operation(state, caller, &operation_id, Kind::Attach, id);
    state
        .store
        .begin_volume_attach(&caller.account_id, id, instance_id, &op, MAX_PER_INSTANCE)
        .await?
        .map_err(|r| refused(r, id, instance_id, false, 0))?;
    state.engine.wake();
    Ok(Accepted::one(
        operation_id,
        BlockStorageReceipt {
            block_storage_id: id.to_owned(),
            instance_id: Some(instance_id.to_owned()),
            status: VolumeStatus::Attaching.as_str().into(),
        },
    ))
}

/// Detaches an attached volume; it is kept, `available`.
pub async fn detach(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Accepted<BlockStorageReceipt>> {
    let operation_id = OperationId::generate();
    let op = new_operation(state, caller, &operation_id, Kind::Detach, id);
    let instance_id = match state.store.begin_volume_detach(&caller.account_id, id, &op).await? {
        Ok(i) => i,
        // Detaching a volume that is not attached makes no sense: `CHECK_PARAM` (spec §8); one
        // in the middle of an operation is busy: `IN_USE`.
        Err(VolumeRefused::Volume { status, attached: _ }) if !status.is_busy() => {
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
        Err(r) => return Err(refused(r, id, "", false, 0)),
    };
    state.engine.wake();
    Ok(Accepted::one(
        operation_id,
        BlockStorageReceipt {
            block_storage_id: id.to_owned(),
            instance_id: Some(instance_id),
            status: VolumeStatus::Detaching.as_str().into(),
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// Volumes made with an instance

/// One volume of `block_storage` in `POST /v1/instances`.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = NewInstanceVolume)]
pub struct NewVolume {
    /// GB, within the type's bounds (`GET /v1/block-storages/types`).
    #[schema(minimum = 1, example = 20)]
    pub size: i64,
    /// 1–64 characters; default: the instance's name and the volume's position.
    pub name: Option<String>,
    /// A block storage type, default `ssd` (deprecated [iwinv]).
    #[serde(rename = "type")]
    #[schema(example = "ssd")]
    pub kind: Option<String>,
}

/// Reads the shape of `block_storage` of `POST /v1/instances` (`block_storage.N.size`, `.name`,
/// `.type`); [`requested`] checks it against the catalog.
pub fn asked_with_instance(body: &Body) -> ApiResult<Option<Vec<NewVolume>>> {
    let items = match body.0.get("block_storage") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
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
            Ok(Some(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
            Ok(_) => None,
            Err(_) => {
                return Err(ApiError::param(format!("The body field `{}` must be a string.", field("type"))));
            }
        };
        let name = match one.str("name") {
            Ok(v) => v,
            Err(_) => {
                return Err(ApiError::param(format!("The body field `{}` must be a string.", field("name"))));
            }
        };
        out.push(NewVolume { size, name, kind });
    }
    Ok(Some(out))
}

/// A volume to make with a new instance, validated.
#[derive(Debug, Clone)]
pub struct VolumeRequest {
    pub name: String,
    pub kind: String,
    pub size: i64,
}

/// Checks the volumes asked for with an instance in `zone_id` against the catalog.
pub fn requested(asked: Vec<NewVolume>, catalog: &CatalogFile, zone_id: &str) -> ApiResult<Vec<VolumeRequest>> {
    let mut out = Vec::with_capacity(asked.len());
    for (n, v) in asked.into_iter().enumerate() {
        let field = |f: &str| format!("block_storage.{n}.{f}");
        let kind = v.kind.unwrap_or_else(|| DEFAULT_TYPE.to_owned());
        let t = storage_type(catalog, &field("type"), &kind, zone_id)?;
        check_size(&field("size"), v.size, t)?;
        let name = name_field(&field("name"), v.name)?;
        out.push(VolumeRequest { name, kind: t.kind.clone(), size: v.size });
    }
    Ok(out)
}
