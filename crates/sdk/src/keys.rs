//! The account's SSH keys (spec §9) and user scripts (spec §7): the iwinv lists and the
//! create/delete extensions.

use openwinv_wire::keys::{NewSshKey, NewUserScript, SshKey, UserScript};
use reqwest::Method;

use crate::client::Client;
use crate::error::Result;
use crate::pages::{Page, PageRequest};
use crate::query::NameQuery;

const SSH_KEYS: &str = "/v1/auth/ssh_key";
const SCRIPTS: &str = "/v1/instance/script";

impl Client {
    /// One page of SSH keys, optionally those whose name contains `name`.
    pub async fn ssh_keys(&self, name: Option<&str>, page: PageRequest) -> Result<Page<SshKey>> {
        self.named_list(SSH_KEYS, name, page).await
    }

    /// Registers an OpenSSH public key (ed25519, ecdsa, or rsa of at least 2048 bits).
    pub async fn create_ssh_key(&self, name: &str, public_key: &str) -> Result<SshKey> {
        let body = NewSshKey { name: name.into(), public_key: public_key.into() };
        self.create(SSH_KEYS, &body).await
    }

    /// Deletes an SSH key and returns it.
    pub async fn delete_ssh_key(&self, ssh_key_id: &str) -> Result<SshKey> {
        self.delete(&["v1", "auth", "ssh_key", ssh_key_id]).await
    }

    /// One page of user scripts, optionally those whose name contains `name`.
    pub async fn scripts(&self, name: Option<&str>, page: PageRequest) -> Result<Page<UserScript>> {
        self.named_list(SCRIPTS, name, page).await
    }

    /// Stores a user script (at most 32 KiB).
    pub async fn create_script(&self, name: &str, content: &str) -> Result<UserScript> {
        let body = NewUserScript { name: name.into(), content: content.into() };
        self.create(SCRIPTS, &body).await
    }

    /// Deletes a user script and returns it.
    pub async fn delete_script(&self, user_script_id: &str) -> Result<UserScript> {
        self.delete(&["v1", "instance", "script", user_script_id]).await
    }

    async fn named_list<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        name: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<T>> {
        let query = NameQuery { name, page_no: page.page_no, page_size: page.page_size };
        Ok(Page::from_envelope(self.get(path, &query).await?, page))
    }

    async fn create<T: serde::de::DeserializeOwned, B: serde::Serialize>(&self, path: &str, body: &B) -> Result<T> {
        let env = self.send::<Vec<T>, B>(Method::POST, path, Some(body)).await?;
        crate::response::first_row(env)
    }

    async fn delete<T: serde::de::DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        let env = self.execute::<Vec<T>>(self.request_of(Method::DELETE, segments)).await?;
        crate::response::first_row(env)
    }
}
