//! The operator's face of hypervisor hosts [ext]: `/admin/v1/hosts` (add, list, show, enable,
//! disable, drain, declare-dead, evacuate, destroy a stray, remove) and `/admin/v1/placements` (place an instance, list, release, the
//! overcommit ratios). See `docs/hosts.md`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use openwinv_store::StoreError;
use openwinv_store::hosts::{self as store_hosts, HostRecord, NewHost, Placed, PlacementRecord, PlacementRequest};
use openwinv_store::instances::InstanceStatus;
use openwinv_store::{NewOperation, Refused, ids};
use openwinv_wire::hosts::{
    DeadHost, DestroyedStray, Evacuating, Evacuation, Host, IssuedHost, LeftBehind, Overcommit, Placement, Resources,
};
use openwinv_wire::{Envelope, ErrorCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::admin::check_token;
use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Path, Query};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/hosts", get(list_hosts).post(add_host))
        .route("/admin/v1/hosts/{name}", get(show_host).delete(remove_host))
        .route("/admin/v1/hosts/{name}/enable", post(enable_host))
        .route("/admin/v1/hosts/{name}/disable", post(disable_host))
        .route("/admin/v1/hosts/{name}/drain", post(drain_host))
        .route("/admin/v1/hosts/{name}/declare-dead", post(declare_dead))
        .route("/admin/v1/hosts/{name}/evacuate", post(evacuate))
        .route("/admin/v1/hosts/{name}/strays/{instance_id}/destroy", post(destroy_stray))
        .route("/admin/v1/placements", get(list_placements).post(place))
        .route("/admin/v1/placements/overcommit", get(show_overcommit).put(set_overcommit))
        .route("/admin/v1/placements/{instance_id}", get(show_placement).delete(release))
}

/// A new host token: `owh_` and 43 base62 characters (about 256 bits).
pub fn new_host_token() -> String {
    format!("owh_{}", openwinv_store::ids::random_base62(43))
}

/// What the store keeps of a token: its SHA-256, hex. The token is 256 random bits, so a fast
/// hash loses nothing against guessing (argon2's cost is for low-entropy passwords), and every
/// heartbeat can be checked with one indexed lookup instead of a deliberately slow hash.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Hosts as the operator sees them, each with its strays.
async fn hosts_wire(state: &AppState, hosts: Vec<HostRecord>) -> ApiResult<Vec<Host>> {
    let one = if hosts.len() == 1 { Some(hosts[0].host_id.as_str()) } else { None };
    let strays = state.store.strays(one).await?;
    Ok(hosts
        .into_iter()
        .map(|h| {
            let mine = strays.iter().filter(|s| s.host_id == h.host_id).map(|s| s.instance_id.clone()).collect();
            Host { strays: mine, ..host_wire(state, h) }
        })
        .collect())
}

pub(crate) fn host_wire(state: &AppState, h: HostRecord) -> Host {
    let now = state.clock.unix();
    let status = if h.registered_at.is_none() {
        "new"
    } else if h.alive(now) {
        "alive"
    } else {
        "offline"
    };
    Host {
        status: status.into(),
        capabilities: h.capability_list(),
        capacity: Resources { vcpus: h.vcpus, memory_mb: h.memory_mb, disk_gb: h.disk_gb },
        reserved: Resources { vcpus: h.reserved_vcpus, memory_mb: h.reserved_memory_mb, disk_gb: h.reserved_disk_gb },
        instances: h.instances,
        last_heartbeat_at: h.last_heartbeat_at.map(|t| state.timestamp(t)),
        heartbeat_age_s: h.last_heartbeat_at.map(|t| now - t),
        generation: h.generation,
        created_at: state.timestamp(h.created_at),
        host_id: h.host_id,
        name: h.name,
        zone: h.zone_id,
        state: h.state,
        underlay: h.underlay.or_else(|| h.address.clone()),
        address: h.address,
        driver: h.driver,
        agent_version: h.agent_version,
        strays: Vec::new(),
    }
}

fn placement_wire(state: &AppState, p: PlacementRecord, new: bool) -> Placement {
    Placement {
        reserved: Resources { vcpus: p.vcpus, memory_mb: p.memory_mb, disk_gb: p.disk_gb },
        created_at: state.timestamp(p.created_at),
        instance_id: p.instance_id,
        host_id: p.host_id,
        host: p.host_name,
        new,
    }
}

