//! The stand-in's controls for test suites under `/admin/v1` [ext]: reset to the first-start
//! state, named snapshots of the whole state, and fixtures (`docs/standin.md`).
//!
//! The store does the database half in one transaction each (`openwinv_store::snapshot`,
//! `reset`). This module does the process half: it replaces the store's state only while the
//! engine is paused (steps under way finish, operations claimed before are dropped), and then
//! forgets what this process keeps in memory about the old state — the simulated driver's
//! machines, cached keys and rate-limit buckets, live-bill intervals, the clock offset and the
//! catalog (its version moves past every one seen, so other processes reload it too).
//!
//! Snapshots are kept in the database (`openwinv_store::snapshot`), so every server process on
//! it lists and restores the same ones; keys' secrets in them stay sealed with the server's
//! encryption key, as in the tables they come from.

use std::time::Instant;

use axum::extract::State;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use openwinv_store::SavedSnapshot;
use openwinv_wire::Envelope;
use openwinv_wire::standin::{ResetDone, SnapshotInfo};
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::api::Reply;
use crate::bootstrap::BOOTSTRAP_ACCOUNT;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Path};

/// Most copies one fixture entry may ask for with `count`.
pub const SEED_COUNT_MAX: u32 = 10_000;
/// Where earlier releases kept snapshots, under the data directory.
const LEGACY_SNAPSHOT_DIR: &str = "snapshots";

pub mod seed;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/reset", post(reset))
        .route("/admin/v1/snapshots", get(list_snapshots).post(save_snapshot))
        .route("/admin/v1/snapshots/{name}", delete(delete_snapshot))
        .route("/admin/v1/snapshots/{name}/restore", post(restore_snapshot))
        .route("/admin/v1/seed", post(seed::seed))
}

/// Replaces the store's state by `change` with the engine paused, then forgets this process's
/// memory of the old state (the simulated driver keeps none: its records are its state).
async fn replace_state<T>(state: &AppState, change: impl Future<Output = openwinv_store::Result<T>>) -> ApiResult<T> {
    let out = state.engine.paused(change).await;
    let out = match out {
        Ok(v) => v,
        Err(openwinv_store::StoreError::Corrupt(msg)) => return Err(ApiError::param(format!("{msg}."))),
        Err(e) => return Err(e.into()),
    };
    state.auth.reset();
    state.live_bills.clear();
    state.clock.load(&state.store).await?;
    state.catalog.refresh(&state.store).await.map_err(ApiError::internal)?;
    Ok(out)
}

fn flag(body: &Body, field: &str) -> ApiResult<bool> {
    match body.0.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "1" => Ok(true),
        Some(Value::String(s)) if s == "false" || s == "0" || s.is_empty() => Ok(false),
        Some(_) => Err(ApiError::param(format!("The field `{field}` must be true or false."))),
    }
}

