//! Fixtures (`POST /admin/v1/seed`, `docs/standin.md`): accounts, access keys, SSH keys, user
//! scripts, firewalls, instances, volumes and past bills, written through the API's own
//! validation and handlers, all or nothing.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use openwinv_billing::{Kind, Line, Month};
use openwinv_wire::Envelope;
use openwinv_wire::standin::SeedDone;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{SEED_COUNT_MAX, replace_state};
use crate::AppState;
use crate::api::{Reply, firewalls, scripts, ssh_keys};
use crate::auth::Caller;
use crate::bootstrap::BOOTSTRAP_ACCOUNT;
use crate::config::Driver;
use crate::error::{ApiError, ApiResult};
use crate::input::Encoding;
use crate::input::{Body, Path};
use crate::service::instances::CreateInstance;
use crate::service::volumes::CreateVolume;
use crate::service::{self, FromBody};

/// A fixture file. Each list's entries are written in order, through the same validation as
/// the API; accounts first, so the other lists may name them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[serde(default)]
    accounts: Vec<AccountFixture>,
    #[serde(default)]
    keys: Vec<Owned>,
    #[serde(default)]
    ssh_keys: Vec<Owned>,
    #[serde(default)]
    scripts: Vec<Owned>,
    #[serde(default)]
    firewalls: Vec<Owned>,
    #[serde(default)]
    instances: Vec<InstanceFixture>,
    #[serde(default)]
    block_storages: Vec<VolumeFixture>,
    #[serde(default)]
    bills: Vec<BillFixture>,
}

/// Instances, made one create request per copy (the body fields of `POST /v1/instances`, `count`
/// copies with `{n}`), then brought to `status`: `active` (the default) or `off` (shut down). Each is
/// waited for, so the fixture's answer comes when they are there. Simulated driver only.
#[derive(Debug, Deserialize)]
struct InstanceFixture {
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    status: Option<String>,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

/// Block storage volumes: the body fields of `POST /v1/block-storages`, where `instance` may name
/// an instance of the same fixture instead of `instance_id`; `detached = true` detaches each
/// volume after it is made, so it is `available`.
#[derive(Debug, Deserialize)]
struct VolumeFixture {
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    detached: bool,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFixture {
    name: String,
    /// `instances`, `vcpu`, `block_storage_gb` as in `PUT /admin/v1/accounts/{name}/quota`.
    #[serde(default)]
    quota: Option<Map<String, Value>>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// An entry owned by an account (`dev` when omitted), made `count` times (default 1) with
/// `{n}` in its text fields replaced by 1, 2, …; the other fields are the API's body fields.
#[derive(Debug, Deserialize)]
struct Owned {
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

/// A past regular bill: `month` (`YYYY-MM`, finished), and either `items` or one `price`;
/// `count` bills go back month by month from `month`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BillFixture {
    #[serde(default)]
    account: Option<String>,
    month: String,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    price: Option<i64>,
    #[serde(default)]
    items: Vec<BillItemFixture>,
    #[serde(default)]
    paid: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BillItemFixture {
    /// `server` (default) or `volume`.
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    service_id: Option<String>,
    name: String,
    price: i64,
    /// Won per hour (server) or month (volume); default the price.
    #[serde(default)]
    rate: Option<i64>,
    /// Charged seconds; default the whole month.
    #[serde(default)]
    seconds: Option<i64>,
}

/// Prefixes an error with the fixture entry it came from.
fn at(entry: String) -> impl FnOnce(ApiError) -> ApiError {
    move |mut e| {
        e.message = format!("{entry}: {}", e.message);
        e
    }
}

fn copies(entry: &str, count: Option<u32>) -> ApiResult<u32> {
    match count.unwrap_or(1) {
        n @ 1..=SEED_COUNT_MAX => Ok(n),
        n => Err(ApiError::param(format!("{entry}: the field `count` must be 1 to {SEED_COUNT_MAX}, not {n}."))),
    }
}

/// `fields` with `{n}` replaced in every string value.
fn numbered(fields: &Map<String, Value>, n: u32) -> Body {
    let n = n.to_string();
    Body(
        fields
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k.clone(), Value::String(s.replace("{n}", &n))),
                other => (k.clone(), other.clone()),
            })
            .collect(),
    )
}

async fn account_id(state: &AppState, entry: &str, name: Option<&str>) -> ApiResult<openwinv_store::ids::AccountId> {
    let name = name.unwrap_or(BOOTSTRAP_ACCOUNT);
    match state.store.account_by_name(name).await? {
        Some(a) => Ok(a.account_id),
        None => Err(ApiError::param(format!("{entry}: the account `{name}` does not exist."))),
    }
}

fn parse_fixture(headers: &HeaderMap, body: &[u8]) -> ApiResult<Fixture> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::param("The fixture must be UTF-8 JSON or TOML."))?;
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if content_type.contains("toml") {
        toml::from_str(text).map_err(|e| ApiError::param(format!("The fixture is not valid: {}", e.message())))
    } else {
        serde_json::from_str(text).map_err(|e| ApiError::param(format!("The fixture is not valid: {e}.")))
    }
}

