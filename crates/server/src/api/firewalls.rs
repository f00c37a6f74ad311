//! Firewalls (spec §9): one store behind two path families.
//!
//! - family A, `/v1/security-groups…`: create answers 200; rules have their own CRUD.
//! - family B, `/v1/firewall…`: create takes inline `rules[]` and answers 202; an edit with
//!   `rules` replaces the whole rule set.
//!
//! Validation is complete before anything is written, and every change is one store transaction.
//! Attach and detach write the attachment and an operation together and answer 202; the
//! `firewall.attach` / `firewall.detach` sagas compile the instance's rule set and hand it to the
//! driver. A change to the rules or `icmp` of an attached firewall starts a `firewall.sync`
//! operation (its id in `X-Operation-Id` of the 200 answer [ext]).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::{Extension, Json};
use openwinv_driver::firewall::{Cidr, CidrError, PortRange};
use openwinv_store::firewalls::{FirewallEdit, NewRule, RuleEdit, SyncOp, first_duplicate};
use openwinv_store::{FirewallRecord, FirewallRefused, FirewallRuleRecord, NewOperation, PageQuery, ids};
use openwinv_wire::firewalls::*;
use openwinv_wire::{Envelope, ErrorCode, ErrorEnvelope};
use serde_json::{Map, Value};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Path, Query, enum_error, text_field};
use crate::sagas::firewall::Kind;
use crate::service::capabilities::{self, Feature};

pub use crate::sagas::firewall::{compiled_for, compiled_text_for};

/// Most rules one firewall holds [ours].
pub const MAX_RULES: usize = 100;
/// Most firewalls attached to one instance [ours].
pub const MAX_PER_INSTANCE: i64 = 5;
/// Default page size of the firewall lists [iwinv].
pub const PAGE_SIZE: u64 = 50;
pub const TITLE_MIN: usize = 4;
pub const TITLE_MAX: usize = 32;
pub const CONTENT_MIN: usize = 1;
pub const CONTENT_MAX: usize = 50;
pub const RULE_TITLE_MAX: usize = 25;
pub const RULE_CONTENT_MAX: usize = 25;
const ICMP: &[&str] = &["Y", "N"];
const BOUNDS: &[&str] = &["IN", "OUT"];
const PROTOCOLS: &[&str] = &["TCP", "UDP"];

/// An answer with status and headers (`X-Operation-Id`).
type Answer<T> = ApiResult<(StatusCode, HeaderMap, Json<Envelope<T>>)>;

fn answer<T>(
    status: StatusCode,
    operation_id: Option<&str>,
    body: Envelope<T>,
) -> (StatusCode, HeaderMap, Json<Envelope<T>>) {
    let mut h = HeaderMap::new();
    if let Some(op) = operation_id
        && let Ok(v) = HeaderValue::from_str(op)
    {
        h.insert(openwinv_wire::headers::OPERATION_ID, v);
    }
    (status, h, Json(body))
}

/// The string acknowledgement of firewall and rule deletes [iwinv shape, ours for the text].
fn ack() -> (StatusCode, HeaderMap, Json<Envelope<String>>) {
    answer(StatusCode::OK, None, Envelope::success("success".to_owned()))
}

/// `& " ' < >` → `&amp; &quot; &#039; &lt; &gt;`, as iwinv returns `content`.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#039;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("The firewall `{id}`"))
}

fn rule_not_found(id: &str, rule_id: &str) -> ApiError {
    ApiError::not_found(format!("The rule `{rule_id}` of the firewall `{id}`"))
}

