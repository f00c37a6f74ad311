//! Hypervisor hosts [ext]: the operator's rows (`/admin/v1/hosts`, `/admin/v1/placements`) and
//! the agent protocol (`/internal/v1/hosts/…`), which `openwinv agent` speaks with a host token.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How often an agent sends a heartbeat.
pub const HEARTBEAT_INTERVAL_MS: u64 = 2_000;
/// A host without a heartbeat for this long (server clock) is offline.
pub const OFFLINE_AFTER_SECS: i64 = 20;

/// Capacity or reserved resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
}

/// A host as the operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Host {
    pub host_id: String,
    pub name: String,
    pub zone: String,
    /// The operator's setting: `enabled`, `disabled`, `draining` or `dead` (declared dead).
    pub state: String,
    /// `new` (its agent never registered), `alive` (a heartbeat within 20 s of the server clock)
    /// or `offline`.
    pub status: String,
    pub address: Option<String>,
    /// The IPv4 address other hosts send the VXLAN packets of shared networks to (the agent's
    /// `--underlay`, else its address).
    pub underlay: Option<String>,
    pub driver: Option<String>,
    pub capabilities: Vec<String>,
    pub agent_version: Option<String>,
    pub capacity: Resources,
    pub reserved: Resources,
    /// Instances placed on it.
    pub instances: i64,
    pub last_heartbeat_at: Option<String>,
    /// Seconds between the last heartbeat and the server clock now.
    pub heartbeat_age_s: Option<i64>,
    pub generation: i64,
    pub created_at: String,
    /// Machines the host's agent reported in its last full report that no placement on it names
    /// (instance ids). Never destroyed automatically: `admin hosts destroy-stray`.
    #[serde(default)]
    pub strays: Vec<String>,
}

/// Answer to `POST /admin/v1/hosts/{name}/evacuate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Evacuation {
    /// The host evacuated.
    pub host: String,
    /// Stopped instances now moving to other hosts, one operation (`instance.evacuate`) each.
    pub moving: Vec<Evacuating>,
    /// Instances left where they are, each with the reason.
    pub left: Vec<LeftBehind>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Evacuating {
    pub instance_id: String,
    pub operation_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeftBehind {
    pub instance_id: String,
    pub status: String,
    pub reason: String,
}

/// Answer to `POST /admin/v1/hosts/{name}/strays/{instance_id}/destroy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DestroyedStray {
    pub host: String,
    pub instance_id: String,
}

/// Answer to `POST /admin/v1/hosts/{name}/declare-dead`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadHost {
    /// The host, now in state `dead`.
    pub host: Host,
    /// The instances that were placed on it: at rest they are `error` now; in an operation they
    /// end `error` as it unwinds. Their reservations are released.
    pub instances: Vec<String>,
    /// The volumes whose storage it kept, attached or not: `error` now, their data lost.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Work items that were waiting for the host and failed.
    pub failed_work: i64,
    /// The reason the instances carry.
    pub reason: String,
}

/// Body of `POST /admin/v1/hosts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewHost {
    pub name: String,
    pub zone: String,
}

/// A host just added, with its token; the token is shown only here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IssuedHost {
    pub host_id: String,
    pub name: String,
    pub zone: String,
    /// What `openwinv agent --host-token` takes. Only its SHA-256 is stored.
    pub token: String,
}

/// Overcommit ratios placement applies to each host's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Overcommit {
    /// vCPUs placed per host vCPU (e.g. 4.0).
    pub vcpu: f64,
    pub memory: f64,
    pub disk: f64,
}

/// Body of `PUT /admin/v1/placements/overcommit`: each field set replaces the stored ratio
/// (0.1 to 64, three decimals).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct OvercommitUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<f64>,
}

/// An instance's reservation on a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Placement {
    pub instance_id: String,
    pub host_id: String,
    pub host: String,
    pub reserved: Resources,
    pub created_at: String,
    /// Whether this call wrote it (false: the instance was placed before).
    #[serde(default)]
    pub new: bool,
}

