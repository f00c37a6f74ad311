//! The operator API under `/admin/v1` [ext]: accounts, access keys, the catalog (image files in
//! `images.rs`), SSH keys and user scripts on behalf of an account, and the clock. Answers use the
//! iwinv envelope too.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use jiff::{SignedDuration, Timestamp};
use openwinv_store::{AccountRecord, KeyRecord, NewKeyRecord, StoreError};
use openwinv_wire::admin::{AccessKey, Account, ClockState, IssuedKey, NetworkInfo};
use openwinv_wire::keys::{SshKey, UserScript};
use openwinv_wire::{Envelope, ErrorCode};

use crate::AppState;
use crate::api::{Reply, scripts, ssh_keys};
use crate::bootstrap::{new_access_key, new_secret_key};
use crate::catalog::CatalogFile;
use crate::config::parse_cidr;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Path, Query};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/accounts", get(list_accounts).post(create_account))
        .route("/admin/v1/accounts/{name}/disable", post(disable_account))
        .route("/admin/v1/accounts/{name}/enable", post(enable_account))
        .route("/admin/v1/accounts/{name}/quota", put(set_quota))
        .route("/admin/v1/accounts/{name}/keys", post(create_key))
        .route("/admin/v1/keys", get(list_keys))
        .route("/admin/v1/keys/{access_key}", put(update_key).delete(delete_key))
        .route("/admin/v1/keys/{access_key}/disable", post(disable_key))
        .route("/admin/v1/catalog", get(export_catalog).put(import_catalog))
        .route("/admin/v1/accounts/{name}/ssh-keys", get(list_ssh_keys).post(create_ssh_key))
        .route("/admin/v1/accounts/{name}/ssh-keys/{id}", delete(delete_ssh_key))
        .route("/admin/v1/accounts/{name}/scripts", get(list_scripts).post(create_script))
        .route("/admin/v1/accounts/{name}/scripts/{id}", delete(delete_script))
        .route("/admin/v1/clock", get(show_clock).put(set_clock))
        .route("/admin/v1/networks", get(list_networks))
        .route("/admin/v1/clock/advance", post(advance_clock))
        .merge(crate::admin_sim::routes())
        .merge(crate::admin_state::routes())
        .merge(crate::images::routes())
}

fn account_wire(state: &AppState, a: AccountRecord) -> Account {
    Account {
        enabled: a.is_enabled(),
        created_at: state.timestamp(a.created_at),
        quota: crate::quota::of(&a),
        account_id: a.account_id.into(),
        name: a.name,
    }
}

fn key_wire(state: &AppState, k: KeyRecord) -> AccessKey {
    AccessKey {
        allow: k.allow_list(),
        enabled: k.enabled != 0,
        rate_limit: u32::try_from(k.rate_limit).unwrap_or(u32::MAX),
        created_at: state.timestamp(k.created_at),
        last_used_at: k.last_used_at.map(|t| state.timestamp(t)),
        access_key: k.access_key,
        account: k.account_name,
    }
}

async fn account(state: &AppState, name: &str) -> ApiResult<AccountRecord> {
    state.store.account_by_name(name).await?.ok_or_else(|| ApiError::not_found(format!("The account `{name}`")))
}

pub(crate) fn check_token(field: &str, v: &str, min: usize, max: usize) -> ApiResult<()> {
    let ok = (min..=max).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::param(format!("The field `{field}` must be {min}-{max} characters of A-Z a-z 0-9 - _ .")))
    }
}

/// Longest imported access key.
const IMPORTED_ACCESS_KEY_MAX: usize = 128;
/// Longest imported secret key.
const IMPORTED_SECRET_KEY_MAX: usize = 256;

/// An imported key (access or secret): 1 to `max` printable ASCII characters without blanks, so
/// that keys issued elsewhere import as they are, the iwinv documentation's own example pair
/// (`test_access_key` / `your_secret_key`, 15 characters) included. Keys openwinv generates stay
/// long and random (`bootstrap::new_access_key`, `new_secret_key`).
fn check_imported_key(field: &str, v: &str, max: usize) -> ApiResult<()> {
    if (1..=max).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(ApiError::param(format!("The field `{field}` must be 1-{max} printable ASCII characters without blanks.")))
    }
}

