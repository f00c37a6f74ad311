//! Work items for hypervisor hosts (issue 18, part 2): each driver call a saga step makes on an
//! instance placed on a host is a row of `host_work`, keyed by the step's call key
//! (`{operation}/{step}/{run|undo}/{n}`, see `openwinv_engine::StepScope`). Queueing is
//! idempotent: a retried step finds the row its first attempt queued, and its result if the
//! agent answered meanwhile, so a retry after a lost answer does nothing twice.
//!
//! States: `pending` (queued), `delivered` (an agent took it), `done` (the agent answered: a
//! result, or an error with its kind). A transient error is queued again by the next attempt; a
//! delivered item whose agent registers again (it restarted) or stays silent past the
//! redelivery time is delivered again, and the agent answers a duplicate from its own record.

use crate::{Result, Store};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const DONE: &str = "done";

/// Most items one pull hands an agent.
pub const MAX_PULL: i64 = 64;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WorkRecord {
    pub work_key: String,
    pub host_id: String,
    pub instance_id: Option<String>,
    /// The driver call: `create`, `start`, `stop`, `reboot`, `rebuild`, `resize`, `destroy`,
    /// `apply_firewall`, `attach_volume`, `detach_volume`.
    pub call: String,
    /// The call's arguments, JSON.
    pub payload: String,
    pub state: String,
    /// The driver's answer, JSON (`done` without error).
    pub result: Option<String>,
    pub error: Option<String>,
    /// `transient` or `permanent`.
    pub error_kind: Option<String>,
    pub deliveries: i64,
    /// Host milliseconds.
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub done_at: Option<i64>,
}

const COLUMNS: &str = "work_key, host_id, instance_id, call, payload, state, result, error, error_kind, deliveries, \
     created_at, delivered_at, done_at";

/// A call to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewWork<'a> {
    pub work_key: &'a str,
    pub host_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub call: &'a str,
    pub payload: &'a str,
    pub now_ms: i64,
}

/// An agent's answer to an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkOutcome {
    Ok(String),
    Transient(String),
    Permanent(String),
}

impl Store {
    /// Queues a call unless its key is queued already; an item that ended in a transient error
    /// is queued again, and an item for a host declared dead fails for good. Answers the item as
    /// it now is.
    pub async fn queue_work(&self, w: &NewWork<'_>) -> Result<WorkRecord> {
        let inserted = sqlx::query(
            "INSERT INTO host_work (work_key, host_id, instance_id, call, payload, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (work_key) DO NOTHING",
        )
        .bind(w.work_key)
        .bind(w.host_id)
        .bind(w.instance_id)
        .bind(w.call)
        .bind(w.payload)
        .bind(PENDING)
        .bind(w.now_ms)
        .execute(self.writer())
        .await?
        .rows_affected();
        if inserted == 0 {
            // Queued before (a retry): an item that ended in a transient error runs again.
            sqlx::query(
                "UPDATE host_work SET state = $2, result = NULL, error = NULL, error_kind = NULL, done_at = NULL \
                 WHERE work_key = $1 AND state = $3 AND error_kind = 'transient'",
            )
            .bind(w.work_key)
            .bind(PENDING)
            .bind(DONE)
            .execute(self.writer())
            .await?;
        }
        // A host declared dead answers nothing: its item fails for good at once, as declare-dead
        // failed those queued before it. Checked after the insert, so an item that raced with
        // the declaration (queued after it failed the host's items) fails at its next retry
        // instead of waiting for the host forever.
        sqlx::query(
            "UPDATE host_work SET state = $2, error_kind = 'permanent', done_at = $3, \
             error = (SELECT 'the host ' || h.name || ' was declared dead: ' || host_work.call || ' was not sent to it' \
                      FROM hosts h WHERE h.host_id = host_work.host_id) \
             WHERE work_key = $1 AND state <> $2 \
             AND host_id IN (SELECT host_id FROM hosts WHERE state = $4)",
        )
        .bind(w.work_key)
        .bind(DONE)
        .bind(w.now_ms)
        .bind(crate::hosts::DEAD)
        .execute(self.writer())
        .await?;
        self.work(w.work_key).await?.ok_or_else(|| crate::StoreError::Corrupt(format!("work {} vanished", w.work_key)))
    }