fn refused(id: &str, r: FirewallRefused, instance_id: &str) -> ApiError {
    match r {
        FirewallRefused::NotFound => not_found(id),
        FirewallRefused::RuleNotFound => ApiError::not_found(format!("The rule of the firewall `{id}`")),
        FirewallRefused::InstanceNotFound => {
            ApiError::new(ErrorCode::IdInvalid, format!("The instance_id `{instance_id}` does not exist."))
        }
        FirewallRefused::InstanceBusy(_) => ApiError::new(
            ErrorCode::DeletedOrWorkingInstance,
            format!(
                "The instance `{instance_id}` is being created, is in the middle of an operation, or is being deleted."
            ),
        ),
        FirewallRefused::TooManyRules => {
            ApiError::quota(format!("The firewall `{id}` already has {MAX_RULES} rules, the most allowed."))
        }
        FirewallRefused::TooManyFirewalls => ApiError::quota(format!(
            "The instance `{instance_id}` already has {MAX_PER_INSTANCE} firewalls attached, the most allowed."
        )),
        FirewallRefused::Duplicate(other) => ApiError::param(format!(
            "The rule duplicates rule {other} of the firewall `{id}` (same bound, protocol, port and ip)."
        )),
        FirewallRefused::InUse(n) => ApiError::new(
            ErrorCode::InUse,
            format!("The firewall `{id}` is attached to {n} instance(s); detach it first."),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// A text field of a JSON object, named `{prefix}{name}` in errors; numbers become text.
fn field(obj: &Map<String, Value>, prefix: &str, name: &str) -> ApiResult<Option<String>> {
    match obj.get(name).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::param(format!("The field `{prefix}{name}` must be a string."))),
    }
}

fn required(obj: &Map<String, Value>, prefix: &str, name: &str) -> ApiResult<String> {
    field(obj, prefix, name)?.ok_or_else(|| ApiError::missing_body(&format!("{prefix}{name}")))
}

fn check_enum(name: &str, v: String, allowed: &[&str]) -> ApiResult<String> {
    if allowed.contains(&v.as_str()) { Ok(v) } else { Err(enum_error(name, &v, allowed)) }
}

fn check_port(name: &str, v: &str) -> ApiResult<String> {
    let v = v.trim();
    PortRange::parse(v).map(|_| v.to_owned()).ok_or_else(|| {
        ApiError::param(format!(
            "The field `{name}` must be a port `N` or a range `A-B` with 1 ≤ A ≤ B ≤ 65535, not `{v}`."
        ))
    })
}

fn check_ip(name: &str, v: &str) -> ApiResult<String> {
    let v = v.trim();
    match Cidr::parse(v) {
        Ok(_) => Ok(v.to_owned()),
        Err(CidrError::Ipv6) => Err(ApiError::new(
            ErrorCode::Ipv6NotSupported,
            format!("The field `{name}` is an IPv6 address (`{v}`); firewall rules take IPv4 networks only."),
        )),
        Err(CidrError::BareAddress) => Err(ApiError::param(format!(
            "The field `{name}` must be an IPv4 network in CIDR form such as `{v}/32`, not a bare address."
        ))),
        Err(CidrError::Invalid) => Err(ApiError::param(format!(
            "The field `{name}` must be an IPv4 network in CIDR form (`a.b.c.d/n`, n 0–32), not `{v}`."
        ))),
    }
}

fn rule_title(name: &str, v: &str) -> ApiResult<String> {
    text_field(name, v, 1, RULE_TITLE_MAX)
}

/// Empty content means none (on a new rule; on an edit it keeps the old value).
fn rule_content(name: &str, v: &str) -> ApiResult<Option<String>> {
    let v = text_field(name, v, 0, RULE_CONTENT_MAX)?;
    Ok(if v.is_empty() { None } else { Some(v) })
}

/// A whole new rule; `prefix` names it in errors (`rules.2.` for the third inline rule).
fn new_rule(obj: &Map<String, Value>, prefix: &str) -> ApiResult<NewRule> {
    let name = |n: &str| format!("{prefix}{n}");
    let bound = check_enum(&name("bound"), required(obj, prefix, "bound")?, BOUNDS)?;
    let protocol = check_enum(&name("protocol"), required(obj, prefix, "protocol")?, PROTOCOLS)?;
    let port = check_port(&name("port"), &required(obj, prefix, "port")?)?;
    let ip = check_ip(&name("ip"), &required(obj, prefix, "ip")?)?;
    let title = rule_title(&name("title"), &required(obj, prefix, "title")?)?;
    let content = match field(obj, prefix, "content")? {
        Some(c) => rule_content(&name("content"), &c)?,
        None => None,
    };
    Ok(NewRule { bound, protocol, port, ip, title, content })
}

/// `rules` of a body: a JSON array of objects (form keys `rules.N.field` arrive as one), or a
/// JSON array written as a string in a form field. `None` when absent.
fn rules_field(body: &Body) -> ApiResult<Option<Vec<NewRule>>> {
    let bad = || ApiError::param("The field `rules` must be a list of rule objects.");
    let items = match body.0.get("rules") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(items)) => items,
            _ => return Err(bad()),
        },
        Some(_) => return Err(bad()),
    };
    if items.len() > MAX_RULES {
        return Err(ApiError::quota(format!(
            "The field `rules` has {} rules; a firewall holds at most {MAX_RULES}.",
            items.len()
        )));
    }
    let rules = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(obj) => new_rule(obj, &format!("rules.{i}.")),
            _ => Err(ApiError::param(format!("The field `rules.{i}` must be a rule object."))),
        })
        .collect::<ApiResult<Vec<_>>>()?;
    if let Some((i, j)) = first_duplicate(&rules) {
        return Err(ApiError::param(format!(
            "The rule `rules.{j}` duplicates `rules.{i}` (same bound, protocol, port and ip)."
        )));
    }
    Ok(Some(rules))
}