#[utoipa::path(get, path = "/admin/v1/accounts", tag = "operator", security(("admin_token" = [])), responses((status = 200, body = Envelope<Vec<Account>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list_accounts(State(state): State<AppState>) -> Reply<Account> {
    let rows = state.store.list_accounts().await?.into_iter().map(|a| account_wire(&state, a)).collect();
    Ok(Json(Envelope::rows(rows)))
}

#[utoipa::path(post, path = "/admin/v1/accounts", tag = "operator", security(("admin_token" = [])), request_body = openwinv_wire::admin::NewAccount, responses((status = 200, body = Envelope<Vec<Account>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn create_account(State(state): State<AppState>, body: Body) -> Reply<Account> {
    let name = body.required_str("name")?;
    check_token("name", &name, 1, 64)?;
    match state.store.create_account(&name, state.clock.unix()).await {
        Ok(a) => Ok(Json(Envelope::rows(vec![account_wire(&state, a)]))),
        Err(StoreError::Conflict) => Err(ApiError::param(format!("The account `{name}` already exists."))),
        Err(e) => Err(e.into()),
    }
}

async fn set_account(state: AppState, name: String, enabled: bool) -> Reply<Account> {
    if !state.store.set_account_enabled(&name, enabled).await? {
        return Err(ApiError::not_found(format!("The account `{name}`")));
    }
    for k in state.store.list_keys(Some(&name)).await? {
        state.auth.forget(&k.access_key);
    }
    Ok(Json(Envelope::rows(vec![account_wire(&state, account(&state, &name).await?)])))
}

#[utoipa::path(post, path = "/admin/v1/accounts/{name}/disable", tag = "operator", security(("admin_token" = [])), params(("name" = String, Path)), responses((status = 200, body = Envelope<Vec<Account>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn disable_account(State(state): State<AppState>, Path(name): Path<String>) -> Reply<Account> {
    set_account(state, name, false).await
}

#[utoipa::path(post, path = "/admin/v1/accounts/{name}/enable", tag = "operator", security(("admin_token" = [])), params(("name" = String, Path)), responses((status = 200, body = Envelope<Vec<Account>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn enable_account(State(state): State<AppState>, Path(name): Path<String>) -> Reply<Account> {
    set_account(state, name, true).await
}