fn unknown_host(name: &str) -> ApiError {
    ApiError::not_found(format!("The host `{name}`"))
}

#[utoipa::path(get, path = "/admin/v1/hosts", tag = "hosts", security(("admin_token" = [])),
    responses((status = 200, body = Envelope<Vec<Host>>), (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list_hosts(State(state): State<AppState>) -> Reply<Host> {
    let rows = hosts_wire(&state, state.store.hosts().await?).await?;
    Ok(Json(Envelope::rows(rows)))
}

/// Adds a host to a zone and issues its token, shown only in this answer.
#[utoipa::path(post, path = "/admin/v1/hosts", tag = "hosts", security(("admin_token" = [])),
    request_body = openwinv_wire::hosts::NewHost,
    responses((status = 200, body = Envelope<Vec<IssuedHost>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn add_host(State(state): State<AppState>, body: Body) -> Reply<IssuedHost> {
    let name = body.required_str("name")?;
    check_token("name", &name, 1, 63)?;
    // A host is addressed by name in paths (`/admin/v1/hosts/{name}`), where `.` and `..` are
    // path steps that clients resolve away before sending.
    if name.bytes().all(|b| b == b'.') {
        return Err(ApiError::param(format!(
            "The field `name` must not be made of dots only (`{name}`): a host's name is a path segment."
        )));
    }
    let zone = body.required_str("zone")?;
    if !state.catalog.get().zones.iter().any(|z| z.id == zone) {
        return Err(ApiError::new(
            ErrorCode::IdInvalid,
            format!("The field `zone` names no zone of the catalog: `{zone}`."),
        ));
    }
    let token = new_host_token();
    let digest = token_digest(&token);
    let new = NewHost { name: &name, zone_id: &zone, token_sha256: &digest, created_at: state.clock.unix() };
    match state.store.create_host(&new).await {
        Ok(h) => {
            Ok(Json(Envelope::rows(vec![IssuedHost { host_id: h.host_id, name: h.name, zone: h.zone_id, token }])))
        }
        Err(StoreError::Conflict) => Err(ApiError::param(format!("The field `name`: a host `{name}` exists already."))),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/admin/v1/hosts/{name}", tag = "hosts", security(("admin_token" = [])), params(("name" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Host>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn show_host(State(state): State<AppState>, Path(name): Path<String>) -> Reply<Host> {
    let h = state.store.host_by_name(&name).await?.ok_or_else(|| unknown_host(&name))?;
    Ok(Json(Envelope::rows(hosts_wire(&state, vec![h]).await?)))
}

async fn set_state(state: AppState, name: String, to: &str) -> Reply<Host> {
    let h = state.store.set_host_state(&name, to).await?.ok_or_else(|| unknown_host(&name))?;
    Ok(Json(Envelope::rows(vec![host_wire(&state, h)])))
}

/// New instances may be placed on the host again.
#[utoipa::path(post, path = "/admin/v1/hosts/{name}/enable", tag = "hosts", security(("admin_token" = [])), params(("name" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Host>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn enable_host(State(state): State<AppState>, Path(name): Path<String>) -> Reply<Host> {
    set_state(state, name, store_hosts::ENABLED).await
}

/// No new instance is placed on the host; its instances stay.
#[utoipa::path(post, path = "/admin/v1/hosts/{name}/disable", tag = "hosts", security(("admin_token" = [])), params(("name" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Host>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn disable_host(State(state): State<AppState>, Path(name): Path<String>) -> Reply<Host> {
    set_state(state, name, store_hosts::DISABLED).await
}

/// No new instance is placed on the host, and its instances are to leave it (moving them is not
/// built yet: see docs/hosts.md).
#[utoipa::path(post, path = "/admin/v1/hosts/{name}/drain", tag = "hosts", security(("admin_token" = [])), params(("name" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Host>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn drain_host(State(state): State<AppState>, Path(name): Path<String>) -> Reply<Host> {
    set_state(state, name, store_hosts::DRAINING).await
}

/// The operator declares an offline host dead: its machines are lost. Its unanswered work fails
/// (the operations waiting on it unwind), its instances at rest become `error` with the reason,
/// its reservations are released, and no instance is placed on it again until `enable`. A host
/// whose agent still sends heartbeats is refused: stop the agent first.
#[utoipa::path(post, path = "/admin/v1/hosts/{name}/declare-dead", tag = "hosts", security(("admin_token" = [])), params(("name" = String, Path)),
    responses((status = 200, body = Envelope<Vec<DeadHost>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope),
        (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn declare_dead(State(state): State<AppState>, Path(name): Path<String>) -> Reply<DeadHost> {
    let h = state.store.host_by_name(&name).await?.ok_or_else(|| unknown_host(&name))?;
    let now = state.clock.unix();
    if h.alive(now) {
        return Err(ApiError::new(
            ErrorCode::CheckParam,
            format!(
                "The host `{name}` is alive (its last heartbeat was {} s ago); only an offline host (no heartbeat \
                 for {} s) can be declared dead. Stop its agent first.",
                h.last_heartbeat_at.map_or(0, |t| now - t),
                store_hosts::ALIVE_WITHIN_SECS
            ),
        )
        .with_status(StatusCode::CONFLICT));
    }
    let reason = format!("the host {name} was declared dead at {}", state.timestamp(now));
    let host_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let dead = state.store.declare_host_dead(&name, &reason, host_ms).await?.ok_or_else(|| unknown_host(&name))?;
    crate::remote_driver::work_answered();
    state.engine.wake();
    tracing::warn!(host = %name, instances = dead.instances.len(), volumes = dead.volumes.len(), failed_work = dead.failed_work, "host declared dead");
    Ok(Json(Envelope::rows(vec![DeadHost {
        host: host_wire(&state, dead.host),
        instances: dead.instances,
        volumes: dead.volumes,
        failed_work: i64::try_from(dead.failed_work).unwrap_or(i64::MAX),
        reason,
    }])))
}

/// Moves the host's stopped instances to other hosts of its zone, one `instance.evacuate`
/// operation each (docs/hosts.md, "Evacuate"); running instances, and those in an operation or
/// in `error`, are left with the reason. Only in hosts mode. The host's state is not changed:
/// `drain` (or `disable`) it first to keep new instances away.
#[utoipa::path(post, path = "/admin/v1/hosts/{name}/evacuate", tag = "hosts", security(("admin_token" = [])), params(("name" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Evacuation>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope),
        (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn evacuate(State(state): State<AppState>, Path(name): Path<String>) -> Reply<Evacuation> {
    let h = state.store.host_by_name(&name).await?.ok_or_else(|| unknown_host(&name))?;
    if state.config.placement != crate::config::Placement::Hosts {
        return Err(ApiError::new(
            ErrorCode::CheckParam,
            "Evacuation moves machines between hosts' agents; this control plane runs every machine itself \
             (start it with `serve --placement hosts`)."
                .to_owned(),
        )
        .with_status(StatusCode::CONFLICT));
    }
    if h.state == store_hosts::DEAD {
        return Err(ApiError::new(
            ErrorCode::CheckParam,
            format!("The host `{name}` was declared dead: its machines are lost and nothing is placed on it."),
        )
        .with_status(StatusCode::CONFLICT));
    }
    let params = crate::sagas::evacuate::Params { source_host_id: h.host_id.clone(), source_host: name.clone() };
    let params = serde_json::to_string(&params).expect("params serialize");
    let kind = <crate::sagas::evacuate::Evacuate as openwinv_engine::Operation>::KIND;
    let mut moving = Vec::new();
    let mut left = Vec::new();
    for inst in state.store.host_instances(&h.host_id).await? {
        let leave =
            |reason: String| LeftBehind { instance_id: inst.instance_id.clone(), status: inst.status.clone(), reason };
        let status: Option<InstanceStatus> = inst.status.parse().ok();
        if status != Some(InstanceStatus::Off) {
            left.push(leave(match status {
                Some(InstanceStatus::Active) => {
                    "running: machines on local disks are moved only when stopped; shut it down first".to_owned()
                }
                Some(InstanceStatus::Error) => "in error: start it (or delete it) first".to_owned(),
                _ => "in an operation; evacuate again when it is done".to_owned(),
            }));
            continue;
        }
        // The attached volumes move with the machine (docs/hosts.md "Evacuate"): the source must
        // keep their storage, which it does unless a volume predates volumes having hosts.
        let mut elsewhere = Vec::new();
        for v in state.store.volumes_of_instance(&inst.instance_id).await? {
            if state.store.volume_host(&v.block_storage_id).await?.is_none_or(|k| k.host_id != h.host_id) {
                elsewhere.push(v.block_storage_id.to_string());
            }
        }
        if !elsewhere.is_empty() {
            left.push(leave(format!(
                "block storage attached ({}) is not kept on this host: detach it first; a detached volume moves to the host of the instance it is next attached to",
                elsewhere.join(", ")
            )));
            continue;
        }
        let operation_id = ids::new_id("OP");
        let op = NewOperation {
            operation_id: &operation_id,
            account_id: &inst.account_id,
            kind,
            resource_id: &inst.instance_id,
            params: &params,
            now_ms: state.clock.unix_ms(),
        };
        match state
            .store
            .begin_instance_operation(&inst.account_id, &inst.instance_id, &[InstanceStatus::Off], &op)
            .await?
        {
            Ok(()) => moving.push(Evacuating { instance_id: inst.instance_id.clone(), operation_id }),
            Err(Refused::Busy) => left.push(leave("a volume of it is being attached or detached".to_owned())),
            Err(Refused::NotFound) => {}
            Err(Refused::From(s)) => {
                left.push(LeftBehind { status: s.to_string(), ..leave(format!("it became {s} meanwhile")) });
            }
        }
    }
    if !moving.is_empty() {
        state.engine.wake();
    }
    tracing::info!(host = %name, moving = moving.len(), left = left.len(), "evacuation started");
    Ok(Json(Envelope::rows(vec![Evacuation { host: name, moving, left }])))
}

/// Destroys a machine the host has that no placement on it names (a stray of its last full
/// report), on its agent. Strays are never destroyed otherwise.
#[utoipa::path(post, path = "/admin/v1/hosts/{name}/strays/{instance_id}/destroy", tag = "hosts", security(("admin_token" = [])),
    params(("name" = String, Path), ("instance_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<DestroyedStray>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope),
        (status = 409, body = openwinv_wire::ErrorEnvelope), (status = 503, body = openwinv_wire::ErrorEnvelope)))]
pub async fn destroy_stray(
    State(state): State<AppState>,
    Path((name, instance_id)): Path<(String, String)>,
) -> Reply<DestroyedStray> {
    let h = state.store.host_by_name(&name).await?.ok_or_else(|| unknown_host(&name))?;
    let strays = state.store.strays(Some(&h.host_id)).await?;
    if !strays.iter().any(|s| s.instance_id == instance_id) {
        return Err(ApiError::not_found(format!("A stray machine `{instance_id}` on the host `{name}`")));
    }
    if state.store.placement(&instance_id).await?.is_some_and(|p| p.host_id == h.host_id) {
        return Err(ApiError::new(
            ErrorCode::CheckParam,
            format!("The machine `{instance_id}` is placed on `{name}` now; it is not a stray."),
        )
        .with_status(StatusCode::CONFLICT));
    }
    let remote = crate::remote_driver::RemoteDriver::new(
        state.store.clone(),
        state.clock.clone(),
        state.driver.clone(),
        state.images.disks_dir(),
    );
    match remote.call_on(&h.host_id, &h.name, &instance_id, "destroy", serde_json::json!({})).await {
        Ok(_) => {}
        Err(e) => {
            return Err(ApiError::new(
                ErrorCode::DevCheckReturn,
                format!("The host `{name}` did not destroy `{instance_id}`: {e}. Try again."),
            )
            .with_status(StatusCode::SERVICE_UNAVAILABLE));
        }
    }
    state.store.remove_stray(&h.host_id, &instance_id).await?;
    tracing::warn!(host = %name, instance = %instance_id, "stray machine destroyed by the operator");
    Ok(Json(Envelope::rows(vec![DestroyedStray { host: name, instance_id }])))
}

/// A full report of a host's machines (after each registration of its agent), reconciled with
/// the placements: machines no placement on the host names are its strays (kept for the
/// operator, logged, never destroyed here); placed instances at rest that the host lacks become
/// `error` with the reason, unless the host reported them after the full report was taken
/// (`as_of`: a machine made meanwhile).
pub(crate) async fn reconcile_full_report(
    state: &AppState,
    host_id: &str,
    host_name: &str,
    reports: &[(String, String, i64)],
    as_of: i64,
) -> ApiResult<()> {
    let now = state.clock.unix();
    let present: Vec<(String, String)> =
        reports.iter().filter(|(_, st, _)| st != "absent").map(|(i, st, _)| (i.clone(), st.clone())).collect();
    let strays = state.store.replace_strays(host_id, &present, now).await?;
    if !strays.is_empty() {
        tracing::warn!(host = %host_name, strays = ?strays,
            "the host has machines no placement names (strays); `openwinv admin hosts destroy-stray` removes one");
    }
    if state.config.placement != crate::config::Placement::Hosts {
        return Ok(());
    }
    let reason = format!("the machine is missing from its host {host_name}'s full report");
    for inst in state.store.host_instances(host_id).await? {
        if present.iter().any(|(i, _)| *i == inst.instance_id) {
            continue;
        }
        let from = match inst.status.parse() {
            Ok(s @ (InstanceStatus::Active | InstanceStatus::Off)) => s,
            _ => continue,
        };
        if inst.reported_generation.is_some_and(|g| g > as_of) {
            continue;
        }
        if state.store.reconcile_instance(&inst.instance_id, from, InstanceStatus::Error, Some(&reason), now).await? {
            tracing::warn!(instance = %inst.instance_id, host = %host_name, "placed machine missing from its host");
        }
    }
    Ok(())
}

/// Removes a host that holds no instance; its token stops working.
#[utoipa::path(delete, path = "/admin/v1/hosts/{name}", tag = "hosts", security(("admin_token" = [])), params(("name" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Host>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope),
        (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn remove_host(State(state): State<AppState>, Path(name): Path<String>) -> Reply<Host> {
    match state.store.remove_host(&name).await? {
        store_hosts::Removal::Removed(h) => Ok(Json(Envelope::rows(vec![host_wire(&state, *h)]))),
        store_hosts::Removal::NotFound => Err(unknown_host(&name)),
        store_hosts::Removal::Busy(n) => Err(ApiError::new(
            ErrorCode::InUse,
            format!("The host `{name}` holds {n} instance(s); delete or move them first (drain keeps new ones away)."),
        )),
    }
}

#[utoipa::path(get, path = "/admin/v1/placements", tag = "hosts", security(("admin_token" = [])),
    params(("host" = Option<String>, Query, description = "Only the placements on this host")),
    responses((status = 200, body = Envelope<Vec<Placement>>), (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list_placements(State(state): State<AppState>, q: Query) -> Reply<Placement> {
    let rows = state.store.placements(q.str("host")).await?;
    Ok(Json(Envelope::rows(rows.into_iter().map(|p| placement_wire(&state, p, false)).collect())))
}

#[utoipa::path(get, path = "/admin/v1/placements/{instance_id}", tag = "hosts", security(("admin_token" = [])),
    params(("instance_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Placement>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn show_placement(State(state): State<AppState>, Path(instance_id): Path<String>) -> Reply<Placement> {
    let p = state
        .store
        .placement(&instance_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("A placement of `{instance_id}`")))?;
    Ok(Json(Envelope::rows(vec![placement_wire(&state, p, false)])))
}

/// Places an existing instance on a host of its zone by its flavor's size (see docs/hosts.md);
/// an instance placed before gets its reservation back.
#[utoipa::path(post, path = "/admin/v1/placements", tag = "hosts", security(("admin_token" = [])),
    request_body = openwinv_wire::hosts::NewPlacement,
    responses((status = 200, body = Envelope<Vec<Placement>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 503, body = openwinv_wire::ErrorEnvelope)))]
pub async fn place(State(state): State<AppState>, body: Body) -> Reply<Placement> {
    let instance_id = body.required_str("instance_id")?;
    let mut capabilities = body.str_list("capabilities")?.unwrap_or_default();
    for c in &capabilities {
        check_token("capabilities", c, 1, 32)?;
    }
    let (zone, flavor_id) = state.store.instance_zone_flavor(&instance_id).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::IdInvalid, format!("The field `instance_id` names no instance: `{instance_id}`."))
    })?;
    let catalog = state.catalog.get();
    let flavor = catalog.flavors.iter().find(|f| f.id == flavor_id).ok_or_else(|| {
        ApiError::internal(format!("instance {instance_id} has flavor {flavor_id}, which the catalog lacks"))
    })?;
    if flavor.gpu.unwrap_or(0) > 0 && !capabilities.iter().any(|c| c == "gpu") {
        capabilities.push("gpu".into());
    }
    let req = PlacementRequest {
        instance_id: &instance_id,
        zone_id: &zone,
        vcpus: i64::from(flavor.vcpu),
        memory_mb: i64::from(flavor.memory) * 1024,
        disk_gb: i64::from(flavor.disk),
        capabilities: &capabilities,
    };
    match state.store.place(&req, state.clock.unix()).await? {
        Placed::New(p) => Ok(Json(Envelope::rows(vec![placement_wire(&state, p, true)]))),
        Placed::Existing(p) => Ok(Json(Envelope::rows(vec![placement_wire(&state, p, false)]))),
        Placed::NoHost { hosts, usable } => Err(ApiError::new(
            ErrorCode::DevCheckReturn,
            format!(
                "No host of zone {zone} can take {instance_id} ({} vCPU, {} MB, {} GB{}): the zone has {hosts} host(s), \
                 {usable} of them enabled, alive and capable, none with room.",
                req.vcpus,
                req.memory_mb,
                req.disk_gb,
                if capabilities.is_empty() { String::new() } else { format!(", needs {}", capabilities.join(",")) },
            ),
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)),
    }
}

/// Releases an instance's reservation (deleting the instance does it too).
#[utoipa::path(delete, path = "/admin/v1/placements/{instance_id}", tag = "hosts", security(("admin_token" = [])),
    params(("instance_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Placement>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn release(State(state): State<AppState>, Path(instance_id): Path<String>) -> Reply<Placement> {
    let p = state
        .store
        .release(&instance_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("A placement of `{instance_id}`")))?;
    Ok(Json(Envelope::rows(vec![placement_wire(&state, p, false)])))
}

fn overcommit_wire(o: store_hosts::Overcommit) -> Overcommit {
    let f = |milli: i64| milli as f64 / 1000.0;
    Overcommit { vcpu: f(o.vcpu_milli), memory: f(o.memory_milli), disk: f(o.disk_milli) }
}

#[utoipa::path(get, path = "/admin/v1/placements/overcommit", tag = "hosts", security(("admin_token" = [])),
    responses((status = 200, body = Envelope<Vec<Overcommit>>), (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn show_overcommit(State(state): State<AppState>) -> Reply<Overcommit> {
    Ok(Json(Envelope::rows(vec![overcommit_wire(state.store.overcommit().await?)])))
}

/// A ratio field in thousandths: a number (or numeric string) from 0.1 to 64.
fn ratio(body: &Body, field: &str) -> ApiResult<Option<i64>> {
    let bad = || ApiError::param(format!("The field `{field}` must be a number from 0.1 to 64."));
    let v = match body.0.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
        Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if !(0.1..=64.0).contains(&v) {
        return Err(bad());
    }
    Ok(Some((v * 1000.0).round() as i64))
}

/// Sets the overcommit ratios placement applies to every host's capacity; a field left out keeps
/// its value.
#[utoipa::path(put, path = "/admin/v1/placements/overcommit", tag = "hosts", security(("admin_token" = [])),
    request_body = openwinv_wire::hosts::OvercommitUpdate,
    responses((status = 200, body = Envelope<Vec<Overcommit>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn set_overcommit(State(state): State<AppState>, body: Body) -> Reply<Overcommit> {
    let mut o = state.store.overcommit().await?;
    if let Some(v) = ratio(&body, "vcpu")? {
        o.vcpu_milli = v;
    }
    if let Some(v) = ratio(&body, "memory")? {
        o.memory_milli = v;
    }
    if let Some(v) = ratio(&body, "disk")? {
        o.disk_milli = v;
    }
    state.store.set_overcommit(&o).await?;
    Ok(Json(Envelope::rows(vec![overcommit_wire(o)])))
}
