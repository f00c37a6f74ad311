//! Which host keeps a volume's storage (docs/hosts.md "Volumes").

use crate::{Result, Store};

/// The host that keeps a volume's storage.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VolumeHost {
    pub host_id: String,
    pub host_name: String,
    pub host_state: String,
}

impl Store {
    /// The host that keeps `volume_id`'s storage; `None` when no host does (or no such volume).
    pub async fn volume_host(&self, volume_id: &str) -> Result<Option<VolumeHost>> {
        Ok(sqlx::query_as(
            "SELECT h.host_id, h.name AS host_name, h.state AS host_state \
             FROM volumes v JOIN hosts h ON h.host_id = v.host_id WHERE v.block_storage_id = $1",
        )
        .bind(volume_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Records that `host_id` keeps `volume_id`'s storage now.
    pub async fn set_volume_host(&self, volume_id: &str, host_id: &str) -> Result<()> {
        sqlx::query("UPDATE volumes SET host_id = $2 WHERE block_storage_id = $1")
            .bind(volume_id)
            .bind(host_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