#[utoipa::path(put, path = "/admin/v1/accounts/{name}/quota", tag = "operator", security(("admin_token" = [])),
    params(("name" = String, Path)), request_body = openwinv_wire::admin::QuotaUpdate,
    responses((status = 200, body = Envelope<Vec<Account>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn set_quota(State(state): State<AppState>, Path(name): Path<String>, body: Body) -> Reply<Account> {
    let read = |field: &str| -> ApiResult<Option<i64>> {
        match body.int(field)? {
            Some(n) if !(0..=1_000_000).contains(&n) => {
                Err(ApiError::param(format!("The field `{field}` must be 0 to 1000000, or null for the default.")))
            }
            other => Ok(other),
        }
    };
    let (instances, vcpu, storage) = (read("instances")?, read("vcpu")?, read("block_storage_gb")?);
    if !state.store.set_account_quota(&name, instances, vcpu, storage).await? {
        return Err(ApiError::not_found(format!("The account `{name}`")));
    }
    Ok(Json(Envelope::rows(vec![account_wire(&state, account(&state, &name).await?)])))
}

fn allow_list(body: &Body) -> ApiResult<Option<Vec<String>>> {
    let Some(list) = body.str_list("allow")? else { return Ok(None) };
    for c in &list {
        if parse_cidr(c).is_none() {
            return Err(ApiError::param(format!("The field `allow` has `{c}`, which is not an address or CIDR.")));
        }
    }
    Ok(Some(list))
}

fn rate_limit(body: &Body) -> ApiResult<Option<i64>> {
    match body.int("rate_limit")? {
        Some(n) if !(0..=1_000_000).contains(&n) => {
            Err(ApiError::param("The field `rate_limit` must be 0 (unlimited) to 1000000 requests per minute."))
        }
        other => Ok(other),
    }
}

/// Creates a key for an account; with `access_key` and `secret_key` in the body, imports that pair.
#[utoipa::path(post, path = "/admin/v1/accounts/{name}/keys", tag = "operator", security(("admin_token" = [])), params(("name" = String, Path)), request_body = openwinv_wire::admin::NewKey, responses((status = 200, body = Envelope<Vec<IssuedKey>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn create_key(State(state): State<AppState>, Path(name): Path<String>, body: Body) -> Reply<IssuedKey> {
    let account = account(&state, &name).await?;
    let (access_key, secret_key) = match (body.str("access_key")?, body.str("secret_key")?) {
        (Some(a), Some(s)) => {
            check_imported_key("access_key", &a, IMPORTED_ACCESS_KEY_MAX)?;
            check_imported_key("secret_key", &s, IMPORTED_SECRET_KEY_MAX)?;
            (a, s)
        }
        (None, None) => (new_access_key(), new_secret_key()),
        (Some(_), None) => return Err(ApiError::missing_body("secret_key")),
        (None, Some(_)) => return Err(ApiError::missing_body("access_key")),
    };
    let allow = allow_list(&body)?.unwrap_or_default();
    let rate = rate_limit(&body)?.unwrap_or(i64::from(state.config.default_rate_limit));
    let sealed = state.sealer.seal(&secret_key);
    let rec = NewKeyRecord {
        access_key: &access_key,
        account_id: &account.account_id,
        secret_sealed: &sealed,
        rate_limit: rate,
        allow: &allow,
        created_at: state.clock.unix(),
    };
    match state.store.insert_key(&rec).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::param(format!("The access key `{access_key}` already exists.")));
        }
        Err(e) => return Err(e.into()),
    }
    state.auth.forget(&access_key);
    Ok(Json(Envelope::rows(vec![IssuedKey {
        account: account.name,
        rate_limit: rate as u32,
        allow,
        access_key,
        secret_key,
    }])))
}

#[utoipa::path(get, path = "/admin/v1/keys", tag = "operator", security(("admin_token" = [])), params(("account" = Option<String>, Query)), responses((status = 200, body = Envelope<Vec<AccessKey>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list_keys(State(state): State<AppState>, q: Query) -> Reply<AccessKey> {
    if let Some(name) = q.str("account") {
        account(&state, name).await?;
    }
    let rows = state.store.list_keys(q.str("account")).await?.into_iter().map(|k| key_wire(&state, k)).collect();
    Ok(Json(Envelope::rows(rows)))
}

async fn key_answer(state: &AppState, access_key: &str) -> Reply<AccessKey> {
    state.auth.forget(access_key);
    let k = state
        .store
        .key(access_key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("The access key `{access_key}`")))?;
    Ok(Json(Envelope::rows(vec![key_wire(state, k)])))
}

/// Changes `enabled`, `rate_limit` and/or `allow`.
#[utoipa::path(put, path = "/admin/v1/keys/{access_key}", tag = "operator", security(("admin_token" = [])), params(("access_key" = String, Path)), request_body = openwinv_wire::admin::KeyUpdate, responses((status = 200, body = Envelope<Vec<AccessKey>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn update_key(State(state): State<AppState>, Path(access_key): Path<String>, body: Body) -> Reply<AccessKey> {
    let enabled = match body.0.get("enabled") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ApiError::param("The field `enabled` must be true or false.")),
    };
    let allow = allow_list(&body)?;
    let rate = rate_limit(&body)?;
    if !state.store.update_key(&access_key, enabled, rate, allow.as_deref()).await? {
        return Err(ApiError::not_found(format!("The access key `{access_key}`")));
    }
    key_answer(&state, &access_key).await
}

#[utoipa::path(post, path = "/admin/v1/keys/{access_key}/disable", tag = "operator", security(("admin_token" = [])), params(("access_key" = String, Path)), responses((status = 200, body = Envelope<Vec<AccessKey>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn disable_key(State(state): State<AppState>, Path(access_key): Path<String>) -> Reply<AccessKey> {
    if !state.store.update_key(&access_key, Some(false), None, None).await? {
        return Err(ApiError::not_found(format!("The access key `{access_key}`")));
    }
    key_answer(&state, &access_key).await
}

