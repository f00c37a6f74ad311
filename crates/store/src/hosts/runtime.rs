//! What agents report about their machines: runtime reports, the instances placed on a host
//! as reconciliation sees them, and strays (machines no placement names).

use crate::{Result, Store};

/// What became of one runtime report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    Accepted,
    /// A report with this generation or a later one is stored already.
    Stale {
        stored_generation: i64,
    },
    /// The instance is not placed on the reporting host.
    NotPlaced,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RuntimeRecord {
    pub instance_id: String,
    pub host_id: String,
    pub state: String,
    pub generation: i64,
    pub reported_at: i64,
}

/// An instance placed on a host, as evacuation and reconciliation see it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HostInstance {
    pub instance_id: String,
    pub account_id: String,
    pub status: String,
    pub zone_id: String,
    pub flavor_id: String,
    /// The generation of the host's last report of the machine, if it reported one.
    pub reported_generation: Option<i64>,
}

/// A machine a host has that no placement on it names.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StrayRecord {
    pub host_id: String,
    pub instance_id: String,
    pub state: String,
    pub reported_at: i64,
}

impl Store {
    /// Stores an agent's reports of its machines, each only when it is newer than the stored one
    /// and the instance is placed on `host_id`.
    pub async fn report_runtime(
        &self,
        host_id: &str,
        reports: &[(String, String, i64)],
        now: i64,
    ) -> Result<Vec<ReportOutcome>> {
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(reports.len());
        for (instance_id, state, generation) in reports {
            let r = sqlx::query(
                "INSERT INTO instance_runtime (instance_id, host_id, state, generation, reported_at) \
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS \
                    (SELECT 1 FROM placements WHERE instance_id = $1 AND host_id = $2) \
                 ON CONFLICT (instance_id) DO UPDATE SET host_id = excluded.host_id, state = excluded.state, \
                    generation = excluded.generation, reported_at = excluded.reported_at \
                 WHERE instance_runtime.generation < excluded.generation",
            )
            .bind(instance_id)
            .bind(host_id)
            .bind(state)
            .bind(*generation)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() > 0 {
                out.push(ReportOutcome::Accepted);
                continue;
            }
            let placed: Option<(i64,)> =
                sqlx::query_as("SELECT 1 FROM placements WHERE instance_id = $1 AND host_id = $2")
                    .bind(instance_id)
                    .bind(host_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if placed.is_none() {
                out.push(ReportOutcome::NotPlaced);
                continue;
            }
            let (stored,): (i64,) = sqlx::query_as("SELECT generation FROM instance_runtime WHERE instance_id = $1")
                .bind(instance_id)
                .fetch_one(&mut *tx)
                .await?;
            out.push(ReportOutcome::Stale { stored_generation: stored });
        }
        tx.commit().await?;
        Ok(out)
    }

    pub async fn runtime(&self, instance_id: &str) -> Result<Option<RuntimeRecord>> {
        Ok(sqlx::query_as(
            "SELECT instance_id, host_id, state, generation, reported_at FROM instance_runtime WHERE instance_id = $1",
        )
        .bind(instance_id)
        .fetch_optional(self.pool())
        .await?)
    }
}

impl Store {
    /// The instances placed on a host, oldest placement first.
    pub async fn host_instances(&self, host_id: &str) -> Result<Vec<HostInstance>> {
        Ok(sqlx::query_as(
            "SELECT i.instance_id, i.account_id, i.status, i.zone_id, i.flavor_id, \
                    r.generation AS reported_generation \
             FROM placements p JOIN instances i ON i.instance_id = p.instance_id \
             LEFT JOIN instance_runtime r ON r.instance_id = p.instance_id AND r.host_id = p.host_id \
             WHERE p.host_id = $1 ORDER BY p.created_at, p.instance_id",
        )
        .bind(host_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Replaces a host's strays with those of its latest full report: `(instance_id, state)`.
    /// Machines that are the target of a move onto this host are not strays (the move is under
    /// way). Answers the strays kept.
    pub async fn replace_strays(&self, host_id: &str, reported: &[(String, String)], now: i64) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM host_strays WHERE host_id = $1").bind(host_id).execute(&mut *tx).await?;
        let mut kept = Vec::new();
        for (instance_id, state) in reported {
            let r = sqlx::query(
                "INSERT INTO host_strays (host_id, instance_id, state, reported_at) SELECT $1, $2, $3, $4 \
                 WHERE NOT EXISTS (SELECT 1 FROM placements WHERE instance_id = $2 AND host_id = $1) \
                   AND NOT EXISTS (SELECT 1 FROM placement_moves WHERE instance_id = $2 AND host_id = $1)",
            )
            .bind(host_id)
            .bind(instance_id)
            .bind(state)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() > 0 {
                kept.push(instance_id.clone());
            }
        }
        tx.commit().await?;
        Ok(kept)
    }

    /// Every stray, or one host's, by host and instance.
    pub async fn strays(&self, host_id: Option<&str>) -> Result<Vec<StrayRecord>> {
        let base = "SELECT host_id, instance_id, state, reported_at FROM host_strays";
        Ok(match host_id {
            Some(h) => {
                sqlx::query_as(&format!("{base} WHERE host_id = $1 ORDER BY instance_id"))
                    .bind(h)
                    .fetch_all(self.pool())
                    .await?
            }
            None => sqlx::query_as(&format!("{base} ORDER BY host_id, instance_id")).fetch_all(self.pool()).await?,
        })
    }

    /// Forgets a stray (it was destroyed); false when there was none.
    pub async fn remove_stray(&self, host_id: &str, instance_id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM host_strays WHERE host_id = $1 AND instance_id = $2")
            .bind(host_id)
            .bind(instance_id)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