    pub async fn work(&self, work_key: &str) -> Result<Option<WorkRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM host_work WHERE work_key = $1"))
            .bind(work_key)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Hands a host its queued items (oldest first), and items delivered before
    /// `redeliver_before_ms` and still unanswered; they become `delivered` at `now_ms`.
    pub async fn take_work(
        &self,
        host_id: &str,
        now_ms: i64,
        redeliver_before_ms: i64,
        limit: i64,
    ) -> Result<Vec<WorkRecord>> {
        // A read first: an idle host's polls must not take the write lock (SQLite) every time.
        let any: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM host_work WHERE host_id = $1 AND (state = $2 OR (state = $3 AND delivered_at < $4)) LIMIT 1",
        )
        .bind(host_id)
        .bind(PENDING)
        .bind(DELIVERED)
        .bind(redeliver_before_ms)
        .fetch_optional(self.pool())
        .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut rows: Vec<WorkRecord> = sqlx::query_as(&format!(
            "UPDATE host_work SET state = $2, delivered_at = $3, deliveries = deliveries + 1 \
             WHERE work_key IN (SELECT work_key FROM host_work WHERE host_id = $1 \
                AND (state = $4 OR (state = $2 AND delivered_at < $5)) ORDER BY created_at, work_key LIMIT $6) \
             RETURNING {COLUMNS}"
        ))
        .bind(host_id)
        .bind(DELIVERED)
        .bind(now_ms)
        .bind(PENDING)
        .bind(redeliver_before_ms)
        .bind(limit)
        .fetch_all(self.writer())
        .await?;
        rows.sort_by(|a, b| (a.created_at, &a.work_key).cmp(&(b.created_at, &b.work_key)));
        Ok(rows)
    }

    /// Hands out again, at the host's next take, the items delivered to it that its agent does
    /// not hold (`held`: the keys it received and has not had answered): an item given to a long
    /// poll whose answer was lost. One read of the host's delivered keys; a write only for those
    /// missing. The number handed out again.
    pub async fn redeliver_unheld(&self, host_id: &str, held: &std::collections::HashSet<String>) -> Result<u64> {
        let delivered: Vec<(String,)> =
            sqlx::query_as("SELECT work_key FROM host_work WHERE host_id = $1 AND state = $2")
                .bind(host_id)
                .bind(DELIVERED)
                .fetch_all(self.pool())
                .await?;
        let mut again = 0;
        for (key,) in delivered.into_iter().filter(|(k,)| !held.contains(k)) {
            again += sqlx::query("UPDATE host_work SET state = $3 WHERE host_id = $1 AND work_key = $2 AND state = $4")
                .bind(host_id)
                .bind(&key)
                .bind(PENDING)
                .bind(DELIVERED)
                .execute(self.writer())
                .await?
                .rows_affected();
        }
        Ok(again)
    }

    /// Puts a host's delivered, unanswered items back in the queue (its agent started again).
    pub async fn redeliver_work(&self, host_id: &str) -> Result<u64> {
        let r = sqlx::query("UPDATE host_work SET state = $2 WHERE host_id = $1 AND state = $3")
            .bind(host_id)
            .bind(PENDING)
            .bind(DELIVERED)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected())
    }

    /// Records an agent's answer to one of its host's items. False: the host has no such item
    /// (or it was answered already, e.g. failed when the host was declared dead).
    pub async fn complete_work(
        &self,
        host_id: &str,
        work_key: &str,
        outcome: &WorkOutcome,
        now_ms: i64,
    ) -> Result<bool> {
        let (result, error, kind) = match outcome {
            WorkOutcome::Ok(r) => (Some(r.as_str()), None, None),
            WorkOutcome::Transient(e) => (None, Some(e.as_str()), Some("transient")),
            WorkOutcome::Permanent(e) => (None, Some(e.as_str()), Some("permanent")),
        };
        let r = sqlx::query(
            "UPDATE host_work SET state = $3, result = $4, error = $5, error_kind = $6, done_at = $7 \
             WHERE work_key = $1 AND host_id = $2 AND state <> $3",
        )
        .bind(work_key)
        .bind(host_id)
        .bind(DONE)
        .bind(result)
        .bind(error)
        .bind(kind)
        .bind(now_ms)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Items of a host by state (for the operator and tests).
    pub async fn host_work(&self, host_id: &str) -> Result<Vec<WorkRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM host_work WHERE host_id = $1 ORDER BY created_at, work_key"))
            .bind(host_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Removes answered items older than `before_ms`: their operations have long moved on.
    pub async fn prune_work(&self, before_ms: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM host_work WHERE state = $1 AND done_at < $2")
            .bind(DONE)
            .bind(before_ms)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected())
    }
}
