//! User scripts of an account, run by the guest at first boot.

use crate::{PageQuery, Result, Store, contains_pattern};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScriptRecord {
    pub user_script_id: String,
    pub account_id: String,
    pub name: String,
    pub content: String,
    pub created_at: i64,
}

const COLUMNS: &str = "user_script_id, account_id, name, content, created_at";

impl Store {
    pub async fn insert_script(&self, rec: &ScriptRecord) -> Result<()> {
        sqlx::query(&format!("INSERT INTO user_scripts ({COLUMNS}) VALUES ($1, $2, $3, $4, $5)"))
            .bind(&rec.user_script_id)
            .bind(&rec.account_id)
            .bind(&rec.name)
            .bind(&rec.content)
            .bind(rec.created_at)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    pub async fn list_scripts(
        &self,
        account_id: &str,
        name: Option<&str>,
        page: PageQuery,
    ) -> Result<(Vec<ScriptRecord>, i64)> {
        let pattern = contains_pattern(name.unwrap_or(""));
        let filter = "account_id = $1 AND lower(name) LIKE $2 ESCAPE '\\'";
        let (total,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM user_scripts WHERE {filter}"))
            .bind(account_id)
            .bind(&pattern)
            .fetch_one(self.pool())
            .await?;
        let rows = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM user_scripts WHERE {filter} ORDER BY created_at, user_script_id LIMIT $3 OFFSET $4"
        ))
        .bind(account_id)
        .bind(&pattern)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(self.pool())
        .await?;
        Ok((rows, total))
    }

    pub async fn script(&self, account_id: &str, id: &str) -> Result<Option<ScriptRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM user_scripts WHERE account_id = $1 AND user_script_id = $2"))
            .bind(account_id)
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn delete_script(&self, account_id: &str, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM user_scripts WHERE account_id = $1 AND user_script_id = $2")
            .bind(account_id)
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
