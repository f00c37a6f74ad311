//! Sign-in, sign-out and the language switch.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::form::Form;
use super::i18n::{LANG_COOKIE, Lang};
use super::layout::{Page, csrf_field};
use super::session::{self, SESSION_COOKIE, Signed};
use super::{csrf, see_other};
use crate::AppState;

/// Longest login a form may send (longer ones cannot exist: `admin users create` refuses them).
const LOGIN_MAX: usize = 64;

/// A posted sign-in form, the console's or the operator's: its pre-session CSRF token checked
/// (a refusal is the answer), and the client's address, by which failures are also throttled.
pub(super) struct SignInPost {
    pub headers: HeaderMap,
    pub lang: Lang,
    pub form: Form,
    address: IpAddr,
}

impl FromRequest<AppState> for SignInPost {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<SignInPost, Response> {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().cloned();
        let headers = req.headers().clone();
        let lang = Lang::of(&headers);
        let form = Form::from_request(req, state).await?;
        if let Some(r) = csrf::check_pre(&headers, lang, form.get(csrf::FIELD)) {
            return Err(r);
        }
        let address = session::client_address(state, peer.as_ref(), &headers);
        Ok(SignInPost { headers, lang, form, address })
    }
}

impl SignInPost {
    /// Whether a sign-in as `name` from this address is turned away before its secret is looked
    /// at: the status and message key of the refusal.
    pub(super) async fn turned_away(&self, state: &AppState, name: &str) -> Option<(StatusCode, &'static str)> {
        match session::throttled(state, name, self.address).await {
            Ok(false) => None,
            Ok(true) => Some((StatusCode::TOO_MANY_REQUESTS, "signin.throttled")),
            Err(e) => {
                tracing::error!(error = %e, "reading sign-in failures");
                Some((StatusCode::INTERNAL_SERVER_ERROR, "error.internal"))
            }
        }
    }

    /// Counts a failed sign-in as `name` from this address.
    pub(super) async fn failed(&self, state: &AppState, name: &str) {
        if let Err(e) = session::record_failure(state, name, self.address).await {
            tracing::error!(error = %e, "counting a failed sign-in");
        }
    }

    /// Forgets the failures of `name` and of this address after a sign-in.
    pub(super) async fn succeeded(&self, state: &AppState, name: &str) {
        let _ = state.store.clear_signin_failures(&session::throttle_keys(name, self.address).0).await;
    }
}

fn form_page(state: &AppState, headers: &HeaderMap, lang: Lang, login: &str, error: Option<&str>) -> Page {
    let (token, new) = csrf::pre_token(headers);
    let body = html! {
        form class="signin" method="post" action="/signin" {
            (csrf_field(&token))
            label for="login" { (lang.t("signin.login")) }
            input type="text" id="login" name="login" value=(login) required autocomplete="username" autofocus;
            label for="password" { (lang.t("signin.password")) }
            input type="password" id="password" name="password" required autocomplete="current-password";
            p { button type="submit" id="signin-submit" { (lang.t("signin.submit")) } }
        }
    };
    let mut page = Page::bare(lang, lang.t("signin.title")).pre_csrf(&token).body(body);
    if let Some(e) = error {
        page = page.error_text(e);
    }
    if new {
        page = page.cookie(csrf::pre_cookie(state, &token));
    }
    page
}

pub async fn form(State(state): State<AppState>, headers: HeaderMap, lang: Lang, signed: Option<Signed>) -> Response {
    if signed.is_some() {
        return see_other("/");
    }
    form_page(&state, &headers, lang, "", None).render()
}

pub async fn submit(State(state): State<AppState>, post: SignInPost) -> Response {
    let SignInPost { headers, lang, form, .. } = &post;
    let lang = *lang;
    let login = form.get("login").unwrap_or("").trim().to_owned();
    let password = form.get("password").unwrap_or("").to_owned();
    let shown_login: String = login.chars().take(LOGIN_MAX).collect();
    let fail = |status: StatusCode, key: &str| {
        form_page(&state, headers, lang, &shown_login, Some(lang.t(key))).status(status).render()
    };
    if let Some((status, key)) = post.turned_away(&state, &login).await {
        return fail(status, key);
    }
    let user = if login.is_empty() || login.len() > LOGIN_MAX {
        None
    } else {
        match state.store.user_by_login(&login).await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "reading a user");
                return fail(StatusCode::INTERNAL_SERVER_ERROR, "error.internal");
            }
        }
    };
    let ok = session::verify_password(password, user.as_ref().map(|u| u.password_hash.clone())).await;
    let Some(user) = user.filter(|_| ok) else {
        post.failed(&state, &login).await;
        return fail(StatusCode::UNAUTHORIZED, "signin.wrong");
    };
    let token = match session::start(&state, &user.user_id).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "starting a session");
            return fail(StatusCode::INTERNAL_SERVER_ERROR, "error.internal");
        }
    };
    post.succeeded(&state, &login).await;
    let mut r = see_other("/");
    r.headers_mut().append(SET_COOKIE, session::set_cookie(&state, SESSION_COOKIE, &token, None));
    r
}

pub async fn signout(State(state): State<AppState>, s: Signed, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    if let Err(e) = state.store.delete_session(&s.session_hash).await {
        tracing::error!(error = %e, "ending a session");
    }
    let mut r = see_other("/signin");
    r.headers_mut().append(SET_COOKIE, session::set_cookie(&state, SESSION_COOKIE, "", Some(0)));
    r
}

/// The header's switch: stores the language in a cookie (a year) and goes to the dashboard, or
/// back to the sign-in page without a session (pages send no `Referer`, by policy).
pub async fn language(
    State(state): State<AppState>,
    headers: HeaderMap,
    lang: Lang,
    signed: Option<Signed>,
    form: Form,
) -> Response {
    let checked = match &signed {
        Some(s) => csrf::check(s, form.get(csrf::FIELD)),
        None => csrf::check_pre(&headers, lang, form.get(csrf::FIELD)),
    };
    if let Some(r) = checked {
        return r;
    }
    let Some(chosen) = form.get("lang").and_then(Lang::parse) else {
        return (StatusCode::BAD_REQUEST, "lang must be en or ko").into_response();
    };
    let back = if signed.is_some() { "/" } else { "/signin" };
    let mut r = see_other(back);
    r.headers_mut().append(SET_COOKIE, session::set_cookie(&state, LANG_COOKIE, chosen.code(), Some(365 * 86400)));
    r
}
