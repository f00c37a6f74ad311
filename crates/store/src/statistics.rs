//! Planner statistics that follow an account's growth (PostgreSQL).
//!
//! PostgreSQL plans from statistics that autovacuum refreshes when a table changed by a tenth of
//! its rows, checked once a minute (`autovacuum_naptime`). A table that grows a hundredfold
//! within that minute (an account going from 100 to 10,000 instances in the mixed benchmark, or a
//! fleet created by a script) is planned meanwhile from what it was: a database whose
//! `instances` table was never analyzed guesses that an account owns 0.5% of the rows and
//! answers a list page by reading and sorting all of them (14 ms at 10,000 instances) instead of
//! walking the account's index for ten (0.2 ms). [`Store::refresh_statistics`] analyzes, at
//! once, the tables whose rows changed by as many as they hold since their last analyze (at
//! least [`MIN_CHANGED`]): a table is analyzed each time it doubles, and under a steady churn
//! no more often than that. One process at a time does it (an advisory lock); SQLite's planner
//! reads the index's order without statistics, and there is nothing to do.

use crate::{Backend, Result, Store};

/// Changed rows below which a table is left to autovacuum.
pub const MIN_CHANGED: i64 = 1000;

/// The advisory lock key of the refresh (any process on the database).
const LOCK: i64 = 0x6f77_7374_6174; // "owstat"

impl Store {
    /// Analyzes the tables whose statistics fell behind (see the module documentation); returns
    /// their names. None on SQLite, and none while another process is at it.
    pub async fn refresh_statistics(&self) -> Result<Vec<String>> {
        if self.backend() != Backend::Postgres {
            return Ok(Vec::new());
        }
        let mut conn = self.pool().acquire().await?;
        let (locked,): (bool,) =
            sqlx::query_as("SELECT pg_try_advisory_lock($1)").bind(LOCK).fetch_one(&mut *conn).await?;
        if !locked {
            return Ok(Vec::new());
        }
        // The lock is a session's: released whatever the analyze did.
        let analyzed = analyze_stale(&mut conn).await;
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK).execute(&mut *conn).await?;
        analyzed
    }
}

/// Analyzes the tables whose rows changed by as many as they hold (at least [`MIN_CHANGED`]).
async fn analyze_stale(conn: &mut sqlx::AnyConnection) -> Result<Vec<String>> {
    let stale: Vec<(String,)> = sqlx::query_as(
        "SELECT CAST(relname AS TEXT) FROM pg_stat_user_tables \
         WHERE schemaname = current_schema() AND n_mod_since_analyze >= GREATEST($1, n_live_tup) \
         ORDER BY relname",
    )
    .bind(MIN_CHANGED)
    .fetch_all(&mut *conn)
    .await?;
    let mut done = Vec::with_capacity(stale.len());
    for (table,) in stale {
        sqlx::query(&format!("ANALYZE {}", crate::snapshot::quoted(&table))).execute(&mut *conn).await?;
        done.push(table);
    }
    Ok(done)
}
