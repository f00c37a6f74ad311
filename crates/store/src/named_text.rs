//! Named text resources of an account: SSH keys and user scripts are both an id, the account, a
//! name, some text and a creation time; an account lists them by a name substring, reads one,
//! deletes one. One implementation here; each kind names its table and columns.

use sqlx::any::AnyRow;

use crate::{PageQuery, Result, Store, contains_pattern};

/// A kind of named text resource: a table whose columns are the id, `account_id`, `name`, the
/// kind's own text columns, then `created_at`.
pub trait NamedText: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin {
    const TABLE: &'static str;
    /// The id column.
    const ID: &'static str;
    /// Every column in insert order: [`NamedText::texts`], then `created_at`.
    const COLUMNS: &'static str;

    /// The text columns' values, in [`NamedText::COLUMNS`] order.
    fn texts(&self) -> Vec<&str>;
    fn created_at(&self) -> i64;
}

impl Store {
    pub async fn insert_named<T: NamedText>(&self, rec: &T) -> Result<()> {
        let texts = rec.texts();
        let placeholders = (1..=texts.len() + 1).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("INSERT INTO {} ({}) VALUES ({placeholders})", T::TABLE, T::COLUMNS);
        let mut q = sqlx::query(&sql);
        for t in texts {
            q = q.bind(t);
        }
        q.bind(rec.created_at()).execute(self.writer()).await?;
        Ok(())
    }

    /// One page of an account's resources whose name contains `name` (case-insensitive), and the
    /// total.
    pub async fn list_named<T: NamedText>(
        &self,
        account_id: &str,
        name: Option<&str>,
        page: PageQuery,
    ) -> Result<(Vec<T>, i64)> {
        let pattern = contains_pattern(name.unwrap_or(""));
        let filter = "account_id = $1 AND lower(name) LIKE $2 ESCAPE '\\'";
        let (total,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {} WHERE {filter}", T::TABLE))
            .bind(account_id)
            .bind(&pattern)
            .fetch_one(self.pool())
            .await?;
        let rows = sqlx::query_as(&format!(
            "SELECT {} FROM {} WHERE {filter} ORDER BY created_at, {} LIMIT $3 OFFSET $4",
            T::COLUMNS,
            T::TABLE,
            T::ID
        ))
        .bind(account_id)
        .bind(&pattern)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(self.pool())
        .await?;
        Ok((rows, total))
    }

    pub async fn get_named<T: NamedText>(&self, account_id: &str, id: &str) -> Result<Option<T>> {
        let sql = format!("SELECT {} FROM {} WHERE account_id = $1 AND {} = $2", T::COLUMNS, T::TABLE, T::ID);
        Ok(sqlx::query_as(&sql).bind(account_id).bind(id).fetch_optional(self.pool()).await?)
    }

    pub async fn delete_named<T: NamedText>(&self, account_id: &str, id: &str) -> Result<bool> {
        let sql = format!("DELETE FROM {} WHERE account_id = $1 AND {} = $2", T::TABLE, T::ID);
        let r = sqlx::query(&sql).bind(account_id).bind(id).execute(self.writer()).await?;
        Ok(r.rows_affected() > 0)
    }
}

/// Implements [`NamedText`] for a record whose fields are its table's columns: `$id`,
/// `account_id`, `name`, the kind's own text columns (`$text`), then `created_at`.
macro_rules! named_text {
    ($rec:ident, table = $table:literal, id = $id:ident, texts = [$($text:ident),*]) => {
        impl $crate::named_text::NamedText for $rec {
            const TABLE: &'static str = $table;
            const ID: &'static str = stringify!($id);
            const COLUMNS: &'static str =
                concat!(stringify!($id), ", account_id, name", $(", ", stringify!($text),)* ", created_at");

            fn texts(&self) -> Vec<&str> {
                vec![&self.$id, &self.account_id, &self.name $(, &self.$text)*]
            }

            fn created_at(&self) -> i64 {
                self.created_at
            }
        }
    };
}
pub(crate) use named_text;
