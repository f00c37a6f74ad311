//! Public and private addresses: one row per address in its scope, held by an instance.

use crate::{Result, Store, StoreError};

impl Store {
    /// Records for `instance_id` the first of `candidates` (in their order) that is free in
    /// `scope`, in one statement; the address taken, or None when every candidate was taken (or
    /// a concurrent claim won the one chosen). One round trip to the single writer whatever the
    /// pool's fill, where probing one address at a time cost a write per taken address.
    pub async fn claim_first_free_address(
        &self,
        scope: &str,
        candidates: &[String],
        kind: &str,
        account_id: &str,
        instance_id: &str,
        now: i64,
    ) -> Result<Option<String>> {
        if candidates.is_empty() {
            return Ok(None);
        }
        let rows: Vec<String> =
            (0..candidates.len()).map(|i| format!("SELECT CAST(${} AS TEXT) AS address, {i} AS ord", i + 6)).collect();
        let sql = format!(
            "INSERT INTO ip_addresses (scope, address, kind, account_id, instance_id, created_at) \
             SELECT $1, c.address, $2, $3, $4, $5 FROM ({}) AS c \
             WHERE NOT EXISTS (SELECT 1 FROM ip_addresses a WHERE a.scope = $1 AND a.address = c.address) \
             ORDER BY c.ord LIMIT 1 \
             ON CONFLICT (scope, address) DO NOTHING RETURNING address",
            rows.join(" UNION ALL ")
        );
        let mut q =
            sqlx::query_as::<_, (String,)>(&sql).bind(scope).bind(kind).bind(account_id).bind(instance_id).bind(now);
        for c in candidates {
            q = q.bind(c.as_str());
        }
        let taken = q.fetch_optional(self.writer()).await.map_err(StoreError::from_insert)?;
        Ok(taken.map(|(a,)| a))
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
