//! The agent protocol, control-plane side [ext]: `/internal/v1/hosts/{register,heartbeat,runtime,work,work/result}`
//! `GET /internal/v1/hosts/console/{session}` (an agent's dial-back for a console, [`console`])
//! `GET /internal/v1/images/{sha256}` (boot files by content, [`images`]) and `PUT`/`GET
//! /internal/v1/disks/{sha256}` (machine disks in transit, [`disks`])
//! on the control plane's own listener (HTTPS too with `--tls`). Every call carries
//! `Authorization: Bearer <host token>`; the token names the host, so no call names one. Only
//! agents call: the control plane never connects to a host. See `docs/hosts.md`.

use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use openwinv_store::host_work::{MAX_PULL, WorkOutcome};
use openwinv_store::hosts::{HostIdentity, RUNTIME_STATES, Registration, ReportOutcome};
use openwinv_store::instances::InstanceStatus;
use openwinv_wire::hosts::{
    HEARTBEAT_INTERVAL_MS, HeartbeatAck, OFFLINE_AFTER_SECS, Registered, RuntimeAck, WorkAck, WorkItem,
};
use openwinv_wire::{Envelope, ErrorCode};
use serde_json::Value;

pub mod console;
pub mod disks;
pub mod images;

use crate::AppState;
use crate::admin::check_token;
use crate::admin_hosts::token_digest;
use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, enum_error};

/// Drivers an agent may run.
const DRIVERS: &[&str] = &["qemu", "sim"];
/// Most machines in one runtime report.
const MAX_REPORTS: usize = 1000;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/internal/v1/hosts/register", post(register))
        .route("/internal/v1/hosts/heartbeat", post(heartbeat))
        .route("/internal/v1/hosts/runtime", post(runtime))
        .route("/internal/v1/hosts/work", post(work))
        .route("/internal/v1/hosts/work/result", post(work_result))
        .route("/internal/v1/hosts/console/{session}", get(console::claim_socket))
        .route("/internal/v1/images/{sha256}", get(images::image_file))
        .route("/internal/v1/disks/{sha256}", get(disks::get_disk).put(disks::put_disk))
        .layer(from_fn_with_state(state, require_host))
}

/// Finds the host whose token the request carries; anything else is 401 `CHECK_CREDENTIAL`.
pub async fn require_host(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let host = if given.is_empty() {
        None
    } else {
        match state.store.host_by_token(&token_digest(given)).await {
            Ok(h) => h,
            Err(e) => return ApiError::from(e).into_response(),
        }
    };
    match host {
        Some(h) => {
            req.extensions_mut().insert(h);
            next.run(req).await
        }
        None => {
            state.metrics.auth_failure(ErrorCode::CheckCredential);
            ApiError::new(
                ErrorCode::CheckCredential,
                "The agent API needs `Authorization: Bearer <host token>` with the token `openwinv admin hosts add` \
                 printed for a host that still exists.",
            )
            .into_response()
        }
    }
}

fn int_in(body: &Body, field: &str, min: i64, max: i64) -> ApiResult<i64> {
    match body.int(field)? {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::param(format!("The field `{field}` must be an integer from {min} to {max}."))),
        None => Err(ApiError::missing_body(field)),
    }
}

