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
// The two families: one wrapper per route and family, over the `*_for` functions above

/// Emits one route's handler, `$name`, with its OpenAPI operation at `$path`: the operation's kind
/// fixes the extractors, the shared function called, the parameters and the request body; the line
/// gives the path, the description (`$doc`), the success status and the error statuses documented.
macro_rules! route {
    (list $name:ident $path:tt $doc:tt [$ok:tt $(, $err:tt)*]) => {
        #[doc = $doc]
        #[utoipa::path(get, path = $path, tag = "firewalls",
            params(("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query, description = "default 50")),
            responses((status = $ok, body = Envelope<Vec<Firewall>>) $(, (status = $err, body = ErrorEnvelope))*))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            q: Query,
        ) -> ApiResult<Json<Envelope<Vec<Firewall>>>> {
            list_for(&state, &caller.account_id, &q).await
        }
    };
    (detail $name:ident $path:tt $doc:tt [$ok:tt $(, $err:tt)*]) => {
        #[doc = $doc]
        #[utoipa::path(get, path = $path, tag = "firewalls", params(("firewall_id" = String, Path)),
            responses((status = $ok, body = Envelope<Vec<Firewall>>) $(, (status = $err, body = ErrorEnvelope))*))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path(id): Path<String>,
        ) -> ApiResult<Json<Envelope<Vec<Firewall>>>> {
            detail_for(&state, &caller.account_id, &id).await
        }
    };
    (create $name:ident $path:tt $doc:tt accepted = $accepted:tt [$ok:tt $(, $err:tt)*]) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "firewalls", request_body = CreateFirewall,
            responses((status = $ok, body = Envelope<Vec<Firewall>>) $(, (status = $err, body = ErrorEnvelope))*))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            body: Body,
        ) -> Answer<Vec<Firewall>> {
            create_for(&state, &caller.account_id, &body, $accepted).await
        }
    };
    (edit $name:ident $path:tt $doc:tt [$ok:tt $(, $err:tt)*]) => {
        #[doc = $doc]
        #[utoipa::path(put, path = $path, tag = "firewalls", params(("firewall_id" = String, Path)),
            request_body = EditFirewall,
            responses((status = $ok, body = Envelope<Vec<Firewall>>) $(, (status = $err, body = ErrorEnvelope))*))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path(id): Path<String>,
            body: Body,
        ) -> Answer<Vec<Firewall>> {
            edit_for(&state, &caller.account_id, &id, &body).await
        }
    };
    (delete $name:ident $path:tt $doc:tt [$ok:tt $(, $err:tt)*]) => {
        #[doc = $doc]
        #[utoipa::path(delete, path = $path, tag = "firewalls", params(("firewall_id" = String, Path)),
            responses((status = $ok, body = Envelope<String>) $(, (status = $err, body = ErrorEnvelope))*))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path(id): Path<String>,
        ) -> Answer<String> {
            delete_for(&state, &caller.account_id, &id).await
        }
    };
    (rules $name:ident $path:tt $doc:tt [$ok:tt $(, $err:tt)*]) => {
        #[doc = $doc]
        #[utoipa::path(get, path = $path, tag = "firewalls", params(("firewall_id" = String, Path)),
            responses((status = $ok, body = Envelope<Vec<FirewallRule>>) $(, (status = $err, body = ErrorEnvelope))*))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path(id): Path<String>,
        ) -> ApiResult<Json<Envelope<Vec<FirewallRule>>>> {
            rules_for(&state, &caller.account_id, &id).await
        }
    };
    (add_rule $name:ident $path:tt $doc:tt [$ok:tt $(, $err:tt)*]) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "firewalls", params(("firewall_id" = String, Path)),
            request_body = RuleInput,
            responses((status = $ok, body = Envelope<Vec<FirewallRule>>) $(, (status = $err, body = ErrorEnvelope))*))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path(id): Path<String>,
            body: Body,
        ) -> Answer<Vec<FirewallRule>> {
            add_rule_for(&state, &caller.account_id, &id, &body).await
        }
    };
    (edit_rule $name:ident $path:tt $doc:tt [$ok:tt $(, $err:tt)*]) => {
        #[doc = $doc]
        #[utoipa::path(put, path = $path, tag = "firewalls",
            params(("firewall_id" = String, Path), ("rule_id" = i64, Path)), request_body = EditRule,
            responses((status = $ok, body = Envelope<Vec<FirewallRule>>) $(, (status = $err, body = ErrorEnvelope))*))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path((id, rule_id)): Path<(String, String)>,
            body: Body,
        ) -> Answer<Vec<FirewallRule>> {
            edit_rule_for(&state, &caller.account_id, &id, &rule_id, &body).await
        }
    };
    (delete_rule $name:ident $path:tt $doc:tt [$ok:tt $(, $err:tt)*]) => {
        #[doc = $doc]
        #[utoipa::path(delete, path = $path, tag = "firewalls",
            params(("firewall_id" = String, Path), ("rule_id" = i64, Path)),
            responses((status = $ok, body = Envelope<String>) $(, (status = $err, body = ErrorEnvelope))*))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path((id, rule_id)): Path<(String, String)>,
        ) -> Answer<String> {
            delete_rule_for(&state, &caller.account_id, &id, &rule_id).await
        }
    };
    (instances $name:ident $path:tt $doc:tt [$ok:tt $(, $err:tt)*]) => {
        #[doc = $doc]
        #[utoipa::path(get, path = $path, tag = "firewalls", params(("firewall_id" = String, Path)),
            responses((status = $ok, body = Envelope<Vec<String>>) $(, (status = $err, body = ErrorEnvelope))*))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path(id): Path<String>,
        ) -> ApiResult<Json<Envelope<Vec<String>>>> {
            instances_for(&state, &caller.account_id, &id).await
        }
    };
    (attachment $name:ident $path:tt $doc:tt attach = $attach:tt [$ok:tt $(, $err:tt)*]) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "firewalls", params(("firewall_id" = String, Path)),
            request_body = AttachInput,
            responses((status = $ok, body = Envelope<Vec<AttachmentReceipt>>) $(, (status = $err, body = ErrorEnvelope))*))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path(id): Path<String>,
            body: Body,
        ) -> Answer<Vec<AttachmentReceipt>> {
            attachment_for(&state, &caller.account_id, &id, &body, $attach).await
        }
    };
}

