//! Access keys. The secret is needed to verify an HMAC, so it is stored sealed (see `crypto`).

use crate::accounts::{AccountRecord, insert_account};
use crate::catalog::{CatalogEntry, replace_catalog};
use crate::{Result, Store, StoreError, flag};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRecord {
    pub access_key: String,
    pub account_id: crate::ids::AccountId,
    /// Filled in by joins; the account's name.
    pub account_name: String,
    pub secret_sealed: String,
    pub enabled: i64,
    pub rate_limit: i64,
    /// JSON array of CIDR strings.
    pub allow: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// Whether the owning account is enabled.
    pub account_enabled: i64,
}

impl KeyRecord {
    pub fn allow_list(&self) -> Vec<String> {
        serde_json::from_str(&self.allow).unwrap_or_default()
    }
}

const SELECT: &str = "SELECT k.access_key, k.account_id, a.name AS account_name, k.secret_sealed, \
     k.enabled, k.rate_limit, k.allow, k.created_at, k.last_used_at, a.enabled AS account_enabled \
     FROM access_keys k JOIN accounts a ON a.account_id = k.account_id";

/// A key to insert: its secret already sealed.
#[derive(Debug, Clone)]
pub struct NewKeyRecord<'a> {
    pub access_key: &'a str,
    pub account_id: &'a str,
    pub secret_sealed: &'a str,
    pub rate_limit: i64,
    pub allow: &'a [String],
    pub created_at: i64,
}

/// Everything the first start writes, in one transaction.
pub struct Bootstrap<'a> {
    pub account: AccountRecord,
    pub key: NewKeyRecord<'a>,
    pub catalog: &'a [CatalogEntry],
}

impl Store {
    pub async fn insert_key(&self, key: &NewKeyRecord<'_>) -> Result<()> {
        insert_key(self.writer(), key).await
    }

    pub async fn key(&self, access_key: &str) -> Result<Option<KeyRecord>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE k.access_key = $1"))
            .bind(access_key)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn list_keys(&self, account_name: Option<&str>) -> Result<Vec<KeyRecord>> {
        let q = match account_name {
            Some(_) => format!("{SELECT} WHERE a.name = $1 ORDER BY k.created_at, k.access_key"),
            None => format!("{SELECT} ORDER BY k.created_at, k.access_key"),
        };
        let mut query = sqlx::query_as(&q);
        if let Some(name) = account_name {
            query = query.bind(name);
        }
        Ok(query.fetch_all(self.pool()).await?)
    }

    /// Applies the present fields; false when the key does not exist.
    pub async fn update_key(
        &self,
        access_key: &str,
        enabled: Option<bool>,
        rate_limit: Option<i64>,
        allow: Option<&[String]>,
    ) -> Result<bool> {
        let allow_json = allow.map(|a| serde_json::to_string(a).expect("strings serialize"));
        let r = sqlx::query(
            "UPDATE access_keys SET enabled = COALESCE($1, enabled), \
             rate_limit = COALESCE($2, rate_limit), allow = COALESCE($3, allow) WHERE access_key = $4",
        )
        .bind(enabled.map(flag))
        .bind(rate_limit)
        .bind(allow_json)
        .bind(access_key)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn delete_key(&self, access_key: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM access_keys WHERE access_key = $1")
            .bind(access_key)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records use of a key (callers throttle this; it is not needed on every request).
    pub async fn touch_key(&self, access_key: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE access_keys SET last_used_at = $1 WHERE access_key = $2")
            .bind(now)
            .bind(access_key)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Seeds an empty store exactly once: the catalog, the first account and its key. Returns
    /// false, writing nothing, when the store was bootstrapped before (by this or another process).
    pub async fn bootstrap(&self, seed: Bootstrap<'_>, now: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let claimed =
            sqlx::query("INSERT INTO meta (key, value) VALUES ('bootstrapped_at', $1) ON CONFLICT (key) DO NOTHING")
                .bind(now.to_string())
                .execute(&mut *tx)
                .await?;
        if claimed.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        replace_catalog(&mut tx, seed.catalog).await?;
        insert_account(&mut *tx, &seed.account).await?;
        insert_key(&mut *tx, &seed.key).await?;
        // What a reset puts back (see `reset`).
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
            .bind(crate::reset::BOOTSTRAP_KEY)
            .bind(crate::reset::FirstKey::json(&seed.key))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

pub(crate) async fn insert_key<'e, E>(exec: E, key: &NewKeyRecord<'_>) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO access_keys (access_key, account_id, secret_sealed, enabled, rate_limit, allow, created_at) \
         VALUES ($1, $2, $3, 1, $4, $5, $6)",
    )
    .bind(key.access_key)
    .bind(key.account_id)
    .bind(key.secret_sealed)
    .bind(key.rate_limit)
    .bind(serde_json::to_string(key.allow).expect("strings serialize"))
    .bind(key.created_at)
    .execute(exec)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(())
}