#[utoipa::path(delete, path = "/admin/v1/keys/{access_key}", tag = "operator", security(("admin_token" = [])), params(("access_key" = String, Path)), responses((status = 200, body = Envelope<Vec<AccessKey>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn delete_key(State(state): State<AppState>, Path(access_key): Path<String>) -> Reply<AccessKey> {
    let k = state
        .store
        .key(&access_key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("The access key `{access_key}`")))?;
    state.store.delete_key(&access_key).await?;
    state.auth.forget(&access_key);
    Ok(Json(Envelope::rows(vec![key_wire(&state, k)])))
}

/// The catalog as TOML (`Content-Type: application/toml`).
#[utoipa::path(get, path = "/admin/v1/catalog", tag = "operator", security(("admin_token" = [])),
    responses((status = 200, content_type = "application/toml", body = String)))]
pub async fn export_catalog(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    state.catalog.refresh(&state.store).await.map_err(ApiError::internal)?;
    Ok(([(CONTENT_TYPE, "application/toml; charset=utf-8")], state.catalog.get().to_toml()))
}

use openwinv_wire::admin::CatalogImportSummary as ImportSummary;

/// Replaces the whole catalog with the TOML body.
#[utoipa::path(put, path = "/admin/v1/catalog", tag = "operator", security(("admin_token" = [])), request_body = String, responses((status = 200, body = Envelope<Vec<ImportSummary>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn import_catalog(State(state): State<AppState>, body: axum::body::Bytes) -> Reply<ImportSummary> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::param("The catalog must be UTF-8 TOML."))?;
    let file = CatalogFile::parse(text).map_err(ApiError::param)?;
    state.store.replace_catalog(&file.to_entries()).await?;
    state.catalog.refresh(&state.store).await.map_err(ApiError::internal)?;
    Ok(Json(Envelope::rows(vec![ImportSummary {
        zones: file.zones.len(),
        flavors: file.flavors.len(),
        images: file.images.len(),
        block_storage_types: file.block_storage_types.len(),
    }])))
}

#[utoipa::path(get, path = "/admin/v1/accounts/{name}/ssh-keys", tag = "operator", security(("admin_token" = [])), params(("name" = String, Path)), responses((status = 200, body = Envelope<Vec<SshKey>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list_ssh_keys(State(state): State<AppState>, Path(name): Path<String>, q: Query) -> Reply<SshKey> {
    ssh_keys::list_for(&state, &account(&state, &name).await?.account_id, &q).await
}

#[utoipa::path(post, path = "/admin/v1/accounts/{name}/ssh-keys", tag = "operator", security(("admin_token" = [])), params(("name" = String, Path)), request_body = crate::service::named_text::NewSshKey, responses((status = 200, body = Envelope<Vec<SshKey>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn create_ssh_key(State(state): State<AppState>, Path(name): Path<String>, body: Body) -> Reply<SshKey> {
    ssh_keys::create_for(&state, &account(&state, &name).await?.account_id, &body).await
}

#[utoipa::path(delete, path = "/admin/v1/accounts/{name}/ssh-keys/{id}", tag = "operator", security(("admin_token" = [])), params(("name" = String, Path), ("id" = String, Path)), responses((status = 200, body = Envelope<Vec<SshKey>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn delete_ssh_key(State(state): State<AppState>, Path((name, id)): Path<(String, String)>) -> Reply<SshKey> {
    ssh_keys::delete_for(&state, &account(&state, &name).await?.account_id, &id).await
}

#[utoipa::path(get, path = "/admin/v1/accounts/{name}/scripts", tag = "operator", security(("admin_token" = [])), params(("name" = String, Path)), responses((status = 200, body = Envelope<Vec<UserScript>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list_scripts(State(state): State<AppState>, Path(name): Path<String>, q: Query) -> Reply<UserScript> {
    scripts::list_for(&state, &account(&state, &name).await?.account_id, &q).await
}

