//! Firewall writes (spec §9), shared by both path families and the web console: typed inputs read
//! once ([`CreateFirewall`], [`EditFirewall`], [`RuleInput`], [`EditRule`], [`AttachInput`]; they
//! also give the OpenAPI request schemas), validated completely before anything is written, then
//! one store transaction each. A change that must reach machines writes its
//! operation in the same transaction; its id comes back for the `X-Operation-Id` header.

use openwinv_driver::firewall::{Cidr, CidrError, PortRange};
use openwinv_engine::Operation;
use openwinv_store::firewalls::{FirewallEdit, NewRule, RuleEdit, SyncOp, first_duplicate};
use openwinv_store::ids::{AccountId, FirewallId, OperationId};
use openwinv_store::{FirewallRecord, FirewallRefused, FirewallRuleRecord, NewOperation};
use openwinv_wire::ErrorCode;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::FromBody;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Encoding, enum_error, text_field};
use crate::sagas::firewall::{Kind, Pair, Pairing};
use crate::service::capabilities::{self, Feature};

/// Most rules one firewall holds [ours].
pub const MAX_RULES: usize = 100;
/// Most firewalls attached to one instance [ours].
pub const MAX_PER_INSTANCE: i64 = 5;
pub const TITLE_MIN: usize = 4;
pub const TITLE_MAX: usize = 32;
pub const CONTENT_MIN: usize = 1;
pub const CONTENT_MAX: usize = 50;
pub const RULE_TITLE_MAX: usize = 25;
pub const RULE_CONTENT_MAX: usize = 25;
const ICMP: &[&str] = &["Y", "N"];
const BOUNDS: &[&str] = &["IN", "OUT"];
const PROTOCOLS: &[&str] = &["TCP", "UDP"];

pub fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("The firewall `{id}`"))
}

pub fn rule_not_found(id: &str, rule_id: &str) -> ApiError {
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
// Inputs

// The doc comments of the inputs and their fields are the OpenAPI descriptions (`ToSchema`);
// the fields a create requires are read as options so that the service refuses a missing one by
// name, in the order spec §9 sets. `rules` is a JSON array of rule objects (form keys
// `rules.N.field` arrive as one), or such an array written as a string in a form field.

/// Body of `POST /v1/security-groups` (without `rules`) and `POST /v1/firewall`.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = NewFirewall)]
pub struct CreateFirewall {
    #[schema(value_type = String, required = true)]
    pub title: Option<String>,
    #[schema(value_type = String, required = true)]
    pub content: Option<String>,
    /// `Y` (default) or `N`.
    pub icmp: Option<String>,
    /// Family B only: the initial rules.
    pub rules: Option<Vec<RuleInput>>,
}

/// Body of `PUT /v1/security-groups/{id}` and `PUT /v1/firewall/{id}`: omitted fields keep their
/// values; in family B, `rules` replaces the whole rule set.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = FirewallChanges)]
pub struct EditFirewall {
    pub title: Option<String>,
    pub content: Option<String>,
    pub icmp: Option<String>,
    pub rules: Option<Vec<RuleInput>>,
}

/// A rule in a request: `POST …/rules`, or an element of `rules` in family B.
// `prefix` names the fields in errors (`rules.2.` for the third inline rule).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = NewFirewallRule)]
pub struct RuleInput {
    #[serde(skip)]
    pub prefix: String,
    #[schema(value_type = String, required = true)]
    pub bound: Option<String>,
    #[schema(value_type = String, required = true)]
    pub protocol: Option<String>,
    #[schema(value_type = String, required = true)]
    pub port: Option<String>,
    #[schema(value_type = String, required = true)]
    pub ip: Option<String>,
    #[schema(value_type = String, required = true)]
    pub title: Option<String>,
    pub content: Option<String>,
}

/// Changes to a rule (`PUT …/rules/{rule_id}`): omitted fields keep their values; an empty
/// `content` clears it.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = FirewallRuleChanges)]
pub struct EditRule {
    pub bound: Option<String>,
    pub protocol: Option<String>,
    pub port: Option<String>,
    pub ip: Option<String>,
    pub title: Option<String>,
    pub content: Option<String>,
    /// Whether the body had a `content` key at all (even null or empty).
    #[serde(skip)]
    pub content_given: bool,
}

/// Body of `…/attach` and `…/detach`.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = FirewallTarget)]
pub struct AttachInput {
    #[schema(value_type = String, required = true)]
    pub instance_id: Option<String>,
}

/// A text field of a JSON object, named `{prefix}{name}` in errors; numbers become text.
fn field(obj: &Map<String, Value>, prefix: &str, name: &str) -> ApiResult<Option<String>> {
    match obj.get(name).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::param(format!("The field `{prefix}{name}` must be a string."))),
    }
}

