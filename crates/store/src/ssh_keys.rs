//! SSH public keys of an account: a named text resource (`named_text.rs`).

use crate::named_text::named_text;
use crate::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SshKeyRecord {
    pub ssh_key_id: String,
    pub account_id: crate::ids::AccountId,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: i64,
}

named_text!(SshKeyRecord, table = "ssh_keys", id = ssh_key_id, texts = [public_key, fingerprint]);

impl Store {
    /// One of the account's keys (the other reads and writes are the generic ones of
    /// `named_text.rs`: `list_named`, `insert_named`, `delete_named`).
    pub async fn ssh_key(&self, account_id: &str, id: &str) -> Result<Option<SshKeyRecord>> {
        self.get_named(account_id, id).await
    }
}
