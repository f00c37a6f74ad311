//! Fault rules of the simulated driver, shared by every server process through the store.

use crate::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FaultRecord {
    pub fault_id: String,
    /// An operation kind (e.g. `instance.create`) or `*`.
    pub kind: String,
    /// A step name or `*`.
    pub step: String,
    /// `once`, `count`, `sticky` or `random`.
    pub mode: String,
    /// `count`: failures left; `random`: probability in per mille.
    pub remaining: i64,
    /// `permanent` (the operation unwinds) or `transient` (the step is retried).
    pub effect: String,
    pub seed: i64,
    pub hits: i64,
    pub created_at: i64,
}

const COLUMNS: &str = "fault_id, kind, step, mode, remaining, effect, seed, hits, created_at";

impl Store {
    pub async fn insert_fault(&self, f: &FaultRecord) -> Result<()> {
        sqlx::query(&format!("INSERT INTO faults ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
            .bind(&f.fault_id)
            .bind(&f.kind)
            .bind(&f.step)
            .bind(&f.mode)
            .bind(f.remaining)
            .bind(&f.effect)
            .bind(f.seed)
            .bind(f.hits)
            .bind(f.created_at)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    pub async fn faults(&self) -> Result<Vec<FaultRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM faults ORDER BY created_at, fault_id"))
            .fetch_all(self.pool())
            .await?)
    }

    /// Removes one rule, or every rule when `fault_id` is `None`; returns how many went.
    pub async fn clear_faults(&self, fault_id: Option<&str>) -> Result<u64> {
        let r = match fault_id {
            Some(id) => sqlx::query("DELETE FROM faults WHERE fault_id = $1").bind(id).execute(self.writer()).await?,
            None => sqlx::query("DELETE FROM faults").execute(self.writer()).await?,
        };
        Ok(r.rows_affected())
    }

    /// Consumes one failure of a counted rule atomically; false when none is left (another
    /// process took the last one). Rules of other modes are only counted.
    pub async fn take_fault(&self, fault_id: &str, counted: bool) -> Result<bool> {
        let sql = if counted {
            "UPDATE faults SET remaining = remaining - 1, hits = hits + 1 WHERE fault_id = $1 AND remaining > 0"
        } else {
            "UPDATE faults SET hits = hits + 1 WHERE fault_id = $1"
        };
        let r = sqlx::query(sql).bind(fault_id).execute(self.writer()).await?;
        Ok(r.rows_affected() == 1)
    }
}
