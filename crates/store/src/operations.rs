//! Durable operations: rows written in the same transaction as the change they carry out, then
//! claimed by workers with leases and advanced one step at a time.

use crate::{Backend, PageQuery, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OperationRecord {
    pub operation_id: crate::ids::OperationId,
    pub account_id: crate::ids::AccountId,
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

/// The one end of every transaction that begins an operation: the resource rows were checked
/// (and, when accepted, changed) in `tx`; a refusal rolls everything back, an acceptance writes
/// the operation row and commits both together, so that a crash never leaves one without the
/// other.
pub(crate) async fn finish_begin<T, R>(
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    op: &NewOperation<'_>,
    checked: std::result::Result<T, R>,
) -> Result<std::result::Result<T, R>> {
    match checked {
        Err(refused) => {
            tx.rollback().await?;
            Ok(Err(refused))
        }
        Ok(accepted) => {
            insert_operation(&mut tx, op).await?;
            tx.commit().await?;
            Ok(Ok(accepted))
        }
    }
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
#[derive(Debug, Clone, serde::Serialize)]
pub struct Progress {
    pub operation_id: crate::ids::OperationId,
    pub status: String,
    pub step: i64,
    /// 1 while the operation unwinds.
    pub undoing: i64,
    pub params: String,
    pub error: Option<String>,
    pub attempts: i64,
    pub waited_step: i64,
    pub permits_used: i64,
    pub next_run_at: i64,
    pub finished_at: Option<i64>,
    /// Keep the lease (until this host time, ms) or give it up (`None`).
    pub lease_until: Option<i64>,
}

/// Most rows written by one progress save.
pub const MAX_PROGRESS_BATCH: usize = 256;

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

    /// Writes workers' progress, each row only while `owner` still holds its lease. Returns the
    /// ids written; a missing id lost its lease (another worker owns the operation now) and its
    /// driver must stop. A park (explicit mode) does not stick when a permit arrived meanwhile.
    ///
    /// The whole batch is one statement with one parameter, the rows as a JSON array: the
    /// statement text is the same for every batch size (prepared once), and binding stays cheap.
    pub async fn save_progress(&self, owner: &str, batch: &[Progress]) -> Result<Vec<String>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let rows = match self.backend() {
            Backend::Sqlite => {
                "(SELECT value ->> 'operation_id' AS id, value ->> 'status' AS status, value ->> 'step' AS step, \
                 value ->> 'undoing' AS undoing, value ->> 'params' AS params, value ->> 'error' AS error, \
                 value ->> 'attempts' AS attempts, value ->> 'waited_step' AS waited_step, \
                 value ->> 'permits_used' AS permits_used, value ->> 'next_run_at' AS next_run_at, \
                 value ->> 'finished_at' AS finished_at, value ->> 'lease_until' AS lease_until \
                 FROM json_each($2)) AS v"
            }
            Backend::Postgres => {
                "jsonb_to_recordset($2::jsonb) AS v (operation_id TEXT, status TEXT, step BIGINT, undoing BIGINT, \
                 params TEXT, error TEXT, attempts BIGINT, waited_step BIGINT, permits_used BIGINT, \
                 next_run_at BIGINT, finished_at BIGINT, lease_until BIGINT)"
            }
        };
        let id = match self.backend() {
            Backend::Sqlite => "v.id",
            Backend::Postgres => "v.operation_id",
        };
        let sql = format!(
            "UPDATE operations SET status = v.status, step = v.step, undoing = v.undoing, params = v.params, \
             error = v.error, attempts = v.attempts, waited_step = v.waited_step, \
             permits = operations.permits - v.permits_used, \
             next_run_at = CASE WHEN v.next_run_at >= {PARKED} AND operations.permits - v.permits_used > 0 \
               THEN 0 ELSE v.next_run_at END, \
             finished_at = v.finished_at, lease_until = v.lease_until, \
             lease_owner = CASE WHEN v.lease_until IS NULL AND v.status = 'running' THEN NULL \
               ELSE operations.lease_owner END \
             FROM {rows} WHERE operations.operation_id = {id} AND operations.lease_owner = $1 \
             RETURNING operations.operation_id"
        );
        let rows = serde_json::to_string(batch).expect("progress serializes");
        let saved: Vec<(String,)> = sqlx::query_as(&sql).bind(owner).bind(rows).fetch_all(self.writer()).await?;
        Ok(saved.into_iter().map(|(id,)| id).collect())
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

    /// Frees the leases `owner` holds: it was this process's previous run, now dead (the
    /// caller knows it from its data directory), so nothing will renew or release them. Returns
    /// how many were freed; the operations are due again as their `next_run_at` says.
    pub async fn release_leases_of(&self, owner: &str) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE operations SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 AND status = 'running'",
        )
        .bind(owner)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected())
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

    /// An account's operations, newest first, optionally only those of one status and one
    /// resource; with the number of all that match.
    pub async fn list_operations(
        &self,
        account_id: &str,
        status: Option<&str>,
        resource_id: Option<&str>,
        page: PageQuery,
    ) -> Result<(Vec<OperationRecord>, i64)> {
        // Only the conditions given, so that the account's index serves the unfiltered list
        // (an `($2 = '' OR status = $2)` form hides it from the planner).
        let mut filter = "account_id = $1".to_owned();
        let mut params = vec![account_id];
        for (column, value) in [("status", status), ("resource_id", resource_id)] {
            // An empty value filters nothing, as before.
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                params.push(v);
                filter.push_str(&format!(" AND {column} = ${}", params.len()));
            }
        }
        // Without a filter the total is the account's kept count (migration 0017), not a scan.
        let count_sql = if params.len() == 1 {
            "SELECT COALESCE((SELECT n FROM operation_counts WHERE account_id = $1), 0)".to_owned()
        } else {
            format!("SELECT COUNT(*) FROM operations WHERE {filter}")
        };
        let mut count = sqlx::query_as::<_, (i64,)>(&count_sql);
        for p in &params {
            count = count.bind(*p);
        }
        let (total,) = count.fetch_one(self.pool()).await?;
        let n = params.len();
        let sql = format!(
            "SELECT {COLUMNS} FROM operations WHERE {filter} \
             ORDER BY created_at DESC, operation_id DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let mut q = sqlx::query_as(&sql);
        for p in &params {
            q = q.bind(*p);
        }
        let rows = q.bind(page.limit).bind(page.offset).fetch_all(self.pool()).await?;
        Ok((rows, total))
    }

    pub async fn count_running_operations(&self) -> Result<i64> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM operations WHERE status = 'running'").fetch_one(self.pool()).await?;
        Ok(n)
    }
}
