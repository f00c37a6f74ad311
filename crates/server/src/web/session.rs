//! People's sessions: argon2id password hashes, sessions in the store (shared by every server
//! process on the database), the session cookie, idle expiry and sign-in throttling.
//!
//! - The cookie `openwinv_session` holds 32 random base62 characters; the store keeps only their
//!   SHA-256, so a copy of the database opens no session. It is `HttpOnly`, `SameSite=Strict`,
//!   `Path=/`, and `Secure` when the server speaks only HTTPS.
//! - A session unused for [`IDLE_SECS`] of server-clock time is over (an operator advancing the
//!   simulated clock expires sessions too). Use is recorded at most once a minute.
//! - Failed sign-ins are counted per login and per client address in the store, over a window of
//!   [`THROTTLE_WINDOW_SECS`] that starts at the first failure; past [`MAX_FAILURES_PER_LOGIN`] or
//!   [`MAX_FAILURES_PER_ADDRESS`] every sign-in for that login or from that address is refused
//!   until the window ends, right password or not.

use std::net::{IpAddr, SocketAddr};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use openwinv_store::ids;
use sha2::{Digest, Sha256};

use super::i18n::{Lang, cookie};
use crate::AppState;
use crate::config::TlsConfig;

pub const SESSION_COOKIE: &str = "openwinv_session";
/// A session unused this long (server clock) is over.
pub const IDLE_SECS: i64 = 30 * 60;
/// Use of a session is written at most this often.
const TOUCH_EVERY_SECS: i64 = 60;
pub const THROTTLE_WINDOW_SECS: i64 = 15 * 60;
pub const MAX_FAILURES_PER_LOGIN: i64 = 5;
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
/// Shortest password `admin users create` accepts.
pub const PASSWORD_MIN: usize = 12;

/// A signed-in person, extracted from the session cookie. Pages that need one take it as an
/// argument; without a live session the browser is sent to the sign-in page.
#[derive(Debug, Clone)]
pub struct Signed {
    pub login: String,
    pub account_id: openwinv_store::ids::AccountId,
    pub account_name: String,
    pub csrf: String,
    pub session_hash: String,
    pub lang: Lang,
}

/// The answer to a request without a live session: the sign-in page (through htmx's redirect
/// header for a partial, so that a polling list does not render the form inside itself).
pub struct SignInFirst {
    htmx: bool,
}

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        if self.htmx {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut().insert("HX-Redirect", HeaderValue::from_static("/signin"));
            r
        } else {
            super::see_other("/signin")
        }
    }
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = SignInFirst;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Signed, SignInFirst> {
        let htmx = parts.headers.contains_key("hx-request");
        let refuse = SignInFirst { htmx };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else { return Err(refuse) };
        let hash = hash_token(&token);
        let now = state.clock.unix();
        let s = match state.store.session(&hash, now - IDLE_SECS).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(refuse),
            Err(e) => {
                tracing::error!(error = %e, "reading a console session");
                return Err(refuse);
            }
        };
        if now - s.last_seen_at >= TOUCH_EVERY_SECS
            && let Err(e) = state.store.touch_session(&hash, now).await
        {
            tracing::warn!(error = %e, "recording a console session's use");
        }
        Ok(Signed {
            login: s.login,
            account_id: s.account_id,
            account_name: s.account_name,
            csrf: s.csrf_token,
            session_hash: hash,
            lang: Lang::of(&parts.headers),
        })
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Signed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Signed>, Self::Rejection> {
        Ok(<Signed as FromRequestParts<AppState>>::from_request_parts(parts, state).await.ok())
    }
}

/// Whether cookies get `Secure`: the server answers HTTPS only.
pub fn secure(state: &AppState) -> bool {
    matches!(&state.config.tls, Some(TlsConfig { listen: None, .. }))
}

/// A `Set-Cookie` value for one of the console's cookies (`max_age` 0 removes it).
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure(state) {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie values are base62")
}

/// An argon2id hash (PHC string) of a password, computed off the async threads.
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await?
}

/// Whether `password` matches `hash`. An unknown login is checked against a fixed hash, so that
/// the answer takes as long whether the login exists or not.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default().hash_password(b"no such user", &salt).map(|h| h.to_string()).unwrap_or_default()
    });
    let known = hash.is_some();
    tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(|| DUMMY.clone());
        let ok = PasswordHash::new(&hash)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false);
        ok && known
    })
    .await
    .unwrap_or(false)
}

/// A generated password: 20 base62 characters (about 119 bits).
pub fn new_password() -> String {
    ids::random_base62(20)
}

/// The client's address, as the API's allowlists see it (trusted proxies honoured).
pub fn client_address(
    state: &AppState,
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &axum::http::HeaderMap,
) -> IpAddr {
    let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    crate::auth::client_ip(peer, headers, &state.config.trusted_proxies)
}

/// The throttle keys of a sign-in attempt.
pub fn throttle_keys(login: &str, address: IpAddr) -> (String, String) {
    (format!("login:{login}"), format!("addr:{address}"))
}

/// Whether sign-ins for `login` from `address` are refused now.
pub async fn throttled(state: &AppState, login: &str, address: IpAddr) -> openwinv_store::Result<bool> {
    let (by_login, by_address) = throttle_keys(login, address);
    let from = state.clock.unix() - THROTTLE_WINDOW_SECS;
    Ok(state.store.signin_failures(&by_login, from).await? >= MAX_FAILURES_PER_LOGIN
        || state.store.signin_failures(&by_address, from).await? >= MAX_FAILURES_PER_ADDRESS)
}

/// Counts a failed sign-in for both keys.
pub async fn record_failure(state: &AppState, login: &str, address: IpAddr) -> openwinv_store::Result<()> {
    let (by_login, by_address) = throttle_keys(login, address);
    let now = state.clock.unix();
    state.store.add_signin_failure(&by_login, now, now - THROTTLE_WINDOW_SECS).await?;
    state.store.add_signin_failure(&by_address, now, now - THROTTLE_WINDOW_SECS).await
}

/// Starts a session for `user_id` with a fresh CSRF token; returns the cookie value.
pub async fn start(state: &AppState, user_id: &str) -> openwinv_store::Result<String> {
    let token = ids::random_base62(32);
    let csrf = ids::random_base62(32);
    state.store.insert_session(&hash_token(&token), user_id, &csrf, state.clock.unix()).await?;
    Ok(token)
}
