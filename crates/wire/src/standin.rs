//! The stand-in's controls for test suites under `/admin/v1` [ext]: reset, snapshots and
//! fixtures (`docs/standin.md`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::admin::IssuedKey;

/// Body of `POST /admin/v1/reset`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ResetRequest {
    /// Keep every account and access key as they are (default: only the first start's account
    /// and key, as the first start made them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_accounts: Option<bool>,
}

/// What a reset left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResetDone {
    /// Rows deleted, over all tables.
    pub removed_rows: u64,
    /// Accounts and access keys left.
    pub accounts: i64,
    pub access_keys: i64,
    /// Running operations that were dropped.
    pub cancelled_operations: u64,
    pub took_ms: u64,
}

/// Body of `POST /admin/v1/snapshots`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewSnapshot {
    /// 1-64 characters of A-Z a-z 0-9 - _ . (not starting with `.`); an existing snapshot of
    /// that name is replaced.
    pub name: String,
}

/// A saved snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotInfo {
    pub name: String,
    /// When it was saved, on the server clock (`YYYY-MM-DD HH:MM:SS`, billing time zone).
    pub saved_at: String,
    /// Rows over all tables.
    pub rows: u64,
    pub size_bytes: u64,
}

/// What a fixture file added.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SeedDone {
    pub accounts: usize,
    /// The keys made or imported, with their secrets (shown once).
    pub access_keys: Vec<IssuedKey>,
    pub ssh_keys: usize,
    pub scripts: usize,
    pub firewalls: usize,
    pub firewall_rules: usize,
    /// Instances made, each waited for until it reached its fixture status.
    #[serde(default)]
    pub instances: usize,
    /// Block storage volumes made (attached, or detached where the fixture asked).
    #[serde(default)]
    pub block_storages: usize,
    pub bills: usize,
}
