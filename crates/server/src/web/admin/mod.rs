//! The operator's pages under `/admin/` (issue 17): accounts and their quotas, access keys, the
//! catalog, and on the simulated driver the clock and fault rules.
//!
//! Every page and form calls the `/admin/v1` handlers themselves (`crate::admin`,
//! `crate::admin_sim`) with the values of the form, so validation, errors and effects are the
//! operator API's; an error is shown with its code and message and the page takes its status.
//!
//! **Sign-in.** `/admin/signin` takes the operator token (the one `/admin/v1` wants as a bearer
//! token) in a `POST` body with the pre-session CSRF token; a wrong token counts as a failed
//! sign-in for the throttle the console's sign-in uses (by the reserved name `(operator)` and by
//! address). The operator session is a separate kind from a person's: a cookie
//! `openwinv_operator` scoped to `Path=/admin` (`HttpOnly`, `SameSite=Strict`, `Secure` under
//! HTTPS only) holding `nonce.expiry.mac`, where the MAC is HMAC-SHA256 keyed with the operator
//! token. It needs no table, every server process sharing the token accepts it, and changing the
//! token ends every operator session. It ends after [`IDLE_SECS`] without a page view, measured on
//! the host's clock rather than the server clock, so that an operator advancing the simulated
//! clock does not sign themselves out. The CSRF token of its forms is another HMAC of the nonce.
//! A person's console session gives no access here, and this cookie none to the person's pages.

mod accounts;
mod catalog;
mod forms;
mod hosts;
mod sim;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use maud::{Markup, html};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::form::Form;
use super::i18n::{Lang, cookie};
use super::layout::{Page, csrf_field};
use super::signin::SignInPost;
use super::{csrf, see_other, session};
use crate::AppState;

pub const OPERATOR_COOKIE: &str = "openwinv_operator";
/// An operator session without a page view this long (host clock) is over.
pub const IDLE_SECS: i64 = 30 * 60;
/// The throttle's name for the operator (not a possible login: logins have no parentheses).
const THROTTLE_NAME: &str = "(operator)";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { see_other("/admin/") }))
        .route("/admin/", get(accounts::list))
        .route("/admin/signin", get(signin_form).post(signin))
        .route("/admin/signout", post(signout))
        .route("/admin/accounts", post(accounts::create))
        .route("/admin/accounts/quota", post(accounts::quota))
        .route("/admin/accounts/{name}/state", post(accounts::set_enabled))
        .route("/admin/accounts/{name}/keys", get(accounts::keys).post(accounts::create_key))
        .route("/admin/keys/{access_key}/disable", post(accounts::disable_key))
        .route("/admin/catalog", get(catalog::page))
        .route("/admin/clock", get(sim::clock).post(sim::move_clock))
        .route("/admin/faults", get(sim::faults).post(sim::add_fault))
        .route("/admin/faults/clear", post(sim::clear_faults))
        .route("/admin/faults/{fault_id}/delete", post(sim::delete_fault))
        .route("/admin/hosts", get(hosts::list).post(hosts::add))
        .route("/admin/hosts/{name}", get(hosts::show))
        .route("/admin/hosts/{name}/strays/destroy", post(hosts::destroy_stray))
        .route("/admin/hosts/{name}/{action}", post(hosts::act))
        .route("/admin/placements/overcommit", post(hosts::overcommit))
}

fn host_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn mac(state: &AppState, purpose: &str, parts: &[&str]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(state.admin_token.as_bytes()).expect("HMAC takes keys of any length");
    m.update(purpose.as_bytes());
    for p in parts {
        m.update(b"\0");
        m.update(p.as_bytes());
    }
    hex::encode(m.finalize().into_bytes())
}

fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A signed-in operator.
#[derive(Debug, Clone)]
pub struct Operator {
    nonce: String,
    pub csrf: String,
    pub lang: Lang,
}

impl Operator {
    fn new(state: &AppState, nonce: String, lang: Lang) -> Operator {
        let csrf = mac(state, "openwinv operator csrf", &[&nonce]);
        Operator { nonce, csrf, lang }
    }

    /// The cookie of this session, good for [`IDLE_SECS`] from now.
    fn cookie(&self, state: &AppState) -> HeaderValue {
        let expires = (host_now() + IDLE_SECS).to_string();
        let value =
            format!("{}.{expires}.{}", self.nonce, mac(state, "openwinv operator session", &[&self.nonce, &expires]));
        operator_cookie(state, &value, None)
    }

    /// A page of the operator's; its answer renews the session's cookie.
    pub fn page(&self, state: &AppState, active: &'static str, title: &str) -> Page {
        Page::operator(self.lang, &self.csrf, active, title).cookie(self.cookie(state))
    }
}

