//! Operator API (`/admin/v1`) bodies and rows [ext].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub account_id: String,
    pub name: String,
    pub enabled: bool,
    pub created_at: String,
    /// The quotas in force (the server defaults unless the operator set others).
    pub quota: Quota,
}

/// Account quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quota {
    pub instances: i64,
    pub vcpu: i64,
    pub block_storage_gb: i64,
}

/// Body of `PUT /admin/v1/accounts/{name}/quota`: each field replaces the stored value; a missing
/// or null field goes back to the server default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct QuotaUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_storage_gb: Option<i64>,
}

/// What a catalog import replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogImportSummary {
    pub zones: usize,
    pub flavors: usize,
    pub images: usize,
    pub block_storage_types: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewAccount {
    pub name: String,
}

/// An access key as the operator sees it; the secret is shown only when the key is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccessKey {
    pub access_key: String,
    pub account: String,
    pub enabled: bool,
    /// Requests per minute; 0 means unlimited.
    pub rate_limit: u32,
    /// CIDRs the key may be used from; empty means any address.
    pub allow: Vec<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// Answer to key creation and import: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IssuedKey {
    pub access_key: String,
    pub secret_key: String,
    pub account: String,
    pub rate_limit: u32,
    pub allow: Vec<String>,
}

/// Body of key creation (and, with both keys, import). Omitted fields take the server defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct NewKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
}

/// Body of a key update: each present field replaces the stored one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct KeyUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
}

/// The server clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClockState {
    /// RFC 3339, UTC.
    pub now: String,
    /// Unix seconds.
    pub unix: i64,
    /// How far the clock is from the host's real time, in milliseconds.
    pub offset_ms: i64,
    /// Whether an operator may set it (simulated driver only).
    pub settable: bool,
}

/// Body of `PUT /admin/v1/clock`: an RFC 3339 instant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetClock {
    pub now: String,
}

/// Body of `POST /admin/v1/clock/advance`: a duration such as `90s`, `1h30m` or `PT2H`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdvanceClock {
    pub duration: String,
}

/// A person who signs in to the web console for an account (`/admin/v1/accounts/{name}/users`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleUser {
    pub user_id: String,
    /// The account's name.
    pub account: String,
    pub login: String,
    pub created_at: String,
    /// The generated password, in the answer that created the user without one; never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Body of `POST /admin/v1/accounts/{name}/users`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewConsoleUser {
    /// 1–64 characters of A-Z a-z 0-9 - _ . ; unique over the server.
    pub login: String,
    /// At least 12 characters; omitted, the server generates one and answers it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// One real network of the QEMU driver (`--network namespaces`): an (account, zone) private
/// network in its own namespace, with the machines plugged into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NetworkInfo {
    pub account_id: String,
    pub zone_id: String,
    /// The network namespace on the host.
    pub netns: String,
    /// The private subnet, e.g. `10.16.0.0/16`.
    pub subnet: String,
    pub gateway: String,
    pub ports: Vec<NetworkPort>,
}

/// A machine's port: its tap on the bridge, addresses and the rules enforced on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NetworkPort {
    pub tap: String,
    pub mac: String,
    pub ip: String,
    pub public_ip: Option<String>,
    /// Attached firewalls; empty: nothing is filtered.
    pub firewalls: Vec<String>,
    /// Compiled allow rules, inbound and outbound.
    pub inbound_rules: usize,
    pub outbound_rules: usize,
}