fn title(v: &str) -> ApiResult<String> {
    text_field("title", v, TITLE_MIN, TITLE_MAX)
}

fn content(v: &str) -> ApiResult<String> {
    text_field("content", v, CONTENT_MIN, CONTENT_MAX)
}

fn icmp(v: String) -> ApiResult<String> {
    check_enum("icmp", v, ICMP)
}

// ---------------------------------------------------------------------------------------------
// Views

fn rule_to_wire(r: FirewallRuleRecord) -> FirewallRule {
    FirewallRule {
        rule_id: r.rule_id,
        bound: r.bound,
        protocol: r.protocol,
        port: r.port,
        ip: r.ip,
        title: r.title,
        content: r.content,
    }
}

/// Firewall rows with their rules and attached instances, in the order given.
async fn rows(state: &AppState, recs: Vec<FirewallRecord>) -> ApiResult<Vec<Firewall>> {
    let ids: Vec<String> = recs.iter().map(|r| r.firewall_id.clone()).collect();
    let rules = state.store.firewall_rules(&ids).await?;
    let attachments = state.store.firewall_attachments(&ids).await?;
    Ok(recs
        .into_iter()
        .map(|f| Firewall {
            rules: rules.iter().filter(|r| r.firewall_id == f.firewall_id).cloned().map(rule_to_wire).collect(),
            instances: attachments.iter().filter(|(fw, _)| *fw == f.firewall_id).map(|(_, i)| i.clone()).collect(),
            content: escape_html(&f.content),
            firewall_id: f.firewall_id,
            title: f.title,
            icmp: f.icmp,
        })
        .collect())
}

async fn one(state: &AppState, account_id: &str, id: &str) -> ApiResult<Firewall> {
    let rec = state.store.firewall(account_id, id).await?.ok_or_else(|| not_found(id))?;
    Ok(rows(state, vec![rec]).await?.remove(0))
}

// ---------------------------------------------------------------------------------------------
// Shared implementations

pub async fn list_for(state: &AppState, account_id: &str, q: &Query) -> ApiResult<Json<Envelope<Vec<Firewall>>>> {
    let page = q.page(PAGE_SIZE)?;
    let (recs, _) = state.store.list_firewalls(account_id, PageQuery::new(page.page_size, page.offset())).await?;
    // No `total` [iwinv live] (spec §3).
    Ok(Json(Envelope::page_without_total(rows(state, recs).await?, page)))
}

/// Detail: an unknown, deleted or another account's firewall is an empty answer [iwinv].
pub async fn detail_for(state: &AppState, account_id: &str, id: &str) -> ApiResult<Json<Envelope<Vec<Firewall>>>> {
    let recs: Vec<FirewallRecord> = state.store.firewall(account_id, id).await?.into_iter().collect();
    Ok(Json(Envelope::rows(rows(state, recs).await?)))
}

