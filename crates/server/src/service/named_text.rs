//! SSH keys and user scripts (spec §7, §9): both are named text resources of an account (an id, a
//! name, some text), listed by a name substring, created and deleted. One implementation of the
//! three calls here; each kind says how its input becomes a record ([`NamedResource::make`]).

use openwinv_store::ids::{self, AccountId};
use openwinv_store::named_text::NamedText;
use openwinv_store::{PageQuery, ScriptRecord, SshKeyRecord};
use openwinv_wire::ErrorCode;
use serde::Serialize;
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};
use utoipa::ToSchema;

use super::FromBody;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Encoding, text_field};

pub const NAME_MAX: usize = 64;
/// RSA keys shorter than this are refused.
pub const MIN_RSA_BITS: usize = 2048;
const PUBLIC_KEY_MAX_BYTES: usize = 16 * 1024;
/// Largest user script, in bytes.
pub const CONTENT_MAX_BYTES: usize = 32 * 1024;

/// A kind of named text resource as the service sees it.
pub trait NamedResource: NamedText + Sized {
    /// The typed input of a create.
    type New: FromBody;
    /// How errors name one: "The SSH key".
    const WHAT: &'static str;
    /// The id prefix of new ones.
    const PREFIX: &'static str;

    /// Validates a create's input and makes the record.
    fn make(new: Self::New, id: String, account_id: &AccountId, now: i64) -> ApiResult<Self>;
}

/// Body of `POST /v1/auth/ssh_key` [ext].
// The doc comments are the OpenAPI descriptions; required fields are read as options so that a
// missing one is refused by name.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = NewSshKey)]
pub struct NewSshKey {
    /// 1–64 characters.
    #[schema(value_type = String, required = true)]
    pub name: Option<String>,
    /// An OpenSSH public key: ed25519, ecdsa, or rsa of at least 2048 bits.
    #[schema(value_type = String, required = true)]
    pub public_key: Option<String>,
}

impl FromBody for NewSshKey {
    fn from_body(body: &Body, _: Encoding) -> ApiResult<Self> {
        Ok(NewSshKey { name: body.str("name")?, public_key: body.str("public_key")? })
    }
}

/// Body of `POST /v1/instance/script` [ext].
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = NewUserScript)]
pub struct NewScript {
    /// 1–64 characters.
    #[schema(value_type = String, required = true)]
    pub name: Option<String>,
    /// At most 32 KiB.
    #[schema(value_type = String, required = true)]
    pub content: Option<String>,
}

impl FromBody for NewScript {
    fn from_body(body: &Body, _: Encoding) -> ApiResult<Self> {
        Ok(NewScript { name: body.str("name")?, content: body.str("content")? })
    }
}

fn name(v: Option<String>) -> ApiResult<String> {
    text_field("name", &v.ok_or_else(|| ApiError::missing_body("name"))?, 1, NAME_MAX)
}

impl NamedResource for SshKeyRecord {
    type New = NewSshKey;
    const WHAT: &'static str = "The SSH key";
    const PREFIX: &'static str = "SSHKEY";

    fn make(new: NewSshKey, id: String, account_id: &AccountId, now: i64) -> ApiResult<Self> {
        let name = name(new.name)?;
        let text = new.public_key.ok_or_else(|| ApiError::missing_body("public_key"))?;
        let (public_key, fingerprint) = parse_public_key(&text)?;
        Ok(SshKeyRecord {
            ssh_key_id: id,
            account_id: account_id.clone(),
            name,
            public_key,
            fingerprint,
            created_at: now,
        })
    }
}

impl NamedResource for ScriptRecord {
    type New = NewScript;
    const WHAT: &'static str = "The user script";
    const PREFIX: &'static str = "SCRIPT";

    fn make(new: NewScript, id: String, account_id: &AccountId, now: i64) -> ApiResult<Self> {
        let name = name(new.name)?;
        let content = new.content.ok_or_else(|| ApiError::missing_body("content"))?;
        if content.trim().is_empty() {
            return Err(ApiError::new(ErrorCode::CheckLength, "The field `content` must not be empty or only blanks."));
        }
        if content.len() > CONTENT_MAX_BYTES {
            return Err(ApiError::new(
                ErrorCode::CheckLength,
                format!("The field `content` must be at most {CONTENT_MAX_BYTES} bytes long, not {}.", content.len()),
            ));
        }
        Ok(ScriptRecord { user_script_id: id, account_id: account_id.clone(), name, content, created_at: now })
    }
}

