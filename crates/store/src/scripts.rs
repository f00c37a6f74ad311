//! User scripts of an account, run by the guest at first boot: a named text resource
//! (`named_text.rs`).

use crate::named_text::named_text;
use crate::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScriptRecord {
    pub user_script_id: String,
    pub account_id: crate::ids::AccountId,
    pub name: String,
    pub content: String,
    pub created_at: i64,
}

named_text!(ScriptRecord, table = "user_scripts", id = user_script_id, texts = [content]);

impl Store {
    /// One of the account's scripts (the other reads and writes are the generic ones of
    /// `named_text.rs`: `list_named`, `insert_named`, `delete_named`).
    pub async fn script(&self, account_id: &str, id: &str) -> Result<Option<ScriptRecord>> {
        self.get_named(account_id, id).await
    }
}