// Family A: /v1/security-groups
route!(list sg_list "/v1/security-groups" "The account's firewalls (default page size 50 [iwinv])." [200, 400]);
route!(detail sg_detail "/v1/security-groups/{firewall_id}" "One firewall; an unknown or deleted id answers 200 with no rows [iwinv]." [200]);
route!(create sg_create "/v1/security-groups" "Creates a firewall (200 [iwinv live]); inline `rules` are accepted too [ext]." accepted = false [200, 400, 403]);
route!(edit sg_edit "/v1/security-groups/{firewall_id}" "Edits a firewall; omitted fields keep their values, `rules` replaces the rule set." [200, 400, 404]);
route!(delete sg_delete "/v1/security-groups/{firewall_id}" "Deletes a firewall (`result: \"success\"`); refused while attached (409 `IN_USE`)." [200, 404, 409]);
route!(rules sg_rules "/v1/security-groups/{firewall_id}/rules" "The firewall's rules (not paginated [iwinv])." [200, 404]);
route!(add_rule sg_add_rule "/v1/security-groups/{firewall_id}/rules" "Adds a rule (at most 100 per firewall; an exact duplicate → `CHECK_PARAM`)." [200, 400, 403, 404]);
route!(edit_rule sg_edit_rule "/v1/security-groups/{firewall_id}/rules/{rule_id}" "Edits a rule; omitted fields keep their values." [200, 400, 404]);
route!(delete_rule sg_delete_rule "/v1/security-groups/{firewall_id}/rules/{rule_id}" "Deletes a rule (`result: \"success\"`)." [200, 404]);
route!(instances sg_instances "/v1/security-groups/{firewall_id}/instances" "Ids of the instances the firewall is attached to." [200, 404]);
route!(attachment sg_attach "/v1/security-groups/{firewall_id}/attach" "Attaches the firewall to an instance (202; at most 5 per instance; repeating is a no-op)." attach = true [202, 400, 403, 404, 409]);
route!(attachment sg_detach "/v1/security-groups/{firewall_id}/detach" "Detaches the firewall from an instance (202; detaching what is not attached is a no-op)." attach = false [202, 400, 404, 409]);

// Family B: /v1/firewall
route!(list fw_list "/v1/firewall" "The account's firewalls (default page size 50 [iwinv])." [200, 400]);
route!(detail fw_detail "/v1/firewall/{firewall_id}" "One firewall; an unknown or deleted id answers 200 with no rows [iwinv]." [200]);
route!(create fw_create "/v1/firewall" "Creates a firewall with inline `rules` (202 [iwinv doc], with `X-Operation-Id`)." accepted = true [202, 400, 403]);
route!(edit fw_edit "/v1/firewall/{firewall_id}" "Edits a firewall; with `rules` the whole rule set is replaced [iwinv]." [200, 400, 403, 404]);
route!(delete fw_delete "/v1/firewall/{firewall_id}" "Deletes a firewall (`result: \"success\"`); refused while attached (409 `IN_USE`)." [200, 404, 409]);
route!(instances fw_instances "/v1/firewall/{firewall_id}/instances" "Ids of the instances the firewall is attached to [ext]." [200, 404]);
route!(attachment fw_attach "/v1/firewall/{firewall_id}/attach" "Attaches the firewall to an instance (202)." attach = true [202, 400, 403, 404, 409]);
route!(attachment fw_detach "/v1/firewall/{firewall_id}/detach" "Detaches the firewall from an instance (202)." attach = false [202, 400, 404, 409]);

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
