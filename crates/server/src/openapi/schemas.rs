//! Schemas that exist only for the OpenAPI document: the flat form twins of request bodies, and
//! answers whose shape differs from the generic envelope. The handlers never build these types;
//! they describe what the handlers accept, so that a client generator (or a fuzzer such as
//! schemathesis) can build a valid body for every operation.
//!
//! Every write accepts JSON, `application/x-www-form-urlencoded` and `multipart/form-data`
//! (spec §1). JSON bodies are described by the service's typed inputs themselves
//! (`service::instances::CreateInstance` as `NewInstance`, `service::firewalls::CreateFirewall`
//! as `NewFirewall`, `service::named_text::NewSshKey`, …: the struct the extractor fills is the
//! schema); a form body is flat, so a body with nested lists has a `…Form` twin here (indexed
//! keys such as `block_storage.0.size`, or `rules` as JSON text). [`super::Bodies`] adds the form
//! encodings to every operation from [`FORM_TWINS`].
//!
//! Numbers may also arrive as numeric strings (spec §1); the schemas name the JSON number, the
//! form of a well-made request.

#![allow(dead_code)]

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::api::{firewalls, instances, scripts, ssh_keys, volumes};

/// What `str::trim` removes (Unicode `White_Space`), as a regular-expression class body.
const BLANK: &str = r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// What `char::is_control` refuses (C0, DEL, C1), as a class body.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// A port `N` or range `A-B`, 1–65535, no leading zero (`A` ≤ `B` is checked by the handler).
const PORT: &str = r"^(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})(?:-(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?$";
/// An IPv4 CIDR (host bits allowed).
const CIDR: &str = r"^(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}/(?:3[0-2]|[12]?[0-9])$";

/// A text as `input::text_field` takes it: surrounding blanks are trimmed, then `min..=max` code
/// points without control characters remain.
pub fn text_pattern(min: usize, max: usize) -> String {
    let edge = format!("[^{BLANK}{CONTROL}]");
    let inner = format!("[^{CONTROL}]");
    let core = match min {
        0 => format!("(?:{edge}(?:{inner}{{0,{}}}{edge})?)?", max - 2),
        1 => format!("{edge}(?:{inner}{{0,{}}}{edge})?", max - 2),
        _ => format!("{edge}{inner}{{{},{}}}{edge}", min - 2, max - 2),
    };
    format!("^[{BLANK}]*{core}[{BLANK}]*$")
}

fn one_of(values: &[&str]) -> Value {
    json!({ "pattern": format!("^(?:{})$", values.join("|")) })
}

