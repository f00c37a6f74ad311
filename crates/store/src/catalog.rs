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
        let mut tx = self.pool().begin().await?;
        replace_catalog(&mut tx, entries).await?;
        tx.commit().await?;
        Ok(())
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
    // A version number rather than a timestamp: two imports in one second still differ.
    let current: Option<(String,)> =
        sqlx::query_as("SELECT value FROM meta WHERE key = 'catalog_version'").fetch_optional(&mut **tx).await?;
    let next = current.and_then(|(v,)| v.parse::<i64>().ok()).unwrap_or(0) + 1;
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ('catalog_version', $1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(next.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
