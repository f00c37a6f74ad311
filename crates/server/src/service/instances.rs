//! Instance writes (spec §7): create, edit, delete, the power and image actions, console links.
//!
//! Each write validates completely, then writes the instance change and its operation in one
//! transaction; the engine does the rest.

use openwinv_engine::{NoParams, Operation};
use openwinv_store::hosts::Resized;
use openwinv_store::ids::{InstanceId, OperationId, VolumeId};
use openwinv_store::instances::{InstanceKey, InstanceStatus, Power};
use openwinv_store::{Created, InstanceRecord, NewInstances, NewOperation, Refused, VolumeRecord, ids};
use openwinv_wire::ErrorCode;
use openwinv_wire::instances::{ActionReceipt, CreateReceipt, DefaultAccount};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::volumes::{self, NewVolume};
use super::{Accepted, FromBody, instance_not_found};
use crate::AppState;
use crate::auth::Caller;
use crate::catalog::ImageDef;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Encoding, enum_error, text_field};
use crate::sagas::instance::{Kind, create, reboot, rebuild, resize, shutdown, start};
use crate::service::capabilities::{self, Feature};

/// Most instances one create request makes [iwinv].
pub const MAX_COUNT: i64 = 10;
pub const NAME_MAX: usize = 64;
pub const DESCRIPTION_MAX: usize = 255;
/// Volumes an instance can have attached.
pub const MAX_VOLUMES: u32 = volumes::MAX_PER_INSTANCE as u32;
/// How long a remote-console link is valid, in seconds.
pub const CONSOLE_TTL: i64 = 300;
const PASSWORD_LEN: usize = 20;

/// A random password of 20 characters with upper and lower case letters, digits and symbols.
pub fn new_password() -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"!@#$%^*-_=+";
    let mut rng = rand::thread_rng();
    let all: Vec<u8> = [UPPER, LOWER, DIGIT, SYMBOL].concat();
    let mut chars: Vec<u8> = [UPPER, LOWER, DIGIT, SYMBOL].iter().map(|set| set[rng.gen_range(0..set.len())]).collect();
    while chars.len() < PASSWORD_LEN {
        chars.push(all[rng.gen_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    String::from_utf8(chars).expect("ASCII")
}

fn is_windows(image: &ImageDef) -> bool {
    image.os_type == "windows"
}

fn id_invalid(field: &str, id: &str) -> ApiError {
    ApiError::new(ErrorCode::IdInvalid, format!("The {field} `{id}` does not exist."))
}

fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "y" | "yes" => Ok(true),
        "false" | "0" | "n" | "no" => Ok(false),
        _ => Err(ApiError::param(format!("The body field `{name}` must be true or false, not `{v}`."))),
    }
}

// ---------------------------------------------------------------------------------------------
// Create

/// Body of `POST /v1/instances`: 1–10 instances, all created or none.
// The ids are required; they are read as options so that the service checks them in the order
// spec §6 sets (a closed zone answers before a missing image).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = NewInstance)]
pub struct CreateInstance {
    #[schema(value_type = String, required = true, example = "KR1-Z01")]
    pub zone_id: Option<String>,
    #[schema(value_type = String, required = true, example = "IMG-ubuntu-2404")]
    pub image_id: Option<String>,
    #[schema(value_type = String, required = true, example = "ss1.c1m1")]
    pub flavor_id: Option<String>,
    /// 1–64 characters; `-1`…`-N` is appended when `count` > 1. Default: a generated name.
    #[schema(example = "web-1")]
    pub name: Option<String>,
    /// 0–255 characters; empty means none.
    pub description: Option<String>,
    /// 1–10, default 1.
    #[schema(minimum = 1, maximum = 10, example = 1)]
    pub count: Option<i64>,
    /// Comma-separated SSH key ids (`SSHKEY-…`) of this account, or a JSON array of them.
    #[schema(value_type = Option<String>)]
    pub ssh_key_id: Option<Vec<String>>,
    /// A user script id (`SCRIPT-…`) of this account, run at first boot.
    pub user_script_id: Option<String>,
    /// Volumes made and attached with the instance (form keys `block_storage.N.size` …).
    #[schema(max_items = 8)]
    pub block_storage: Option<Vec<NewVolume>>,
    /// Deprecated [iwinv]: a firewall id of this account to attach.
    pub security_group: Option<String>,
    /// Deprecated [iwinv], default true: whether the instance gets a public address.
    pub attach_public_ip: Option<bool>,
}