#[utoipa::path(post, path = "/admin/v1/accounts/{name}/scripts", tag = "operator", security(("admin_token" = [])), params(("name" = String, Path)), request_body = crate::service::named_text::NewScript, responses((status = 200, body = Envelope<Vec<UserScript>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn create_script(State(state): State<AppState>, Path(name): Path<String>, body: Body) -> Reply<UserScript> {
    scripts::create_for(&state, &account(&state, &name).await?.account_id, &body).await
}

#[utoipa::path(delete, path = "/admin/v1/accounts/{name}/scripts/{id}", tag = "operator", security(("admin_token" = [])), params(("name" = String, Path), ("id" = String, Path)), responses((status = 200, body = Envelope<Vec<UserScript>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn delete_script(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Reply<UserScript> {
    scripts::delete_for(&state, &account(&state, &name).await?.account_id, &id).await
}

fn clock_state(state: &AppState) -> ClockState {
    let now = state.clock.now();
    ClockState {
        now: now.to_string(),
        unix: now.as_second(),
        offset_ms: state.clock.offset_ms(),
        settable: state.clock.settable(),
    }
}

/// The QEMU driver's real networks with their taps, addresses and rule counts; empty when
/// machines are not on real networks (the simulated driver, or `--network user`).
#[utoipa::path(get, path = "/admin/v1/networks", tag = "operator", security(("admin_token" = [])), responses((status = 200, body = Envelope<Vec<NetworkInfo>>), (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list_networks(State(state): State<AppState>) -> Reply<NetworkInfo> {
    let Some(nets) = &state.networks else { return Ok(Json(Envelope::rows(Vec::new()))) };
    let rows = nets.views().await;
    Ok(Json(Envelope::rows(rows)))
}

#[utoipa::path(get, path = "/admin/v1/clock", tag = "operator", security(("admin_token" = [])), responses((status = 200, body = Envelope<Vec<ClockState>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn show_clock(State(state): State<AppState>) -> Reply<ClockState> {
    Ok(Json(Envelope::rows(vec![clock_state(&state)])))
}

async fn move_clock(state: &AppState, to: Timestamp) -> Reply<ClockState> {
    if !state.clock.settable() {
        return Err(ApiError::new(ErrorCode::CheckParam, "The clock can be moved only with the simulated driver.")
            .with_status(axum::http::StatusCode::CONFLICT));
    }
    let backwards = to < state.clock.now();
    state.clock.set(&state.store, to).await?;
    // Timed steps that became due run now rather than at the workers' next poll.
    state.engine.wake();
    if backwards {
        // Buckets measured against a later time would refuse everything until it came back.
        state.auth.reset();
    }
    Ok(Json(Envelope::rows(vec![clock_state(state)])))
}

/// Sets the clock to an RFC 3339 instant; it keeps running from there.
#[utoipa::path(put, path = "/admin/v1/clock", tag = "operator", security(("admin_token" = [])), request_body = openwinv_wire::admin::SetClock, responses((status = 200, body = Envelope<Vec<ClockState>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn set_clock(State(state): State<AppState>, body: Body) -> Reply<ClockState> {
    let now = body.required_str("now")?;
    let to: Timestamp = now.parse().map_err(|_| {
        ApiError::param(format!(
            "The field `now` must be an RFC 3339 time such as 2026-12-01T00:00:00+09:00, not `{now}`."
        ))
    })?;
    move_clock(&state, to).await
}

/// Moves the clock forward by a duration such as `90s`, `1h30m`, `2 days` or `PT2H`.
#[utoipa::path(post, path = "/admin/v1/clock/advance", tag = "operator", security(("admin_token" = [])), request_body = openwinv_wire::admin::AdvanceClock, responses((status = 200, body = Envelope<Vec<ClockState>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn advance_clock(State(state): State<AppState>, body: Body) -> Reply<ClockState> {
    let text = body.required_str("duration")?;
    let by: SignedDuration = text.parse().map_err(|_| {
        ApiError::param(format!("The field `duration` must be a duration such as 90s or 1h30m, not `{text}`."))
    })?;
    if by.is_negative() {
        return Err(ApiError::param("The field `duration` must not be negative; use PUT /admin/v1/clock to go back."));
    }
    let to = state.clock.now().checked_add(by).map_err(|_| ApiError::param("The field `duration` is too large."))?;
    move_clock(&state, to).await
}
