//! Instances (spec §7): list, detail, create, edit, delete, actions and the remote console.
//!
//! Mutations validate completely, then write the instance change and its operation in one
//! transaction and answer 202 with `X-Operation-Id`; the engine does the rest.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use ipnet::Ipv4Net;
use openwinv_engine::{NoParams, Operation};
use openwinv_store::instances::status;
use openwinv_store::{
    Created, InstanceFilter, InstanceRecord, InstanceWithRelated, NewInstances, NewOperation, PageQuery, Refused,
    Related, VolumeRecord, ids,
};
use openwinv_wire::catalog::instance_fields;
use openwinv_wire::instances::*;
use openwinv_wire::{Envelope, ErrorCode};
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::json;

use super::{Reply, volumes};
use crate::AppState;
use crate::api::capabilities::{self, Feature};
use crate::auth::Caller;
use crate::catalog::{CatalogFile, FLAVOR_TYPES, FlavorDef, ImageDef};
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Encoding, Path, Query, enum_error, text_field};
use crate::sagas::addresses;
use crate::sagas::instance::{Kind, create, reboot, rebuild, resize, shutdown, start};

/// Most instances one create request makes [iwinv].
pub const MAX_COUNT: i64 = 10;
pub const NAME_MAX: usize = 64;
pub const DESCRIPTION_MAX: usize = 255;
/// Volumes an instance can have attached.
pub const MAX_VOLUMES: u32 = 8;
/// How long a remote-console link is valid, in seconds.
pub const CONSOLE_TTL: i64 = 300;
const PASSWORD_LEN: usize = 20;
const STATUSES: &[&str] = &[status::PENDING, status::ACTIVE, status::OFF, status::WORK, status::ERROR];

type Accepted<T> = ApiResult<(StatusCode, HeaderMap, Json<Envelope<Vec<T>>>)>;

fn accepted<T>(operation_ids: &[String], rows: Vec<T>) -> (StatusCode, HeaderMap, Json<Envelope<Vec<T>>>) {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&operation_ids.join(",")) {
        h.insert(openwinv_wire::headers::OPERATION_ID, v);
    }
    (StatusCode::ACCEPTED, h, Json(Envelope::rows(rows)))
}

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

fn instance_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("The instance `{id}`"))
}

fn id_invalid(field: &str, id: &str) -> ApiError {
    ApiError::new(ErrorCode::IdInvalid, format!("The {field} `{id}` does not exist."))
}

// ---------------------------------------------------------------------------------------------
// Views

fn fields_mask(q: &Query) -> ApiResult<u64> {
    match q.str("fields") {
        None => Ok(instance_fields::DEFAULT),
        Some(v) => v.trim().parse::<u64>().ok().filter(|m| *m > 0).ok_or_else(|| {
            ApiError::param(format!("The query parameter `fields` must be a positive bit mask, not `{v}`."))
        }),
    }
}

/// The related rows the fields in `mask` show (read with the instances, in the same statement).
fn related(mask: u64) -> Related {
    Related { volumes: mask & 8192 != 0, firewalls: mask & 131072 != 0 }
}

/// Builds the rows an API client sees, with only the fields in `mask`.
async fn views(state: &AppState, rows: &[InstanceWithRelated], mask: u64, host: &str) -> ApiResult<Vec<Instance>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(view(state, r, mask, host).await?);
    }
    if state.config.placement == crate::config::Placement::Hosts {
        // [ext] Where each instance runs answers or not (docs/hosts.md); one query per page.
        let ids: Vec<String> = rows.iter().map(|r| r.record.instance_id.clone()).collect();
        let hosts = state.store.hosts_of_instances(&ids).await?;
        let now = state.clock.unix();
        for (v, r) in out.iter_mut().zip(rows) {
            let h = hosts.iter().find(|h| h.instance_id == r.record.instance_id);
            v.host_status = Some(
                match h {
                    None => "none",
                    Some(h) if h.alive(now) => "up",
                    Some(_) => "unreachable",
                }
                .to_owned(),
            );
        }
    }
    Ok(out)
}

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

/// One instance of the caller's account with what its view shows, or 404.
async fn instance_view_row(state: &AppState, caller: &Caller, id: &str, mask: u64) -> ApiResult<InstanceWithRelated> {
    state
        .store
        .instance_with_related(&caller.account_id, id, related(mask))
        .await?
        .ok_or_else(|| instance_not_found(id))
}

