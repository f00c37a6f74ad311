//! Instance rows (spec §7). The detail/list row is shaped by the `fields` mask, so every field is
//! optional and omitted when not selected.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Instance {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Present (possibly null) when selected.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub description: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provide: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub start_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stop_date: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub default_account: Option<DefaultAccount>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ip: Option<Vec<InstanceIp>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub zone: Option<InstanceZone>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub flavor: Option<InstanceFlavor>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image: Option<InstanceImage>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub monitoring: Option<Monitoring>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub block_storage: Option<Vec<AttachedVolume>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vnc: Option<Vnc>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub connection_limit: Option<ConnectionLimit>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub traffic: Option<Traffic>,
    /// Attached firewall ids [ext].
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub firewall: Option<Vec<String>>,
    /// Where the guest's SSH port is forwarded on the host, when the driver forwards it (the QEMU
    /// driver's user-mode networking) [ext]; with the `ip` bit (256).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ssh: Option<SshForward>,
    /// Whether the instance's hypervisor host answers [ext], only when the control plane runs
    /// with `--placement hosts`: `up`, `unreachable` (no heartbeat for 20 s: the machine keeps
    /// its last status, actions are refused) or `none` (not placed on a host).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host_status: Option<String>,
}

/// A host address and port forwarded to the guest's port 22 [ext].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SshForward {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DefaultAccount {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceIp {
    pub public: PublicIp,
    pub private: PrivateIp,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PublicIp {
    pub address: Option<String>,
    pub attached: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PrivateIp {
    pub address: Option<String>,
    pub netmask: String,
    pub network: String,
    pub broadcast: String,
    pub gateway: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceZone {
    pub zone_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceFlavor {
    pub flavor_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub vcpu: u32,
    pub memory: u32,
    pub disk: u32,
    pub network: u32,
    pub gpu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceImage {
    pub image_id: String,
    pub visibility: String,
    pub os: crate::catalog::ImageOs,
    pub image_type: String,
    pub zone: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Monitoring {
    pub port: Option<u16>,
    pub resource: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttachedVolume {
    pub block_storage_id: String,
    pub volume_id: String,
    pub name: String,
    pub size: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Vnc {
    pub link: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionLimit {
    pub block_storage: u32,
    pub ip: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Traffic {
    /// GB per period.
    pub default: u64,
    pub period: String,
    pub limit: u64,
    pub reset_allow_count: u32,
}

/// One row of the create receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateReceipt {
    pub instance_id: String,
    pub name: String,
    /// `building`.
    pub status: String,
    pub zone_id: String,
    pub flavor_id: String,
    pub image_id: String,
    pub ssh_key: Vec<String>,
    pub user_script_id: Option<String>,
    pub block_storage: Vec<String>,
    pub default_account: DefaultAccount,
}

/// Receipt of an action (`work`) or a delete (`deleting`, with the kept volumes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActionReceipt {
    pub instance_id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub block_storage: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RemoteConsole {
    pub instance_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub link: String,
    pub expires_at: String,
}
