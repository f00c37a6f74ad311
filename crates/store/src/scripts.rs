//! User scripts of an account, run by the guest at first boot: a named text resource
//! (`named_text.rs`).

use crate::named_text::NamedText;
use crate::{PageQuery, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScriptRecord {
    pub user_script_id: String,
    pub account_id: crate::ids::AccountId,
    pub name: String,
    pub content: String,
    pub created_at: i64,
}

impl NamedText for ScriptRecord {
    const TABLE: &'static str = "user_scripts";
    const ID: &'static str = "user_script_id";
    const COLUMNS: &'static str = "user_script_id, account_id, name, content, created_at";

    fn texts(&self) -> Vec<&str> {
        vec![&self.user_script_id, &self.account_id, &self.name, &self.content]
    }

    fn created_at(&self) -> i64 {
        self.created_at
    }
}

impl Store {
    pub async fn insert_script(&self, rec: &ScriptRecord) -> Result<()> {
        self.insert_named(rec).await
    }

    /// One page of an account's scripts whose name contains `name` (case-insensitive), and the
    /// total.
    pub async fn list_scripts(
        &self,
        account_id: &str,
        name: Option<&str>,
        page: PageQuery,
    ) -> Result<(Vec<ScriptRecord>, i64)> {
        self.list_named(account_id, name, page).await
    }

    pub async fn script(&self, account_id: &str, id: &str) -> Result<Option<ScriptRecord>> {
        self.get_named(account_id, id).await
    }

    pub async fn delete_script(&self, account_id: &str, id: &str) -> Result<bool> {
        self.delete_named::<ScriptRecord>(account_id, id).await
    }
}
