//! SSH keys and user scripts (spec §7, §9).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SshKey {
    pub ssh_key_id: String,
    pub name: String,
    /// Creation time, `YYYY-MM-DD HH:MM:SS`.
    pub start_date: String,
    /// `SHA256:…` [ext].
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserScript {
    pub user_script_id: String,
    pub name: String,
    pub content: String,
    pub created_at: String,
}

/// Body of `POST /v1/auth/ssh_key` [ext].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewSshKey {
    /// 1–64 characters.
    pub name: String,
    /// An OpenSSH public key: ed25519, ecdsa, or rsa of at least 2048 bits.
    pub public_key: String,
}

/// Body of `POST /v1/instance/script` [ext].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewUserScript {
    /// 1–64 characters.
    pub name: String,
    /// At most 32 KiB.
    pub content: String,
}

/// Acknowledgement of a delete extension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    pub id: String,
}