/// An agent describes its host; this counts as its first heartbeat.
#[utoipa::path(post, path = "/internal/v1/hosts/register", tag = "agent", security(("host_token" = [])),
    request_body = openwinv_wire::hosts::Registration,
    responses((status = 200, body = Envelope<Vec<Registered>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn register(
    State(state): State<AppState>,
    Extension(host): Extension<HostIdentity>,
    body: Body,
) -> Reply<Registered> {
    let zone = body.required_str("zone")?;
    if zone != host.zone_id {
        return Err(ApiError::param(format!(
            "The field `zone` is `{zone}`, but the host `{}` was added to zone `{}`.",
            host.name, host.zone_id
        )));
    }
    let address = body.required_str("address")?;
    if address.is_empty() || address.len() > 255 || address.chars().any(char::is_control) {
        return Err(ApiError::param("The field `address` must be 1-255 characters without control characters."));
    }
    let vcpus = int_in(&body, "vcpus", 1, 65_536)?;
    let memory_mb = int_in(&body, "memory_mb", 1, 1 << 40)?;
    let disk_gb = int_in(&body, "disk_gb", 0, 1 << 40)?;
    let driver = body.required_str("driver")?;
    if !DRIVERS.contains(&driver.as_str()) {
        return Err(enum_error("driver", &driver, DRIVERS));
    }
    let capabilities = body.str_list("capabilities")?.unwrap_or_default();
    if capabilities.len() > 64 {
        return Err(ApiError::param("The field `capabilities` must have at most 64 entries."));
    }
    for c in &capabilities {
        check_token("capabilities", c, 1, 32)?;
    }
    let agent_version = body.str("agent_version")?.unwrap_or_default();
    if agent_version.len() > 64 || agent_version.chars().any(char::is_control) {
        return Err(ApiError::param("The field `agent_version` must be at most 64 characters."));
    }
    let underlay = body.str("underlay")?;
    if let Some(u) = &underlay
        && u.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Err(ApiError::param(format!("The field `underlay` must be an IPv4 address, not `{u}`.")));
    }
    let now = state.clock.unix();
    let reg = Registration {
        address: &address,
        vcpus,
        memory_mb,
        disk_gb,
        driver: &driver,
        capabilities: &capabilities,
        agent_version: &agent_version,
    };
    let h = state
        .store
        .register_host(&host.host_id, &reg, now)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("The host `{}`", host.name)))?;
    state.store.set_host_underlay(&h.host_id, underlay.as_deref()).await?;
    // The agent (re)started: what it was handed and has not answered is handed out again; it
    // answers what it finished from its own record.
    let redelivered = state.store.redeliver_work(&h.host_id).await?;
    if redelivered > 0 {
        crate::remote_driver::work_queued(&h.host_id);
    }
    tracing::info!(host = %h.name, %address, vcpus, memory_mb, disk_gb, %driver, redelivered, "host registered");
    Ok(Json(Envelope::rows(vec![Registered {
        host_id: h.host_id,
        name: h.name,
        zone: h.zone_id,
        state: h.state,
        generation: h.generation,
        heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        offline_after_s: OFFLINE_AFTER_SECS,
        server_time: now,
    }])))
}

/// A heartbeat: one write of the host's row (server clock). A host that has not registered since
/// it was added answers 404, and the agent registers again.
#[utoipa::path(post, path = "/internal/v1/hosts/heartbeat", tag = "agent", security(("host_token" = [])),
    responses((status = 200, body = Envelope<Vec<HeartbeatAck>>), (status = 401, body = openwinv_wire::ErrorEnvelope),
        (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn heartbeat(State(state): State<AppState>, Extension(host): Extension<HostIdentity>) -> Reply<HeartbeatAck> {
    let now = state.clock.unix();
    let beat = state.store.heartbeat(&host.host_id, now).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("The host `{}` has not registered; POST /internal/v1/hosts/register first.", host.name),
        )
    })?;
    Ok(Json(Envelope::rows(vec![HeartbeatAck { state: beat.state, generation: beat.generation, server_time: now }])))
}