/// Creates a firewall; family B (`accepted`) also writes a `firewall.sync` operation so that its
/// 202 carries an operation id.
pub async fn create_for(state: &AppState, account_id: &str, body: &Body, accepted: bool) -> Answer<Vec<Firewall>> {
    let title = title(&body.required_str("title")?)?;
    let content = content(&body.required_str("content")?)?;
    let icmp = icmp(body.str("icmp")?.unwrap_or_else(|| "Y".into()))?;
    let rules = rules_field(body)?.unwrap_or_default();
    let rec = FirewallRecord {
        firewall_id: ids::new_id("FIREWALL"),
        account_id: account_id.to_owned(),
        title,
        content,
        icmp,
        next_rule_id: 1,
        created_at: state.clock.unix(),
    };
    let operation_id = ids::new_id("OP");
    let op = NewOperation {
        operation_id: &operation_id,
        account_id,
        kind: Kind::Sync.name(),
        resource_id: &rec.firewall_id,
        params: openwinv_engine::NoParams::ENCODED,
        now_ms: state.clock.unix_ms(),
    };
    state.store.create_firewall(&rec, &rules, accepted.then_some(&op)).await?;
    let row = one(state, account_id, &rec.firewall_id).await?;
    if accepted {
        state.engine.wake();
        Ok(answer(StatusCode::ACCEPTED, Some(&operation_id), Envelope::rows(vec![row])))
    } else {
        Ok(answer(StatusCode::OK, None, Envelope::rows(vec![row])))
    }
}

/// Edits a firewall: omitted fields keep their values; `rules` replaces the rule set.
pub async fn edit_for(state: &AppState, account_id: &str, id: &str, body: &Body) -> Answer<Vec<Firewall>> {
    let changes = FirewallEdit {
        title: body.str("title")?.map(|v| title(&v)).transpose()?,
        content: body.str("content")?.map(|v| content(&v)).transpose()?,
        icmp: body.str("icmp")?.map(icmp).transpose()?,
        rules: rules_field(body)?,
    };
    if changes.title.is_none() && changes.content.is_none() && changes.icmp.is_none() && changes.rules.is_none() {
        return Err(ApiError::new(
            ErrorCode::RequiredPostParamMissing,
            "Give at least one of the body fields `title`, `content`, `icmp` or `rules`.",
        ));
    }
    let operation_id = ids::new_id("OP");
    let sync = (changes.icmp.is_some() || changes.rules.is_some()).then(|| SyncOp {
        operation_id: &operation_id,
        kind: Kind::Sync.name(),
        now_ms: state.clock.unix_ms(),
    });
    let synced = state.store.edit_firewall(account_id, id, &changes, sync).await?.map_err(|r| refused(id, r, ""))?;
    finish_sync(state, synced);
    let row = one(state, account_id, id).await?;
    Ok(answer(StatusCode::OK, synced.then_some(operation_id.as_str()), Envelope::rows(vec![row])))
}

fn finish_sync(state: &AppState, synced: bool) {
    if synced {
        state.engine.wake();
    }
}

pub async fn delete_for(state: &AppState, account_id: &str, id: &str) -> Answer<String> {
    state.store.delete_firewall(account_id, id).await?.map_err(|r| refused(id, r, ""))?;
    Ok(ack())
}

/// Ids of the instances a firewall is attached to.
pub async fn instances_for(state: &AppState, account_id: &str, id: &str) -> ApiResult<Json<Envelope<Vec<String>>>> {
    let fw = one(state, account_id, id).await?;
    Ok(Json(Envelope::rows(fw.instances)))
}

