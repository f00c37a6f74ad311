//! Public and private addresses: one row per address in its scope, held by an instance.

use crate::{Result, Store, StoreError};

impl Store {
    /// Records `address` for `instance_id` in `scope` unless taken; true when it is now this
    /// instance's. Unique per scope, so two concurrent allocations cannot get the same address.
    pub async fn claim_address(
        &self,
        scope: &str,
        address: &str,
        kind: &str,
        account_id: &str,
        instance_id: &str,
        now: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO ip_addresses (scope, address, kind, account_id, instance_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, address) DO NOTHING",
        )
        .bind(scope)
        .bind(address)
        .bind(kind)
        .bind(account_id)
        .bind(instance_id)
        .bind(now)
        .execute(self.writer())
        .await
        .map_err(StoreError::from_insert)?;
        if r.rows_affected() == 1 {
            return Ok(true);
        }
        let owner: Option<(String,)> =
            sqlx::query_as("SELECT instance_id FROM ip_addresses WHERE scope = $1 AND address = $2")
                .bind(scope)
                .bind(address)
                .fetch_optional(self.pool())
                .await?;
        Ok(owner.is_some_and(|(o,)| o == instance_id))
    }

    /// Addresses held by an instance: (kind, address).
    pub async fn addresses_of(&self, instance_id: &str) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as("SELECT kind, address FROM ip_addresses WHERE instance_id = $1 ORDER BY kind")
            .bind(instance_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// How many addresses of `scope` are taken (to find a free one quickly).
    pub async fn addresses_in_scope(&self, scope: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ip_addresses WHERE scope = $1")
            .bind(scope)
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }

    /// Writes the allocated addresses onto the instance row.
    pub async fn set_instance_addresses(
        &self,
        instance_id: &str,
        public: Option<(&str, i64)>,
        private: Option<(&str, i64)>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE instances SET public_ip = $1, public_ip_num = $2, private_ip = $3, private_ip_num = $4 WHERE instance_id = $5",
        )
        .bind(public.map(|p| p.0))
        .bind(public.map(|p| p.1))
        .bind(private.map(|p| p.0))
        .bind(private.map(|p| p.1))
        .bind(instance_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Releases every address of an instance and clears them from its row.
    pub async fn release_addresses(&self, instance_id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM ip_addresses WHERE instance_id = $1").bind(instance_id).execute(&mut *tx).await?;
        sqlx::query(
            "UPDATE instances SET public_ip = NULL, public_ip_num = NULL, private_ip = NULL, private_ip_num = NULL \
             WHERE instance_id = $1",
        )
        .bind(instance_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
