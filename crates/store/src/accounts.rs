//! Accounts: the tenants. Every resource row carries its account id.

use crate::{Result, Store, StoreError, flag, ids};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountRecord {
    pub account_id: ids::AccountId,
    pub name: String,
    pub enabled: i64,
    pub created_at: i64,
    pub quota_instances: Option<i64>,
    pub quota_vcpu: Option<i64>,
    pub quota_storage_gb: Option<i64>,
}

impl AccountRecord {
    pub fn is_enabled(&self) -> bool {
        self.enabled != 0
    }
}

const COLUMNS: &str = "account_id, name, enabled, created_at, quota_instances, quota_vcpu, quota_storage_gb";

impl Store {
    pub async fn create_account(&self, name: &str, now: i64) -> Result<AccountRecord> {
        let rec = AccountRecord {
            account_id: ids::AccountId::generate(),
            name: name.to_owned(),
            enabled: 1,
            created_at: now,
            quota_instances: None,
            quota_vcpu: None,
            quota_storage_gb: None,
        };
        insert_account(self.pool(), &rec).await?;
        Ok(rec)
    }

    pub async fn list_accounts(&self) -> Result<Vec<AccountRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM accounts ORDER BY created_at, account_id"))
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn account_by_name(&self, name: &str) -> Result<Option<AccountRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM accounts WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn account_by_id(&self, account_id: &str) -> Result<Option<AccountRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM accounts WHERE account_id = $1"))
            .bind(account_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Replaces an account's quotas (`None` = the server default); false when it does not exist.
    pub async fn set_account_quota(
        &self,
        name: &str,
        instances: Option<i64>,
        vcpu: Option<i64>,
        storage_gb: Option<i64>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE accounts SET quota_instances = $1, quota_vcpu = $2, quota_storage_gb = $3 WHERE name = $4",
        )
        .bind(instances)
        .bind(vcpu)
        .bind(storage_gb)
        .bind(name)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Returns false when no such account exists.
    pub async fn set_account_enabled(&self, name: &str, enabled: bool) -> Result<bool> {
        let r = sqlx::query("UPDATE accounts SET enabled = $1 WHERE name = $2")
            .bind(flag(enabled))
            .bind(name)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

pub(crate) async fn insert_account<'e, E>(exec: E, rec: &AccountRecord) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("INSERT INTO accounts (account_id, name, enabled, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&rec.account_id)
        .bind(&rec.name)
        .bind(rec.enabled)
        .bind(rec.created_at)
        .execute(exec)
        .await
        .map_err(StoreError::from_insert)?;
    Ok(())
}

/// Takes the account's write lock first, so that quota checks and inserts of concurrent requests
/// serialize: a row lock on PostgreSQL (`FOR NO KEY UPDATE`: it excludes the other writers that
/// take it and nothing else, not the foreign-key checks of inserts that name the account, and it
/// writes no new row version); on SQLite the transaction already holds the database's write lock
/// (`Store::begin_write`). Only transactions that check a quota or a per-account invariant take
/// it; the others serialize on the rows they change (docs/architecture.md, "Write locks").
pub(crate) async fn lock_account(
    backend: crate::Backend,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account_id: &str,
) -> Result<()> {
    if backend == crate::Backend::Sqlite {
        return Ok(());
    }
    sqlx::query("SELECT 1 FROM accounts WHERE account_id = $1 FOR NO KEY UPDATE")
        .bind(account_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(())
}
