//! Small key/value settings shared by every server process: bootstrap marker, clock offset,
//! catalog version.

use crate::{Result, Store};

impl Store {
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        let v: Option<(String,)> =
            sqlx::query_as("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(self.pool()).await?;
        Ok(v.map(|(v,)| v))
    }

    pub async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.writer())
        .await?;
        Ok(())
    }
}
