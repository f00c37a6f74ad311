//! The operator's route for console users: `GET`/`POST /admin/v1/accounts/{name}/users`
//! (`openwinv admin users …`). Passwords are hashed with argon2id here; the store keeps the hash.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use openwinv_store::{StoreError, UserRecord, ids};
use openwinv_wire::Envelope;
use openwinv_wire::admin::ConsoleUser;

use super::session::{PASSWORD_MIN, hash_password, new_password};
use crate::AppState;
use crate::api::Reply;
use crate::error::ApiError;
use crate::input::{Body, Path};

/// Longest password accepted (argon2 takes any length; this bounds the work per sign-in).
pub const PASSWORD_MAX: usize = 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/v1/accounts/{name}/users", get(list).post(create))
}

fn wire(state: &AppState, account: &str, u: UserRecord, password: Option<String>) -> ConsoleUser {
    ConsoleUser {
        user_id: u.user_id,
        account: account.to_owned(),
        login: u.login,
        created_at: state.timestamp(u.created_at),
        password,
    }
}

async fn account_id(state: &AppState, name: &str) -> Result<openwinv_store::ids::AccountId, ApiError> {
    Ok(state
        .store
        .account_by_name(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("The account `{name}`")))?
        .account_id)
}

#[utoipa::path(get, path = "/admin/v1/accounts/{name}/users", tag = "operator", security(("admin_token" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = Envelope<Vec<ConsoleUser>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list(State(state): State<AppState>, Path(name): Path<String>) -> Reply<ConsoleUser> {
    let id = account_id(&state, &name).await?;
    let rows = state.store.users_of_account(&id).await?.into_iter().map(|u| wire(&state, &name, u, None)).collect();
    Ok(Json(Envelope::rows(rows)))
}

/// Creates a user who signs in to the web console for the account. Without `password` one is
/// generated and answered once.
#[utoipa::path(post, path = "/admin/v1/accounts/{name}/users", tag = "operator", security(("admin_token" = [])),
    params(("name" = String, Path)), request_body = openwinv_wire::admin::NewConsoleUser,
    responses((status = 200, body = Envelope<Vec<ConsoleUser>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn create(State(state): State<AppState>, Path(name): Path<String>, body: Body) -> Reply<ConsoleUser> {
    let login = body.required_str("login")?;
    crate::admin::check_token("login", &login, 1, 64)?;
    let given = body.str("password")?.filter(|p| !p.is_empty());
    if let Some(p) = &given {
        let n = p.chars().count();
        if n < PASSWORD_MIN || p.len() > PASSWORD_MAX {
            return Err(ApiError::new(
                openwinv_wire::ErrorCode::CheckLength,
                format!("The field `password` must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long, not {n}."),
            ));
        }
    }
    let account_id = account_id(&state, &name).await?;
    let password = given.clone().unwrap_or_else(new_password);
    let hash = hash_password(password.clone()).await.map_err(ApiError::internal)?;
    let rec = UserRecord {
        user_id: ids::new_id("USER"),
        account_id,
        login: login.clone(),
        password_hash: hash,
        created_at: state.clock.unix(),
    };
    match state.store.insert_user(&rec).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(ApiError::param(format!("The login `{login}` is taken."))),
        Err(e) => return Err(e.into()),
    }
    let shown = if given.is_none() { Some(password) } else { None };
    Ok(Json(Envelope::rows(vec![wire(&state, &name, rec, shown)])))
}