/// Body of `POST /admin/v1/placements`: place an existing instance by its flavor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewPlacement {
    pub instance_id: String,
    /// Capabilities the host must have besides what the flavor implies (`gpu` for GPU flavors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
}

// The agent protocol.

/// Body of `POST /internal/v1/hosts/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Registration {
    /// Must be the zone the operator added the host to.
    pub zone: String,
    /// The address the host is reached on (informational until cross-host networks).
    pub address: String,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    /// `qemu` or `sim`.
    pub driver: String,
    pub capabilities: Vec<String>,
    pub agent_version: String,
    /// The host's IPv4 address on the underlay between hosts, where other hosts send the VXLAN
    /// packets of the networks it shares with them; absent: `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<String>,
}

/// Answer to a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    pub host_id: String,
    pub name: String,
    pub zone: String,
    pub state: String,
    pub generation: i64,
    pub heartbeat_interval_ms: u64,
    pub offline_after_s: i64,
    /// Server clock, Unix seconds.
    pub server_time: i64,
}

/// Answer to `POST /internal/v1/hosts/heartbeat` (the request has no body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatAck {
    pub state: String,
    pub generation: i64,
    pub server_time: i64,
}

/// One machine's state as its agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MachineReport {
    pub instance_id: String,
    /// `running`, `stopped`, `paused`, `crashed` or `absent`.
    pub state: String,
    /// The agent's counter for this machine; a report replaces only an older one.
    pub generation: i64,
}

/// Body of `POST /internal/v1/hosts/runtime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuntimeReports {
    pub machines: Vec<MachineReport>,
    /// Every machine the host has (sent after each registration): placed machines missing from
    /// it become `error`, machines no placement names are the host's strays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
    /// With `full`: the agent's generation counter when the report was taken. A missing machine
    /// whose stored report is newer changed after it and is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<i64>,
}

/// What became of one report: `accepted`, `stale` (a report of this generation or a later one is
/// stored) or `not_placed` (the instance is not placed on this host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuntimeAck {
    pub instance_id: String,
    pub outcome: String,
    pub stored_generation: i64,
}

/// Body of `POST /internal/v1/hosts/work`: how long the control plane may hold the request
/// open while the host has no work (long poll), and which items the agent holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkPull {
    /// Milliseconds, 0 to 25,000 (0: answer at once).
    #[serde(default)]
    pub wait_ms: u64,
    /// The keys of the items the agent received and has not had answered (at most 10,000). An
    /// item delivered to the host and not among them was handed to a poll whose answer was lost,
    /// and is handed out again in this one. Without the field such an item is handed out again
    /// 120 s after its delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Vec<String>>,
}

/// One driver call for the host to make: the rows of `POST /internal/v1/hosts/work`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkItem {
    /// `{operation}/{step}/{run|undo}/{n}`: the same on every delivery of this call, so the
    /// agent answers a duplicate from its record instead of running it again.
    pub key: String,
    /// `create`, `start`, `stop`, `reboot`, `rebuild`, `resize`, `destroy`, `apply_firewall`,
    /// `attach_volume` or `detach_volume`.
    pub call: String,
    pub instance_id: Option<String>,
    /// The call's arguments (a machine spec, `{hard}`, a volume spec, a rule set).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// How many times it has been handed out (1 the first time).
    pub deliveries: i64,
}

/// Body of `POST /internal/v1/hosts/work/result`: the agent's answer to one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkResult {
    pub key: String,
    /// `ok`, `transient` (worth retrying) or `permanent`.
    pub outcome: String,
    /// The driver's answer when `ok` (a machine state, or null).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
    /// What went wrong, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Answer to a work result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkAck {
    pub key: String,
    /// False when the host has no such unanswered item (answered before, or failed when the
    /// host was declared dead): nothing changed.
    pub recorded: bool,
}
