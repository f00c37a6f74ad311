//! SSH public keys of an account.

use crate::{PageQuery, Result, Store, contains_pattern};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SshKeyRecord {
    pub ssh_key_id: String,
    pub account_id: String,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: i64,
}

const COLUMNS: &str = "ssh_key_id, account_id, name, public_key, fingerprint, created_at";

impl Store {
    pub async fn insert_ssh_key(&self, rec: &SshKeyRecord) -> Result<()> {
        sqlx::query(&format!("INSERT INTO ssh_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"))
            .bind(&rec.ssh_key_id)
            .bind(&rec.account_id)
            .bind(&rec.name)
            .bind(&rec.public_key)
            .bind(&rec.fingerprint)
            .bind(rec.created_at)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// One page of an account's keys whose name contains `name` (case-insensitive), and the total.
    pub async fn list_ssh_keys(
        &self,
        account_id: &str,
        name: Option<&str>,
        page: PageQuery,
    ) -> Result<(Vec<SshKeyRecord>, i64)> {
        let pattern = contains_pattern(name.unwrap_or(""));
        let filter = "account_id = $1 AND lower(name) LIKE $2 ESCAPE '\\'";
        let (total,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM ssh_keys WHERE {filter}"))
            .bind(account_id)
            .bind(&pattern)
            .fetch_one(self.pool())
            .await?;
        let rows = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM ssh_keys WHERE {filter} ORDER BY created_at, ssh_key_id LIMIT $3 OFFSET $4"
        ))
        .bind(account_id)
        .bind(&pattern)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(self.pool())
        .await?;
        Ok((rows, total))
    }

    pub async fn ssh_key(&self, account_id: &str, id: &str) -> Result<Option<SshKeyRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM ssh_keys WHERE account_id = $1 AND ssh_key_id = $2"))
            .bind(account_id)
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn delete_ssh_key(&self, account_id: &str, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM ssh_keys WHERE account_id = $1 AND ssh_key_id = $2")
            .bind(account_id)
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
