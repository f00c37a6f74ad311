//! Firewalls (spec §9): one object behind two path families, `/v1/security-groups` and
//! `/v1/firewall`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A firewall as both families show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Firewall {
    /// `FIREWALL-…`
    pub firewall_id: String,
    /// 4–32 characters, verbatim.
    pub title: String,
    /// 1–50 characters, HTML-escaped on output (`&amp; &quot; &#039; &lt; &gt;`) [iwinv].
    pub content: String,
    /// `Y` or `N`: whether ICMP reaches the instance.
    pub icmp: String,
    pub rules: Vec<FirewallRule>,
    /// Ids of the instances it is attached to.
    pub instances: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FirewallRule {
    /// An integer, unique within its firewall.
    pub rule_id: i64,
    /// `IN` or `OUT`.
    pub bound: String,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// `"N"` or `"A-B"`, 1–65535.
    pub port: String,
    /// IPv4 CIDR, verbatim: the source network of an `IN` rule, the destination of an `OUT` rule.
    pub ip: String,
    /// 1–25 characters.
    pub title: String,
    /// At most 25 characters, or null.
    pub content: Option<String>,
}

/// A rule in a request: `POST …/rules`, or an element of `rules` in family B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewFirewallRule {
    pub bound: String,
    pub protocol: String,
    pub port: String,
    pub ip: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content: Option<String>,
}

/// Changes to a rule (`PUT …/rules/{rule_id}`): omitted fields keep their values; an empty
/// `content` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FirewallRuleChanges {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bound: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub port: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content: Option<String>,
}

/// Body of `POST /v1/security-groups` (without `rules`) and `POST /v1/firewall`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewFirewall {
    pub title: String,
    pub content: String,
    /// `Y` (default) or `N`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub icmp: Option<String>,
    /// Family B only: the initial rules.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rules: Option<Vec<NewFirewallRule>>,
}

/// Body of `PUT /v1/security-groups/{id}` and `PUT /v1/firewall/{id}`: omitted fields keep their
/// values; in family B, `rules` replaces the whole rule set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FirewallChanges {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub icmp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rules: Option<Vec<NewFirewallRule>>,
}

/// Body of `…/attach` and `…/detach`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FirewallTarget {
    pub instance_id: String,
}

/// Receipt of an attach or detach (202, with `X-Operation-Id`) [ours].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttachmentReceipt {
    pub firewall_id: String,
    pub instance_id: String,
    /// `attaching` or `detaching`.
    pub status: String,
}

/// `GET /v1/instances/{id}/reachability` [ext]: would a packet from `from` reach the instance?
/// Computed by the evaluator from the same compiled rules the kernel gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reachability {
    /// The instance asked about.
    pub instance_id: String,
    /// The `from` of the request: an IPv4 address or an instance id.
    pub from: String,
    /// The source address the packet carries (the instance's private address when `from` is an
    /// instance of the same zone, its public address otherwise).
    pub source_ip: Option<String>,
    /// The destination address the packet is sent to (private inside the network, public from
    /// outside it).
    pub destination_ip: Option<String>,
    /// `TCP`, `UDP` or `ICMP`.
    pub protocol: String,
    /// The destination port; null for ICMP.
    pub port: Option<u16>,
    /// `accept` or `drop`.
    pub verdict: String,
    /// Where it was decided: `chains` (a machine's firewall chain), or a gate before them:
    /// `spoofed_from_outside`, `not_public`, `no_such_machine`, `unknown_port`.
    pub gate: String,
    /// The chain that decided: `in` (the instance's inbound chain) or `out` (the sender's
    /// outbound chain); null when a gate decided.
    pub direction: Option<String>,
    /// What decided inside that chain: `rule`, `icmp`, `established`, `invalid` or `default`.
    pub step: Option<String>,
    /// The deciding rules as `FIREWALL-…#rule_id` (for `rule`), or firewall ids (for `icmp`).
    pub rules: Vec<String>,
    /// One sentence saying why.
    pub reason: String,
}
