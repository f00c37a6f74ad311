//! One-time remote-console links: a token per link, spent by the page that opens it.

use crate::{Result, Store};

impl Store {
    pub async fn insert_console_token(
        &self,
        token: &str,
        account_id: &str,
        instance_id: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query("INSERT INTO console_tokens (token, instance_id, account_id, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token)
            .bind(instance_id)
            .bind(account_id)
            .bind(expires_at)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Uses a console token once; returns its instance id when it was valid and unused.
    pub async fn use_console_token(&self, token: &str, now: i64) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "UPDATE console_tokens SET used_at = $1 WHERE token = $2 AND used_at IS NULL AND expires_at >= $1 \
             RETURNING instance_id",
        )
        .bind(now)
        .bind(token)
        .fetch_optional(self.writer())
        .await?;
        Ok(row.map(|(id,)| id))
    }

    /// The expiry of a token (spent or not), for the credential the spending page mints.
    pub async fn console_token_expiry(&self, token: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT expires_at FROM console_tokens WHERE token = $1")
            .bind(token)
            .fetch_optional(self.pool())
            .await?)
    }
}