/// Builds the row an API client sees, with only the fields in `mask`.
async fn view(state: &AppState, w: &InstanceWithRelated, mask: u64, host: &str) -> ApiResult<Instance> {
    let r = &w.record;
    let catalog = state.catalog.get();
    let has = |bit: u64| mask & bit != 0;
    let mut v = Instance::default();
    if has(1) {
        v.instance_id = Some(r.instance_id.clone());
    }
    if has(2) {
        v.name = Some(r.name.clone());
    }
    if has(4) {
        v.description = Some(r.description.clone());
    }
    if has(8) {
        v.status = Some(r.status.clone());
    }
    if has(16) {
        v.provide = Some("Y".into());
    }
    if has(32) {
        v.start_date = Some(state.timestamp(r.created_at));
    }
    if has(64) {
        v.stop_date = Some(r.stop_date.map(|t| state.timestamp(t)));
    }
    if has(128) {
        let password = state.sealer.open(&r.password_sealed).map_err(ApiError::internal)?;
        v.default_account = Some(DefaultAccount { username: r.username.clone(), password });
    }
    if has(256) {
        let net = addresses::private_net();
        v.ip = Some(vec![InstanceIp {
            public: PublicIp { address: r.public_ip.clone(), attached: r.public_ip.is_some() },
            private: PrivateIp {
                address: r.private_ip.clone(),
                netmask: net.netmask().to_string(),
                network: net.network().to_string(),
                broadcast: net.broadcast().to_string(),
                gateway: addresses::gateway(&net).to_string(),
            },
            kind: "ipv4".into(),
        }]);
    }
    if has(256)
        && let Some(port) = state.consoles.info(&r.instance_id).await.ssh_port
    {
        v.ssh = Some(SshForward { host: "127.0.0.1".into(), port });
    }
    if has(512) {
        let name =
            catalog.zones.iter().find(|z| z.id == r.zone_id).map_or_else(|| r.zone_id.clone(), |z| z.name.clone());
        v.zone = Some(InstanceZone { zone_id: r.zone_id.clone(), name });
    }
    if has(1024)
        && let Some(f) = catalog.flavors.iter().find(|f| f.id == r.flavor_id)
    {
        v.flavor = Some(InstanceFlavor {
            flavor_id: f.id.clone(),
            name: f.name.clone(),
            kind: f.kind.clone(),
            vcpu: f.vcpu,
            memory: f.memory,
            disk: f.disk,
            network: f.network,
            gpu: f.gpu,
        });
    }
    if has(2048)
        && let Some(i) = catalog.images.iter().find(|i| i.id == r.image_id)
    {
        let w = i.to_wire();
        v.image = Some(InstanceImage {
            image_id: w.image_id,
            visibility: w.visibility,
            os: w.os,
            image_type: w.image_type,
            zone: w.zone,
        });
    }
    if has(4096) {
        v.monitoring = Some(Monitoring {
            port: None,
            resource: vec!["cpu".into(), "memory".into(), "disk".into(), "network".into()],
        });
    }
    if has(8192) {
        let attached = w.volumes()?;
        v.block_storage = Some(
            attached
                .into_iter()
                .map(|b| AttachedVolume {
                    volume_id: b.block_storage_id.clone(),
                    block_storage_id: b.block_storage_id,
                    name: b.name,
                    size: u32::try_from(b.size).unwrap_or(u32::MAX),
                    kind: b.kind,
                    status: b.status,
                })
                .collect(),
        );
    }
    if has(16384) {
        let link = if r.status == status::ACTIVE { Some(console_link(state, r, host).await?.0) } else { None };
        v.vnc = Some(Vnc { link, kind: "serial".into() });
    }
    if has(32768) {
        v.connection_limit = Some(ConnectionLimit { block_storage: MAX_VOLUMES, ip: 1 });
    }
    if has(65536) {
        v.traffic = Some(Traffic { default: 2048, period: "month".into(), limit: 2048, reset_allow_count: 0 });
    }
    if has(131072) {
        v.firewall = Some(w.firewalls()?);
    }
    Ok(v)
}

fn host_of(headers: &HeaderMap) -> String {
    headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_owned()
}

/// A new one-time console link, and its expiry (Unix seconds).
async fn console_link(state: &AppState, r: &InstanceRecord, host: &str) -> ApiResult<(String, i64)> {
    let token = ids::random_base62(32);
    let expires = state.clock.unix() + CONSOLE_TTL;
    state.store.insert_console_token(&token, &r.account_id, &r.instance_id, expires).await?;
    Ok((format!("http://{host}/console/{token}"), expires))
}

// ---------------------------------------------------------------------------------------------
// Reads