fn operator_cookie(state: &AppState, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut c = format!("{OPERATOR_COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if session::secure(state) {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("operator cookies are base62, digits, hex and dots")
}

/// The answer without an operator session: the operator's sign-in page.
pub struct OperatorSignInFirst;

impl IntoResponse for OperatorSignInFirst {
    fn into_response(self) -> Response {
        see_other("/admin/signin")
    }
}

fn operator_of(state: &AppState, headers: &HeaderMap) -> Option<Operator> {
    let value = cookie(headers, OPERATOR_COOKIE)?;
    let mut parts = value.split('.');
    let (nonce, expires, given) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !same(&mac(state, "openwinv operator session", &[nonce, expires]), given) {
        return None;
    }
    let expires: i64 = expires.parse().ok()?;
    (host_now() < expires).then(|| Operator::new(state, nonce.to_owned(), Lang::of(headers)))
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = OperatorSignInFirst;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Operator, OperatorSignInFirst> {
        operator_of(state, &parts.headers).ok_or(OperatorSignInFirst)
    }
}

/// A form the signed-in operator sent with this session's CSRF token, and the request's path
/// parameters `P` (`()` for none): what every operator `POST` takes, so a handler sees only
/// checked forms. Read in this order, each refusal answering as before: the operator session
/// (without one, the sign-in page, as [`Operator`] answers), the path as `P` refuses it, the
/// form as [`Form`] refuses it, then its token (missing or wrong: the 403 page). It reads the
/// body, so it comes last among a handler's arguments; the path is read in it so that the
/// operator is signed in first.
pub struct CheckedForm<P = ()> {
    pub op: Operator,
    pub path: P,
    pub form: Form,
}

impl<P> FromRequest<AppState> for CheckedForm<P>
where
    P: FromRequestParts<AppState> + Send,
    P::Rejection: IntoResponse,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<CheckedForm<P>, Response> {
        let (mut parts, body) = req.into_parts();
        let op = operator_of(state, &parts.headers).ok_or_else(|| OperatorSignInFirst.into_response())?;
        let path = P::from_request_parts(&mut parts, state).await.map_err(IntoResponse::into_response)?;
        let form = Form::from_request(Request::from_parts(parts, body), state).await?;
        if !same(&op.csrf, form.get(csrf::FIELD).unwrap_or("")) {
            return Err(csrf::refused(op.lang));
        }
        Ok(CheckedForm { op, path, form })
    }
}

/// The operator's navigation and sign-out, for the page shell.
pub fn nav(lang: Lang, active: &str, csrf_token: &str) -> Markup {
    let entries = [
        ("accounts", "/admin/", "admin.nav_accounts"),
        ("catalog", "/admin/catalog", "admin.nav_catalog"),
        ("clock", "/admin/clock", "admin.nav_clock"),
        ("faults", "/admin/faults", "admin.nav_faults"),
        ("hosts", "/admin/hosts", "admin.nav_hosts"),
    ];
    html! {
        nav aria-label=(lang.t("admin.nav_label")) {
            ul {
                @for (id, href, key) in entries {
                    li { a href=(href) aria-current=[(id == active).then_some("page")] { (lang.t(key)) } }
                }
            }
        }
        span class="who" { (lang.t("admin.who")) }
        form class="signout" method="post" action="/admin/signout" {
            (csrf_field(csrf_token))
            button type="submit" id="admin-signout" { (lang.t("nav.signout")) }
        }
    }
}

fn signin_page(state: &AppState, headers: &HeaderMap, lang: Lang, error: Option<&str>) -> Page {
    let (token, new) = csrf::pre_token(headers);
    let body = html! {
        p class="muted" { (lang.t("admin.signin_intro")) }
        form class="signin" method="post" action="/admin/signin" {
            (csrf_field(&token))
            label for="admin-token" { (lang.t("admin.token")) }
            input type="password" id="admin-token" name="token" required autocomplete="current-password" autofocus;
            p { button type="submit" id="admin-signin-submit" { (lang.t("signin.submit")) } }
        }
    };
    let mut page = Page::bare(lang, lang.t("admin.signin_title")).body(body);
    if let Some(e) = error {
        page = page.error_text(e);
    }
    if new {
        page = page.cookie(csrf::pre_cookie(state, &token));
    }
    page
}

pub async fn signin_form(State(state): State<AppState>, headers: HeaderMap, lang: Lang) -> Response {
    if operator_of(&state, &headers).is_some() {
        return see_other("/admin/");
    }
    signin_page(&state, &headers, lang, None).render()
}

pub async fn signin(State(state): State<AppState>, post: SignInPost) -> Response {
    let (headers, lang) = (&post.headers, post.lang);
    let fail =
        |status: StatusCode, key: &str| signin_page(&state, headers, lang, Some(lang.t(key))).status(status).render();
    if let Some((status, key)) = post.turned_away(&state, THROTTLE_NAME).await {
        return fail(status, key);
    }
    if !same(&state.admin_token, post.form.get("token").unwrap_or("").trim()) {
        post.failed(&state, THROTTLE_NAME).await;
        return fail(StatusCode::UNAUTHORIZED, "admin.wrong_token");
    }
    post.succeeded(&state, THROTTLE_NAME).await;
    let op = Operator::new(&state, openwinv_store::ids::random_base62(32), lang);
    let mut r = see_other("/admin/");
    r.headers_mut().append(SET_COOKIE, op.cookie(&state));
    r
}

pub async fn signout(State(state): State<AppState>, _: CheckedForm) -> Response {
    let mut r = see_other("/admin/signin");
    r.headers_mut().append(SET_COOKIE, operator_cookie(&state, "", Some(0)));
    r
}

/// A notice named by `?done=` (a key of the catalog under `admin.done_`).
pub fn done_notice(lang: Lang, q: &crate::input::Query) -> Option<String> {
    q.str("done").map(|d| format!("admin.done_{d}")).filter(|k| lang.has(k)).map(|k| lang.t_owned(&k))
}
