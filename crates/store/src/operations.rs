//! Durable operations: rows written in the same transaction as the change they carry out, then
//! claimed by workers with leases and advanced one step at a time.

use crate::{Backend, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OperationRecord {
    pub operation_id: String,
    pub account_id: String,
    pub kind: String,
    pub resource_id: String,
    pub status: String,
    pub step: i64,
    pub undoing: i64,
    pub params: String,
    pub error: Option<String>,
    pub attempts: i64,
    pub waited_step: i64,
    pub permits: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub next_run_at: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// `next_run_at` of an operation parked until the operator grants a step (explicit mode).
pub const PARKED: i64 = i64::MAX / 4;

pub const RUNNING: &str = "running";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";

const COLUMNS: &str = "operation_id, account_id, kind, resource_id, status, step, undoing, params, error, \
     attempts, waited_step, permits, lease_owner, lease_until, next_run_at, created_at, finished_at";

/// A new operation, inserted by the request that accepts the change.
#[derive(Debug, Clone)]
pub struct NewOperation<'a> {
    pub operation_id: &'a str,
    pub account_id: &'a str,
    pub kind: &'a str,
    pub resource_id: &'a str,
    pub params: &'a str,
    /// Server clock, ms.
    pub now_ms: i64,
}

/// Inserts an operation inside the caller's transaction.
pub async fn insert_operation(conn: &mut sqlx::AnyConnection, op: &NewOperation<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO operations (operation_id, account_id, kind, resource_id, status, params, next_run_at, created_at) \
         VALUES ($1, $2, $3, $4, 'running', $5, $6, $7)",
    )
    .bind(op.operation_id)
    .bind(op.account_id)
    .bind(op.kind)
    .bind(op.resource_id)
    .bind(op.params)
    .bind(op.now_ms)
    .bind(op.now_ms / 1000)
    .execute(conn)
    .await?;
    Ok(())
}

/// The progress a worker writes after a step.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub status: &'a str,
    pub step: i64,
    pub undoing: bool,
    pub params: &'a str,
    pub error: Option<&'a str>,
    pub attempts: i64,
    pub waited_step: i64,
    pub permits_used: i64,
    pub next_run_at: i64,
    pub finished_at: Option<i64>,
    /// Keep the lease (until this host time, ms) or give it up (`None`).
    pub lease_until: Option<i64>,
}

impl Store {
    pub async fn operation(&self, operation_id: &str) -> Result<Option<OperationRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM operations WHERE operation_id = $1"))
            .bind(operation_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Claims up to `limit` due operations for `owner` until `lease_until` (host time, ms).
    /// Free ones are those without a lease or with an expired one. On PostgreSQL rows locked by
    /// another claimer are skipped (`FOR UPDATE SKIP LOCKED`); SQLite serializes writers.
    pub async fn claim_operations(
        &self,
        owner: &str,
        host_now_ms: i64,
        lease_until: i64,
        clock_now_ms: i64,
        limit: i64,
    ) -> Result<Vec<OperationRecord>> {
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE operations SET lease_owner = $1, lease_until = $2 WHERE operation_id IN (\
               SELECT operation_id FROM operations WHERE status = 'running' AND next_run_at <= $3 \
               AND (lease_until IS NULL OR lease_until < $4) ORDER BY next_run_at, operation_id LIMIT $5 {lock}\
             ) AND status = 'running' AND (lease_until IS NULL OR lease_until < $4) RETURNING {COLUMNS}"
        );
        Ok(sqlx::query_as(&sql)
            .bind(owner)
            .bind(lease_until)
            .bind(clock_now_ms)
            .bind(host_now_ms)
            .bind(limit)
            .fetch_all(self.writer())
            .await?)
    }

    /// Writes a worker's progress, only while it still holds the lease. False: the lease was lost
    /// (another worker owns the operation now) and the caller must stop. A park (explicit mode)
    /// does not stick when a permit arrived meanwhile.
    pub async fn save_progress(&self, operation_id: &str, owner: &str, p: &Progress<'_>) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE operations SET status = $1, step = $2, undoing = $3, params = $4, error = $5, attempts = $6, \
             waited_step = $7, permits = permits - $8, \
             next_run_at = CASE WHEN $9 >= $14 AND permits - $8 > 0 THEN 0 ELSE $9 END, \
             finished_at = $10, lease_until = $11, \
             lease_owner = CASE WHEN $11 IS NULL AND $1 = 'running' THEN NULL ELSE lease_owner END \
             WHERE operation_id = $12 AND lease_owner = $13",
        )
        .bind(p.status)
        .bind(p.step)
        .bind(i64::from(p.undoing))
        .bind(p.params)
        .bind(p.error)
        .bind(p.attempts)
        .bind(p.waited_step)
        .bind(p.permits_used)
        .bind(p.next_run_at)
        .bind(p.finished_at)
        .bind(p.lease_until)
        .bind(operation_id)
        .bind(owner)
        .bind(PARKED)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Extends the lease of an operation `owner` still holds (a long step is running). False when
    /// the lease was lost.
    pub async fn renew_lease(&self, operation_id: &str, owner: &str, lease_until: i64) -> Result<bool> {
        let r = sqlx::query("UPDATE operations SET lease_until = $1 WHERE operation_id = $2 AND lease_owner = $3")
            .bind(lease_until)
            .bind(operation_id)
            .bind(owner)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Explicit mode: lets a waiting operation take one more step. False when it is not running.
    pub async fn grant_permit(&self, operation_id: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE operations SET permits = permits + 1, next_run_at = 0 WHERE operation_id = $1 AND status = 'running'")
            .bind(operation_id)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Operations of an account, newest first (for views and tests).
    pub async fn operations_of(&self, resource_id: &str) -> Result<Vec<OperationRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM operations WHERE resource_id = $1 ORDER BY created_at DESC, operation_id DESC"
        ))
        .bind(resource_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn count_running_operations(&self) -> Result<i64> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM operations WHERE status = 'running'").fetch_one(self.pool()).await?;
        Ok(n)
    }
}
