//! Creating instances.

use axum::Extension;
use axum::extract::State;
use openwinv_engine::Operation;
use openwinv_store::instances::status;
use openwinv_store::{Created, InstanceRecord, NewInstances, VolumeRecord, ids};
use openwinv_wire::instances::*;
use openwinv_wire::{Envelope, ErrorCode};
use serde_json::json;

use crate::AppState;
use crate::api::capabilities::{self, Feature};
use crate::api::volumes;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Encoding, text_field};
use crate::sagas::instance::{Kind, create};

use super::*;

fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "y" | "yes" => Ok(true),
        "false" | "0" | "n" | "no" => Ok(false),
        _ => Err(ApiError::param(format!("The body field `{name}` must be true or false, not `{v}`."))),
    }
}

/// Creates 1–10 instances, all or none.
#[utoipa::path(post, path = "/v1/instances", tag = "instances",
    request_body = crate::openapi::schemas::NewInstance,
    responses((status = 202, body = Envelope<Vec<CreateReceipt>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 403, body = openwinv_wire::ErrorEnvelope),
        (status = 500, description = "The zone is closed for new instances (DEV_CHECK_RETURN) [iwinv]", body = openwinv_wire::ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    encoding: Encoding,
    body: Body,
) -> Accepted<CreateReceipt> {
    let catalog = state.catalog.get();
    let zone_id = body.required_str("zone_id")?;
    let zone = catalog.zones.iter().find(|z| z.id == zone_id).ok_or_else(|| id_invalid("zone_id", &zone_id))?;
    // A closed zone is checked first, before any image, flavor or combination check (spec §6).
    if zone.status != "on" {
        return Err(ApiError::new(
            ErrorCode::DevCheckReturn,
            format!("The zone `{zone_id}` is closed for new instances."),
        ));
    }
    let image_id = body.required_str("image_id")?;
    let flavor_id = body.required_str("flavor_id")?;
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
    let name = match body.encoded_str("name", encoding)? {
        Some(n) => text_field("name", &n, 1, NAME_MAX)?,
        None => format!("instance-{}", ids::random_base62(6).to_lowercase()),
    };
    let description = match body.encoded_str("description", encoding)? {
        Some(d) => Some(text_field("description", &d, 0, DESCRIPTION_MAX)?).filter(|d| !d.is_empty()),
        None => None,
    };
    let count = body.int("count")?.unwrap_or(1);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(ApiError::param(format!("The body field `count` must be 1 to {MAX_COUNT}, not {count}.")));
    }
    if count > 1 && name.chars().count() + 3 > NAME_MAX {
        return Err(ApiError::new(
            ErrorCode::CheckLength,
            format!("The field `name` must leave room for the -N suffix: at most {} characters.", NAME_MAX - 3),
        ));
    }
    let key_ids = body.str_list("ssh_key_id")?.unwrap_or_default();
    let mut keys = Vec::new();
    for id in &key_ids {
        let k = state.store.ssh_key(&caller.account_id, id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnavailableSshKey,
                format!("The SSH key `{id}` is not one of this account's keys."),
            )
        })?;
        keys.push(json!({"ssh_key_id": k.ssh_key_id, "name": k.name, "fingerprint": k.fingerprint, "public_key": k.public_key}));
    }
    if !keys.is_empty() && is_windows(image) {
        return Err(ApiError::new(ErrorCode::UnavailableSshKey, "SSH keys cannot be used with a Windows image."));
    }
    let user_script_id = body.str("user_script_id")?.filter(|s| !s.is_empty());
    if let Some(id) = &user_script_id
        && state.store.script(&caller.account_id, id).await?.is_none()
    {
        return Err(id_invalid("user_script_id", id));
    }
    let volume_requests = volumes::requested(&body, &catalog, &zone_id)?;
    if !volume_requests.is_empty() {
        capabilities::require(&state, Feature::BlockStorage, "The body field `block_storage`")?;
    }
    // Deprecated [iwinv]: a firewall to attach; the create operation attaches it.
    let security_group = body.str("security_group")?.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    if let Some(fw) = &security_group {
        capabilities::require(&state, Feature::Firewalls, "The body field `security_group`")?;
        if !state.store.firewall_exists(&caller.account_id, fw).await? {
            return Err(id_invalid("security_group", fw));
        }
    }
    // Without public addresses on this host the default is none; asking for one is refused.
    let attach_public_ip = match body.0.get("attach_public_ip") {
        None | Some(serde_json::Value::Null) => capabilities::offers(&state, Feature::PublicIps),
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => parse_bool("attach_public_ip", &body.str("attach_public_ip")?.unwrap_or_default())?,
    };
    if attach_public_ip {
        capabilities::require(&state, Feature::PublicIps, "The body field `attach_public_ip`")?;
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
    let ssh_keys = serde_json::to_string(&keys).expect("json");
    let mut rows = Vec::new();
    let mut passwords = Vec::new();
    let mut op_ids = Vec::new();
    for n in 1..=count {
        let password = new_password();
        let instance_id = ids::new_id("INSTANCE");
        let operation_id = ids::new_id("OP");
        rows.push(InstanceRecord {
            instance_id,
            account_id: caller.account_id.clone(),
            name: if count > 1 { format!("{name}-{n}") } else { name.clone() },
            description: description.clone(),
            status: status::PENDING.into(),
            power: "off".into(),
            zone_id: zone_id.clone(),
            flavor_id: flavor_id.clone(),
            image_id: image_id.clone(),
            username: username.into(),
            password_sealed: state.sealer.seal(&password),
            user_script_id: user_script_id.clone(),
            ssh_keys: ssh_keys.clone(),
            attach_public_ip: i64::from(attach_public_ip),
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
            let id = ids::new_id("BS");
            mine.push(id.clone());
            volume_rows.push(VolumeRecord {
                block_storage_id: id,
                account_id: caller.account_id.clone(),
                name: v.name.clone(),
                description: None,
                kind: v.kind.clone(),
                size: v.size,
                status: openwinv_store::volumes::status::CREATING.into(),
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
            instance_id: r.instance_id,
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
    Ok(accepted(&op_ids, receipts))
}
