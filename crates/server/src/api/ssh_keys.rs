//! SSH public keys (spec §9): the iwinv list, and create/delete extensions.

use axum::Extension;
use axum::extract::State;
use openwinv_store::SshKeyRecord;
use openwinv_wire::Envelope;
use openwinv_wire::keys::SshKey;

use super::Reply;
use super::named_text::{self as named, Shown};
use crate::AppState;
use crate::auth::Caller;
use crate::input::{Body, Path, Query};

pub use crate::service::named_text::NAME_MAX;

impl Shown for SshKeyRecord {
    type Wire = SshKey;
    const LIST_TOTAL: bool = false;

    fn to_wire(state: &AppState, r: SshKeyRecord) -> SshKey {
        SshKey {
            start_date: state.timestamp(r.created_at),
            ssh_key_id: r.ssh_key_id,
            name: r.name,
            fingerprint: r.fingerprint,
        }
    }
}

pub async fn list_for(state: &AppState, account_id: &openwinv_store::ids::AccountId, q: &Query) -> Reply<SshKey> {
    named::list_for::<SshKeyRecord>(state, account_id, q).await
}

pub async fn create_for(state: &AppState, account_id: &openwinv_store::ids::AccountId, body: &Body) -> Reply<SshKey> {
    named::create_for::<SshKeyRecord>(state, account_id, body).await
}

pub async fn delete_for(state: &AppState, account_id: &openwinv_store::ids::AccountId, id: &str) -> Reply<SshKey> {
    named::delete_for::<SshKeyRecord>(state, account_id, id).await
}

/// The account's SSH keys.
#[utoipa::path(get, path = "/v1/auth/ssh_key", tag = "ssh keys",
    params(("name" = Option<String>, Query, description = "substring"), ("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query)),
    responses((status = 200, body = Envelope<Vec<SshKey>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>, q: Query) -> Reply<SshKey> {
    list_for(&state, &caller.account_id, &q).await
}

/// Registers an OpenSSH public key [ext].
#[utoipa::path(post, path = "/v1/auth/ssh_key", tag = "ssh keys", request_body = crate::service::named_text::NewSshKey,
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