impl FromBody for CreateInstance {
    fn from_body(body: &Body, encoding: Encoding) -> ApiResult<Self> {
        let attach_public_ip = match body.0.get("attach_public_ip") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => Some(parse_bool("attach_public_ip", &body.str("attach_public_ip")?.unwrap_or_default())?),
        };
        Ok(CreateInstance {
            zone_id: body.str("zone_id")?,
            image_id: body.str("image_id")?,
            flavor_id: body.str("flavor_id")?,
            name: body.encoded_str("name", encoding)?,
            description: body.encoded_str("description", encoding)?,
            count: body.int("count")?,
            ssh_key_id: body.str_list("ssh_key_id")?,
            user_script_id: body.str("user_script_id")?.filter(|s| !s.is_empty()),
            block_storage: volumes::asked_with_instance(body)?,
            security_group: body.str("security_group")?.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()),
            attach_public_ip,
        })
    }
}

/// Creates 1–10 instances, all or none; the receipts carry each one's first password.
pub async fn create(state: &AppState, caller: &Caller, input: CreateInstance) -> ApiResult<Accepted<CreateReceipt>> {
    let catalog = state.catalog.get();
    let zone_id = input.zone_id.ok_or_else(|| ApiError::missing_body("zone_id"))?;
    let zone = catalog.zones.iter().find(|z| z.id == zone_id).ok_or_else(|| id_invalid("zone_id", &zone_id))?;
    // A closed zone is checked first, before any image, flavor or combination check (spec §6).
    if zone.status != "on" {
        return Err(ApiError::new(
            ErrorCode::DevCheckReturn,
            format!("The zone `{zone_id}` is closed for new instances."),
        ));
    }
    let image_id = input.image_id.ok_or_else(|| ApiError::missing_body("image_id"))?;
    let flavor_id = input.flavor_id.ok_or_else(|| ApiError::missing_body("flavor_id"))?;
    let image = catalog.images.iter().find(|i| i.id == image_id).ok_or_else(|| id_invalid("image_id", &image_id))?;
    let flavor =
        catalog.flavors.iter().find(|f| f.id == flavor_id).ok_or_else(|| id_invalid("flavor_id", &flavor_id))?;
    if !image.zones.contains(&zone.id) {
        return Err(ApiError::new(
            ErrorCode::UnavailableCombination,
            format!("The image `{image_id}` is not offered in the zone `{zone_id}`."),
        ));
    }
    if !flavor.zones.contains(&zone.id) || !flavor.provide || flavor.status != "on" {
        return Err(ApiError::new(
            ErrorCode::UnavailableFlavor,
            format!("The flavor `{flavor_id}` cannot be ordered in the zone `{zone_id}`."),
        ));
    }
    if !flavor.supports(image) {
        return Err(ApiError::new(
            ErrorCode::UnavailableCombination,
            format!("The flavor `{flavor_id}` does not support the image `{image_id}`."),
        ));
    }
    let name = match input.name {
        Some(n) => text_field("name", &n, 1, NAME_MAX)?,
        None => format!("instance-{}", ids::random_base62(6).to_lowercase()),
    };
    let description = match input.description {
        Some(d) => Some(text_field("description", &d, 0, DESCRIPTION_MAX)?).filter(|d| !d.is_empty()),
        None => None,
    };
    let count = input.count.unwrap_or(1);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(ApiError::param(format!("The body field `count` must be 1 to {MAX_COUNT}, not {count}.")));
    }
    if count > 1 && name.chars().count() + 3 > NAME_MAX {
        return Err(ApiError::new(
            ErrorCode::CheckLength,
            format!("The field `name` must leave room for the -N suffix: at most {} characters.", NAME_MAX - 3),
        ));
    }
    let key_ids = input.ssh_key_id.unwrap_or_default();
    let mut keys = Vec::new();
    for id in &key_ids {
        let k = state.store.ssh_key(&caller.account_id, id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnavailableSshKey,
                format!("The SSH key `{id}` is not one of this account's keys."),
            )
        })?;
        keys.push(InstanceKey {
            ssh_key_id: k.ssh_key_id,
            name: k.name,
            fingerprint: k.fingerprint,
            public_key: k.public_key,
        });
    }
    if !keys.is_empty() && is_windows(image) {
        return Err(ApiError::new(ErrorCode::UnavailableSshKey, "SSH keys cannot be used with a Windows image."));
    }
    let user_script_id = input.user_script_id;
    if let Some(id) = &user_script_id
        && state.store.script(&caller.account_id, id).await?.is_none()
    {
        return Err(id_invalid("user_script_id", id));
    }
    let volume_requests = volumes::requested(input.block_storage.unwrap_or_default(), &catalog, &zone_id)?;
    if !volume_requests.is_empty() {
        capabilities::require(state, Feature::BlockStorage, "The body field `block_storage`")?;
    }
    // Deprecated [iwinv]: a firewall to attach; the create operation attaches it.
    let security_group = input.security_group;
    if let Some(fw) = &security_group {
        capabilities::require(state, Feature::Firewalls, "The body field `security_group`")?;
        if !state.store.firewall_exists(&caller.account_id, fw).await? {
            return Err(id_invalid("security_group", fw));
        }
    }
    // Without public addresses on this host the default is none; asking for one is refused.
    let attach_public_ip = input.attach_public_ip.unwrap_or_else(|| capabilities::offers(state, Feature::PublicIps));
    if attach_public_ip {
        capabilities::require(state, Feature::PublicIps, "The body field `attach_public_ip`")?;
    }
    let create_params = create::Create::encode(&create::Params {
        security_group: security_group.clone(),
        // Lets the volume steps skip looking for volumes that cannot exist.
        no_volumes: volume_requests.is_empty(),
        // What the address step needs, so that it does not read the instance back.
        zone_id: Some(zone_id.clone()),
        attach_public_ip: Some(attach_public_ip),
    });

    let now = state.clock.unix();
    let now_ms = state.clock.unix_ms();
    let username = if is_windows(image) { "Administrator" } else { "root" };
    let mut rows = Vec::new();
    let mut passwords = Vec::new();
    let mut op_ids = Vec::new();
    for n in 1..=count {
        let password = new_password();
        let instance_id = InstanceId::generate();
        let operation_id = OperationId::generate();
        rows.push(InstanceRecord {
            instance_id,
            account_id: caller.account_id.clone(),
            name: if count > 1 { format!("{name}-{n}") } else { name.clone() },
            description: description.clone(),
            status: InstanceStatus::Pending,
            power: Power::Off,
            zone_id: zone_id.clone(),
            flavor_id: flavor_id.clone(),
            image_id: image_id.clone(),
            username: username.into(),
            password_sealed: state.sealer.seal(&password),
            user_script_id: user_script_id.clone(),
            ssh_keys: keys.clone(),
            attach_public_ip,
            public_ip: None,
            private_ip: None,
            public_ip_num: None,
            private_ip_num: None,
            operation_id: Some(operation_id.clone()),
            error_reason: None,
            generation: 0,
            created_at: now,
            stop_date: None,
            vcpu: i64::from(flavor.vcpu),
        });
        passwords.push(password);
        op_ids.push(operation_id);
    }
    // Volumes asked for are made with each instance, by its create operation.
    let mut volume_rows = Vec::new();
    let mut volume_ids: Vec<Vec<String>> = Vec::new();
    for (r, op) in rows.iter().zip(&op_ids) {
        let mut mine = Vec::new();
        for v in &volume_requests {
            let id = VolumeId::generate();
            mine.push(id.to_string());
            volume_rows.push(VolumeRecord {
                block_storage_id: id,
                account_id: caller.account_id.clone(),
                name: v.name.clone(),
                description: None,
                kind: v.kind.clone(),
                size: v.size,
                status: openwinv_store::volumes::VolumeStatus::Creating,
                zone_id: zone_id.clone(),
                instance_id: Some(r.instance_id.clone()),
                operation_id: Some(op.clone()),
                error_reason: None,
                attached_at: Some(now_ms),
                created_at: now,
            });
        }
        volume_ids.push(mine);
    }
    // The quota is read with the account's usage, inside the create's transaction.
    let created = state
        .store
        .create_instances(NewInstances {
            rows: rows.clone(),
            volumes: volume_rows,
            op_kind: Kind::Create.name(),
            op_params: create_params,
            now_ms,
            prices: catalog.clone(),
            fits: crate::quota::fits,
        })
        .await?;
    if let Created::OverQuota { usage, quota } = created {
        let quota = crate::quota::with_overrides(quota);
        if usage.storage_gb > quota.block_storage_gb {
            return Err(ApiError::quota(format!(
                "This account may hold at most {} GB of block storage; the volumes in `block_storage` would exceed that.",
                quota.block_storage_gb
            )));
        }
        return Err(ApiError::quota(format!(
            "This account may have at most {} instances and {} vCPUs; creating {count} more would exceed that.",
            quota.instances, quota.vcpu
        )));
    }
    state.engine.wake();
    let receipts = rows
        .into_iter()
        .zip(passwords)
        .zip(volume_ids)
        .map(|((r, password), block_storage)| CreateReceipt {
            instance_id: r.instance_id.into(),
            name: r.name,
            status: "building".into(),
            zone_id: r.zone_id,
            flavor_id: r.flavor_id,
            image_id: r.image_id,
            ssh_key: key_ids.clone(),
            user_script_id: r.user_script_id,
            block_storage,
            default_account: DefaultAccount { username: r.username, password },
        })
        .collect();
    Ok(Accepted { operation_ids: op_ids, rows: receipts })
}

