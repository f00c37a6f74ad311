//! SSH public keys of an account: a named text resource (`named_text.rs`).

use crate::named_text::NamedText;
use crate::{PageQuery, Result, Store};

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
    pub async fn insert_ssh_key(&self, rec: &SshKeyRecord) -> Result<()> {
        self.insert_named(rec).await
    }

    /// One page of an account's keys whose name contains `name` (case-insensitive), and the total.
    pub async fn list_ssh_keys(
        &self,
        account_id: &str,
        name: Option<&str>,
        page: PageQuery,
    ) -> Result<(Vec<SshKeyRecord>, i64)> {
        self.list_named(account_id, name, page).await
    }

    pub async fn ssh_key(&self, account_id: &str, id: &str) -> Result<Option<SshKeyRecord>> {
        self.get_named(account_id, id).await
    }

    pub async fn delete_ssh_key(&self, account_id: &str, id: &str) -> Result<bool> {
        self.delete_named::<SshKeyRecord>(account_id, id).await
    }
}