/// The states of the host's machines, each with the agent's generation for it; a report older
/// than the stored one is answered `stale` and changes nothing.
#[utoipa::path(post, path = "/internal/v1/hosts/runtime", tag = "agent", security(("host_token" = [])),
    request_body = openwinv_wire::hosts::RuntimeReports,
    responses((status = 200, body = Envelope<Vec<RuntimeAck>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn runtime(
    State(state): State<AppState>,
    Extension(host): Extension<HostIdentity>,
    body: Body,
) -> Reply<RuntimeAck> {
    let items = match body.0.get("machines") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => return Err(ApiError::missing_body("machines")),
        Some(_) => {
            return Err(ApiError::param("The field `machines` must be a list of {instance_id, state, generation}."));
        }
    };
    if items.len() > MAX_REPORTS {
        return Err(ApiError::param(format!("The field `machines` must have at most {MAX_REPORTS} entries.")));
    }
    let mut reports = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |f: &str| format!("machines.{i}.{f}");
        let Some(obj) = item.as_object() else {
            return Err(ApiError::param(format!("The field `machines.{i}` must be an object.")));
        };
        let instance_id = match obj.get("instance_id") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => s.clone(),
            None => return Err(ApiError::missing_body(&field("instance_id"))),
            Some(_) => {
                return Err(ApiError::param(format!("The field `{}` must be an instance id.", field("instance_id"))));
            }
        };
        let st = match obj.get("state") {
            Some(Value::String(s)) => s.clone(),
            None => return Err(ApiError::missing_body(&field("state"))),
            Some(_) => return Err(ApiError::param(format!("The field `{}` must be a string.", field("state")))),
        };
        if !RUNTIME_STATES.contains(&st.as_str()) {
            return Err(enum_error(&field("state"), &st, RUNTIME_STATES));
        }
        let generation = match obj.get("generation") {
            Some(Value::Number(n)) => n.as_i64().filter(|g| *g >= 0),
            None => return Err(ApiError::missing_body(&field("generation"))),
            Some(_) => None,
        }
        .ok_or_else(|| ApiError::param(format!("The field `{}` must be an integer from 0.", field("generation"))))?;
        reports.push((instance_id, st, generation));
    }
    let full = match body.0.get("full") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::param("The field `full` must be true or false.")),
    };
    let as_of = match body.0.get("as_of") {
        None | Some(Value::Null) if !full => 0,
        None | Some(Value::Null) => return Err(ApiError::missing_body("as_of")),
        Some(v) => v
            .as_i64()
            .filter(|g| *g >= 0)
            .ok_or_else(|| ApiError::param("The field `as_of` must be an integer from 0."))?,
    };
    let outcomes = state.store.report_runtime(&host.host_id, &reports, state.clock.unix()).await?;
    follow_runtime(&state, &reports, &outcomes).await?;
    if full {
        crate::admin_hosts::reconcile_full_report(&state, &host.host_id, &host.name, &reports, as_of).await?;
    }
    let rows = reports
        .into_iter()
        .zip(outcomes)
        .map(|((instance_id, _, generation), o)| match o {
            ReportOutcome::Accepted => {
                RuntimeAck { instance_id, outcome: "accepted".into(), stored_generation: generation }
            }
            ReportOutcome::Stale { stored_generation } => {
                RuntimeAck { instance_id, outcome: "stale".into(), stored_generation }
            }
            ReportOutcome::NotPlaced => RuntimeAck { instance_id, outcome: "not_placed".into(), stored_generation: -1 },
        })
        .collect();
    Ok(Json(Envelope::rows(rows)))
}

/// Instance rows follow what the agents report of machines at rest: a machine that stopped on
/// its own makes its instance `off`, one that runs again `active`, one that is gone `error`. An
/// instance in an operation belongs to the operation (agents report a call's change before they
/// answer it, so these reports arrive while the instance is still in `work`). Only in hosts mode.
async fn follow_runtime(
    state: &AppState,
    reports: &[(String, String, i64)],
    outcomes: &[ReportOutcome],
) -> ApiResult<()> {
    // Without hosts mode the process's own driver runs the machines: reports are only stored.
    if state.config.placement != crate::config::Placement::Hosts {
        return Ok(());
    }
    for ((instance_id, machine, _), outcome) in reports.iter().zip(outcomes) {
        if *outcome != ReportOutcome::Accepted {
            continue;
        }
        let Some(inst) = state.store.instance_by_id(instance_id).await? else { continue };
        let (to, reason) = match (inst.status, machine.as_str()) {
            (InstanceStatus::Active, "stopped" | "crashed") => (InstanceStatus::Off, None),
            (InstanceStatus::Off, "running") => (InstanceStatus::Active, None),
            (InstanceStatus::Active | InstanceStatus::Off, "absent") => {
                (InstanceStatus::Error, Some("the machine is gone from its host"))
            }
            _ => continue,
        };
        if state.store.reconcile_instance(instance_id, inst.status, to, reason, state.clock.unix()).await? {
            tracing::warn!(instance = %instance_id, from = %inst.status, %to, "instance follows its host's report");
        }
    }
    Ok(())
}

/// Longest long poll an agent may ask for.
const MAX_WAIT_MS: u64 = 25_000;
/// A delivered item unanswered for this long is handed out again (the agent may have lost it;
/// an agent that lists what it holds in its pull gets a lost item back at once).
const REDELIVER_AFTER_MS: i64 = 120_000;
/// Most work item keys a pull may say the agent holds.
const MAX_HELD: usize = 10_000;

/// A work item's key as an agent may send it back: 1-200 bytes, no control characters.
fn is_work_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 200 && !key.chars().any(char::is_control)
}
/// How often a long poll reads the queue besides the wake-ups of this process (work queued by
/// another control-plane process).
const POLL_QUEUE: std::time::Duration = std::time::Duration::from_secs(1);

