//! The store's leaf types, shared by its modules without importing each other: the status
//! vocabularies of instances and volumes, the refusal of an instance transition, the volume row.
//! `instances`, `volumes` and `usage` depend on this module and never the other way round.

/// Visible instance statuses (spec §7).
pub mod instance_status {
    pub const PENDING: &str = "pending";
    pub const ACTIVE: &str = "active";
    pub const OFF: &str = "off";
    pub const WORK: &str = "work";
    pub const ERROR: &str = "error";
}

/// Volume statuses (`volumes.status`).
pub mod volume_status {
    pub const CREATING: &str = "creating";
    pub const AVAILABLE: &str = "available";
    pub const ATTACHING: &str = "attaching";
    pub const IN_USE: &str = "in-use";
    pub const DETACHING: &str = "detaching";
    pub const DELETING: &str = "deleting";
    pub const ERROR: &str = "error";

    /// Statuses of a volume in the middle of an operation.
    pub const BUSY: &[&str] = &[CREATING, ATTACHING, DETACHING, DELETING];

    pub fn is_busy(s: &str) -> bool {
        BUSY.contains(&s)
    }
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    NotFound,
    /// The instance is in this status, which the operation does not start from.
    From(String),
    /// One of the instance's volumes is in the middle of an operation.
    Busy,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VolumeRecord {
    pub block_storage_id: String,
    pub account_id: String,
    pub name: String,
    pub description: Option<String>,
    #[sqlx(rename = "type")]
    pub kind: String,
    /// GB.
    pub size: i64,
    pub status: String,
    pub zone_id: String,
    /// The instance it is attached to, or being attached to or detached from.
    pub instance_id: Option<String>,
    pub operation_id: Option<String>,
    pub error_reason: Option<String>,
    /// Server clock, ms, when the current attachment began (the order of an instance's volumes).
    pub attached_at: Option<i64>,
    pub created_at: i64,
}

/// A 0/1 integer column read as a `bool`: one column type on both stores (SQLite has no boolean),
/// converted here so that no record carries the integer.
#[derive(Debug, Clone, Copy, sqlx::Type)]
#[sqlx(transparent)]
pub struct IntFlag(i64);

impl From<IntFlag> for bool {
    fn from(f: IntFlag) -> bool {
        f.0 != 0
    }
}