impl RuleInput {
    fn from_object(obj: &Map<String, Value>, prefix: &str) -> ApiResult<RuleInput> {
        Ok(RuleInput {
            prefix: prefix.to_owned(),
            bound: field(obj, prefix, "bound")?,
            protocol: field(obj, prefix, "protocol")?,
            port: field(obj, prefix, "port")?,
            ip: field(obj, prefix, "ip")?,
            title: field(obj, prefix, "title")?,
            content: field(obj, prefix, "content")?,
        })
    }
}

impl FromBody for RuleInput {
    fn from_body(body: &Body, _: Encoding) -> ApiResult<Self> {
        RuleInput::from_object(&body.0, "")
    }
}

impl FromBody for EditRule {
    fn from_body(body: &Body, _: Encoding) -> ApiResult<Self> {
        let RuleInput { bound, protocol, port, ip, title, content, .. } = RuleInput::from_object(&body.0, "")?;
        Ok(EditRule { bound, protocol, port, ip, title, content, content_given: body.0.contains_key("content") })
    }
}

/// A firewall's four fields as a create or an edit gives them (`None`: not given).
type FirewallFields = (Option<String>, Option<String>, Option<String>, Option<Vec<RuleInput>>);

fn firewall_fields(body: &Body) -> ApiResult<FirewallFields> {
    Ok((body.str("title")?, body.str("content")?, body.str("icmp")?, rules_field(body)?))
}

impl FromBody for CreateFirewall {
    fn from_body(body: &Body, _: Encoding) -> ApiResult<Self> {
        let (title, content, icmp, rules) = firewall_fields(body)?;
        Ok(CreateFirewall { title, content, icmp, rules })
    }
}

impl FromBody for EditFirewall {
    fn from_body(body: &Body, _: Encoding) -> ApiResult<Self> {
        let (title, content, icmp, rules) = firewall_fields(body)?;
        Ok(EditFirewall { title, content, icmp, rules })
    }
}

impl FromBody for AttachInput {
    fn from_body(body: &Body, _: Encoding) -> ApiResult<Self> {
        Ok(AttachInput { instance_id: body.str("instance_id")? })
    }
}

/// `rules` of a body, `None` when absent; more than [`MAX_RULES`] is refused here already.
fn rules_field(body: &Body) -> ApiResult<Option<Vec<RuleInput>>> {
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
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(obj) => RuleInput::from_object(obj, &format!("rules.{i}.")),
            _ => Err(ApiError::param(format!("The field `rules.{i}` must be a rule object."))),
        })
        .collect::<ApiResult<Vec<_>>>()
        .map(Some)
}

// ---------------------------------------------------------------------------------------------
// Validation

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

impl RuleInput {
    fn name(&self, n: &str) -> String {
        format!("{}{n}", self.prefix)
    }

    fn required(&self, n: &str, v: Option<String>) -> ApiResult<String> {
        v.ok_or_else(|| ApiError::missing_body(&self.name(n)))
    }

    /// A whole new rule.
    fn new_rule(self) -> ApiResult<NewRule> {
        let bound = check_enum(&self.name("bound"), self.required("bound", self.bound.clone())?, BOUNDS)?;
        let protocol =
            check_enum(&self.name("protocol"), self.required("protocol", self.protocol.clone())?, PROTOCOLS)?;
        let port = check_port(&self.name("port"), &self.required("port", self.port.clone())?)?;
        let ip = check_ip(&self.name("ip"), &self.required("ip", self.ip.clone())?)?;
        let title = rule_title(&self.name("title"), &self.required("title", self.title.clone())?)?;
        let content = match &self.content {
            Some(c) => rule_content(&self.name("content"), c)?,
            None => None,
        };
        Ok(NewRule { bound, protocol, port, ip, title, content })
    }
}

