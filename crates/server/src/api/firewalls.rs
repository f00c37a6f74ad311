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
use openwinv_store::ids::AccountId;
use openwinv_store::{FirewallRecord, FirewallRuleRecord, PageQuery};
use openwinv_wire::firewalls::*;
use openwinv_wire::{Envelope, ErrorEnvelope};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::input::{Body, Encoding, Path, Query};
use crate::service::FromBody;
use crate::service::firewalls::{
    self as svc, AttachInput, CreateFirewall, EditFirewall, EditRule, RuleInput, not_found,
};

pub use crate::sagas::firewall::{compiled_for, compiled_text_for};
pub use crate::service::firewalls::{
    CONTENT_MAX, CONTENT_MIN, MAX_PER_INSTANCE, MAX_RULES, RULE_CONTENT_MAX, RULE_TITLE_MAX, TITLE_MAX, TITLE_MIN,
};

/// Default page size of the firewall lists [iwinv].
pub const PAGE_SIZE: u64 = 50;

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
fn ack(operation_id: Option<&str>) -> (StatusCode, HeaderMap, Json<Envelope<String>>) {
    answer(StatusCode::OK, operation_id, Envelope::success("success".to_owned()))
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

/// A typed input from a body given by a caller that read it already (the web console's forms).
fn input<T: FromBody>(body: &Body) -> ApiResult<T> {
    T::from_body(body, Encoding::Json)
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
    let ids: Vec<String> = recs.iter().map(|r| r.firewall_id.to_string()).collect();
    let rules = state.store.firewall_rules(&ids).await?;
    let attachments = state.store.firewall_attachments(&ids).await?;
    Ok(recs
        .into_iter()
        .map(|f| Firewall {
            rules: rules.iter().filter(|r| r.firewall_id == f.firewall_id).cloned().map(rule_to_wire).collect(),
            instances: attachments.iter().filter(|(fw, _)| *fw == f.firewall_id).map(|(_, i)| i.clone()).collect(),
            content: escape_html(&f.content),
            firewall_id: f.firewall_id.into(),
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
// Shared by both families and the web console: parse → [`crate::service::firewalls`] → render

pub async fn list_for(state: &AppState, account_id: &AccountId, q: &Query) -> ApiResult<Json<Envelope<Vec<Firewall>>>> {
    let page = q.page(PAGE_SIZE)?;
    let (recs, _) = state.store.list_firewalls(account_id, PageQuery::new(page.page_size, page.offset())).await?;
    // No `total` [iwinv live] (spec §3).
    Ok(Json(Envelope::page_without_total(rows(state, recs).await?, page)))
}

/// Detail: an unknown, deleted or another account's firewall is an empty answer [iwinv].
pub async fn detail_for(
    state: &AppState,
    account_id: &AccountId,
    id: &str,
) -> ApiResult<Json<Envelope<Vec<Firewall>>>> {
    let recs: Vec<FirewallRecord> = state.store.firewall(account_id, id).await?.into_iter().collect();
    Ok(Json(Envelope::rows(rows(state, recs).await?)))
}

/// Creates a firewall; family B (`accepted`) answers 202 with a `firewall.sync` operation.
pub async fn create_for(
    state: &AppState,
    account_id: &AccountId,
    body: &Body,
    accepted: bool,
) -> Answer<Vec<Firewall>> {
    let (id, operation_id) = svc::create(state, account_id, input::<CreateFirewall>(body)?, accepted).await?;
    let row = one(state, account_id, &id).await?;
    let status = if accepted { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok(answer(status, operation_id.as_deref(), Envelope::rows(vec![row])))
}

/// Edits a firewall: omitted fields keep their values; `rules` replaces the rule set.
pub async fn edit_for(state: &AppState, account_id: &AccountId, id: &str, body: &Body) -> Answer<Vec<Firewall>> {
    let operation_id = svc::edit(state, account_id, id, input::<EditFirewall>(body)?).await?;
    let row = one(state, account_id, id).await?;
    Ok(answer(StatusCode::OK, operation_id.as_deref(), Envelope::rows(vec![row])))
}

pub async fn delete_for(state: &AppState, account_id: &AccountId, id: &str) -> Answer<String> {
    svc::delete(state, account_id, id).await?;
    Ok(ack(None))
}

/// Ids of the instances a firewall is attached to.
pub async fn instances_for(
    state: &AppState,
    account_id: &AccountId,
    id: &str,
) -> ApiResult<Json<Envelope<Vec<String>>>> {
    let fw = one(state, account_id, id).await?;
    Ok(Json(Envelope::rows(fw.instances)))
}

/// Attaches or detaches; 202 with the operation that applies the result.
pub async fn attachment_for(
    state: &AppState,
    account_id: &AccountId,
    id: &str,
    body: &Body,
    attach: bool,
) -> Answer<Vec<AttachmentReceipt>> {
    let (instance_id, operation_id) =
        svc::attachment(state, account_id, id, input::<AttachInput>(body)?, attach).await?;
    let receipt = AttachmentReceipt {
        firewall_id: id.to_owned(),
        instance_id,
        status: if attach { "attaching" } else { "detaching" }.into(),
    };
    Ok(answer(StatusCode::ACCEPTED, Some(&operation_id), Envelope::rows(vec![receipt])))
}

pub async fn rules_for(
    state: &AppState,
    account_id: &AccountId,
    id: &str,
) -> ApiResult<Json<Envelope<Vec<FirewallRule>>>> {
    let fw = one(state, account_id, id).await?;
    Ok(Json(Envelope::rows(fw.rules)))
}

pub async fn add_rule_for(
    state: &AppState,
    account_id: &AccountId,
    id: &str,
    body: &Body,
) -> Answer<Vec<FirewallRule>> {
    let (rec, operation_id) = svc::add_rule(state, account_id, id, input::<RuleInput>(body)?).await?;
    Ok(answer(StatusCode::OK, operation_id.as_deref(), Envelope::rows(vec![rule_to_wire(rec)])))
}

pub async fn edit_rule_for(
    state: &AppState,
    account_id: &AccountId,
    id: &str,
    rule_id: &str,
    body: &Body,
) -> Answer<Vec<FirewallRule>> {
    let (rec, operation_id) = svc::edit_rule(state, account_id, id, rule_id, input::<EditRule>(body)?).await?;
    Ok(answer(StatusCode::OK, operation_id.as_deref(), Envelope::rows(vec![rule_to_wire(rec)])))
}

pub async fn delete_rule_for(state: &AppState, account_id: &AccountId, id: &str, rule_id: &str) -> Answer<String> {
    let operation_id = svc::delete_rule(state, account_id, id, rule_id).await?;
    Ok(ack(operation_id.as_deref()))
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
#[utoipa::path(post, path = "/v1/security-groups", tag = "firewalls", request_body = CreateFirewall,
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
    request_body = EditFirewall,
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
    request_body = RuleInput,
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
    params(("firewall_id" = String, Path), ("rule_id" = i64, Path)), request_body = EditRule,
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
    request_body = AttachInput,
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
    request_body = AttachInput,
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
#[utoipa::path(post, path = "/v1/firewall", tag = "firewalls", request_body = CreateFirewall,
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
    request_body = EditFirewall,
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
    request_body = AttachInput,
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
    request_body = AttachInput,
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
}