/// Puts the server back to its first-start state: the catalog, the `dev` account and its first
/// key as the first start made them (or, with `keep_accounts`, every account and key as they
/// are); every resource, operation, bill, fault rule and the clock offset go. Running operations
/// are dropped. Simulated driver only.
#[utoipa::path(post, path = "/admin/v1/reset", tag = "operator", security(("admin_token" = [])),
    request_body = openwinv_wire::standin::ResetRequest,
    responses((status = 200, body = Envelope<Vec<ResetDone>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn reset(State(state): State<AppState>, body: Body) -> Reply<ResetDone> {
    crate::admin_sim::require_sim(&state)?;
    let keep_accounts = flag(&body, "keep_accounts")?;
    let started = Instant::now();
    let report = replace_state(&state, state.store.reset(BOOTSTRAP_ACCOUNT, keep_accounts)).await?;
    Ok(Json(Envelope::rows(vec![ResetDone {
        removed_rows: report.removed_rows,
        accounts: report.accounts,
        access_keys: report.access_keys,
        cancelled_operations: report.cancelled_operations,
        took_ms: started.elapsed().as_millis() as u64,
    }])))
}

fn check_name(name: &str) -> ApiResult<()> {
    crate::admin::check_token("name", name, 1, 64)?;
    if name.starts_with('.') {
        return Err(ApiError::param("The field `name` must not start with `.`."));
    }
    Ok(())
}

fn info(state: &AppState, saved: SavedSnapshot) -> SnapshotInfo {
    SnapshotInfo {
        name: saved.name,
        saved_at: state.timestamp(saved.saved_at),
        rows: saved.rows,
        size_bytes: saved.size_bytes,
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The snapshot `{name}`"))
}

/// Saves the whole state under `name` (replacing a snapshot of that name), read in one
/// consistent transaction and kept in the database, so every server process on it sees it.
#[utoipa::path(post, path = "/admin/v1/snapshots", tag = "operator", security(("admin_token" = [])),
    request_body = openwinv_wire::standin::NewSnapshot,
    responses((status = 200, body = Envelope<Vec<SnapshotInfo>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn save_snapshot(State(state): State<AppState>, body: Body) -> Reply<SnapshotInfo> {
    let name = body.required_str("name")?;
    check_name(&name)?;
    let saved = state.store.save_snapshot(&name, state.clock.unix()).await?;
    Ok(Json(Envelope::rows(vec![info(&state, saved)])))
}

/// The saved snapshots, by name.
#[utoipa::path(get, path = "/admin/v1/snapshots", tag = "operator", security(("admin_token" = [])),
    responses((status = 200, body = Envelope<Vec<SnapshotInfo>>), (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list_snapshots(State(state): State<AppState>) -> Reply<SnapshotInfo> {
    let rows = state.store.saved_snapshots().await?.into_iter().map(|s| info(&state, s)).collect();
    Ok(Json(Envelope::rows(rows)))
}

/// Puts the whole state back to the snapshot, into the running server: running operations are
/// dropped, and the snapshot's operations resume. Simulated driver only.
#[utoipa::path(post, path = "/admin/v1/snapshots/{name}/restore", tag = "operator", security(("admin_token" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = Envelope<Vec<SnapshotInfo>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope),
        (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn restore_snapshot(State(state): State<AppState>, Path(name): Path<String>) -> Reply<SnapshotInfo> {
    crate::admin_sim::require_sim(&state)?;
    check_name(&name)?;
    let (saved, snap) = match state.store.saved_snapshot(&name).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(not_found(&name)),
        Err(openwinv_store::StoreError::Corrupt(_)) => {
            return Err(ApiError::param(format!("The snapshot `{name}` is not a snapshot this server can read.")));
        }
        Err(e) => return Err(e.into()),
    };
    replace_state(&state, state.store.restore(&snap)).await?;
    drop(snap);
    state.engine.wake();
    Ok(Json(Envelope::rows(vec![info(&state, saved)])))
}

#[utoipa::path(delete, path = "/admin/v1/snapshots/{name}", tag = "operator", security(("admin_token" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = Envelope<Vec<SnapshotInfo>>), (status = 401, body = openwinv_wire::ErrorEnvelope),
        (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn delete_snapshot(State(state): State<AppState>, Path(name): Path<String>) -> Reply<SnapshotInfo> {
    check_name(&name)?;
    match state.store.delete_saved_snapshot(&name).await? {
        Some(saved) => Ok(Json(Envelope::rows(vec![info(&state, saved)]))),
        None => Err(not_found(&name)),
    }
}

/// Snapshots that earlier releases kept as files in `<data>/snapshots` move into the database
/// once, at start: each file becomes a saved snapshot (unless one of that name is there already)
/// and is removed. A file that is not a snapshot is left where it is, with a warning.
pub async fn import_snapshot_files(state: &AppState) {
    let dir = state.config.data_dir.join(LEGACY_SNAPSHOT_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let have: Vec<String> = match state.store.saved_snapshots().await {
        Ok(rows) => rows.into_iter().map(|r| r.name).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list saved snapshots; snapshot files left in place");
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let (Some(name), Some("json")) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str()))
        else {
            continue;
        };
        let name = name.to_owned();
        let imported = match legacy_snapshot(&path) {
            Some(_) if have.contains(&name) => Ok(false),
            Some((row, body)) => {
                let row = SavedSnapshot { name: name.clone(), ..row };
                state.store.keep_snapshot(&row, &body).await.map(|()| true)
            }
            None => {
                tracing::warn!(path = %path.display(), "not a snapshot file; left in place");
                continue;
            }
        };
        match imported {
            Ok(new) => {
                let _ = std::fs::remove_file(&path);
                tracing::info!(snapshot = %name, new, "snapshot file moved into the database");
            }
            Err(e) => tracing::warn!(snapshot = %name, error = %e, "snapshot file not imported"),
        }
    }
    let _ = std::fs::remove_dir(&dir);
}

/// A snapshot file of earlier releases: a header line (`saved_at`, `rows`), then the document.
fn legacy_snapshot(path: &std::path::Path) -> Option<(SavedSnapshot, String)> {
    #[derive(Deserialize)]
    struct Header {
        saved_at: i64,
        rows: u64,
    }
    let text = std::fs::read_to_string(path).ok()?;
    let (head, body) = text.split_once('\n')?;
    let header: Header = serde_json::from_str(head).ok()?;
    serde_json::from_str::<openwinv_store::Snapshot>(body).ok()?;
    let row = SavedSnapshot {
        name: String::new(),
        saved_at: header.saved_at,
        rows: header.rows,
        size_bytes: body.len() as u64,
    };
    Some((row, body.to_owned()))
}
