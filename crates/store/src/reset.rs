//! The stand-in's reset (`POST /admin/v1/reset`): the database back to its first-start state in
//! one transaction, so a test suite can call it between tests.
//!
//! Kept: the catalog, the bootstrap marker and the catalog version, and either the bootstrap
//! account with its first key (as the first start wrote it) and its first console user or, with
//! `keep_accounts`, every account, key and console user as they are. Everything else — resources, operations, usage, bills, fault
//! rules, idempotency records, the clock offset — is deleted. The tables are discovered as the
//! snapshot discovers them, so a table a later migration adds is emptied too. The instance view
//! versions are outside the state (they only grow): the reset moves their epoch on instead.

use serde::{Deserialize, Serialize};

use crate::keys::NewKeyRecord;
use crate::snapshot::{bump_view_epoch, quoted, tables};
use crate::{Result, Store};

/// Tables the reset does not empty wholesale.
const KEPT_TABLES: &[&str] = &["meta", "catalog_entries", "accounts", "access_keys", "users"];
/// `meta` keys that survive a reset (the catalog's version must only grow).
const KEPT_META: &[&str] = &["bootstrapped_at", "catalog_version", BOOTSTRAP_KEY];
/// `meta` key holding the first key exactly as the first start wrote it (secret sealed).
pub(crate) const BOOTSTRAP_KEY: &str = "bootstrap_key";

/// The first start's key, kept in `meta` so that a reset can put it back as it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FirstKey {
    pub access_key: String,
    pub account_id: String,
    pub secret_sealed: String,
    pub rate_limit: i64,
    pub allow: Vec<String>,
    pub created_at: i64,
}

impl FirstKey {
    pub fn json(key: &NewKeyRecord<'_>) -> String {
        serde_json::to_string(&FirstKey {
            access_key: key.access_key.to_owned(),
            account_id: key.account_id.to_owned(),
            secret_sealed: key.secret_sealed.to_owned(),
            rate_limit: key.rate_limit,
            allow: key.allow.to_vec(),
            created_at: key.created_at,
        })
        .expect("a key serializes")
    }
}

/// What a reset left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetReport {
    /// Rows deleted, over all tables.
    pub removed_rows: u64,
    /// Operations that were running.
    pub cancelled_operations: u64,
    pub accounts: i64,
    pub access_keys: i64,
}

impl Store {
    /// Puts the database back to its first-start state (see the module documentation);
    /// `bootstrap_account` names the account the first start created.
    pub async fn reset(&self, bootstrap_account: &str, keep_accounts: bool) -> Result<ResetReport> {
        let mut tx = self.begin_write().await?;
        crate::snapshot::triggers_row_by_row(&mut tx, self.backend()).await?;
        let (running,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM operations WHERE status = 'running'").fetch_one(&mut *tx).await?;
        let mut removed = 0;
        for t in tables(&mut tx, self.backend()).await?.iter().rev() {
            if !KEPT_TABLES.contains(&t.name.as_str()) {
                removed +=
                    sqlx::query(&format!("DELETE FROM {}", quoted(&t.name))).execute(&mut *tx).await?.rows_affected();
            }
        }
        let kept = KEPT_META.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
        removed += sqlx::query(&format!("DELETE FROM meta WHERE key NOT IN ({kept})"))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if !keep_accounts {
            let dev: Option<(String,)> = sqlx::query_as("SELECT account_id FROM accounts WHERE name = $1")
                .bind(bootstrap_account)
                .fetch_optional(&mut *tx)
                .await?;
            let dev = dev.map(|(id,)| id).unwrap_or_default();
            let first: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE key = $1")
                .bind(BOOTSTRAP_KEY)
                .fetch_optional(&mut *tx)
                .await?;
            let first: Option<FirstKey> =
                first.and_then(|(v,)| serde_json::from_str(&v).ok()).filter(|k: &FirstKey| k.account_id == dev);
            // A store bootstrapped before the first key was recorded: the account's oldest key.
            let keep_key = match &first {
                Some(k) => Some(k.access_key.clone()),
                None => sqlx::query_as::<_, (String,)>(
                    "SELECT access_key FROM access_keys WHERE account_id = $1 ORDER BY created_at, access_key LIMIT 1",
                )
                .bind(&dev)
                .fetch_optional(&mut *tx)
                .await?
                .map(|(k,)| k),
            };
            let keep_key = keep_key.unwrap_or_default();
            removed += sqlx::query("DELETE FROM access_keys WHERE access_key <> $1")
                .bind(&keep_key)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            removed += sqlx::query("DELETE FROM accounts WHERE account_id <> $1")
                .bind(&dev)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "UPDATE accounts SET enabled = 1, quota_instances = NULL, quota_vcpu = NULL, \
                 quota_storage_gb = NULL WHERE account_id = $1",
            )
            .bind(&dev)
            .execute(&mut *tx)
            .await?;
            match first {
                Some(k) => {
                    sqlx::query("DELETE FROM access_keys WHERE access_key = $1")
                        .bind(&k.access_key)
                        .execute(&mut *tx)
                        .await?;
                    let key = NewKeyRecord {
                        access_key: &k.access_key,
                        account_id: &k.account_id,
                        secret_sealed: &k.secret_sealed,
                        rate_limit: k.rate_limit,
                        allow: &k.allow,
                        created_at: k.created_at,
                    };
                    crate::keys::insert_key(&mut *tx, &key).await?;
                }
                None => {
                    sqlx::query("UPDATE access_keys SET enabled = 1, last_used_at = NULL WHERE access_key = $1")
                        .bind(&keep_key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        // Console users go with their accounts; without `keep_accounts` only the first start's user
        // (its login is the bootstrap account's name) stays. Their sessions are gone with the
        // other tables: a reset signs everyone out.
        removed += sqlx::query(
            "DELETE FROM users WHERE account_id NOT IN (SELECT account_id FROM accounts) OR ($1 = 0 AND login <> $2)",
        )
        .bind(i64::from(keep_accounts))
        .bind(bootstrap_account)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let (accounts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM accounts").fetch_one(&mut *tx).await?;
        let (access_keys,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM access_keys").fetch_one(&mut *tx).await?;
        bump_view_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(ResetReport { removed_rows: removed, cancelled_operations: running as u64, accounts, access_keys })
    }
}
