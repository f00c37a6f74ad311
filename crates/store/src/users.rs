//! People who sign in to the web console: users of an account, their sessions, and failed
//! sign-ins counted for throttling (migration 0017). Everything is in the database so that every
//! server process on it accepts the same sessions and counts the same failures.
//!
//! The store keeps what it is given: password hashes are made and checked by the server, and a
//! session is looked up by the hash of its cookie, never by the cookie itself.

use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRecord {
    pub user_id: String,
    pub account_id: crate::ids::AccountId,
    pub login: String,
    pub password_hash: String,
    pub created_at: i64,
}

/// A live session with who it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub session_hash: String,
    pub user_id: String,
    pub login: String,
    pub account_id: crate::ids::AccountId,
    pub account_name: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

const USER_COLUMNS: &str = "user_id, account_id, login, password_hash, created_at";

impl Store {
    /// A new user; `StoreError::Conflict` when the login is taken.
    pub async fn insert_user(&self, rec: &UserRecord) -> Result<()> {
        sqlx::query(&format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"))
            .bind(&rec.user_id)
            .bind(&rec.account_id)
            .bind(&rec.login)
            .bind(&rec.password_hash)
            .bind(rec.created_at)
            .execute(self.writer())
            .await
            .map_err(StoreError::from_insert)?;
        Ok(())
    }

    pub async fn user_by_login(&self, login: &str) -> Result<Option<UserRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE login = $1"))
            .bind(login)
            .fetch_optional(self.pool())
            .await?)
    }

    /// An account's users, by login.
    pub async fn users_of_account(&self, account_id: &str) -> Result<Vec<UserRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE account_id = $1 ORDER BY login"))
            .bind(account_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Replaces a user's password hash and ends all their sessions, in one transaction.
    pub async fn set_user_password(&self, user_id: &str, password_hash: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM web_sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    pub async fn insert_session(&self, session_hash: &str, user_id: &str, csrf_token: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO web_sessions (session_hash, user_id, csrf_token, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(session_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The session with this hash if it was seen at or after `seen_after` and its account is
    /// enabled; an idle one is deleted on the way.
    pub async fn session(&self, session_hash: &str, seen_after: i64) -> Result<Option<SessionRecord>> {
        let row: Option<SessionRecord> = sqlx::query_as(
            "SELECT s.session_hash, s.user_id, u.login, u.account_id, a.name AS account_name, s.csrf_token, \
                    s.created_at, s.last_seen_at \
             FROM web_sessions s JOIN users u ON u.user_id = s.user_id JOIN accounts a ON a.account_id = u.account_id \
             WHERE s.session_hash = $1 AND a.enabled = 1",
        )
        .bind(session_hash)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(s) if s.last_seen_at < seen_after => {
                self.delete_session(session_hash).await?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// Records use of a session (the caller does it at most once a minute per session).
    pub async fn touch_session(&self, session_hash: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE web_sessions SET last_seen_at = $1 WHERE session_hash = $2 AND last_seen_at < $1")
            .bind(now)
            .bind(session_hash)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, session_hash: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM web_sessions WHERE session_hash = $1")
            .bind(session_hash)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Failed sign-ins counted under `key` since `window_start` (0 when none or the window ended
    /// before `window_from`).
    pub async fn signin_failures(&self, key: &str, window_from: i64) -> Result<i64> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT failures FROM signin_failures WHERE throttle_key = $1 AND window_start >= $2")
                .bind(key)
                .bind(window_from)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map_or(0, |(n,)| n))
    }

    /// Counts one failed sign-in under `key`: a window older than `window_from` starts again at
    /// `now` with one failure. One statement, so concurrent failures all count.
    pub async fn add_signin_failure(&self, key: &str, now: i64, window_from: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO signin_failures (throttle_key, failures, window_start) VALUES ($1, 1, $2) \
             ON CONFLICT (throttle_key) DO UPDATE SET \
               failures = CASE WHEN signin_failures.window_start >= $3 THEN signin_failures.failures + 1 ELSE 1 END, \
               window_start = CASE WHEN signin_failures.window_start >= $3 THEN signin_failures.window_start ELSE $2 END",
        )
        .bind(key)
        .bind(now)
        .bind(window_from)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Forgets the failures under `key` (after a successful sign-in for the login).
    pub async fn clear_signin_failures(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM signin_failures WHERE throttle_key = $1").bind(key).execute(self.writer()).await?;
        Ok(())
    }
}