/// Keywords the derive cannot take from the handlers' constants, merged into a property of a
/// component: (schema, property, keywords). Bounds come from the handlers' own constants.
pub fn field_rules() -> Vec<(&'static str, &'static str, Value)> {
    let text = |min, max| json!({ "pattern": text_pattern(min, max) });
    let name = text(1, instances::NAME_MAX);
    let description = text(0, instances::DESCRIPTION_MAX);
    let fw_title = text(firewalls::TITLE_MIN, firewalls::TITLE_MAX);
    let fw_content = text(firewalls::CONTENT_MIN, firewalls::CONTENT_MAX);
    let mut rules = vec![
        ("NewInstance", "name", name.clone()),
        ("NewInstance", "description", description.clone()),
        ("NewInstanceForm", "name", name.clone()),
        ("NewInstanceForm", "description", description.clone()),
        ("NewInstanceVolume", "name", text(1, volumes::NAME_MAX)),
        ("NewInstanceForm", "block_storage.0.name", text(1, volumes::NAME_MAX)),
        ("InstanceChanges", "name", name.clone()),
        ("InstanceChanges", "description", description),
        ("NewBlockStorage", "name", text(1, volumes::NAME_MAX)),
        ("NewBlockStorage", "description", text(0, volumes::DESCRIPTION_MAX)),
        ("NewSshKey", "name", text(1, ssh_keys::NAME_MAX)),
        ("NewUserScript", "name", text(1, scripts::NAME_MAX)),
        (
            "NewUserScript",
            "content",
            json!({ "pattern": format!("[^{BLANK}]"), "maxLength": scripts::CONTENT_MAX_BYTES }),
        ),
        ("FirewallTarget", "instance_id", json!({ "pattern": format!("[^{BLANK}]") })),
        ("NewFirewall", "icmp", one_of(&["Y", "N"])),
        ("FirewallChanges", "icmp", one_of(&["Y", "N"])),
        ("NewFirewall", "rules", json!({ "maxItems": firewalls::MAX_RULES })),
        ("FirewallChanges", "rules", json!({ "maxItems": firewalls::MAX_RULES })),
    ];
    for schema in ["NewFirewall", "FirewallChanges", "NewFirewallForm", "FirewallChangesForm"] {
        rules.push((schema, "title", fw_title.clone()));
        rules.push((schema, "content", fw_content.clone()));
    }
    for schema in ["NewFirewallRule", "FirewallRuleChanges"] {
        rules.extend([
            (schema, "bound", one_of(&["IN", "OUT"])),
            (schema, "protocol", one_of(&["TCP", "UDP"])),
            (schema, "port", json!({ "pattern": PORT })),
            (schema, "ip", json!({ "pattern": CIDR })),
            (schema, "title", text(1, firewalls::RULE_TITLE_MAX)),
            (schema, "content", text(0, firewalls::RULE_CONTENT_MAX)),
        ]);
    }
    rules.push((
        "NewSshKey",
        "public_key",
        json!({ "example": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example" }),
    ));
    rules
}

/// Schema name of a JSON body → schema name of its flat form twin, for bodies with nested lists.
pub const FORM_TWINS: [(&str, &str); 3] = [
    ("NewInstance", "NewInstanceForm"),
    ("NewFirewall", "NewFirewallForm"),
    ("FirewallChanges", "FirewallChangesForm"),
];

/// `POST /v1/instances` as a form: the first volume's keys are shown (`block_storage.N.…` for
/// N = 0…7 are accepted).
#[derive(Serialize, ToSchema)]
pub struct NewInstanceForm {
    #[schema(example = "KR1-Z01")]
    pub zone_id: String,
    #[schema(example = "IMG-ubuntu-2404")]
    pub image_id: String,
    #[schema(example = "ss1.c1m1")]
    pub flavor_id: String,
    /// 1–64 characters, URL-encoded in multipart bodies (spec §1).
    #[serde(default)]
    pub name: String,
    /// 0–255 characters, URL-encoded in multipart bodies (spec §1).
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10)]
    pub count: i64,
    #[serde(default)]
    pub ssh_key_id: String,
    #[serde(default)]
    pub user_script_id: String,
    #[serde(default, rename = "block_storage.0.size")]
    #[schema(minimum = 1)]
    pub block_storage_0_size: i64,
    #[serde(default, rename = "block_storage.0.name")]
    pub block_storage_0_name: String,
    #[serde(default, rename = "block_storage.0.type")]
    pub block_storage_0_type: String,
    #[serde(default)]
    pub security_group: String,
    #[serde(default)]
    pub attach_public_ip: bool,
}

/// `POST /v1/firewall` (and `/v1/security-groups`) as a form: `rules` is a JSON array written as
/// text (form keys `rules.N.bound` … are accepted too).
#[derive(Serialize, ToSchema)]
pub struct NewFirewallForm {
    pub title: String,
    pub content: String,
    /// `Y` (default) or `N`.
    #[serde(default)]
    pub icmp: String,
    /// A JSON array of rules, e.g. `[{"bound":"IN","protocol":"TCP","port":"22","ip":"0.0.0.0/0","title":"ssh"}]`.
    #[serde(default)]
    pub rules: String,
}

/// `PUT /v1/firewall/{id}` (and `/v1/security-groups/{id}`) as a form: omitted fields keep their
/// values; `rules` (JSON text) replaces the whole rule set.
#[derive(Serialize, ToSchema)]
pub struct FirewallChangesForm {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub icmp: String,
    #[serde(default)]
    pub rules: String,
}

/// The bill list's envelope: `page_no` and `page_size` are strings there [iwinv] (spec §3).
#[derive(Serialize, ToSchema)]
pub struct BillPage {
    #[schema(example = "0x00")]
    pub code: String,
    #[schema(example = "SUCCESS")]
    pub error_code: String,
    pub message: String,
    pub result: Vec<openwinv_wire::billing::Bill>,
    pub count: u64,
    #[schema(example = "1")]
    pub page_no: String,
    #[schema(example = "10")]
    pub page_size: String,
}
