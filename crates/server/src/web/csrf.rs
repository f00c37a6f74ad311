//! CSRF tokens: every form of the console carries a hidden `csrf` field, and every POST is refused
//! without the right one, before anything else is read or done.
//!
//! Signed in, the token is the session's (random, kept with the session in the store). Before
//! sign-in (the sign-in form and the language switch) it is a double-submit token: a random value
//! in the `openwinv_pre` cookie (`HttpOnly`, `SameSite=Strict`) that the form must repeat. Both are
//! compared in constant time.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::i18n::{Lang, cookie};
use super::layout::Page;
use super::session::Signed;
use crate::AppState;

pub const FIELD: &str = "csrf";
pub const PRE_COOKIE: &str = "openwinv_pre";

fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The 403 page of a form sent without its token (or with another session's).
pub fn refused(lang: Lang) -> Response {
    Page::bare(lang, lang.t("csrf.title")).error_text(lang.t("csrf.refused")).status(StatusCode::FORBIDDEN).render()
}

/// Checks a signed-in form's token: `Some(refusal)` when it is not the session's.
pub fn check(s: &Signed, sent: Option<&str>) -> Option<Response> {
    if same(&s.csrf, sent.unwrap_or("")) { None } else { Some(refused(s.lang)) }
}

/// The pre-session token of this browser, or a new one to set.
pub fn pre_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, PRE_COOKIE).filter(|c| c.len() == 32 && c.chars().all(|ch| ch.is_ascii_alphanumeric())) {
        Some(t) => (t, false),
        None => (openwinv_store::ids::random_base62(32), true),
    }
}

/// Checks a pre-session form's token against its cookie: `Some(refusal)` when they differ.
pub fn check_pre(headers: &HeaderMap, lang: Lang, sent: Option<&str>) -> Option<Response> {
    match cookie(headers, PRE_COOKIE) {
        Some(c) if same(&c, sent.unwrap_or("")) => None,
        _ => Some(refused(lang)),
    }
}

/// The `Set-Cookie` of a new pre-session token.
pub fn pre_cookie(state: &AppState, token: &str) -> axum::http::HeaderValue {
    super::session::set_cookie(state, PRE_COOKIE, token, None)
}
