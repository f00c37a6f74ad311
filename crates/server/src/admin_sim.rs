//! Operator controls of the simulated driver under `/admin/v1` [ext]: fault rules, and stepping an
//! operation by hand in explicit mode. Merged into the operator router, so the bearer token
//! protects them; with any other driver they answer 409 `CHECK_PARAM`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use openwinv_store::{FaultRecord, ids};
use openwinv_wire::operations::{Cleared, Fault, NewFault, SimStep};
use openwinv_wire::{Envelope, ErrorCode};
use serde_json::Value;

use crate::AppState;
use crate::api::Reply;
use crate::config::Driver;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Path, enum_error};

pub const MODES: &[&str] = &["once", "count", "sticky", "random"];
pub const EFFECTS: &[&str] = &["permanent", "transient"];
/// Largest `count`.
pub const COUNT_MAX: i64 = 1_000_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/admin/v1/faults/{fault_id}", delete(delete_fault))
        .route("/admin/v1/sim/step/{operation_id}", post(step))
}

pub(crate) fn require_sim(state: &AppState) -> ApiResult<()> {
    if state.config.driver == Driver::Sim {
        Ok(())
    } else {
        Err(ApiError::param(
            "Fault injection and stepping are available only with the simulated driver (--driver sim).",
        )
        .with_status(StatusCode::CONFLICT))
    }
}

fn to_wire(state: &AppState, f: FaultRecord) -> Fault {
    Fault {
        created_at: state.timestamp(f.created_at),
        fault_id: f.fault_id,
        kind: f.kind,
        step: f.step,
        mode: f.mode,
        remaining: f.remaining,
        effect: f.effect,
        seed: f.seed,
        hits: f.hits,
    }
}

/// A probability given as a JSON number or a numeric string.
fn probability(body: &Body) -> ApiResult<Option<f64>> {
    let bad = || ApiError::param("The body field `probability` must be a number greater than 0 and at most 1.");
    let p = match body.0.get("probability") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
        Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if p.is_finite() && p > 0.0 && p <= 1.0 { Ok(Some(p)) } else { Err(bad()) }
}

fn only_for(field: &str, mode: &str, present: bool) -> ApiResult<()> {
    if present {
        Err(ApiError::param(format!("The body field `{field}` applies only to mode `{mode}`.")))
    } else {
        Ok(())
    }
}

/// Validates a new rule; `remaining` is the count, 1 for `once`, the per-mille probability for
/// `random` and 0 for `sticky`.
fn new_fault(state: &AppState, body: &Body) -> ApiResult<FaultRecord> {
    let required = |field: &str| -> ApiResult<String> {
        let v = body.required_str(field)?.trim().to_owned();
        if v.is_empty() { Err(ApiError::missing_body(field)) } else { Ok(v) }
    };
    let (kind, step, mode) = (required("kind")?, required("step")?, required("mode")?);
    let known = crate::sagas::kinds();
    if kind != "*" && !known.iter().any(|(k, _)| *k == kind) {
        let mut allowed: Vec<&str> = vec!["*"];
        allowed.extend(known.iter().map(|(k, _)| *k));
        return Err(enum_error("kind", &kind, &allowed));
    }
    if step != "*" {
        let mut allowed: Vec<&str> = known
            .iter()
            .filter(|(k, _)| kind == "*" || *k == kind)
            .flat_map(|(_, steps)| steps.iter().copied())
            .collect();
        allowed.sort_unstable();
        allowed.dedup();
        if !allowed.contains(&step.as_str()) {
            allowed.insert(0, "*");
            return Err(enum_error("step", &step, &allowed));
        }
    }
    if !MODES.contains(&mode.as_str()) {
        return Err(enum_error("mode", &mode, MODES));
    }
    let count = body.int("count")?;
    let prob = probability(body)?;
    let seed = body.int("seed")?;
    let effect = body.str("effect")?.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
    let effect = effect.unwrap_or_else(|| "permanent".to_owned());
    if !EFFECTS.contains(&effect.as_str()) {
        return Err(enum_error("effect", &effect, EFFECTS));
    }
    if mode != "count" {
        only_for("count", "count", count.is_some())?;
    }
    if mode != "random" {
        only_for("probability", "random", prob.is_some())?;
    }
    let remaining = match mode.as_str() {
        "once" => 1,
        "sticky" => 0,
        "count" => match count {
            None => return Err(ApiError::missing_body("count")),
            Some(n) if (1..=COUNT_MAX).contains(&n) => n,
            Some(n) => {
                return Err(ApiError::param(format!("The body field `count` must be 1 to {COUNT_MAX}, not {n}.")));
            }
        },
        _ => {
            let p = prob.ok_or_else(|| ApiError::missing_body("probability"))?;
            let per_mille = (p * 1000.0).round() as i64;
            if per_mille < 1 {
                return Err(ApiError::param(
                    "The body field `probability` must be at least 0.001 (it is kept in per mille).",
                ));
            }
            per_mille
        }
    };
    Ok(FaultRecord {
        fault_id: ids::new_id("FAULT"),
        kind,
        step,
        mode,
        remaining,
        effect,
        seed: seed.unwrap_or(0),
        hits: 0,
        created_at: state.clock.unix(),
    })
}