impl EditRule {
    /// The changes of a rule edit, and whether the body gave anything at all.
    fn edit(self) -> ApiResult<(RuleEdit, bool)> {
        let changes = RuleEdit {
            bound: self.bound.map(|v| check_enum("bound", v, BOUNDS)).transpose()?,
            protocol: self.protocol.map(|v| check_enum("protocol", v, PROTOCOLS)).transpose()?,
            port: self.port.map(|v| check_port("port", &v)).transpose()?,
            ip: self.ip.map(|v| check_ip("ip", &v)).transpose()?,
            title: self.title.map(|v| rule_title("title", &v)).transpose()?,
            // An empty or null `content` keeps the old value [iwinv live] (spec §9).
            content: self.content.map(|v| rule_content("content", &v)).transpose()?.flatten().map(Some),
        };
        // A `content` that keeps the old value still counts as given: the edit is a no-op, not
        // an empty request.
        let given = changes.bound.is_some()
            || changes.protocol.is_some()
            || changes.port.is_some()
            || changes.ip.is_some()
            || changes.title.is_some()
            || changes.content.is_some()
            || self.content_given;
        Ok((changes, given))
    }
}

/// Validated rules with no two matching the same traffic.
fn new_rules(rules: Vec<RuleInput>) -> ApiResult<Vec<NewRule>> {
    let rules = rules.into_iter().map(RuleInput::new_rule).collect::<ApiResult<Vec<_>>>()?;
    if let Some((i, j)) = first_duplicate(&rules) {
        return Err(ApiError::param(format!(
            "The rule `rules.{j}` duplicates `rules.{i}` (same bound, protocol, port and ip)."
        )));
    }
    Ok(rules)
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
// Writes

/// What a write did: the operation it started to bring machines along, if one was due.
pub type Synced = Option<OperationId>;

fn sync_op<'a>(operation_id: &'a str, state: &AppState) -> SyncOp<'a> {
    SyncOp { operation_id, kind: Kind::Sync.name(), now_ms: state.clock.unix_ms() }
}

fn finish(state: &AppState, operation_id: OperationId, synced: bool) -> Synced {
    if synced {
        state.engine.wake();
        Some(operation_id)
    } else {
        None
    }
}

/// Creates a firewall; `with_operation` (family B) also writes a `firewall.sync` operation so
/// that its 202 carries an operation id. Returns the firewall's id and that operation's.
pub async fn create(
    state: &AppState,
    account_id: &AccountId,
    input: CreateFirewall,
    with_operation: bool,
) -> ApiResult<(FirewallId, Synced)> {
    let title = title(&input.title.ok_or_else(|| ApiError::missing_body("title"))?)?;
    let content = content(&input.content.ok_or_else(|| ApiError::missing_body("content"))?)?;
    let icmp = icmp(input.icmp.unwrap_or_else(|| "Y".into()))?;
    let rules = new_rules(input.rules.unwrap_or_default())?;
    let rec = FirewallRecord {
        firewall_id: FirewallId::generate(),
        account_id: account_id.clone(),
        title,
        content,
        icmp,
        next_rule_id: 1,
        created_at: state.clock.unix(),
    };
    let operation_id = OperationId::generate();
    let op = NewOperation {
        operation_id: &operation_id,
        account_id,
        kind: Kind::Sync.name(),
        resource_id: &rec.firewall_id,
        params: openwinv_engine::NoParams::ENCODED,
        now_ms: state.clock.unix_ms(),
    };
    state.store.create_firewall(&rec, &rules, with_operation.then_some(&op)).await?;
    Ok((rec.firewall_id, finish(state, operation_id, with_operation)))
}

/// Edits a firewall: omitted fields keep their values; `rules` replaces the rule set.
pub async fn edit(state: &AppState, account_id: &AccountId, id: &str, input: EditFirewall) -> ApiResult<Synced> {
    let changes = FirewallEdit {
        title: input.title.map(|v| title(&v)).transpose()?,
        content: input.content.map(|v| content(&v)).transpose()?,
        icmp: input.icmp.map(icmp).transpose()?,
        rules: input.rules.map(new_rules).transpose()?,
    };
    if changes.title.is_none() && changes.content.is_none() && changes.icmp.is_none() && changes.rules.is_none() {
        return Err(ApiError::new(
            ErrorCode::RequiredPostParamMissing,
            "Give at least one of the body fields `title`, `content`, `icmp` or `rules`.",
        ));
    }
    let operation_id = OperationId::generate();
    let sync = (changes.icmp.is_some() || changes.rules.is_some()).then(|| sync_op(&operation_id, state));
    let synced = state.store.edit_firewall(account_id, id, &changes, sync).await?.map_err(|r| refused(id, r, ""))?;
    Ok(finish(state, operation_id, synced))
}

pub async fn delete(state: &AppState, account_id: &AccountId, id: &str) -> ApiResult<()> {
    state.store.delete_firewall(account_id, id).await?.map_err(|r| refused(id, r, ""))
}

