//! SSH public keys of an account: a named text resource (`named_text.rs`).

use crate::named_text::NamedText;
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

impl NamedText for SshKeyRecord {
    const TABLE: &'static str = "ssh_keys";
    const ID: &'static str = "ssh_key_id";
    const COLUMNS: &'static str = "ssh_key_id, account_id, name, public_key, fingerprint, created_at";

    fn texts(&self) -> Vec<&str> {
        vec![&self.ssh_key_id, &self.account_id, &self.name, &self.public_key, &self.fingerprint]
    }

    fn created_at(&self) -> i64 {
        self.created_at
    }
}

impl Store {
    /// One of the account's keys (the other reads and writes are the generic ones of
    /// `named_text.rs`: `list_named`, `insert_named`, `delete_named`).
    pub async fn ssh_key(&self, account_id: &str, id: &str) -> Result<Option<SshKeyRecord>> {
        self.get_named(account_id, id).await
    }
}