/// Flavor ids matching the flavor-based filters, or None when none is given.
fn flavor_filter(q: &Query, c: &CatalogFile) -> ApiResult<Option<Vec<String>>> {
    let types = q.csv("type");
    if let Some(types) = &types {
        let mut known: Vec<&str> = FLAVOR_TYPES.to_vec();
        known.extend(c.flavors.iter().map(|f| f.kind.as_str()));
        if let Some(bad) = types.iter().find(|t| !known.contains(&t.as_str())) {
            return Err(enum_error("type", bad, FLAVOR_TYPES));
        }
    }
    let core_type = q.str("core_type").map(str::to_owned);
    let bounds = [
        ("vcpu", q.uint("min_vcpu")?, q.uint("max_vcpu")?),
        ("memory", q.uint("min_memory")?, q.uint("max_memory")?),
        ("disk", q.uint("min_disk")?, q.uint("max_disk")?),
        ("gpu", q.uint("min_gpu")?, q.uint("max_gpu")?),
    ];
    if types.is_none() && core_type.is_none() && bounds.iter().all(|(_, lo, hi)| lo.is_none() && hi.is_none()) {
        return Ok(None);
    }
    let value = |f: &FlavorDef, what: &str| -> u64 {
        u64::from(match what {
            "vcpu" => f.vcpu,
            "memory" => f.memory,
            "disk" => f.disk,
            _ => f.gpu.unwrap_or(0),
        })
    };
    Ok(Some(
        c.flavors
            .iter()
            .filter(|f| types.as_ref().is_none_or(|t| t.contains(&f.kind)))
            .filter(|f| core_type.as_ref().is_none_or(|t| t == &f.kind))
            .filter(|f| {
                bounds.iter().all(|(what, lo, hi)| {
                    let v = value(f, what);
                    lo.is_none_or(|lo| v >= lo) && hi.is_none_or(|hi| v <= hi)
                })
            })
            .map(|f| f.id.clone())
            .collect(),
    ))
}

/// `ip` filter: addresses or IPv4 CIDRs → inclusive integer ranges.
fn ip_ranges(q: &Query) -> ApiResult<Option<Vec<(i64, i64)>>> {
    let Some(items) = q.csv("ip") else {
        return Ok(None);
    };
    items
        .iter()
        .map(|item| {
            let net: Ipv4Net =
                item.parse().or_else(|_| item.parse::<std::net::Ipv4Addr>().map(Ipv4Net::from)).map_err(|_| {
                    ApiError::param(format!(
                        "The query parameter `ip` has `{item}`, which is not an IPv4 address or CIDR."
                    ))
                })?;
            Ok((addresses::as_number(net.network()), addresses::as_number(net.broadcast())))
        })
        .collect::<ApiResult<Vec<_>>>()
        .map(Some)
}

/// Instances of the account, filtered and paginated.
#[utoipa::path(get, path = "/v1/instances", tag = "instances",
    params(
        ("status" = Option<String>, Query, description = "csv of pending, active, off, work, error"),
        ("ip" = Option<String>, Query, description = "csv of addresses or CIDRs, public or private"),
        ("name" = Option<String>, Query, description = "substring"),
        ("zone_id" = Option<String>, Query), ("image_id" = Option<String>, Query),
        ("type" = Option<String>, Query, description = "csv of flavor types"),
        ("core_type" = Option<String>, Query, description = "flavor type"),
        ("min_vcpu" = Option<u32>, Query), ("max_vcpu" = Option<u32>, Query),
        ("min_memory" = Option<u32>, Query), ("max_memory" = Option<u32>, Query),
        ("min_disk" = Option<u32>, Query), ("max_disk" = Option<u32>, Query),
        ("min_gpu" = Option<u32>, Query), ("max_gpu" = Option<u32>, Query),
        ("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query),
        ("fields" = Option<u64>, Query, description = "bit mask, see /fields/v1/instances; default 245631"),
    ),
    responses((status = 200, body = Envelope<Vec<Instance>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    q: Query,
) -> Reply<Instance> {
    let page = q.page(openwinv_wire::envelope::Page::DEFAULT_SIZE)?;
    let mask = fields_mask(&q)?;
    let catalog = state.catalog.get();
    let statuses = q.csv("status");
    if let Some(bad) = statuses.iter().flatten().find(|s| !STATUSES.contains(&s.as_str())) {
        return Err(enum_error("status", bad, STATUSES));
    }
    let filter = InstanceFilter {
        statuses,
        name: q.str("name").map(str::to_owned),
        zone_id: q.str("zone_id").map(str::to_owned),
        image_id: q.str("image_id").map(str::to_owned),
        flavor_ids: flavor_filter(&q, &catalog)?,
        ip_ranges: ip_ranges(&q)?,
    };
    let (rows, total) = state
        .store
        .instance_page(&caller.account_id, &filter, PageQuery::new(page.page_size, page.offset()), related(mask))
        .await?;
    let out = views(&state, &rows, mask, &host_of(&headers)).await?;
    Ok(Json(Envelope::page(out, page, total as u64)))
}

/// One instance; another account's or an unknown id is 404.
#[utoipa::path(get, path = "/v1/instances/{instance_id}", tag = "instances",
    params(("instance_id" = String, Path), ("fields" = Option<u64>, Query)),
    responses((status = 200, body = Envelope<Vec<Instance>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn detail(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Query,
) -> Reply<Instance> {
    let mask = fields_mask(&q)?;
    let r = instance_view_row(&state, &caller, &id, mask).await?;
    Ok(Json(Envelope::rows(views(&state, std::slice::from_ref(&r), mask, &host_of(&headers)).await?)))
}

// ---------------------------------------------------------------------------------------------
// Create

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

// ---------------------------------------------------------------------------------------------
// Edit

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
    host_reachable(state, caller, id).await?;
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
    host_reachable(&state, &caller, &id).await?;
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
