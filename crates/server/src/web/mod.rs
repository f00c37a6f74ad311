//! The web console (issue 17): server-rendered pages at `/` for people, beside the API at `/v1`.
//!
//! Every action calls the same functions as the API — the `/v1` handlers with a [`Caller`] built
//! from the session, or the `*_for` functions they wrap — so validation, errors, quotas and tenant
//! isolation are the API's; an API error is shown in the page with its message. Nothing here
//! reads or writes resource tables itself.
//!
//! Files by job: `session` (sign-in, sessions, throttling, passwords), `csrf`, `i18n` (one
//! catalog per language, compiled in), `layout` (the page shell and its security headers), `form`
//! (form bodies), `assets`, and one file per resource's pages. `admin_users` is the operator API
//! route that creates users. `tester` is the API tester; `admin/` the operator's pages.

mod admin;
pub mod admin_users;
mod api_keys;
use crate::assets::web as assets;
mod billing;
mod chart;
mod console_frame;
mod csrf;
mod dashboard;
mod firewalls;
mod form;
pub mod i18n;
mod instances;
mod layout;
mod named_text;
mod scripts;
pub mod session;
mod signin;
mod ssh_keys;
mod tester;
mod volumes;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use openwinv_wire::Envelope;
use serde::Serialize;
use serde_json::Value;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

pub use layout::Page;
pub use session::Signed;

/// The console's routes (no API authentication: the session is checked per page).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::signout))
        .route("/lang", post(signin::language))
        .route("/instances", get(instances::list))
        .route("/instances/rows", get(instances::rows))
        .route("/instances/bulk", post(instances::bulk))
        .route("/instances/new", get(instances::wizard).post(instances::create))
        .route("/instances/{id}", get(instances::detail))
        .route("/instances/{id}/status", get(instances::status_badge))
        .route("/instances/{id}/action", post(instances::action))
        .route("/instances/{id}/password", post(instances::password))
        .route("/instances/{id}/console", post(instances::console))
        .route("/volumes", get(volumes::list).post(volumes::create))
        .route("/volumes/rows", get(volumes::rows))
        .route("/volumes/{id}/action", post(volumes::action))
        .route("/ssh-keys", get(ssh_keys::list).post(ssh_keys::create))
        .route("/ssh-keys/{id}/delete", post(ssh_keys::delete))
        .route("/scripts", get(scripts::list).post(scripts::create))
        .route("/scripts/{id}/delete", post(scripts::delete))
        .route("/firewalls", get(firewalls::list).post(firewalls::create))
        .route("/firewalls/{id}", get(firewalls::detail))
        .route("/firewalls/{id}/edit", post(firewalls::edit))
        .route("/firewalls/{id}/delete", post(firewalls::delete))
        .route("/firewalls/{id}/rules", post(firewalls::add_rule))
        .route("/firewalls/{id}/rules/{rule_id}", post(firewalls::edit_rule))
        .route("/firewalls/{id}/rules/{rule_id}/delete", post(firewalls::delete_rule))
        .route("/firewalls/{id}/attach", post(firewalls::attach))
        .route("/firewalls/{id}/detach", post(firewalls::detach))
        .route("/billing", get(billing::page))
        .route("/billing/{bill_id}", get(billing::bill))
        .route("/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/api-keys/{access_key}/{action}", post(api_keys::change))
        .route("/web-assets/{version}/{*path}", get(assets::serve))
        .route("/api-test", get(tester::page).post(tester::send))
        .merge(admin::routes())
}

/// The API caller a session acts as.
pub fn caller(s: &Signed) -> Caller {
    Caller { account_id: s.account_id.clone(), account_name: s.account_name.clone(), access_key: String::new() }
}

/// Rows of an API answer as JSON, and the total the envelope reports (or the number of rows).
pub struct Rows {
    pub rows: Vec<Value>,
    pub total: u64,
}

fn rows_of<T: Serialize>(env: &Envelope<Vec<T>>) -> Rows {
    let v = serde_json::to_value(env).unwrap_or(Value::Null);
    let rows = v["result"].as_array().cloned().unwrap_or_default();
    let total = v["total"].as_u64().unwrap_or(rows.len() as u64);
    Rows { rows, total }
}

/// The rows of a `/v1` handler's answer.
pub fn reply<T: Serialize>(r: ApiResult<axum::Json<Envelope<Vec<T>>>>) -> ApiResult<Rows> {
    r.map(|axum::Json(env)| rows_of(&env))
}

/// A `/v1` handler's 202 answer.
pub type Accepted<T> = ApiResult<(StatusCode, HeaderMap, axum::Json<Envelope<Vec<T>>>)>;

/// The rows of a `/v1` handler's 202 answer.
pub fn accepted<T: Serialize>(r: Accepted<T>) -> ApiResult<Rows> {
    r.map(|(_, _, axum::Json(env))| rows_of(&env))
}

/// A text field of a JSON row ("" when absent).
pub fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

/// 303 to a page of the console (after a form was accepted).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Statuses during which the instance list refreshes every 3 s rather than every 60 s.
pub fn transitional(status: &str) -> bool {
    !matches!(status, "active" | "off" | "error" | "available" | "in-use")
}

/// How an API error is shown: its HTTP status, its error code and message.
pub struct Shown {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl From<ApiError> for Shown {
    fn from(e: ApiError) -> Shown {
        Shown { status: e.status, code: e.code.as_str().to_owned(), message: e.message }
    }
}