/// Attaches or detaches; returns the instance's id and the operation that applies the result.
pub async fn attachment(
    state: &AppState,
    account_id: &AccountId,
    id: &str,
    input: AttachInput,
    attach: bool,
) -> ApiResult<(String, OperationId)> {
    let instance_id = input.instance_id.ok_or_else(|| ApiError::missing_body("instance_id"))?.trim().to_owned();
    if instance_id.is_empty() {
        return Err(ApiError::missing_body("instance_id"));
    }
    // Detaching is always possible (it leaves the machine open, as a host without firewalls has it).
    if attach {
        capabilities::require(state, Feature::Firewalls, "Attaching a firewall to the body field `instance_id`")?;
    }
    let kind = if attach { Kind::Attach } else { Kind::Detach };
    let operation_id = OperationId::generate();
    let op = SyncOp { operation_id: &operation_id, kind: kind.name(), now_ms: state.clock.unix_ms() };
    // The saga's params: which instance, and whether the request changed the pair (the store
    // knows that only inside its transaction).
    let params = |changed: bool| Pair::<true>::encode(&Pairing { instance_id: instance_id.clone(), changed });
    state
        .store
        .begin_firewall_attachment(account_id, id, &instance_id, attach, MAX_PER_INSTANCE, op, &params)
        .await?
        .map_err(|r| refused(id, r, &instance_id))?;
    state.engine.wake();
    Ok((instance_id, operation_id))
}

fn parse_rule_id(id: &str, rule_id: &str) -> ApiResult<i64> {
    rule_id.parse::<i64>().map_err(|_| rule_not_found(id, rule_id))
}

pub async fn add_rule(
    state: &AppState,
    account_id: &AccountId,
    id: &str,
    input: RuleInput,
) -> ApiResult<(FirewallRuleRecord, Synced)> {
    let rule = input.new_rule()?;
    let operation_id = OperationId::generate();
    let sync = sync_op(&operation_id, state);
    let (rec, synced) = state
        .store
        .add_firewall_rule(account_id, id, &rule, MAX_RULES, Some(sync))
        .await?
        .map_err(|r| refused(id, r, ""))?;
    Ok((rec, finish(state, operation_id, synced)))
}

pub async fn edit_rule(
    state: &AppState,
    account_id: &AccountId,
    id: &str,
    rule_id: &str,
    input: EditRule,
) -> ApiResult<(FirewallRuleRecord, Synced)> {
    let rule_no = parse_rule_id(id, rule_id)?;
    let (changes, given) = input.edit()?;
    if !given {
        return Err(ApiError::new(
            ErrorCode::RequiredPostParamMissing,
            "Give at least one of the body fields `bound`, `protocol`, `port`, `ip`, `title` or `content`.",
        ));
    }
    let operation_id = OperationId::generate();
    let sync = sync_op(&operation_id, state);
    let (rec, synced) =
        state.store.edit_firewall_rule(account_id, id, rule_no, &changes, Some(sync)).await?.map_err(|r| match r {
            FirewallRefused::RuleNotFound => rule_not_found(id, rule_id),
            r => refused(id, r, ""),
        })?;
    Ok((rec, finish(state, operation_id, synced)))
}

pub async fn delete_rule(state: &AppState, account_id: &AccountId, id: &str, rule_id: &str) -> ApiResult<Synced> {
    let rule_no = parse_rule_id(id, rule_id)?;
    let operation_id = OperationId::generate();
    let sync = sync_op(&operation_id, state);
    let synced = state.store.delete_firewall_rule(account_id, id, rule_no, Some(sync)).await?.map_err(|r| match r {
        FirewallRefused::RuleNotFound => rule_not_found(id, rule_id),
        r => refused(id, r, ""),
    })?;
    Ok(finish(state, operation_id, synced))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let rules = CreateFirewall::from_body(&body, Encoding::Json).unwrap().rules.unwrap();
        let e = new_rules(rules).unwrap_err();
        assert_eq!(e.code, ErrorCode::CheckParamEnum);
        assert!(e.message.contains("rules.1.bound"), "{}", e.message);
    }

    #[test]
    fn a_rule_edit_with_only_an_empty_content_is_given() {
        let body = Body(serde_json::json!({"content": ""}).as_object().unwrap().clone());
        let (changes, given) = EditRule::from_body(&body, Encoding::Json).unwrap().edit().unwrap();
        assert!(given && changes.content.is_none());
        let (_, given) = EditRule::default().edit().unwrap();
        assert!(!given);
    }
}