/// Loads a fixture (JSON, or TOML with `Content-Type: application/toml`): accounts, access keys,
/// SSH keys, user scripts, firewalls with rules and past bills, all or nothing. Meant for a quiet
/// server (a suite's setup): a failure puts back the state from before the call.
#[utoipa::path(post, path = "/admin/v1/seed", tag = "operator", security(("admin_token" = [])),
    request_body(content = String, description = "The fixture, JSON or TOML (docs/standin.md)"),
    responses((status = 200, body = Envelope<Vec<SeedDone>>), (status = 400, body = openwinv_wire::ErrorEnvelope),
        (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn seed(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Reply<SeedDone> {
    let fixture = parse_fixture(&headers, &body)?;
    let before = state.store.snapshot().await?;
    match apply(&state, fixture).await {
        Ok(done) => Ok(Json(Envelope::rows(vec![done]))),
        Err(e) => {
            replace_state(&state, state.store.restore(&before)).await?;
            Err(e)
        }
    }
}

async fn apply(state: &AppState, fixture: Fixture) -> ApiResult<SeedDone> {
    let mut done = SeedDone::default();
    for (i, a) in fixture.accounts.into_iter().enumerate() {
        let entry = format!("accounts[{i}]");
        let body = Body(Map::from_iter([("name".to_owned(), Value::String(a.name.clone()))]));
        let _ = crate::admin::create_account(State(state.clone()), body).await.map_err(at(entry.clone()))?;
        if let Some(quota) = a.quota {
            let _ = crate::admin::set_quota(State(state.clone()), Path(a.name.clone()), Body(quota))
                .await
                .map_err(at(entry.clone()))?;
        }
        if a.enabled == Some(false) {
            let _ = crate::admin::disable_account(State(state.clone()), Path(a.name)).await.map_err(at(entry))?;
        }
        done.accounts += 1;
    }
    for (i, k) in fixture.keys.iter().enumerate() {
        let entry = format!("keys[{i}]");
        let account = k.account.clone().unwrap_or_else(|| BOOTSTRAP_ACCOUNT.to_owned());
        for n in 1..=copies(&entry, k.count)? {
            let Json(issued) =
                crate::admin::create_key(State(state.clone()), Path(account.clone()), numbered(&k.fields, n))
                    .await
                    .map_err(at(entry.clone()))?;
            done.access_keys.extend(issued.result);
        }
    }
    for (i, k) in fixture.ssh_keys.iter().enumerate() {
        let entry = format!("ssh_keys[{i}]");
        let owner = account_id(state, &entry, k.account.as_deref()).await?;
        for n in 1..=copies(&entry, k.count)? {
            let _ = ssh_keys::create_for(state, &owner, &numbered(&k.fields, n)).await.map_err(at(entry.clone()))?;
            done.ssh_keys += 1;
        }
    }
    for (i, s) in fixture.scripts.iter().enumerate() {
        let entry = format!("scripts[{i}]");
        let owner = account_id(state, &entry, s.account.as_deref()).await?;
        for n in 1..=copies(&entry, s.count)? {
            let _ = scripts::create_for(state, &owner, &numbered(&s.fields, n)).await.map_err(at(entry.clone()))?;
            done.scripts += 1;
        }
    }
    for (i, f) in fixture.firewalls.iter().enumerate() {
        let entry = format!("firewalls[{i}]");
        let owner = account_id(state, &entry, f.account.as_deref()).await?;
        let rules = f.fields.get("rules").and_then(Value::as_array).map_or(0, Vec::len);
        for n in 1..=copies(&entry, f.count)? {
            let _ = firewalls::create_for(state, &owner, &numbered(&f.fields, n), false)
                .await
                .map_err(at(entry.clone()))?;
            done.firewalls += 1;
            done.firewall_rules += rules;
        }
    }
    seed_machines(state, &fixture.instances, &fixture.block_storages, &mut done).await?;
    let mut bills = Vec::new();
    for (i, b) in fixture.bills.iter().enumerate() {
        let entry = format!("bills[{i}]");
        let owner = account_id(state, &entry, b.account.as_deref()).await?;
        let mut month = past_month(state, &entry, &b.month)?;
        for _ in 0..copies(&entry, b.count)? {
            bills.push(bill(state, &entry, &owner, month, b)?);
            month = month.prev();
        }
    }
    let written = state.store.insert_bills_if_absent(&bills).await?;
    if written != bills.len() {
        return Err(ApiError::param(format!(
            "bills: {} of the bills are for a month the account already has a bill for (one bill per account and month).",
            bills.len() - written
        )));
    }
    done.bills = written;
    Ok(done)
}

/// Longest a fixture waits for one of its operations (the simulated driver's steps take
/// `--sim-delay` seconds of server-clock time each).
const SEED_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// How many copies of a fixture entry are made before their operations are waited for.
const SEED_BATCH: usize = 50;

/// The caller a fixture entry acts as: the account, as its API requests would.
fn caller_of(account_id: openwinv_store::ids::AccountId) -> Caller {
    Caller { account_id, account_name: String::new(), access_key: "seed".to_owned() }
}

/// Waits until every operation of `ids` is over; a failed one fails the fixture, naming `entry`.
async fn settle(state: &AppState, entry: &str, ids: &[openwinv_store::ids::OperationId]) -> ApiResult<()> {
    let deadline = std::time::Instant::now() + SEED_WAIT;
    for id in ids {
        loop {
            let op = state.store.operation(id).await?.ok_or_else(|| {
                ApiError::internal(format!("{entry}: the operation {id} disappeared while the fixture waited for it."))
            })?;
            match op.status.as_str() {
                openwinv_store::operations::SUCCEEDED => break,
                openwinv_store::operations::FAILED => {
                    return Err(ApiError::param(format!(
                        "{entry}: the {} operation {id} failed: {}",
                        op.kind,
                        op.error.unwrap_or_default()
                    )));
                }
                _ if std::time::Instant::now() > deadline => {
                    return Err(ApiError::param(format!(
                        "{entry}: the operation {id} did not finish within {} s.",
                        SEED_WAIT.as_secs()
                    )));
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }
    Ok(())
}

/// Instances and volumes, through the API's own handlers, each waited for.
async fn seed_machines(
    state: &AppState,
    instances: &[InstanceFixture],
    volumes: &[VolumeFixture],
    done: &mut SeedDone,
) -> ApiResult<()> {
    if (!instances.is_empty() || !volumes.is_empty()) && state.config.driver != Driver::Sim {
        return Err(ApiError::param(
            "instances and block_storages fixtures need the simulated driver (serve --driver sim).",
        ));
    }
    // Names of the instances made here, per account, for volumes' `instance`.
    let mut named: std::collections::HashMap<(openwinv_store::ids::AccountId, String), String> = Default::default();
    for (i, f) in instances.iter().enumerate() {
        let entry = format!("instances[{i}]");
        let owner = account_id(state, &entry, f.account.as_deref()).await?;
        let shut = match f.status.as_deref() {
            None | Some("active") => false,
            Some("off") => true,
            Some(other) => {
                return Err(ApiError::new(
                    openwinv_wire::ErrorCode::CheckParamEnum,
                    format!("{entry}: the field `status` must be one of active, off, not `{other}`."),
                ));
            }
        };
        if f.fields.contains_key("count") {
            return Err(ApiError::param(format!(
                "{entry}: `count` is the fixture's number of copies here; each copy is one instance."
            )));
        }
        let caller = caller_of(owner.clone());
        // The copies are made in order (their creation times keep the fixture's order) and run
        // together: each batch's operations are waited for at once, not one after another.
        let copies: Vec<u32> = (1..=copies(&entry, f.count)?).collect();
        for batch in copies.chunks(SEED_BATCH) {
            let mut made = Vec::new();
            let mut ops = Vec::new();
            for &n in batch {
                let input =
                    CreateInstance::from_body(&numbered(&f.fields, n), Encoding::Json).map_err(at(entry.clone()))?;
                let receipt = service::instances::create(state, &caller, input).await.map_err(at(entry.clone()))?;
                ops.extend(receipt.operation_ids);
                made.extend(receipt.rows);
            }
            settle(state, &entry, &ops).await?;
            if shut {
                let mut ops = Vec::new();
                for r in &made {
                    let done = service::instances::shutdown(state, &caller, &r.instance_id)
                        .await
                        .map_err(at(entry.clone()))?;
                    ops.extend(done.operation_ids);
                }
                settle(state, &entry, &ops).await?;
            }
            for r in made {
                named.insert((owner.clone(), r.name.clone()), r.instance_id.clone());
                done.instances += 1;
            }
        }
    }
    for (i, v) in volumes.iter().enumerate() {
        let entry = format!("block_storages[{i}]");
        let owner = account_id(state, &entry, v.account.as_deref()).await?;
        let caller = caller_of(owner.clone());
        let copies: Vec<u32> = (1..=copies(&entry, v.count)?).collect();
        for batch in copies.chunks(SEED_BATCH) {
            let mut made = Vec::new();
            let mut ops = Vec::new();
            for &n in batch {
                let mut body = numbered(&v.fields, n);
                if let Some(name) = &v.instance {
                    let name = name.replace("{n}", &n.to_string());
                    let id = named.get(&(owner.clone(), name.clone())).ok_or_else(|| {
                        ApiError::param(format!(
                            "{entry}: the field `instance` names no instance of this fixture: `{name}`."
                        ))
                    })?;
                    body.0.insert("instance_id".to_owned(), Value::String(id.clone()));
                }
                let input = CreateVolume::from_body(&body, Encoding::Json).map_err(at(entry.clone()))?;
                let receipt = service::volumes::create(state, &caller, input).await.map_err(at(entry.clone()))?;
                ops.extend(receipt.operation_ids);
                made.extend(receipt.rows);
            }
            settle(state, &entry, &ops).await?;
            if v.detached {
                let mut ops = Vec::new();
                for r in &made {
                    let done = service::volumes::detach(state, &caller, &r.block_storage_id)
                        .await
                        .map_err(at(entry.clone()))?;
                    ops.extend(done.operation_ids);
                }
                settle(state, &entry, &ops).await?;
            }
            done.block_storages += made.len();
        }
    }
    Ok(())
}

/// `YYYY-MM`, a month over on the server clock.
fn past_month(state: &AppState, entry: &str, text: &str) -> ApiResult<Month> {
    let bad =
        || ApiError::param(format!("{entry}: the field `month` must be a finished month as YYYY-MM, not `{text}`."));
    let month = Month::parse_key(text).filter(|m| m.key() == text).ok_or_else(bad)?;
    let tz = &state.config.billing_timezone;
    if month.period(tz).end > state.clock.unix() {
        return Err(bad());
    }
    Ok(month)
}

fn bill(
    state: &AppState,
    entry: &str,
    account_id: &str,
    month: Month,
    b: &BillFixture,
) -> ApiResult<(openwinv_store::BillRecord, Vec<openwinv_store::BillItemRecord>)> {
    let tz = &state.config.billing_timezone;
    let period = month.period(tz);
    let line = |kind: Kind, id: Option<&str>, name: &str, price: i64, rate: Option<i64>, seconds: Option<i64>| Line {
        resource_id: id.map_or_else(|| openwinv_store::ids::new_id("SEED"), str::to_owned),
        kind,
        name: name.to_owned(),
        rate: rate.unwrap_or(price),
        seconds: seconds.unwrap_or(period.end - period.start),
        amount: price,
        first: period.start,
        last: period.end - 1,
    };
    let lines: Vec<Line> = match (b.price, b.items.is_empty()) {
        (Some(_), false) => {
            return Err(ApiError::param(format!("{entry}: give either `price` or `items`, not both.")));
        }
        (None, true) => return Err(at(entry.to_owned())(ApiError::missing_body("price"))),
        (Some(price), true) => vec![line(Kind::Server, None, "seed", price, None, None)],
        (None, false) => b
            .items
            .iter()
            .enumerate()
            .map(|(j, it)| {
                let kind = match it.kind.as_deref() {
                    None | Some("server") => Kind::Server,
                    Some("volume") => Kind::Volume,
                    Some(other) => {
                        return Err(ApiError::param(format!(
                            "{entry}: the field `items.{j}.kind` must be one of server, volume, not `{other}`."
                        )));
                    }
                };
                Ok(line(kind, it.service_id.as_deref(), &it.name, it.price, it.rate, it.seconds))
            })
            .collect::<ApiResult<_>>()?,
    };
    if let Some(l) = lines.iter().find(|l| l.amount < 0 || l.rate < 0 || l.seconds < 0) {
        return Err(ApiError::param(format!(
            "{entry}: prices, rates and seconds must not be negative (`{}`).",
            l.name
        )));
    }
    Ok(crate::billing::close::bill(account_id, month, &lines, tz, b.paid, state.clock.unix()))
}