// ---------------------------------------------------------------------------------------------
// Edit

/// Body of `PUT /v1/instances/{instance_id}`: at least one field. An empty `description` clears it.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = InstanceChanges)]
pub struct EditInstance {
    pub name: Option<String>,
    pub description: Option<String>,
}

impl FromBody for EditInstance {
    fn from_body(body: &Body, encoding: Encoding) -> ApiResult<Self> {
        Ok(EditInstance {
            name: body.encoded_str("name", encoding)?,
            description: body.encoded_str("description", encoding)?,
        })
    }
}

/// Renames or re-describes an instance; allowed in any state but deletion.
pub async fn edit(state: &AppState, caller: &Caller, id: &str, input: EditInstance) -> ApiResult<()> {
    let name = input.name.map(|n| text_field("name", &n, 1, NAME_MAX)).transpose()?;
    let description = input.description.map(|d| text_field("description", &d, 0, DESCRIPTION_MAX)).transpose()?;
    if name.is_none() && description.is_none() {
        return Err(ApiError::new(ErrorCode::RequiredPostParamMissing, "Give `name`, `description`, or both."));
    }
    let current = state.store.instance(&caller.account_id, id).await?.ok_or_else(|| instance_not_found(id))?;
    if is_deleting(state, &current).await? {
        return Err(busy(id));
    }
    let description = description.map(|d| if d.is_empty() { None } else { Some(d) });
    let desc_ref = description.as_ref().map(|d| d.as_deref());
    if !state.store.edit_instance(&caller.account_id, id, name.as_deref(), desc_ref).await? {
        return Err(instance_not_found(id));
    }
    Ok(())
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

/// In hosts mode, an action on an instance whose host is unreachable is refused (409): it
/// could not run until the host returns. Its machine keeps its last status.
async fn host_reachable(state: &AppState, caller: &Caller, id: &str) -> ApiResult<()> {
    if state.config.placement != crate::config::Placement::Hosts {
        return Ok(());
    }
    let now = state.clock.unix();
    match state.store.instance_host(&caller.account_id, id).await? {
        Some(h) if !h.alive(now) => Err(ApiError::new(
            ErrorCode::DeletedOrWorkingInstance,
            format!(
                "The host `{}` of the instance `{id}` is unreachable (no heartbeat for {} s); try again when it is back.",
                h.host_name,
                h.last_heartbeat_at.map_or(0, |t| now - t)
            ),
        )),
        _ => Ok(()),
    }
}

/// Starts an operation of `kind` on an instance.
async fn begin(state: &AppState, caller: &Caller, id: &str, kind: Kind, params: String) -> ApiResult<OperationId> {
    host_reachable(state, caller, id).await?;
    let operation_id = OperationId::generate();
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
        Refused::From(InstanceStatus::Pending | InstanceStatus::Work) => busy(id),
        Refused::From(s) => ApiError::new(
            ErrorCode::CheckParam,
            format!(
                "The instance `{id}` is {s}; {} is allowed only from {}.",
                kind.name().trim_start_matches("instance."),
                kind.allowed_from().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or ")
            ),
        )
        .with_status(axum::http::StatusCode::CONFLICT),
        Refused::Busy => ApiError::new(
            ErrorCode::DeletedOrWorkingInstance,
            format!(
                "A volume of the instance `{id}` is being created, attached or detached; try again when it is done."
            ),
        ),
    }
}

