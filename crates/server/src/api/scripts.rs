//! User scripts (spec §7): the iwinv list at the singular path, and create/delete extensions.

use axum::Extension;
use axum::extract::State;
use openwinv_store::ScriptRecord;
use openwinv_wire::Envelope;
use openwinv_wire::keys::UserScript;

use super::Reply;
use super::named_text::{self as named, Shown};
use crate::AppState;
use crate::auth::Caller;
use crate::input::{Body, Path, Query};

pub use crate::service::named_text::{CONTENT_MAX_BYTES, NAME_MAX};

impl Shown for ScriptRecord {
    type Wire = UserScript;
    const LIST_TOTAL: bool = true;

    fn to_wire(state: &AppState, r: ScriptRecord) -> UserScript {
        UserScript {
            created_at: state.timestamp(r.created_at),
            user_script_id: r.user_script_id,
            name: r.name,
            content: r.content,
        }
    }
}

pub async fn list_for(state: &AppState, account_id: &openwinv_store::ids::AccountId, q: &Query) -> Reply<UserScript> {
    named::list_for::<ScriptRecord>(state, account_id, q).await
}

pub async fn create_for(
    state: &AppState,
    account_id: &openwinv_store::ids::AccountId,
    body: &Body,
) -> Reply<UserScript> {
    named::create_for::<ScriptRecord>(state, account_id, body).await
}

pub async fn delete_for(state: &AppState, account_id: &openwinv_store::ids::AccountId, id: &str) -> Reply<UserScript> {
    named::delete_for::<ScriptRecord>(state, account_id, id).await
}

/// The account's user scripts.
#[utoipa::path(get, path = "/v1/instance/script", tag = "user scripts",
    params(("name" = Option<String>, Query, description = "substring"), ("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query)),
    responses((status = 200, body = Envelope<Vec<UserScript>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>, q: Query) -> Reply<UserScript> {
    list_for(&state, &caller.account_id, &q).await
}

/// Stores a user script [ext].
#[utoipa::path(post, path = "/v1/instance/script", tag = "user scripts", request_body = crate::service::named_text::NewScript,
    responses((status = 200, body = Envelope<Vec<UserScript>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Reply<UserScript> {
    create_for(&state, &caller.account_id, &body).await
}

/// Deletes a user script [ext].
#[utoipa::path(delete, path = "/v1/instance/script/{user_script_id}", tag = "user scripts",
    params(("user_script_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<UserScript>>), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Reply<UserScript> {
    delete_for(&state, &caller.account_id, &id).await
}
