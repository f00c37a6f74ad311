//! Rate-limit buckets (spec §2): the limit is per access key across every server process on one
//! database, so the bucket lives here rather than in a process's memory.
//!
//! Each bucket is a GCRA ("generic cell rate algorithm") row: the theoretical arrival time of the
//! next request. One statement reads, decides and writes it, atomically on both backends (an
//! upsert takes the row's lock on PostgreSQL; SQLite has one writer), and returns the decision with
//! the new state, so a request costs one round trip and two processes can never both spend the
//! last token.

use std::sync::LazyLock;

use crate::{Result, Store};

/// What taking a token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may go ahead (a token was taken).
    pub granted: bool,
    /// The bucket's theoretical arrival time after the decision, in microseconds of the server
    /// clock: the bucket is full again at this instant.
    pub tat_us: i64,
}

/// Where the bucket starts from, in SQL: its arrival time, or now when that lies in the past (the
/// bucket is full) or further ahead than a whole burst plus `$5` (it was written before the clock
/// was moved back; starting from now avoids refusing everything until the clock catches up).
/// `$2` is now, `$3` the interval between tokens, `$4` the burst (capacity times interval), `$5`
/// the slack, in microseconds. The slack matters: requests in flight read the clock a little
/// before their statement runs, so an empty bucket's arrival time (now + burst, as the last grant
/// left it) is a little ahead of a later statement's `now + burst`; without the slack that looked
/// like a moved clock and refilled the bucket, and concurrent requests went through far past the
/// limit.
const BASE: &str = "(CASE WHEN rate_limit_buckets.tat_us < $2 OR rate_limit_buckets.tat_us > $2 + $4 + $5 \
                     THEN $2 ELSE rate_limit_buckets.tat_us END)";

/// How far behind another request's a request's clock reading may be, at least: ten seconds, or
/// one interval when that is longer. A clock moved back by less keeps the bucket (it refuses at
/// most that long); moved back by more, the bucket starts full.
const MIN_SLACK_US: i64 = 10_000_000;

/// The whole decision in one statement: a token is granted when the arrival time, moved one
/// interval on, stays within a burst of now.
static TAKE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO rate_limit_buckets (access_key, tat_us, granted) VALUES ($1, $2 + $3, 1) \
         ON CONFLICT (access_key) DO UPDATE SET \
         tat_us = CASE WHEN {BASE} + $3 <= $2 + $4 THEN {BASE} + $3 ELSE rate_limit_buckets.tat_us END, \
         granted = CASE WHEN {BASE} + $3 <= $2 + $4 THEN 1 ELSE 0 END \
         RETURNING tat_us, granted"
    )
});

impl Store {
    /// Takes one token from `access_key`'s bucket at `now_us`, refilled one token per
    /// `interval_us` up to `burst_us / interval_us` tokens.
    pub async fn take_rate_token(
        &self,
        access_key: &str,
        now_us: i64,
        interval_us: i64,
        burst_us: i64,
    ) -> Result<RateDecision> {
        let (tat_us, granted): (i64, i64) = sqlx::query_as(TAKE.as_str())
            .bind(access_key)
            .bind(now_us)
            .bind(interval_us)
            .bind(burst_us)
            .bind(interval_us.max(MIN_SLACK_US))
            .fetch_one(self.writer())
            .await?;
        Ok(RateDecision { granted: granted == 1, tat_us })
    }
}