fn work(id: &str, operation_id: OperationId) -> Accepted<ActionReceipt> {
    Accepted::one(
        operation_id,
        ActionReceipt { instance_id: id.to_owned(), status: "work".into(), block_storage: None },
    )
}

/// Deletes an instance; its volumes are detached and kept (the receipt names them).
pub async fn delete(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Accepted<ActionReceipt>> {
    host_reachable(state, caller, id).await?;
    let operation_id = OperationId::generate();
    let op = NewOperation {
        operation_id: &operation_id,
        account_id: &caller.account_id,
        kind: Kind::Delete.name(),
        resource_id: id,
        params: NoParams::ENCODED,
        now_ms: state.clock.unix_ms(),
    };
    let kept = state
        .store
        .begin_instance_delete(&caller.account_id, id, Kind::Delete.allowed_from(), &op)
        .await?
        .map_err(|r| refusal(id, Kind::Delete, r))?;
    state.engine.wake();
    Ok(Accepted::one(
        operation_id,
        ActionReceipt { instance_id: id.to_owned(), status: "deleting".into(), block_storage: Some(kept) },
    ))
}

pub async fn start(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Accepted<ActionReceipt>> {
    let op = begin(state, caller, id, Kind::Start, start::Start::encode(&NoParams {})).await?;
    Ok(work(id, op))
}

/// Hard power-off, as iwinv documents.
pub async fn shutdown(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Accepted<ActionReceipt>> {
    let op = begin(state, caller, id, Kind::Shutdown, shutdown::Shutdown::encode(&NoParams {})).await?;
    Ok(work(id, op))
}

/// `SOFT` (default) or `HARD`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub enum RebootType {
    #[default]
    #[serde(rename = "SOFT")]
    Soft,
    #[serde(rename = "HARD")]
    Hard,
}

/// Body of `POST /v1/instances/{instance_id}/reboot` (optional).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = Reboot)]
pub struct RebootInstance {
    #[serde(rename = "type")]
    pub kind: Option<RebootType>,
}

impl FromBody for RebootInstance {
    fn from_body(body: &Body, _: Encoding) -> ApiResult<Self> {
        let kind = match body.str("type")?.as_deref() {
            None => None,
            Some("SOFT") => Some(RebootType::Soft),
            Some("HARD") => Some(RebootType::Hard),
            Some(other) => return Err(enum_error("type", other, &["SOFT", "HARD"])),
        };
        Ok(RebootInstance { kind })
    }
}

pub async fn reboot(
    state: &AppState,
    caller: &Caller,
    id: &str,
    input: RebootInstance,
) -> ApiResult<Accepted<ActionReceipt>> {
    let hard = input.kind == Some(RebootType::Hard);
    let op = begin(state, caller, id, Kind::Reboot, reboot::Reboot::encode(&reboot::Params { hard })).await?;
    Ok(work(id, op))
}

/// Body of `POST /v1/instances/{instance_id}/rebuild` (optional): default the current image.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = Rebuild)]
pub struct RebuildInstance {
    #[schema(example = "IMG-debian-12")]
    pub image_id: Option<String>,
}

impl FromBody for RebuildInstance {
    fn from_body(body: &Body, _: Encoding) -> ApiResult<Self> {
        Ok(RebuildInstance { image_id: body.str("image_id")?.filter(|s| !s.is_empty()) })
    }
}

/// Reinstalls from `image_id` (default: the current image) with a new password; keeps addresses.
pub async fn rebuild(
    state: &AppState,
    caller: &Caller,
    id: &str,
    input: RebuildInstance,
) -> ApiResult<Accepted<ActionReceipt>> {
    let current = state.store.instance(&caller.account_id, id).await?.ok_or_else(|| instance_not_found(id))?;
    let catalog = state.catalog.get();
    let image_id = input.image_id.unwrap_or_else(|| current.image_id.clone());
    let image = catalog.images.iter().find(|i| i.id == image_id).ok_or_else(|| id_invalid("image_id", &image_id))?;
    let flavor = catalog.flavors.iter().find(|f| f.id == current.flavor_id);
    if !image.zones.contains(&current.zone_id) || flavor.is_some_and(|f| !f.supports(image)) {
        return Err(ApiError::new(
            ErrorCode::UnavailableCombination,
            format!("The image `{image_id}` cannot run on this instance's flavor and zone."),
        ));
    }
    if is_windows(image) && !current.ssh_keys.is_empty() {
        return Err(ApiError::new(
            ErrorCode::UnavailableSshKey,
            "This instance has SSH keys, which a Windows image cannot use.",
        ));
    }
    let sealed = state.sealer.seal(&new_password());
    let params = rebuild::Rebuild::encode(&rebuild::Params { image_id, password_sealed: sealed });
    let op = begin(state, caller, id, Kind::Rebuild, params).await?;
    Ok(work(id, op))
}

/// Body of `POST /v1/instances/{instance_id}/resize`.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = Resize)]
pub struct ResizeInstance {
    #[schema(value_type = String, required = true, example = "ss1.c2m4")]
    pub flavor_id: Option<String>,
}

impl FromBody for ResizeInstance {
    fn from_body(body: &Body, _: Encoding) -> ApiResult<Self> {
        Ok(ResizeInstance { flavor_id: body.str("flavor_id")? })
    }
}

/// Changes the flavor; the disk may grow but never shrink.
pub async fn resize(
    state: &AppState,
    caller: &Caller,
    id: &str,
    input: ResizeInstance,
) -> ApiResult<Accepted<ActionReceipt>> {
    let flavor_id = input.flavor_id.ok_or_else(|| ApiError::missing_body("flavor_id"))?;
    let current = state.store.instance(&caller.account_id, id).await?.ok_or_else(|| instance_not_found(id))?;
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
    if state.config.placement == crate::config::Placement::Hosts {
        // The instance's own host first (docs/hosts.md): a flavor it has no room for is refused
        // here; the operation reserves for good (and fails, should the room go meanwhile).
        let size = |f: &crate::catalog::FlavorDef| (i64::from(f.vcpu), i64::from(f.memory) * 1024, i64::from(f.disk));
        let (v, m, d) = size(flavor);
        let (ov, om, od) = old.map_or((0, 0, 0), size);
        if let Resized::NoRoom(p) = state.store.resize_room(id, v.max(ov), m.max(om), d.max(od)).await? {
            return Err(unavailable(&format!(
                "does not fit beside the other instances on this instance's host `{}` ({v} vCPU, {m} MB, {d} GB \
                 asked); choose a smaller flavor",
                p.host_name
            )));
        }
    }
    let op = begin(state, caller, id, Kind::Resize, resize::Resize::encode(&resize::Params { flavor_id })).await?;
    Ok(work(id, op))
}

// ---------------------------------------------------------------------------------------------
// Console links

/// A new one-time console link for an instance, and its expiry (Unix seconds).
pub async fn console_link(state: &AppState, r: &InstanceRecord, host: &str) -> ApiResult<(String, i64)> {
    let token = ids::random_base62(32);
    let expires = state.clock.unix() + CONSOLE_TTL;
    state.store.insert_console_token(&token, &r.account_id, &r.instance_id, expires).await?;
    Ok((format!("http://{host}/console/{token}"), expires))
}

/// A one-time, 5-minute link to an active instance's console, and its expiry.
pub async fn remote_console(state: &AppState, caller: &Caller, id: &str, host: &str) -> ApiResult<(String, i64)> {
    let r = state.store.instance(&caller.account_id, id).await?.ok_or_else(|| instance_not_found(id))?;
    capabilities::require(state, Feature::Consoles, "A remote console")?;
    if r.status != InstanceStatus::Active {
        return Err(ApiError::new(
            ErrorCode::CheckConsole,
            format!("The instance `{id}` is {}; the console needs it active.", r.status),
        ));
    }
    console_link(state, &r, host).await
}
