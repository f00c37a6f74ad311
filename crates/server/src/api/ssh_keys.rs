//! SSH public keys (spec §9): the iwinv list, and create/delete extensions.

use axum::extract::State;
use axum::{Extension, Json};
use openwinv_store::{PageQuery, SshKeyRecord, ids};
use openwinv_wire::Envelope;
use openwinv_wire::keys::{NewSshKey, SshKey};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

use super::Reply;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Path, Query, text_field};

/// RSA keys shorter than this are refused.
pub const MIN_RSA_BITS: usize = 2048;
pub const NAME_MAX: usize = 64;
const PUBLIC_KEY_MAX_BYTES: usize = 16 * 1024;

pub fn to_wire(state: &AppState, r: SshKeyRecord) -> SshKey {
    SshKey {
        start_date: state.timestamp(r.created_at),
        ssh_key_id: r.ssh_key_id,
        name: r.name,
        fingerprint: r.fingerprint,
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

pub async fn list_for(state: &AppState, account_id: &str, q: &Query) -> Reply<SshKey> {
    let page = q.page(openwinv_wire::envelope::Page::DEFAULT_SIZE)?;
    let (rows, _) =
        state.store.list_ssh_keys(account_id, q.str("name"), PageQuery::new(page.page_size, page.offset())).await?;
    let rows = rows.into_iter().map(|r| to_wire(state, r)).collect();
    // No `total` [iwinv live] (spec §3).
    Ok(Json(Envelope::page_without_total(rows, page)))
}

pub async fn create_for(state: &AppState, account_id: &str, body: &Body) -> Reply<SshKey> {
    let name = text_field("name", &body.required_str("name")?, 1, NAME_MAX)?;
    let (public_key, fingerprint) = parse_public_key(&body.required_str("public_key")?)?;
    let rec = SshKeyRecord {
        ssh_key_id: ids::new_id("SSHKEY"),
        account_id: account_id.to_owned(),
        name,
        public_key,
        fingerprint,
        created_at: state.clock.unix(),
    };
    state.store.insert_ssh_key(&rec).await?;
    Ok(Json(Envelope::rows(vec![to_wire(state, rec)])))
}

pub async fn delete_for(state: &AppState, account_id: &str, id: &str) -> Reply<SshKey> {
    let rec =
        state.store.ssh_key(account_id, id).await?.ok_or_else(|| ApiError::not_found(format!("The SSH key `{id}`")))?;
    if !state.store.delete_ssh_key(account_id, id).await? {
        return Err(ApiError::not_found(format!("The SSH key `{id}`")));
    }
    Ok(Json(Envelope::rows(vec![to_wire(state, rec)])))
}

/// The account's SSH keys.
#[utoipa::path(get, path = "/v1/auth/ssh_key", tag = "ssh keys",
    params(("name" = Option<String>, Query, description = "substring"), ("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query)),
    responses((status = 200, body = Envelope<Vec<SshKey>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>, q: Query) -> Reply<SshKey> {
    list_for(&state, &caller.account_id, &q).await
}

/// Registers an OpenSSH public key [ext].
#[utoipa::path(post, path = "/v1/auth/ssh_key", tag = "ssh keys", request_body = NewSshKey,
    responses((status = 200, body = Envelope<Vec<SshKey>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn create(State(state): State<AppState>, Extension(caller): Extension<Caller>, body: Body) -> Reply<SshKey> {
    create_for(&state, &caller.account_id, &body).await
}

/// Deletes a key [ext]; instances made with it keep their copy.
#[utoipa::path(delete, path = "/v1/auth/ssh_key/{ssh_key_id}", tag = "ssh keys",
    params(("ssh_key_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<SshKey>>), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Reply<SshKey> {
    delete_for(&state, &caller.account_id, &id).await
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
}