/// Adds a fault rule: matching steps of matching operations fail once, `count` times, every
/// time (sticky) or at random with a seed.
#[utoipa::path(post, path = "/admin/v1/faults", tag = "operator", security(("admin_token" = [])), request_body = NewFault,
    responses((status = 200, body = Envelope<Vec<Fault>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn add_fault(State(state): State<AppState>, body: Body) -> Reply<Fault> {
    require_sim(&state)?;
    let rec = new_fault(&state, &body)?;
    state.store.insert_fault(&rec).await?;
    Ok(Json(Envelope::rows(vec![to_wire(&state, rec)])))
}

/// The fault rules, oldest first.
#[utoipa::path(get, path = "/admin/v1/faults", tag = "operator", security(("admin_token" = [])),
    responses((status = 200, body = Envelope<Vec<Fault>>), (status = 401, body = openwinv_wire::ErrorEnvelope),
        (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list_faults(State(state): State<AppState>) -> Reply<Fault> {
    require_sim(&state)?;
    let rows = state.store.faults().await?.into_iter().map(|f| to_wire(&state, f)).collect();
    Ok(Json(Envelope::rows(rows)))
}

/// Removes every fault rule.
#[utoipa::path(delete, path = "/admin/v1/faults", tag = "operator", security(("admin_token" = [])),
    responses((status = 200, body = Envelope<Vec<Cleared>>), (status = 401, body = openwinv_wire::ErrorEnvelope),
        (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn clear_faults(State(state): State<AppState>) -> Reply<Cleared> {
    require_sim(&state)?;
    let cleared = state.store.clear_faults(None).await?;
    Ok(Json(Envelope::rows(vec![Cleared { cleared }])))
}

/// Removes one fault rule.
#[utoipa::path(delete, path = "/admin/v1/faults/{fault_id}", tag = "operator", security(("admin_token" = [])),
    params(("fault_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Cleared>>), (status = 401, body = openwinv_wire::ErrorEnvelope),
        (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn delete_fault(State(state): State<AppState>, Path(fault_id): Path<String>) -> Reply<Cleared> {
    require_sim(&state)?;
    match state.store.clear_faults(Some(&fault_id)).await? {
        0 => Err(ApiError::not_found(format!("The fault rule `{fault_id}`"))),
        cleared => Ok(Json(Envelope::rows(vec![Cleared { cleared }]))),
    }
}

/// Lets a running operation take one more step of hypervisor work. In explicit mode
/// (`--sim-mode explicit`) paced steps wait for this; in timed mode it ends the current wait.
#[utoipa::path(post, path = "/admin/v1/sim/step/{operation_id}", tag = "operator", security(("admin_token" = [])),
    params(("operation_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<SimStep>>), (status = 401, body = openwinv_wire::ErrorEnvelope),
        (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn step(State(state): State<AppState>, Path(operation_id): Path<String>) -> Reply<SimStep> {
    require_sim(&state)?;
    let not_running = || ApiError::new(ErrorCode::NotFound, format!("There is no running operation `{operation_id}`."));
    if !state.store.grant_permit(&operation_id).await? {
        return Err(not_running());
    }
    state.engine.wake();
    let op = state.store.operation(&operation_id).await?.ok_or_else(not_running)?;
    Ok(Json(Envelope::rows(vec![SimStep {
        operation_id: op.operation_id.into(),
        kind: op.kind,
        resource_id: op.resource_id,
        status: op.status,
        permits: op.permits,
    }])))
}
