//! `Idempotency-Key` entries: the first answer to a request, per account and key, replayed for
//! 24 hours. A request claims its key by inserting a placeholder (status 0) before it runs, so
//! that two concurrent requests with the same key cannot both run.

use crate::{Result, Store};

/// Status of a placeholder: the request holding the key is still running.
pub const IN_PROGRESS: i64 = 0;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IdempotencyRecord {
    pub account_id: String,
    pub key: String,
    /// Hex SHA-256 of the request (method, path, query, body).
    pub request_hash: String,
    /// HTTP status of the stored answer, or `IN_PROGRESS`.
    pub status: i64,
    /// JSON object of the stored answer's headers (name → value).
    pub headers: String,
    pub body: String,
    /// Server clock, Unix seconds.
    pub created_at: i64,
}

impl IdempotencyRecord {
    pub fn in_progress(&self) -> bool {
        self.status == IN_PROGRESS
    }
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free (or expired): a placeholder now holds it for this request.
    Claimed,
    /// The key is held by an earlier request, finished or still in progress.
    Existing(IdempotencyRecord),
}

const COLUMNS: &str = "account_id, key, request_hash, status, headers, body, created_at";

impl Store {
    /// Claims `key` for a request of `account_id` at `now`. An entry created at or before
    /// `expired_before` is forgotten, and so is a placeholder created at or before
    /// `abandoned_before` (its request died with its process); either is replaced.
    pub async fn claim_idempotency_key(
        &self,
        account_id: &str,
        key: &str,
        request_hash: &str,
        now: i64,
        expired_before: i64,
        abandoned_before: i64,
    ) -> Result<Claim> {
        // A placeholder deleted between our insert and our read (its request failed) frees the
        // key; try again a few times before giving up on the race.
        for _ in 0..5 {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 \
                 AND (created_at <= $3 OR (status = $4 AND created_at <= $5))",
            )
            .bind(account_id)
            .bind(key)
            .bind(expired_before)
            .bind(IN_PROGRESS)
            .bind(abandoned_before)
            .execute(self.writer())
            .await?;
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (account_id, key, request_hash, status, headers, body, created_at) \
                 VALUES ($1, $2, $3, $4, '{}', '', $5) ON CONFLICT (account_id, key) DO NOTHING",
            )
            .bind(account_id)
            .bind(key)
            .bind(request_hash)
            .bind(IN_PROGRESS)
            .bind(now)
            .execute(self.writer())
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(Claim::Claimed);
            }
            let existing: Option<IdempotencyRecord> =
                sqlx::query_as(&format!("SELECT {COLUMNS} FROM idempotency_keys WHERE account_id = $1 AND key = $2"))
                    .bind(account_id)
                    .bind(key)
                    .fetch_optional(self.pool())
                    .await?;
            if let Some(rec) = existing {
                return Ok(Claim::Existing(rec));
            }
        }
        Err(crate::StoreError::Corrupt("an idempotency key kept changing hands".into()))
    }

    /// Stores the answer of the request that holds the placeholder claimed at `claimed_at`.
    /// False when the placeholder is gone (it was taken over as abandoned).
    pub async fn complete_idempotency_key(
        &self,
        account_id: &str,
        key: &str,
        claimed_at: i64,
        status: i64,
        headers: &str,
        body: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE idempotency_keys SET status = $1, headers = $2, body = $3 \
             WHERE account_id = $4 AND key = $5 AND status = $6 AND created_at = $7",
        )
        .bind(status)
        .bind(headers)
        .bind(body)
        .bind(account_id)
        .bind(key)
        .bind(IN_PROGRESS)
        .bind(claimed_at)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Frees a key whose request failed (an answer not worth keeping), so that it can be retried.
    pub async fn release_idempotency_key(&self, account_id: &str, key: &str, claimed_at: i64) -> Result<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND status = $3 AND created_at = $4",
        )
        .bind(account_id)
        .bind(key)
        .bind(IN_PROGRESS)
        .bind(claimed_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Deletes every entry created at or before `expired_before`; returns how many went.
    pub async fn purge_idempotency_keys(&self, expired_before: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM idempotency_keys WHERE created_at <= $1")
            .bind(expired_before)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected())
    }
}