/// Attaches or detaches; 202 with the operation that applies the result.
pub async fn attachment_for(
    state: &AppState,
    account_id: &str,
    id: &str,
    body: &Body,
    attach: bool,
) -> Answer<Vec<AttachmentReceipt>> {
    let instance_id = body.required_str("instance_id")?.trim().to_owned();
    if instance_id.is_empty() {
        return Err(ApiError::missing_body("instance_id"));
    }
    // Detaching is always possible (it leaves the machine open, as a host without firewalls has it).
    if attach {
        capabilities::require(state, Feature::Firewalls, "Attaching a firewall to the body field `instance_id`")?;
    }
    let kind = if attach { Kind::Attach } else { Kind::Detach };
    let operation_id = ids::new_id("OP");
    let op = SyncOp { operation_id: &operation_id, kind: kind.name(), now_ms: state.clock.unix_ms() };
    state
        .store
        .begin_firewall_attachment(account_id, id, &instance_id, attach, MAX_PER_INSTANCE, op)
        .await?
        .map_err(|r| refused(id, r, &instance_id))?;
    state.engine.wake();
    let receipt = AttachmentReceipt {
        firewall_id: id.to_owned(),
        instance_id,
        status: if attach { "attaching" } else { "detaching" }.into(),
    };
    Ok(answer(StatusCode::ACCEPTED, Some(&operation_id), Envelope::rows(vec![receipt])))
}

fn parse_rule_id(id: &str, rule_id: &str) -> ApiResult<i64> {
    rule_id.parse::<i64>().map_err(|_| rule_not_found(id, rule_id))
}

pub async fn rules_for(state: &AppState, account_id: &str, id: &str) -> ApiResult<Json<Envelope<Vec<FirewallRule>>>> {
    let fw = one(state, account_id, id).await?;
    Ok(Json(Envelope::rows(fw.rules)))
}

pub async fn add_rule_for(state: &AppState, account_id: &str, id: &str, body: &Body) -> Answer<Vec<FirewallRule>> {
    let rule = new_rule(&body.0, "")?;
    let operation_id = ids::new_id("OP");
    let sync = SyncOp { operation_id: &operation_id, kind: Kind::Sync.name(), now_ms: state.clock.unix_ms() };
    let (rec, synced) = state
        .store
        .add_firewall_rule(account_id, id, &rule, MAX_RULES, Some(sync))
        .await?
        .map_err(|r| refused(id, r, ""))?;
    finish_sync(state, synced);
    Ok(answer(StatusCode::OK, synced.then_some(operation_id.as_str()), Envelope::rows(vec![rule_to_wire(rec)])))
}

pub async fn edit_rule_for(
    state: &AppState,
    account_id: &str,
    id: &str,
    rule_id: &str,
    body: &Body,
) -> Answer<Vec<FirewallRule>> {
    let rule_no = parse_rule_id(id, rule_id)?;
    let obj = &body.0;
    let changes = RuleEdit {
        bound: field(obj, "", "bound")?.map(|v| check_enum("bound", v, BOUNDS)).transpose()?,
        protocol: field(obj, "", "protocol")?.map(|v| check_enum("protocol", v, PROTOCOLS)).transpose()?,
        port: field(obj, "", "port")?.map(|v| check_port("port", &v)).transpose()?,
        ip: field(obj, "", "ip")?.map(|v| check_ip("ip", &v)).transpose()?,
        title: field(obj, "", "title")?.map(|v| rule_title("title", &v)).transpose()?,
        // An empty or null `content` keeps the old value [iwinv live] (spec §9).
        content: field(obj, "", "content")?.map(|v| rule_content("content", &v)).transpose()?.flatten().map(Some),
    };
    // A `content` that keeps the old value still counts as given: the edit is a no-op, not an
    // empty request.
    let content_given = obj.contains_key("content");
    if changes.bound.is_none()
        && changes.protocol.is_none()
        && changes.port.is_none()
        && changes.ip.is_none()
        && changes.title.is_none()
        && changes.content.is_none()
        && !content_given
    {
        return Err(ApiError::new(
            ErrorCode::RequiredPostParamMissing,
            "Give at least one of the body fields `bound`, `protocol`, `port`, `ip`, `title` or `content`.",
        ));
    }
    let operation_id = ids::new_id("OP");
    let sync = SyncOp { operation_id: &operation_id, kind: Kind::Sync.name(), now_ms: state.clock.unix_ms() };
    let (rec, synced) =
        state.store.edit_firewall_rule(account_id, id, rule_no, &changes, Some(sync)).await?.map_err(|r| match r {
            FirewallRefused::RuleNotFound => rule_not_found(id, rule_id),
            r => refused(id, r, ""),
        })?;
    finish_sync(state, synced);
    Ok(answer(StatusCode::OK, synced.then_some(operation_id.as_str()), Envelope::rows(vec![rule_to_wire(rec)])))
}

