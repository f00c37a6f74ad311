//! The operator-defined catalog: zones, flavors, images and block-storage types, each stored as
//! a JSON body with its position in the operator's file. The server keeps it in memory and
//! reloads it when `catalog_version` changes.

use crate::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CatalogEntry {
    /// `zone`, `flavor`, `image` or `block_storage_type`.
    pub kind: String,
    pub id: String,
    pub position: i64,
    /// The entry as JSON, in the server's catalog format.
    pub body: String,
}

impl Store {
    pub async fn catalog(&self) -> Result<Vec<CatalogEntry>> {
        Ok(sqlx::query_as("SELECT kind, id, position, body FROM catalog_entries ORDER BY kind, position, id")
            .fetch_all(self.pool())
            .await?)
    }

    /// Replaces the whole catalog atomically and bumps `catalog_version`.
    pub async fn replace_catalog(&self, entries: &[CatalogEntry]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        replace_catalog(&mut tx, entries).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces one entry's body if it still is `expected`, and bumps `catalog_version`; false
    /// when the entry is gone or changed meanwhile (a concurrent import), so the caller can read
    /// it again rather than write over the newer catalog.
    pub async fn update_catalog_entry(&self, kind: &str, id: &str, expected: &str, body: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("UPDATE catalog_entries SET body = $1 WHERE kind = $2 AND id = $3 AND body = $4")
            .bind(body)
            .bind(kind)
            .bind(id)
            .bind(expected)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        bump_version(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn catalog_version(&self) -> Result<i64> {
        Ok(self.meta_get("catalog_version").await?.and_then(|v| v.parse().ok()).unwrap_or(0))
    }
}

pub(crate) async fn replace_catalog(tx: &mut sqlx::Transaction<'_, sqlx::Any>, entries: &[CatalogEntry]) -> Result<()> {
    sqlx::query("DELETE FROM catalog_entries").execute(&mut **tx).await?;
    for e in entries {
        sqlx::query("INSERT INTO catalog_entries (kind, id, position, body) VALUES ($1, $2, $3, $4)")
            .bind(&e.kind)
            .bind(&e.id)
            .bind(e.position)
            .bind(&e.body)
            .execute(&mut **tx)
            .await?;
    }
    bump_version(tx).await
}

/// A version number rather than a timestamp: two imports in one second still differ. One upsert
/// that adds to the stored value, so two concurrent changes never write the same number (which
/// other processes would take for no change).
async fn bump_version(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ('catalog_version', '1') \
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT)",
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}