/// Parses an OpenSSH public key line and returns it normalised with its SHA256 fingerprint.
pub fn parse_public_key(text: &str) -> ApiResult<(String, String)> {
    let text = text.trim();
    if text.len() > PUBLIC_KEY_MAX_BYTES || text.contains('\n') {
        return Err(ApiError::param("The field `public_key` must be one OpenSSH public key line."));
    }
    let key = PublicKey::from_openssh(text).map_err(|_| {
        ApiError::param(
            "The field `public_key` is not an OpenSSH public key (expected e.g. `ssh-ed25519 AAAA… comment`).",
        )
    })?;
    match key.key_data() {
        KeyData::Ed25519(_) | KeyData::Ecdsa(_) => {}
        KeyData::Rsa(rsa) => {
            let bits = rsa
                .n
                .as_positive_bytes()
                .map_or(0, |b| b.len() * 8 - b.first().map_or(0, |first| first.leading_zeros() as usize));
            if bits < MIN_RSA_BITS {
                return Err(ApiError::param(format!(
                    "The field `public_key` is an RSA key of {bits} bits; at least {MIN_RSA_BITS} are required."
                )));
            }
        }
        _ => {
            return Err(ApiError::param(format!(
                "The field `public_key` uses {}; only ed25519, ecdsa and rsa keys are accepted.",
                key.algorithm()
            )));
        }
    }
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let normalised = key.to_openssh().map_err(ApiError::internal)?;
    Ok((normalised, fingerprint))
}

pub fn not_found<T: NamedResource>(id: &str) -> ApiError {
    ApiError::not_found(format!("{} `{id}`", T::WHAT))
}

/// One page of the account's resources whose name contains `name`, and the total.
pub async fn list<T: NamedResource>(
    state: &AppState,
    account_id: &AccountId,
    name: Option<&str>,
    page: PageQuery,
) -> ApiResult<(Vec<T>, i64)> {
    Ok(state.store.list_named(account_id, name, page).await?)
}

/// Validates and stores a new one.
pub async fn create<T: NamedResource>(state: &AppState, account_id: &AccountId, new: T::New) -> ApiResult<T> {
    let rec = T::make(new, ids::new_id(T::PREFIX), account_id, state.clock.unix())?;
    state.store.insert_named(&rec).await?;
    Ok(rec)
}

/// Deletes one and returns it as it was.
pub async fn delete<T: NamedResource>(state: &AppState, account_id: &AccountId, id: &str) -> ApiResult<T> {
    let rec: T = state.store.get_named(account_id, id).await?.ok_or_else(|| not_found::<T>(id))?;
    if !state.store.delete_named::<T>(account_id, id).await? {
        return Err(not_found::<T>(id));
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example";

    #[test]
    fn accepts_ed25519_with_sha256_fingerprint() {
        let (norm, fp) = parse_public_key(&format!("  {ED25519}  ")).unwrap();
        assert!(fp.starts_with("SHA256:"), "{fp}");
        assert!(norm.starts_with("ssh-ed25519 AAAA"));
    }

    #[test]
    fn refuses_garbage_and_multiline() {
        assert!(parse_public_key("ssh-ed25519 notbase64").is_err());
        assert!(parse_public_key("").is_err());
        assert!(parse_public_key(&format!("{ED25519}\n{ED25519}")).is_err());
    }

    #[test]
    fn make_checks_fields_in_the_order_of_the_body() {
        let no_name = SshKeyRecord::make(NewSshKey::default(), "SSHKEY-x".into(), &"a".into(), 0).unwrap_err();
        assert!(no_name.message.contains("`name`"), "{}", no_name.message);
        let blank = NewScript { name: Some("s".into()), content: Some(" \n".into()) };
        let e = ScriptRecord::make(blank, "SCRIPT-x".into(), &"a".into(), 0).unwrap_err();
        assert_eq!(e.code, ErrorCode::CheckLength);
        let ok = NewScript { name: Some(" s ".into()), content: Some("#!/bin/sh".into()) };
        assert_eq!(ScriptRecord::make(ok, "SCRIPT-x".into(), &"a".into(), 7).unwrap().name, "s");
    }
}