pub async fn delete_rule_for(state: &AppState, account_id: &str, id: &str, rule_id: &str) -> Answer<String> {
    let rule_no = parse_rule_id(id, rule_id)?;
    let operation_id = ids::new_id("OP");
    let sync = SyncOp { operation_id: &operation_id, kind: Kind::Sync.name(), now_ms: state.clock.unix_ms() };
    let synced = state.store.delete_firewall_rule(account_id, id, rule_no, Some(sync)).await?.map_err(|r| match r {
        FirewallRefused::RuleNotFound => rule_not_found(id, rule_id),
        r => refused(id, r, ""),
    })?;
    finish_sync(state, synced);
    let (status, mut headers, body) = ack();
    if synced && let Ok(v) = HeaderValue::from_str(&operation_id) {
        headers.insert(openwinv_wire::headers::OPERATION_ID, v);
    }
    Ok((status, headers, body))
}

// ---------------------------------------------------------------------------------------------
// Family A: /v1/security-groups

/// The account's firewalls (default page size 50 [iwinv]).
#[utoipa::path(get, path = "/v1/security-groups", tag = "firewalls",
    params(("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query, description = "default 50")),
    responses((status = 200, body = Envelope<Vec<Firewall>>), (status = 400, body = ErrorEnvelope)))]
pub async fn sg_list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Query,
) -> ApiResult<Json<Envelope<Vec<Firewall>>>> {
    list_for(&state, &caller.account_id, &q).await
}

/// One firewall; an unknown or deleted id answers 200 with no rows [iwinv].
#[utoipa::path(get, path = "/v1/security-groups/{firewall_id}", tag = "firewalls", params(("firewall_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Firewall>>)))]
pub async fn sg_detail(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Envelope<Vec<Firewall>>>> {
    detail_for(&state, &caller.account_id, &id).await
}

/// Creates a firewall (200 [iwinv live]); inline `rules` are accepted too [ext].
#[utoipa::path(post, path = "/v1/security-groups", tag = "firewalls", request_body = NewFirewall,
    responses((status = 200, body = Envelope<Vec<Firewall>>), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn sg_create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Answer<Vec<Firewall>> {
    create_for(&state, &caller.account_id, &body, false).await
}

/// Edits a firewall; omitted fields keep their values, `rules` replaces the rule set.
#[utoipa::path(put, path = "/v1/security-groups/{firewall_id}", tag = "firewalls", params(("firewall_id" = String, Path)),
    request_body = FirewallChanges,
    responses((status = 200, body = Envelope<Vec<Firewall>>), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn sg_edit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Answer<Vec<Firewall>> {
    edit_for(&state, &caller.account_id, &id, &body).await
}

/// Deletes a firewall (`result: "success"`); refused while attached (409 `IN_USE`).
#[utoipa::path(delete, path = "/v1/security-groups/{firewall_id}", tag = "firewalls", params(("firewall_id" = String, Path)),
    responses((status = 200, body = Envelope<String>), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn sg_delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer<String> {
    delete_for(&state, &caller.account_id, &id).await
}

/// The firewall's rules (not paginated [iwinv]).
#[utoipa::path(get, path = "/v1/security-groups/{firewall_id}/rules", tag = "firewalls", params(("firewall_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<FirewallRule>>), (status = 404, body = ErrorEnvelope)))]
pub async fn sg_rules(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Envelope<Vec<FirewallRule>>>> {
    rules_for(&state, &caller.account_id, &id).await
}

/// Adds a rule (at most 100 per firewall; an exact duplicate → `CHECK_PARAM`).
#[utoipa::path(post, path = "/v1/security-groups/{firewall_id}/rules", tag = "firewalls", params(("firewall_id" = String, Path)),
    request_body = NewFirewallRule,
    responses((status = 200, body = Envelope<Vec<FirewallRule>>), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn sg_add_rule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Answer<Vec<FirewallRule>> {
    add_rule_for(&state, &caller.account_id, &id, &body).await
}

/// Edits a rule; omitted fields keep their values.
#[utoipa::path(put, path = "/v1/security-groups/{firewall_id}/rules/{rule_id}", tag = "firewalls",
    params(("firewall_id" = String, Path), ("rule_id" = i64, Path)), request_body = FirewallRuleChanges,
    responses((status = 200, body = Envelope<Vec<FirewallRule>>), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn sg_edit_rule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, rule_id)): Path<(String, String)>,
    body: Body,
) -> Answer<Vec<FirewallRule>> {
    edit_rule_for(&state, &caller.account_id, &id, &rule_id, &body).await
}

/// Deletes a rule (`result: "success"`).
#[utoipa::path(delete, path = "/v1/security-groups/{firewall_id}/rules/{rule_id}", tag = "firewalls",
    params(("firewall_id" = String, Path), ("rule_id" = i64, Path)),
    responses((status = 200, body = Envelope<String>), (status = 404, body = ErrorEnvelope)))]
pub async fn sg_delete_rule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, rule_id)): Path<(String, String)>,
) -> Answer<String> {
    delete_rule_for(&state, &caller.account_id, &id, &rule_id).await
}

