//! Instance views: the list, the detail, the fields a mask selects, console links.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use ipnet::Ipv4Net;
use openwinv_store::instances::InstanceStatus;
use openwinv_store::{InstanceFilter, InstanceWithRelated, PageQuery, Related};
use openwinv_wire::Envelope;
use openwinv_wire::catalog::instance_fields;
use openwinv_wire::instances::*;

use crate::AppState;
use crate::api::Reply;
use crate::auth::Caller;
use crate::catalog::{CatalogFile, FLAVOR_TYPES, FlavorDef};
use crate::error::{ApiError, ApiResult};
use crate::input::{Path, Query, enum_error};
use crate::sagas::addresses;

use crate::service::instance_not_found;
use crate::service::instances::{self as svc, MAX_VOLUMES};

/// A `status` filter value.
fn parse_status(s: &str) -> ApiResult<InstanceStatus> {
    s.parse().map_err(|_| {
        let names: Vec<&str> = InstanceStatus::ALL.iter().map(|s| s.as_str()).collect();
        enum_error("status", s, &names)
    })
}

pub(super) fn fields_mask(q: &Query) -> ApiResult<u64> {
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
pub(super) async fn views(
    state: &AppState,
    rows: &[InstanceWithRelated],
    mask: u64,
    host: &str,
) -> ApiResult<Vec<Instance>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(view(state, r, mask, host).await?);
    }
    if state.config.placement == crate::config::Placement::Hosts {
        // [ext] Where each instance runs answers or not (docs/hosts.md); one query per page.
        let ids: Vec<String> = rows.iter().map(|r| r.record.instance_id.to_string()).collect();
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

/// One instance of the caller's account with what its view shows, or 404.
pub(super) async fn instance_view_row(
    state: &AppState,
    caller: &Caller,
    id: &str,
    mask: u64,
) -> ApiResult<InstanceWithRelated> {
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
        v.instance_id = Some(r.instance_id.to_string());
    }
    if has(2) {
        v.name = Some(r.name.clone());
    }
    if has(4) {
        v.description = Some(r.description.clone());
    }
    if has(8) {
        v.status = Some(r.status.to_string());
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
                    status: b.status.to_string(),
                })
                .collect(),
        );
    }
    if has(16384) {
        let link =
            if r.status == InstanceStatus::Active { Some(svc::console_link(state, r, host).await?.0) } else { None };
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

pub fn host_of(headers: &HeaderMap) -> String {
    headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_owned()
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
    let statuses = q.csv("status").map(|list| list.iter().map(|s| parse_status(s)).collect()).transpose()?;
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
