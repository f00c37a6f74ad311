//! User scripts (spec §7): the iwinv list at the singular path, and create/delete extensions.

use axum::extract::State;
use axum::{Extension, Json};
use openwinv_store::{PageQuery, ScriptRecord, ids};
use openwinv_wire::keys::{NewUserScript, UserScript};
use openwinv_wire::{Envelope, ErrorCode};

use super::Reply;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::input::{Body, Path, Query, text_field};

pub const NAME_MAX: usize = 64;
/// Largest script, in bytes.
pub const CONTENT_MAX_BYTES: usize = 32 * 1024;

pub fn to_wire(state: &AppState, r: ScriptRecord) -> UserScript {
    UserScript {
        created_at: state.timestamp(r.created_at),
        user_script_id: r.user_script_id,
        name: r.name,
        content: r.content,
    }
}

pub async fn list_for(state: &AppState, account_id: &str, q: &Query) -> Reply<UserScript> {
    let page = q.page(openwinv_wire::envelope::Page::DEFAULT_SIZE)?;
    let (rows, total) =
        state.store.list_scripts(account_id, q.str("name"), PageQuery::new(page.page_size, page.offset())).await?;
    let rows = rows.into_iter().map(|r| to_wire(state, r)).collect();
    Ok(Json(Envelope::page(rows, page, total as u64)))
}

pub async fn create_for(state: &AppState, account_id: &str, body: &Body) -> Reply<UserScript> {
    let name = text_field("name", &body.required_str("name")?, 1, NAME_MAX)?;
    let content = body.required_str("content")?;
    if content.trim().is_empty() {
        return Err(ApiError::new(ErrorCode::CheckLength, "The field `content` must not be empty or only blanks."));
    }
    if content.len() > CONTENT_MAX_BYTES {
        return Err(ApiError::new(
            ErrorCode::CheckLength,
            format!("The field `content` must be at most {CONTENT_MAX_BYTES} bytes long, not {}.", content.len()),
        ));
    }
    let rec = ScriptRecord {
        user_script_id: ids::new_id("SCRIPT"),
        account_id: account_id.to_owned(),
        name,
        content,
        created_at: state.clock.unix(),
    };
    state.store.insert_script(&rec).await?;
    Ok(Json(Envelope::rows(vec![to_wire(state, rec)])))
}

pub async fn delete_for(state: &AppState, account_id: &str, id: &str) -> Reply<UserScript> {
    let rec = state
        .store
        .script(account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("The user script `{id}`")))?;
    if !state.store.delete_script(account_id, id).await? {
        return Err(ApiError::not_found(format!("The user script `{id}`")));
    }
    Ok(Json(Envelope::rows(vec![to_wire(state, rec)])))
}

/// The account's user scripts.
#[utoipa::path(get, path = "/v1/instance/script", tag = "user scripts",
    params(("name" = Option<String>, Query, description = "substring"), ("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query)),
    responses((status = 200, body = Envelope<Vec<UserScript>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>, q: Query) -> Reply<UserScript> {
    list_for(&state, &caller.account_id, &q).await
}

/// Stores a user script [ext].
#[utoipa::path(post, path = "/v1/instance/script", tag = "user scripts", request_body = NewUserScript,
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