/// Ids of the instances the firewall is attached to.
#[utoipa::path(get, path = "/v1/security-groups/{firewall_id}/instances", tag = "firewalls", params(("firewall_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<String>>), (status = 404, body = ErrorEnvelope)))]
pub async fn sg_instances(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Envelope<Vec<String>>>> {
    instances_for(&state, &caller.account_id, &id).await
}

/// Attaches the firewall to an instance (202; at most 5 per instance; repeating is a no-op).
#[utoipa::path(post, path = "/v1/security-groups/{firewall_id}/attach", tag = "firewalls", params(("firewall_id" = String, Path)),
    request_body = FirewallTarget,
    responses((status = 202, body = Envelope<Vec<AttachmentReceipt>>), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn sg_attach(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Answer<Vec<AttachmentReceipt>> {
    attachment_for(&state, &caller.account_id, &id, &body, true).await
}

/// Detaches the firewall from an instance (202; detaching what is not attached is a no-op).
#[utoipa::path(post, path = "/v1/security-groups/{firewall_id}/detach", tag = "firewalls", params(("firewall_id" = String, Path)),
    request_body = FirewallTarget,
    responses((status = 202, body = Envelope<Vec<AttachmentReceipt>>), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn sg_detach(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Answer<Vec<AttachmentReceipt>> {
    attachment_for(&state, &caller.account_id, &id, &body, false).await
}

// ---------------------------------------------------------------------------------------------
// Family B: /v1/firewall

/// The account's firewalls (default page size 50 [iwinv]).
#[utoipa::path(get, path = "/v1/firewall", tag = "firewalls",
    params(("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query, description = "default 50")),
    responses((status = 200, body = Envelope<Vec<Firewall>>), (status = 400, body = ErrorEnvelope)))]
pub async fn fw_list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Query,
) -> ApiResult<Json<Envelope<Vec<Firewall>>>> {
    list_for(&state, &caller.account_id, &q).await
}

/// One firewall; an unknown or deleted id answers 200 with no rows [iwinv].
#[utoipa::path(get, path = "/v1/firewall/{firewall_id}", tag = "firewalls", params(("firewall_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Firewall>>)))]
pub async fn fw_detail(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Envelope<Vec<Firewall>>>> {
    detail_for(&state, &caller.account_id, &id).await
}

/// Creates a firewall with inline `rules` (202 [iwinv doc], with `X-Operation-Id`).
#[utoipa::path(post, path = "/v1/firewall", tag = "firewalls", request_body = NewFirewall,
    responses((status = 202, body = Envelope<Vec<Firewall>>), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn fw_create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Answer<Vec<Firewall>> {
    create_for(&state, &caller.account_id, &body, true).await
}

/// Edits a firewall; with `rules` the whole rule set is replaced [iwinv].
#[utoipa::path(put, path = "/v1/firewall/{firewall_id}", tag = "firewalls", params(("firewall_id" = String, Path)),
    request_body = FirewallChanges,
    responses((status = 200, body = Envelope<Vec<Firewall>>), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn fw_edit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Answer<Vec<Firewall>> {
    edit_for(&state, &caller.account_id, &id, &body).await
}

/// Deletes a firewall (`result: "success"`); refused while attached (409 `IN_USE`).
#[utoipa::path(delete, path = "/v1/firewall/{firewall_id}", tag = "firewalls", params(("firewall_id" = String, Path)),
    responses((status = 200, body = Envelope<String>), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn fw_delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer<String> {
    delete_for(&state, &caller.account_id, &id).await
}

/// Ids of the instances the firewall is attached to [ext].
#[utoipa::path(get, path = "/v1/firewall/{firewall_id}/instances", tag = "firewalls", params(("firewall_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<String>>), (status = 404, body = ErrorEnvelope)))]
pub async fn fw_instances(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Envelope<Vec<String>>>> {
    instances_for(&state, &caller.account_id, &id).await
}

/// Attaches the firewall to an instance (202).
#[utoipa::path(post, path = "/v1/firewall/{firewall_id}/attach", tag = "firewalls", params(("firewall_id" = String, Path)),
    request_body = FirewallTarget,
    responses((status = 202, body = Envelope<Vec<AttachmentReceipt>>), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn fw_attach(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Answer<Vec<AttachmentReceipt>> {
    attachment_for(&state, &caller.account_id, &id, &body, true).await
}

/// Detaches the firewall from an instance (202).
#[utoipa::path(post, path = "/v1/firewall/{firewall_id}/detach", tag = "firewalls", params(("firewall_id" = String, Path)),
    request_body = FirewallTarget,
    responses((status = 202, body = Envelope<Vec<AttachmentReceipt>>), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn fw_detach(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Answer<Vec<AttachmentReceipt>> {
    attachment_for(&state, &caller.account_id, &id, &body, false).await
}

/// Both families' routes (merged into `/v1` by `api::routes`).
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post, put};
    axum::Router::new()
        .route("/v1/security-groups", get(sg_list).post(sg_create))
        .route("/v1/security-groups/{firewall_id}", get(sg_detail).put(sg_edit).delete(sg_delete))
        .route("/v1/security-groups/{firewall_id}/rules", get(sg_rules).post(sg_add_rule))
        .route("/v1/security-groups/{firewall_id}/rules/{rule_id}", put(sg_edit_rule).delete(sg_delete_rule))
        .route("/v1/security-groups/{firewall_id}/instances", get(sg_instances))
        .route("/v1/security-groups/{firewall_id}/attach", post(sg_attach))
        .route("/v1/security-groups/{firewall_id}/detach", post(sg_detach))
        .route("/v1/firewall", get(fw_list).post(fw_create))
        .route("/v1/firewall/{firewall_id}", get(fw_detail).put(fw_edit).delete(fw_delete))
        .route("/v1/firewall/{firewall_id}/instances", get(fw_instances))
        .route("/v1/firewall/{firewall_id}/attach", post(fw_attach))
        .route("/v1/firewall/{firewall_id}/detach", post(fw_detach))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_characters() {
        assert_eq!(escape_html(r#"a&b "c" 'd' <e>"#), "a&amp;b &quot;c&quot; &#039;d&#039; &lt;e&gt;");
        assert_eq!(escape_html("방화벽"), "방화벽");
    }

    #[test]
    fn inline_rules_are_named_by_index() {
        let body = Body(
            serde_json::json!({"rules": [
                {"bound": "IN", "protocol": "TCP", "port": 22, "ip": "0.0.0.0/0", "title": "ssh"},
                {"bound": "in", "protocol": "TCP", "port": "22", "ip": "0.0.0.0/0", "title": "ssh"}
            ]})
            .as_object()
            .unwrap()
            .clone(),
        );
        let e = rules_field(&body).unwrap_err();
        assert_eq!(e.code, ErrorCode::CheckParamEnum);
        assert!(e.message.contains("rules.1.bound"), "{}", e.message);
    }
}
