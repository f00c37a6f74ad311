//! The console page a link opens.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, SET_COOKIE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use openwinv_driver::ConsoleAccess;

use crate::AppState;
use crate::assets::CONSOLE;
use crate::input::Path;
use axum::Extension;
use axum::extract::State;
use std::sync::Arc;

use super::*;

/// `GET /console/{token}`, the page a console link opens (no credentials: the token is the
/// credential, once).
pub async fn open_page(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<Hub>>,
    Path(token): Path<String>,
) -> Response {
    page(&state, &hub, &token).await
}

/// `GET /console/{token}`: spends the token and serves the console page with its credential cookie.
pub async fn page(state: &AppState, hub: &Hub, token: &str) -> Response {
    let now = state.clock.unix();
    let html = |status: StatusCode, body: String| (status, Html(body)).into_response();
    let unavailable = |what: &str| {
        html(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "<!doctype html><title>Console</title><p>The console cannot open now ({what}); ask for a new link.</p>"
            ),
        )
    };
    // The key first: a server that cannot sign credentials must not spend the link.
    let key = match hub.key(&state.config).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "no key for console credentials");
            return unavailable("the server has no credential key");
        }
    };
    let Ok(Some(instance_id)) = state.store.use_console_token(token, now).await else {
        return html(StatusCode::NOT_FOUND, NOT_FOUND_PAGE.into());
    };
    let Ok(Some(r)) = state.store.instance_by_id(&instance_id).await else {
        return html(StatusCode::NOT_FOUND, "<!doctype html><title>Console</title><p>The instance is gone.</p>".into());
    };
    let expires = match state.store.console_token_expiry(token).await {
        Ok(Some(e)) => e,
        Ok(None) => return html(StatusCode::NOT_FOUND, NOT_FOUND_PAGE.into()),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the console token's expiry");
            return unavailable("the store did not answer");
        }
    };
    // On a host (hosts mode) the consoles are the agent's: a QEMU host's machines have a screen,
    // and the serial socket replays the log itself.
    let (access, has_screen) = match placed_on(state, &instance_id).await {
        Where::Here => {
            let access = state.consoles.console(&instance_id).await;
            let has_screen = access.as_ref().is_some_and(ConsoleAccess::has_screen);
            (access, has_screen)
        }
        Where::Host(h) => {
            let driver = state.store.host(&h.host_id).await.ok().flatten().and_then(|r| r.driver);
            (None, driver.as_deref() == Some("qemu"))
        }
        Where::Nowhere(_) => (None, false),
    };
    // What the serial socket will replay first; the page shows it to browsers without JavaScript.
    let history = match &access {
        Some(ConsoleAccess::Sockets(e)) => openwinv_driver::console::serial::log_tail(e)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default(),
        Some(ConsoleAccess::Simulated(sim)) => sim.log(&machine_facts(state, &r).await),
        None => String::new(),
    };
    let config = serde_json::json!({
        "instance_id": r.instance_id,
        "name": r.name,
        "serial": format!("/console/{token}/serial"),
        "screen": has_screen.then(|| format!("/console/{token}/vnc")),
        "now": now,
        "expires_at": expires,
        "expires_text": state.timestamp(expires),
    });
    let body = render_page(&r.name, &r.instance_id, &config, has_screen, &history);
    let cookie = format!(
        "{COOKIE_NAME}={}; Path=/console/{token}; Max-Age={}; HttpOnly; SameSite=Strict",
        mint_credential(&key, token, &instance_id, expires),
        (expires - now).max(1)
    );
    let mut resp = html(StatusCode::OK, body);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(SET_COOKIE, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // xterm.js writes <style> elements, noVNC draws its cursor from data: URLs.
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
             font-src 'self'; connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
        ),
    );
    resp
}

pub(super) fn render_page(
    name: &str,
    instance_id: &str,
    config: &serde_json::Value,
    has_screen: bool,
    history: &str,
) -> String {
    let esc = |s: &str| html_escape::encode_text(s).into_owned();
    // JSON inside <script> must not be able to close the element.
    let config = config.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
    let assets = CONSOLE.base();
    let (screen_tab, screen_pane) = if has_screen {
        (
            "<button type=\"button\" role=\"tab\" id=\"tab-screen\" data-pane=\"screen\" aria-selected=\"false\">Screen</button>",
            "<section id=\"screen\" class=\"pane\" role=\"tabpanel\" hidden><div class=\"bar\">\
             <button type=\"button\" id=\"ctrl-alt-del\">Send Ctrl-Alt-Del</button></div>\
             <div id=\"screen-view\"></div></section>",
        )
    } else {
        ("", "")
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{name} — console</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"{assets}/vendor/xterm/xterm.css\">\
         <link rel=\"stylesheet\" href=\"{assets}/console.css\">\
         <script type=\"application/json\" id=\"openwinv-console-config\">{config}</script>\
         <script type=\"module\" src=\"{assets}/console.js\"></script></head>\
         <body><header><h1>{name} <small>{id}</small></h1>\
         <nav role=\"tablist\"><button type=\"button\" role=\"tab\" id=\"tab-serial\" data-pane=\"serial\" \
         aria-selected=\"true\">Serial console</button>{screen_tab}</nav>\
         <p id=\"status\" role=\"status\">Connecting…</p>\
         <button type=\"button\" id=\"reconnect\" hidden>Reconnect</button></header>\
         <main><section id=\"serial\" class=\"pane\" role=\"tabpanel\"><div id=\"terminal\"></div></section>\
         {screen_pane}</main>\
         <noscript><p>The console needs JavaScript. The serial output so far:</p><pre>{history}</pre></noscript>\
         </body></html>",
        name = esc(name),
        id = esc(instance_id),
        history = esc(history),
    )
}
