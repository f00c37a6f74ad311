//! Block storage rows (spec §8).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A volume, as listed and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockStorage {
    pub block_storage_id: String,
    pub name: String,
    pub description: Option<String>,
    /// The block-storage type (`ssd`, `sata`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// GB.
    pub size: u32,
    /// `creating`, `available`, `attaching`, `in-use`, `detaching`, `deleting` or `error`.
    pub status: String,
    pub zone_id: String,
    /// The instance it is attached to (or being attached to or detached from), else null.
    pub instance_id: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub created_at: String,
}

/// Receipt of a create (`creating`), attach (`attaching`), detach (`detaching`) or delete
/// (`deleting`, `instance_id` null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockStorageReceipt {
    pub block_storage_id: String,
    pub instance_id: Option<String>,
    pub status: String,
}
