//! `admin reset`, `admin snapshot` and `admin seed`: what a test suite needs from the stand-in
//! (docs/standin.md).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use openwinv_sdk::AdminClient;
use openwinv_sdk::wire::standin::{ResetDone, SeedDone, SnapshotInfo};

use crate::output::{Column, Output, Tabular, number, text};

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Save the whole state under a name (replacing a snapshot of that name)
    Save { name: String },
    /// Put the whole state back to a snapshot, into the running server
    Restore { name: String },
    /// List the saved snapshots
    List,
    /// Delete a snapshot
    Delete { name: String },
}

pub async fn reset(admin: &AdminClient, keep_accounts: bool, out: Output) -> anyhow::Result<()> {
    out.record(&admin.reset(keep_accounts).await?)
}

pub async fn snapshot(admin: &AdminClient, action: SnapshotAction, out: Output) -> anyhow::Result<()> {
    match action {
        SnapshotAction::Save { name } => out.record(&admin.save_snapshot(&name).await?),
        SnapshotAction::Restore { name } => out.record(&admin.restore_snapshot(&name).await?),
        SnapshotAction::List => out.list(&admin.snapshots().await?),
        SnapshotAction::Delete { name } => out.record(&admin.delete_snapshot(&name).await?),
    }
}

/// Sends a fixture file: TOML when it ends in `.toml`, JSON when in `.json`, else by its first
/// character (`{` is JSON).
pub async fn seed(admin: &AdminClient, file: PathBuf, out: Output) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let toml = match file.extension().and_then(|e| e.to_str()) {
        Some("toml") => true,
        Some("json") => false,
        _ => !text.trim_start().starts_with('{'),
    };
    out.record(&admin.seed(&text, toml).await?)
}

impl Tabular for ResetDone {
    const COLUMNS: &'static [Column] = &[
        number("REMOVED ROWS"),
        number("CANCELLED OPERATIONS"),
        number("ACCOUNTS"),
        number("ACCESS KEYS"),
        number("TOOK MS"),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.removed_rows.to_string(),
            self.cancelled_operations.to_string(),
            self.accounts.to_string(),
            self.access_keys.to_string(),
            self.took_ms.to_string(),
        ]
    }
}

impl Tabular for SnapshotInfo {
    const COLUMNS: &'static [Column] = &[text("NAME"), text("SAVED AT"), number("ROWS"), number("BYTES")];

    fn cells(&self) -> Vec<String> {
        vec![self.name.clone(), self.saved_at.clone(), self.rows.to_string(), self.size_bytes.to_string()]
    }
}

impl Tabular for SeedDone {
    const COLUMNS: &'static [Column] = &[
        number("ACCOUNTS"),
        number("ACCESS KEYS"),
        number("SSH KEYS"),
        number("SCRIPTS"),
        number("FIREWALLS"),
        number("RULES"),
        number("BILLS"),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.accounts.to_string(),
            self.access_keys.len().to_string(),
            self.ssh_keys.to_string(),
            self.scripts.to_string(),
            self.firewalls.to_string(),
            self.firewall_rules.to_string(),
            self.bills.to_string(),
        ]
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        let mut d: Vec<(&'static str, String)> = Self::COLUMNS.iter().map(|c| c.title).zip(self.cells()).collect();
        for k in &self.access_keys {
            d.push(("KEY", format!("{} {} (account {})", k.access_key, k.secret_key, k.account)));
        }
        d
    }
}