fn host_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The agent pulls its host's work: queued items (and items delivered long ago and never
/// answered). With `wait_ms` the request is held open until there is work or the wait ends.
#[utoipa::path(post, path = "/internal/v1/hosts/work", tag = "agent", security(("host_token" = [])),
    request_body = openwinv_wire::hosts::WorkPull,
    responses((status = 200, body = Envelope<Vec<WorkItem>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn work(
    State(state): State<AppState>,
    Extension(host): Extension<HostIdentity>,
    body: Body,
) -> Reply<WorkItem> {
    let wait_ms = match body.int("wait_ms")? {
        None => 0,
        Some(n) if (0..=MAX_WAIT_MS as i64).contains(&n) => n as u64,
        Some(_) => {
            return Err(ApiError::param(format!("The field `wait_ms` must be an integer from 0 to {MAX_WAIT_MS}.")));
        }
    };
    // What the agent holds: an item delivered to this host and not among them was handed to a
    // poll whose answer the agent never got (a partition, a timeout); it is handed out again now
    // rather than REDELIVER_AFTER_MS after its delivery. An agent that does not say keeps that.
    if let Some(held) = body.str_list("held")? {
        if held.len() > MAX_HELD {
            return Err(ApiError::param(format!("The field `held` lists at most {MAX_HELD} work item keys.")));
        }
        if let Some(bad) = held.iter().find(|k| !is_work_key(k)) {
            return Err(ApiError::param(format!(
                "The field `held` must list work items' keys (1-200 characters each), not `{bad}`."
            )));
        }
        let again = state.store.redeliver_unheld(&host.host_id, &held.into_iter().collect()).await?;
        if again > 0 {
            tracing::warn!(host = %host.name, again, "work items the agent does not hold are handed out again");
        }
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
    let queue = crate::remote_driver::queue_of(&host.host_id);
    loop {
        let queued = queue.notified();
        tokio::pin!(queued);
        queued.as_mut().enable();
        let now = host_ms();
        let rows = state.store.take_work(&host.host_id, now, now - REDELIVER_AFTER_MS, MAX_PULL).await?;
        let now = tokio::time::Instant::now();
        if !rows.is_empty() || now >= deadline {
            let items = rows
                .into_iter()
                .map(|r| WorkItem {
                    payload: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
                    key: r.work_key,
                    call: r.call,
                    instance_id: r.instance_id,
                    deliveries: r.deliveries,
                })
                .collect();
            return Ok(Json(Envelope::rows(items)));
        }
        tokio::select! {
            _ = &mut queued => {}
            _ = tokio::time::sleep(POLL_QUEUE.min(deadline - now)) => {}
        }
    }
}

/// The agent's answer to one of its items: `ok` with the driver's result, or an error that is
/// `transient` (the step retries and queues the call again) or `permanent` (the step fails).
#[utoipa::path(post, path = "/internal/v1/hosts/work/result", tag = "agent", security(("host_token" = [])),
    request_body = openwinv_wire::hosts::WorkResult,
    responses((status = 200, body = Envelope<Vec<WorkAck>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn work_result(
    State(state): State<AppState>,
    Extension(host): Extension<HostIdentity>,
    body: Body,
) -> Reply<WorkAck> {
    let key = body.required_str("key")?;
    if !is_work_key(&key) {
        return Err(ApiError::param("The field `key` must be a work item's key (1-200 characters)."));
    }
    let kind = body.required_str("outcome")?;
    let error = || -> ApiResult<String> {
        match body.str("error")? {
            Some(e) if !e.is_empty() => Ok(e.chars().take(2000).collect()),
            _ => Err(ApiError::missing_body("error")),
        }
    };
    let outcome = match kind.as_str() {
        "ok" => WorkOutcome::Ok(body.0.get("result").cloned().unwrap_or(Value::Null).to_string()),
        "transient" => WorkOutcome::Transient(error()?),
        "permanent" => WorkOutcome::Permanent(error()?),
        _ => return Err(enum_error("outcome", &kind, &["ok", "transient", "permanent"])),
    };
    let recorded = state.store.complete_work(&host.host_id, &key, &outcome, host_ms()).await?;
    if recorded {
        crate::remote_driver::work_answered();
    }
    Ok(Json(Envelope::rows(vec![WorkAck { key, recorded }])))
}
