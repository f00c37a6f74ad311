//! The browser console behind a remote-console link (spec §7): a page with the instance's serial
//! console in xterm.js and, when the driver has a screen, the screen in noVNC; both reach the
//! machine over websockets that this server proxies to the driver's Unix sockets.
//!
//! The link's token is single-use and opening the page spends it, so the page's websockets carry
//! their own credential: an HttpOnly cookie holding an HMAC over the token, the instance id and the
//! link's expiry, under a key derived from the sealing key. It needs no state, so any server
//! process that shares the sealing key accepts it, until the link expires. Sockets are checked
//! when they open; a console open at the expiry stays open (a shell is not cut in the middle).
//!
//! The machine is reached only through the driver's console broker port
//! ([`openwinv_driver::ConsoleBroker`]). The simulated driver has no sockets: its serial console
//! ([`openwinv_driver::SimulatedSerial`]) plays a boot log made from what the store records of the
//! instance and echoes what is typed, so the same page works everywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, HOST, ORIGIN, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hmac::{Hmac, Mac};
use openwinv_driver::{ConsoleAccess, ConsoleEndpoints, MachineFacts, SimulatedSerial};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc};

use crate::AppState;
use crate::config::Config;
use crate::input::Path;

type HmacSha256 = Hmac<Sha256>;

/// Websockets one server process keeps open per instance and channel (serial, screen): a few
/// browser tabs, not an unbounded number of proxied connections.
pub const MAX_SOCKETS_PER_INSTANCE: usize = 4;
/// How much of the serial log a new serial socket replays: enough for a boot, not the whole history.
pub const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// Largest websocket message accepted from the browser (a paste into the terminal, a clipboard).
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// How long connecting to a driver's Unix socket may take before the socket gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Serial output chunks a slow browser may fall behind before it skips some.
const SERIAL_BACKLOG: usize = 1024;
const COOKIE_NAME: &str = "openwinv_console";
const ASSET_ROOT: &str = "/console-assets";
const NOT_FOUND_PAGE: &str =
    "<!doctype html><title>Console</title><p>This console link is unknown, expired or already used.</p>";

/// The page's scripts, styles and the vendored xterm.js and noVNC (see
/// `scripts/vendor-console-assets`), compiled in: the binary serves them without a download.
static FILES: &[(&str, &[u8])] = include!("../assets/console/files.rs");

/// A digest of every asset, part of their URLs: a new build gets new URLs, so browsers may cache
/// assets for a year.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    for (path, body) in FILES {
        h.update((path.len() as u64).to_be_bytes());
        h.update(path.as_bytes());
        h.update((body.len() as u64).to_be_bytes());
        h.update(body);
    }
    hex::encode(&h.finalize()[..8])
});

/// The console's routes: the page, its two websockets and its assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/{token}", get(crate::api::instances::console_page))
        .route("/console/{token}/serial", get(serial_socket))
        .route("/console/{token}/vnc", get(vnc_socket))
        .route("/console-assets/{version}/{*path}", get(asset))
        .layer(Extension(Arc::new(Hub::default())))
}

/// What the console keeps per server process: the credential key, the open sockets per instance
/// and the shared connections to serial consoles.
#[derive(Default)]
pub struct Hub {
    key: OnceLock<[u8; 32]>,
    sockets: Mutex<HashMap<(String, Channel), usize>>,
    /// One connection to each machine's serial socket, shared by its browser sockets: a QEMU
    /// serial socket serves one client at a time, and every viewer should see the same stream.
    serial: tokio::sync::Mutex<HashMap<String, Weak<SerialShare>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Channel {
    Serial,
    Screen,
}

/// One counted websocket; dropping it frees the place.
struct Slot {
    hub: Arc<Hub>,
    key: (String, Channel),
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut sockets = self.hub.sockets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = sockets.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                sockets.remove(&self.key);
            }
        }
    }
}

impl Hub {
    /// A place for one more socket on the instance's channel, unless it has the most already.
    fn take_slot(self: &Arc<Self>, instance_id: &str, channel: Channel) -> Option<Slot> {
        let key = (instance_id.to_owned(), channel);
        let mut sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let n = sockets.entry(key.clone()).or_insert(0);
        if *n >= MAX_SOCKETS_PER_INSTANCE {
            return None;
        }
        *n += 1;
        Some(Slot { hub: self.clone(), key })
    }

    /// The key credentials are signed with, derived once per process.
    async fn key(&self, config: &Config) -> Result<[u8; 32], String> {
        if let Some(k) = self.key.get() {
            return Ok(*k);
        }
        let k = credential_key(config).await?;
        Ok(*self.key.get_or_init(|| k))
    }
}

/// The credential key: HMAC-SHA256 of a fixed label under the sealing key. Deriving it (instead of
/// a key of its own) means every process that can open sealed secrets, and only those, accepts
/// the same credentials; the label keeps it apart from any other use of the sealing key. The
/// sealing key is found where `bootstrap` found it: the setting, or the data directory's file.
pub async fn credential_key(config: &Config) -> Result<[u8; 32], String> {
    let hex_key = match &config.encryption_key {
        Some(k) => k.clone(),
        None => {
            let path = config.data_dir.join("encryption-key");
            tokio::fs::read_to_string(&path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?
        }
    };
    let mut sealing = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut sealing).map_err(|_| "the encryption key is not 64 hex digits")?;
    let mut mac = HmacSha256::new_from_slice(&sealing).map_err(|e| e.to_string())?;
    mac.update(b"openwinv browser console credential v1");
    Ok(mac.finalize().into_bytes().into())
}

/// A websocket credential: `v1.<instance_id>.<expires>.<hex HMAC>`, where the HMAC covers the
/// link's token (so a credential opens only the sockets under its own link), the instance and
/// the expiry (Unix seconds on the server clock).
pub fn mint_credential(key: &[u8; 32], token: &str, instance_id: &str, expires: i64) -> String {
    let mac = credential_mac(key, token, instance_id, expires).finalize().into_bytes();
    format!("v1.{instance_id}.{expires}.{}", hex::encode(mac))
}

fn credential_mac(key: &[u8; 32], token: &str, instance_id: &str, expires: i64) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail; the fallback is never used.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| HmacSha256::new(&Default::default()));
    for part in [token.as_bytes(), instance_id.as_bytes(), expires.to_string().as_bytes()] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

/// The instance a credential opens, if it is genuine, belongs to `token` and has not expired.
pub fn verify_credential(key: &[u8; 32], token: &str, credential: &str, now: i64) -> Option<String> {
    let mut parts = credential.rsplitn(3, '.');
    let (mac_hex, expires, head) = (parts.next()?, parts.next()?, parts.next()?);
    let instance_id = head.strip_prefix("v1.")?;
    let expires: i64 = expires.parse().ok()?;
    let mac = hex::decode(mac_hex).ok()?;
    credential_mac(key, token, instance_id, expires).verify_slice(&mac).ok()?;
    (now <= expires).then(|| instance_id.to_owned())
}

// ---------------------------------------------------------------------------------------------
// The page

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
    let expires = match token_expiry(state, token).await {
        Ok(Some(e)) => e,
        Ok(None) => return html(StatusCode::NOT_FOUND, NOT_FOUND_PAGE.into()),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the console token's expiry");
            return unavailable("the store did not answer");
        }
    };
    let access = state.consoles.console(&instance_id).await;
    let has_screen = access.as_ref().is_some_and(ConsoleAccess::has_screen);
    // What the serial socket will replay first; the page shows it to browsers without JavaScript.
    let history = match &access {
        Some(ConsoleAccess::Sockets(e)) => {
            log_tail(e).await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
        }
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

/// The expiry of a token the page just spent. The store's `use_console_token` returns only the
/// instance, so this reads the row it left behind.
async fn token_expiry(state: &AppState, token: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT expires_at FROM console_tokens WHERE token = $1")
        .bind(token)
        .fetch_optional(state.store.pool())
        .await
}

fn render_page(name: &str, instance_id: &str, config: &serde_json::Value, has_screen: bool, history: &str) -> String {
    let esc = |s: &str| html_escape::encode_text(s).into_owned();
    // JSON inside <script> must not be able to close the element.
    let config = config.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
    let assets = format!("{ASSET_ROOT}/{}", *ASSET_VERSION);
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

/// `GET /console-assets/{version}/{*path}`. A URL of another build (a page from a process of a
/// different version) still gets the file, but not cached.
async fn asset(Path((version, path)): Path<(String, String)>) -> Response {
    let Some((_, body)) = FILES.iter().find(|(p, _)| *p == path) else {
        return (StatusCode::NOT_FOUND, "no such console asset").into_response();
    };
    let cache = if version == *ASSET_VERSION { "public, max-age=31536000, immutable" } else { "no-cache" };
    ([(CONTENT_TYPE, content_type(&path)), (CACHE_CONTROL, cache), (X_CONTENT_TYPE_OPTIONS, "nosniff")], *body)
        .into_response()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

// ---------------------------------------------------------------------------------------------
// The websockets

/// The part both sockets share: the token and origin checked, a slot of `channel` taken for the
/// instance, the upgrade; `serve` then has the socket and the instance id.
async fn open_socket<F, Fut>(
    state: AppState,
    hub: Arc<Hub>,
    token: &str,
    headers: &HeaderMap,
    ws: WebSocketUpgrade,
    (channel, busy): (Channel, &'static str),
    serve: F,
) -> Response
where
    F: FnOnce(AppState, Arc<Hub>, String, WebSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let instance_id = match authorize(&state, &hub, token, headers).await {
        Ok(id) => id,
        Err(refusal) => return refusal,
    };
    let slot = hub.take_slot(&instance_id, channel);
    ws.max_message_size(MAX_MESSAGE_BYTES).on_upgrade(move |socket| async move {
        let Some(_slot) = slot else {
            return close(socket, 1013, busy).await;
        };
        serve(state, hub, instance_id, socket).await
    })
}

/// `GET /console/{token}/serial`: the serial console, raw bytes both ways as binary frames.
async fn serial_socket(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<Hub>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let busy = "too many open consoles for this instance";
    open_socket(
        state,
        hub,
        &token,
        &headers,
        ws,
        (Channel::Serial, busy),
        |state, hub, instance_id, socket| async move {
            match state.consoles.console(&instance_id).await {
                Some(ConsoleAccess::Sockets(endpoints)) => serial_proxy(&hub, &instance_id, &endpoints, socket).await,
                Some(ConsoleAccess::Simulated(sim)) => simulated_serial(&state, sim, &instance_id, socket).await,
                None => close(socket, 1011, "the machine has no console now (is it running?)").await,
            }
        },
    )
    .await
}

/// `GET /console/{token}/vnc`: the screen, RFB bytes both ways as binary frames (noVNC speaks RFB
/// over the websocket itself).
async fn vnc_socket(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<Hub>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let busy = "too many open screens for this instance";
    open_socket(
        state,
        hub,
        &token,
        &headers,
        ws,
        (Channel::Screen, busy),
        |state, _hub, instance_id, socket| async move {
            let screen = match state.consoles.console(&instance_id).await {
                Some(ConsoleAccess::Sockets(e)) => e.vnc,
                Some(ConsoleAccess::Simulated(_)) | None => None,
            };
            match screen {
                Some(path) => match connect(&path).await {
                    Ok(stream) => pipe(stream, socket).await,
                    Err(e) => {
                        tracing::warn!(instance_id, error = %e, "cannot reach the screen");
                        close(socket, 1011, "the screen is not reachable").await
                    }
                },
                None => close(socket, 1011, "this machine has no screen").await,
            }
        },
    )
    .await
}

/// The instance a socket request may open, or the refusal: 403 for a missing, forged or expired
/// credential or for a page of another origin (cookies are not a defence against that alone).
async fn authorize(state: &AppState, hub: &Hub, token: &str, headers: &HeaderMap) -> Result<String, Response> {
    let refuse = |why: &str| (StatusCode::FORBIDDEN, why.to_owned()).into_response();
    if !same_origin(headers) {
        return Err(refuse("The console accepts sockets from its own page only."));
    }
    let key = hub.key(&state.config).await.map_err(|e| {
        tracing::error!(error = %e, "no key for console credentials");
        (StatusCode::SERVICE_UNAVAILABLE, "The console is not available.").into_response()
    })?;
    cookie(headers, COOKIE_NAME)
        .and_then(|c| verify_credential(&key, token, c, state.clock.unix()))
        .ok_or_else(|| refuse("This console link is unknown, expired or already used; ask for a new one."))
}

/// True unless an `Origin` names another host than the request's (`Host`, or `X-Forwarded-Host`
/// behind a proxy). Browsers always send `Origin` on websockets; other clients need not.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else { return true };
    let Some(authority) = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, a)| a) else {
        return false;
    };
    ["x-forwarded-host", HOST.as_str()]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .any(|host| host.eq_ignore_ascii_case(authority))
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

async fn connect(path: &std::path::Path) -> std::io::Result<UnixStream> {
    tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(path))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// The last [`LOG_TAIL_BYTES`] of the serial log, from a line start when it had to cut.
async fn log_tail(endpoints: &ConsoleEndpoints) -> Option<Vec<u8>> {
    let mut file = tokio::fs::File::open(endpoints.serial_log.as_ref()?).await.ok()?;
    let len = file.metadata().await.ok()?.len();
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    file.seek(std::io::SeekFrom::Start(start)).await.ok()?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    // The log may grow while it is read; what comes after `len` arrives live.
    file.take(len - start).read_to_end(&mut buf).await.ok()?;
    if start > 0
        && let Some(nl) = buf.iter().position(|b| *b == b'\n')
    {
        buf.drain(..=nl);
    }
    Some(buf)
}

/// RFB (or any byte stream) between a Unix socket and a websocket until either side closes.
async fn pipe(stream: UnixStream, mut socket: WebSocket) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => return close(socket, 1000, "the screen closed").await,
                Ok(n) => {
                    if socket.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        return;
                    }
                }
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if wr.write_all(&b).await.is_err() {
                        return close(socket, 1011, "the screen closed").await;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    if wr.write_all(t.as_bytes()).await.is_err() {
                        return close(socket, 1011, "the screen closed").await;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The serial console, shared

#[derive(Debug, Clone)]
enum SerialOut {
    Data(Bytes),
    Closed(&'static str),
}

/// One connection to a machine's serial socket and the browser sockets watching it: output goes
/// to all of them, input from any of them goes to the machine. It lives while a browser socket
/// holds it; the last one leaving closes the connection.
struct SerialShare {
    output: broadcast::Sender<SerialOut>,
    input: mpsc::Sender<Bytes>,
    /// Set when the machine's side closed; the next browser socket connects anew.
    ended: Arc<AtomicBool>,
}

impl Hub {
    /// Joins the machine's serial connection, connecting when nobody is watching it yet.
    async fn join_serial(
        &self,
        instance_id: &str,
        path: &std::path::Path,
    ) -> std::io::Result<(Arc<SerialShare>, broadcast::Receiver<SerialOut>)> {
        let mut shares = self.serial.lock().await;
        if let Some(share) = shares.get(instance_id).and_then(Weak::upgrade)
            && !share.ended.load(Ordering::Acquire)
        {
            let rx = share.output.subscribe();
            return Ok((share, rx));
        }
        let stream = connect(path).await?;
        let (output, rx) = broadcast::channel(SERIAL_BACKLOG);
        let (input, input_rx) = mpsc::channel(64);
        let ended = Arc::new(AtomicBool::new(false));
        tokio::spawn(pump_serial(stream, input_rx, output.clone(), ended.clone()));
        let share = Arc::new(SerialShare { output, input, ended });
        shares.retain(|_, w| w.strong_count() > 0);
        shares.insert(instance_id.to_owned(), Arc::downgrade(&share));
        Ok((share, rx))
    }
}

/// Moves bytes between the machine's serial socket and the share until the machine closes it or
/// every browser socket has left.
async fn pump_serial(
    stream: UnixStream,
    mut input: mpsc::Receiver<Bytes>,
    output: broadcast::Sender<SerialOut>,
    ended: Arc<AtomicBool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 16 * 1024];
    let reason = loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => break "the serial console closed (did the machine stop?)",
                // No receiver is fine: output nobody watches is in the serial log anyway.
                Ok(n) => drop(output.send(SerialOut::Data(Bytes::copy_from_slice(&buf[..n])))),
            },
            msg = input.recv() => match msg {
                Some(bytes) => {
                    if wr.write_all(&bytes).await.is_err() {
                        break "the serial console closed (did the machine stop?)";
                    }
                }
                None => return,
            },
        }
    };
    ended.store(true, Ordering::Release);
    let _ = output.send(SerialOut::Closed(reason));
}

/// A browser socket on a machine's serial console: first the log so far (one frame), then the
/// live stream.
async fn serial_proxy(hub: &Hub, instance_id: &str, endpoints: &ConsoleEndpoints, mut socket: WebSocket) {
    // Join before reading the log, so nothing printed in between is lost (it may show twice).
    let joined = match &endpoints.serial {
        Some(path) => match hub.join_serial(instance_id, path).await {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::warn!(instance_id, error = %e, "cannot reach the serial console");
                None
            }
        },
        None => None,
    };
    // The first frame is always the history, empty or not: the page answers no terminal queries
    // (cursor position and the like) found in it, since the program that asked is long gone.
    let history = log_tail(endpoints).await.unwrap_or_default();
    if socket.send(Message::Binary(history.into())).await.is_err() {
        return;
    }
    let Some((share, mut rx)) = joined else {
        return close(socket, 1011, "the serial console is not reachable; the log above is what it printed").await;
    };
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Ok(SerialOut::Data(b)) => {
                    if socket.send(Message::Binary(b)).await.is_err() {
                        return;
                    }
                }
                Ok(SerialOut::Closed(reason)) => return close(socket, 1011, reason).await,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let note = Bytes::from_static(b"\r\n[openwinv: some output was skipped; this browser fell behind]\r\n");
                    if socket.send(Message::Binary(note)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return close(socket, 1011, "the serial console closed").await;
                }
            },
            msg = socket.recv() => {
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(t))) => Bytes::copy_from_slice(t.as_bytes()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                if share.input.send(bytes).await.is_err() {
                    return close(socket, 1011, "the serial console closed").await;
                }
            }
        }
    }
}

/// The simulated machine's serial console: its boot log (the history frame), then what is typed,
/// echoed.
async fn simulated_serial(state: &AppState, sim: SimulatedSerial, instance_id: &str, mut socket: WebSocket) {
    let Ok(Some(r)) = state.store.instance_by_id(instance_id).await else {
        return close(socket, 1011, "the instance is gone").await;
    };
    let log = format!("{} ", sim.log(&machine_facts(state, &r).await).replace('\n', "\r\n"));
    if socket.send(Message::Binary(log.into())).await.is_err() {
        return;
    }
    while let Some(Ok(msg)) = socket.recv().await {
        let input = match msg {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if socket.send(Message::Binary(sim.echo(&input).into())).await.is_err() {
            return;
        }
    }
}

/// What the store records of an instance, as a simulated serial console prints it: the image's
/// name, the SSH keys, the user script's name, the private address and the compiled firewall.
async fn machine_facts(state: &AppState, r: &openwinv_store::InstanceRecord) -> MachineFacts {
    let catalog = state.catalog.get();
    let image = catalog.images.iter().find(|i| i.id == r.image_id).map_or(r.image_id.as_str(), |i| i.name.as_str());
    let keys: Vec<serde_json::Value> = serde_json::from_str(&r.ssh_keys).unwrap_or_default();
    let ssh_keys = keys
        .iter()
        .map(|k| (k["fingerprint"].as_str().unwrap_or("").to_owned(), k["name"].as_str().unwrap_or("").to_owned()))
        .collect();
    let user_script = match &r.user_script_id {
        None => None,
        Some(id) => {
            Some(state.store.script(&r.account_id, id).await.ok().flatten().map_or_else(|| id.clone(), |s| s.name))
        }
    };
    MachineFacts {
        instance_id: r.instance_id.clone(),
        hostname: r.name.clone(),
        image: image.to_owned(),
        flavor_id: r.flavor_id.clone(),
        ssh_keys,
        user_script,
        private_ip: r.private_ip.clone(),
        firewall: crate::sagas::firewall::compiled_text_for(&state.store, &r.instance_id).await,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicUsize;

    use futures_util::{SinkExt, StreamExt};
    use openwinv_driver::ConsoleBroker;
    use serde_json::{Value, json};
    use tokio::net::UnixListener;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

    use super::*;
    use crate::Inner;
    use crate::auth::Authenticator;
    use crate::config::Settings;
    use crate::metrics::Metrics;

    const ACCESS_KEY: &str = "CONSOLETESTKEY000001";
    const SECRET_KEY: &str = "console-test-secret-0123456789abcdefgh";

    type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    /// A console broker whose machines all have the given consoles (the simulated driver otherwise).
    struct FakeConsoles {
        endpoints: ConsoleEndpoints,
    }

    #[async_trait::async_trait]
    impl ConsoleBroker for FakeConsoles {
        async fn console(&self, _id: &str) -> Option<ConsoleAccess> {
            Some(ConsoleAccess::Sockets(self.endpoints.clone()))
        }
    }

    /// A real server bound to a free port, on SQLite in a temporary directory.
    struct Harness {
        addr: SocketAddr,
        state: AppState,
        http: reqwest::Client,
        dir: tempfile::TempDir,
    }

    impl Harness {
        /// With `consoles`, every machine's consoles are those sockets; without, the simulated driver.
        async fn start(consoles: Option<ConsoleEndpoints>) -> Harness {
            Harness::start_with(consoles, None).await
        }

        /// A second server process on `first`'s database, with its own data directory and the
        /// same sealing key, as the configuration of several processes requires.
        async fn start_sharing(first: &Harness) -> Harness {
            Harness::start_with(None, Some(first)).await
        }

        async fn start_with(consoles: Option<ConsoleEndpoints>, share: Option<&Harness>) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let db_dir = share.map_or(dir.path(), |f| f.dir.path());
            let settings = Settings {
                data_dir: Some(dir.path().join("data")),
                database: Some(format!("sqlite://{}?mode=rwc", db_dir.join("openwinv.db").display())),
                sim_delay: Some(0.0),
                default_rate_limit: Some(0),
                encryption_key: share.map(|f| {
                    std::fs::read_to_string(f.dir.path().join("data/encryption-key")).unwrap().trim().to_owned()
                }),
                ..Settings::default()
            };
            let mut config = Config::resolve(settings).unwrap();
            config.bootstrap_key = Some((ACCESS_KEY.into(), SECRET_KEY.into()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let base = crate::bootstrap::start(config, addr).await.unwrap();
            let state = match consoles {
                None => base,
                Some(endpoints) => AppState::new(Inner {
                    config: base.config.clone(),
                    engine: base.engine.clone(),
                    driver: base.driver.clone(),
                    consoles: Arc::new(FakeConsoles { endpoints }),
                    store: base.store.clone(),
                    sealer: base.sealer.clone(),
                    clock: base.clock.clone(),
                    catalog: base.catalog.clone(),
                    images: base.images.clone(),
                    auth: Authenticator::new(base.clock.clone()),
                    metrics: Metrics::default(),
                    networks: None,
                    admin_token: base.admin_token.clone(),
                    live_bills: Default::default(),
                }),
            };
            state.engine.spawn();
            let app = crate::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move { axum::serve(listener, app).await });
            Harness { addr, state, http: reqwest::Client::new(), dir }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        /// A signed /v1 request; the JSON answer.
        async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
            let ts = self.state.clock.unix().to_string();
            let mut req = self
                .http
                .request(method, self.url(path))
                .header("X-iwinv-Timestamp", &ts)
                .header("X-iwinv-Credential", ACCESS_KEY)
                .header("X-iwinv-Signature", openwinv_wire::signing::sign(SECRET_KEY, &ts, path));
            if let Some(b) = body {
                req = req.json(&b);
            }
            req.send().await.unwrap().json().await.unwrap()
        }

        /// Creates an active instance named `name`; its id.
        async fn active_instance(&self, name: &str) -> String {
            let body =
                json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": name});
            let r = self.api(reqwest::Method::POST, "/v1/instances", Some(body)).await;
            let id = r["result"][0]["instance_id"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();
            for _ in 0..200 {
                let r = self.api(reqwest::Method::GET, &format!("/v1/instances/{id}"), None).await;
                if r["result"][0]["status"] == "active" {
                    return id;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("instance {id} did not become active");
        }

        async fn key(&self) -> [u8; 32] {
            credential_key(&self.state.config).await.unwrap()
        }

        /// Opens a console websocket with these request headers; the socket or the refusal's status.
        async fn open(&self, token: &str, channel: &str, headers: &[(&str, String)]) -> Result<Ws, u16> {
            let mut req = format!("ws://{}/console/{token}/{channel}", self.addr).into_client_request().unwrap();
            for (k, v) in headers {
                req.headers_mut().insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
            }
            match tokio_tungstenite::connect_async(req).await {
                Ok((ws, _)) => Ok(ws),
                Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
                Err(e) => panic!("websocket to {channel}: {e}"),
            }
        }

        /// Opens a socket with a fresh credential for (`token`, `instance_id`), valid for a minute.
        async fn open_as(&self, token: &str, instance_id: &str, channel: &str) -> Ws {
            let cred = mint_credential(&self.key().await, token, instance_id, self.state.clock.unix() + 60);
            self.open(token, channel, &[("cookie", format!("{COOKIE_NAME}={cred}"))]).await.unwrap()
        }
    }

    /// Reads binary frames until their bytes contain `needle`; everything read. Panics on a close,
    /// or after 10 s.
    async fn read_until(ws: &mut Ws, needle: &str) -> String {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&got).contains(needle) {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(WsMessage::Binary(b)))) => got.extend_from_slice(&b),
                Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => {}
                other => panic!("waiting for {needle:?}, got {other:?}; so far {:?}", String::from_utf8_lossy(&got)),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// The next frame, which must be a close; its code and reason.
    async fn read_close(ws: &mut Ws) -> (u16, String) {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(WsMessage::Close(Some(f))))) => return (f.code.into(), f.reason.to_string()),
                Ok(Some(Ok(WsMessage::Binary(_) | WsMessage::Ping(_) | WsMessage::Pong(_)))) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    async fn send(ws: &mut Ws, bytes: &[u8]) {
        ws.send(WsMessage::Binary(Bytes::copy_from_slice(bytes))).await.unwrap();
    }

    /// Connections a fake console socket accepted and saw closed.
    #[derive(Default)]
    struct Counts {
        accepted: AtomicUsize,
        closed: AtomicUsize,
    }

    /// A Unix socket that greets each client with `greeting` and echoes what it receives.
    fn fake_socket(path: PathBuf, greeting: &'static [u8]) -> Arc<Counts> {
        let listener = UnixListener::bind(path).unwrap();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                c.accepted.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let _ = conn.write_all(greeting).await;
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = conn.read(&mut buf).await {
                        if conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    c.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        counts
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{what} did not happen within 5 s");
    }

    struct Fakes {
        endpoints: ConsoleEndpoints,
        serial: Arc<Counts>,
        screen: Arc<Counts>,
        _dir: tempfile::TempDir,
    }

    async fn fakes() -> Fakes {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        tokio::fs::write(&log, b"[    0.000000] Linux version fake\r\nearlier output\r\n").await.unwrap();
        let serial = fake_socket(dir.path().join("serial.sock"), b"fake-guest banner\r\n");
        let screen = fake_socket(dir.path().join("vnc.sock"), b"RFB 003.008\n");
        let endpoints = ConsoleEndpoints {
            serial: Some(dir.path().join("serial.sock")),
            serial_log: Some(log),
            vnc: Some(dir.path().join("vnc.sock")),
        };
        Fakes { endpoints, serial, screen, _dir: dir }
    }

    #[tokio::test]
    async fn serial_and_screen_are_proxied_to_the_drivers_sockets() {
        let f = fakes().await;
        let h = Harness::start(Some(f.endpoints.clone())).await;

        // Serial: the log so far, then the live stream; keystrokes reach the machine.
        let mut one = h.open_as("TOKEN1", "INSTANCE-fake", "serial").await;
        let first = read_until(&mut one, "fake-guest banner").await;
        assert!(first.starts_with("[    0.000000] Linux version fake\r\nearlier output\r\n"), "{first:?}");
        send(&mut one, b"uname -a\r").await;
        read_until(&mut one, "uname -a\r").await;

        // A second viewer shares the one connection: it sees the log, and both see what either types.
        let mut two = h.open_as("TOKEN1", "INSTANCE-fake", "serial").await;
        read_until(&mut two, "earlier output\r\n").await;
        send(&mut two, b"from two").await;
        read_until(&mut two, "from two").await;
        read_until(&mut one, "from two").await;
        assert_eq!(f.serial.accepted.load(Ordering::SeqCst), 1, "one connection to the serial socket");

        // At most four serial sockets per instance; the fifth is closed with 1013 (try again later).
        let mut three = h.open_as("TOKEN1", "INSTANCE-fake", "serial").await;
        let mut four = h.open_as("TOKEN1", "INSTANCE-fake", "serial").await;
        read_until(&mut three, "earlier output").await;
        read_until(&mut four, "earlier output").await;
        let mut five = h.open_as("TOKEN1", "INSTANCE-fake", "serial").await;
        assert_eq!(read_close(&mut five).await.0, 1013);
        // Another instance has its own places.
        let mut other = h.open_as("TOKEN2", "INSTANCE-other", "serial").await;
        read_until(&mut other, "earlier output").await;

        // Screen: RFB both ways (the fake echoes the client's version back).
        let mut screen = h.open_as("TOKEN1", "INSTANCE-fake", "vnc").await;
        read_until(&mut screen, "RFB 003.008\n").await;
        send(&mut screen, b"RFB 003.008\n").await;
        read_until(&mut screen, "RFB 003.008\n").await;
        assert_eq!(f.screen.accepted.load(Ordering::SeqCst), 1);

        // When the last viewer of an instance leaves, its serial connection closes; places free up.
        for ws in [one, two, three, four] {
            drop(ws);
        }
        drop(screen);
        eventually("the screen connection closing", || f.screen.closed.load(Ordering::SeqCst) == 1).await;
        other.close(None).await.unwrap();
        eventually("the serial connections closing", || f.serial.closed.load(Ordering::SeqCst) == 2).await;
        let mut again = h.open_as("TOKEN1", "INSTANCE-fake", "serial").await;
        read_until(&mut again, "fake-guest banner").await;
    }

    #[tokio::test]
    async fn forged_expired_and_foreign_credentials_are_refused() {
        let f = fakes().await;
        let h = Harness::start(Some(f.endpoints.clone())).await;
        let key = h.key().await;
        let now = h.state.clock.unix();
        let cookie = |cred: &str| ("cookie", format!("{COOKIE_NAME}={cred}"));
        let good = mint_credential(&key, "TOKEN", "INSTANCE-fake", now + 60);
        let mut ws = h.open("TOKEN", "serial", &[cookie(&good)]).await.unwrap();
        read_until(&mut ws, "earlier output").await;

        let forged_mac = format!("{}{}", &good[..good.len() - 4], "0000");
        let other_key = mint_credential(&[7u8; 32], "TOKEN", "INSTANCE-fake", now + 60);
        let other_token = mint_credential(&key, "OTHER", "INSTANCE-fake", now + 60);
        let expired = mint_credential(&key, "TOKEN", "INSTANCE-fake", now - 1);
        let longer = good.replace(&format!(".{}.", now + 60), &format!(".{}.", now + 6000));
        let other_instance = good.replace("INSTANCE-fake", "INSTANCE-else");
        for (what, cred) in [
            ("forged HMAC", forged_mac.as_str()),
            ("another server's key", &other_key),
            ("another link's credential", &other_token),
            ("expired", &expired),
            ("extended expiry", &longer),
            ("another instance", &other_instance),
            ("garbage", "v1.x"),
            ("empty", ""),
        ] {
            for channel in ["serial", "vnc"] {
                assert_eq!(h.open("TOKEN", channel, &[cookie(cred)]).await.err(), Some(403), "{what} on {channel}");
            }
        }
        assert_eq!(h.open("TOKEN", "serial", &[]).await.err(), Some(403), "no credential");
        // A page of another origin cannot use the browser's cookie.
        let evil = [cookie(&good), ("origin", "http://evil.example".into())];
        assert_eq!(h.open("TOKEN", "serial", &evil).await.err(), Some(403), "foreign origin");
        let own = [cookie(&good), ("origin", format!("http://{}", h.addr))];
        let mut ws = h.open("TOKEN", "serial", &own).await.unwrap();
        read_until(&mut ws, "earlier output").await;
    }

    #[tokio::test]
    async fn the_page_opens_once_and_its_cookie_opens_the_simulated_console() {
        let h = Harness::start(None).await;
        let id = h.active_instance("console-test").await;
        let r = h.api(reqwest::Method::GET, &format!("/v1/instances/{id}/remote-console"), None).await;
        let link = r["result"][0]["link"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();
        let token = link.rsplit('/').next().unwrap().to_owned();

        let page = h.http.get(&link).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let header = |name: &str| page.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let set_cookie = header("set-cookie");
        assert!(set_cookie.starts_with(&format!("{COOKIE_NAME}=v1.{id}.")), "{set_cookie}");
        for part in [&format!("Path=/console/{token}"), "HttpOnly", "SameSite=Strict", "Max-Age="] {
            assert!(set_cookie.contains(part), "{part} in {set_cookie}");
        }
        assert!(header("content-security-policy").contains("script-src 'self'"));
        assert_eq!(header("cache-control"), "no-store");
        let html = page.text().await.unwrap();
        assert!(html.contains("console-test") && html.contains(&id), "{html}");
        assert!(!html.contains("\"screen\":\"/console"), "the simulated driver has no screen: {html}");
        assert!(html.contains("cloud-init: hostname console-test"), "the log for browsers without scripts: {html}");

        // Assets: the versioned URLs the page names, with their types and a year of caching.
        let prefix = format!("{ASSET_ROOT}/{}/", *ASSET_VERSION);
        assert!(html.contains(&format!("{prefix}console.js")), "{html}");
        for (path, kind) in [
            ("console.js", "text/javascript; charset=utf-8"),
            ("console.css", "text/css; charset=utf-8"),
            ("vendor/xterm/xterm.mjs", "text/javascript; charset=utf-8"),
            ("vendor/xterm/xterm.css", "text/css; charset=utf-8"),
            ("vendor/novnc/core/rfb.js", "text/javascript; charset=utf-8"),
            ("vendor/novnc/vendor/pako/lib/zlib/inflate.js", "text/javascript; charset=utf-8"),
            ("vendor/novnc/LICENSE.txt", "text/plain; charset=utf-8"),
        ] {
            let r = h.http.get(h.url(&format!("{prefix}{path}"))).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(r.headers()["content-type"], kind, "{path}");
            assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable", "{path}");
            let on_disk = std::fs::read(format!("{}/assets/console/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            assert_eq!(r.bytes().await.unwrap().as_ref(), on_disk.as_slice(), "{path}");
        }
        let stale = h.http.get(h.url(&format!("{ASSET_ROOT}/0000/console.js"))).send().await.unwrap();
        assert_eq!((stale.status().as_u16(), stale.headers()["cache-control"].to_str().unwrap()), (200, "no-cache"));
        let missing = h.http.get(h.url(&format!("{prefix}vendor/../../Cargo.toml"))).send().await.unwrap();
        assert_eq!(missing.status(), 404);

        // The token is spent: the page opens once.
        assert_eq!(h.http.get(&link).send().await.unwrap().status(), 404);

        // The cookie opens the serial socket: the simulated log, then an echo of what is typed.
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let mut ws = h.open(&token, "serial", &[("cookie", cookie.clone())]).await.unwrap();
        let log = read_until(&mut ws, "console-test login: ").await;
        assert!(log.contains("cloud-init: hostname console-test\r\n"), "{log:?}");
        assert!(!log.replace("\r\n", "").contains('\n'), "lines end with \\r\\n: {log:?}");
        send(&mut ws, b"root\r").await;
        read_until(&mut ws, "root\r\n").await;
        // Any process with the sealing key accepts the credential: nothing is kept per process.
        let second = Harness::start_sharing(&h).await;
        let mut elsewhere = second.open(&token, "serial", &[("cookie", cookie.clone())]).await.unwrap();
        read_until(&mut elsewhere, "cloud-init: hostname console-test\r\n").await;
        // No screen with the simulated driver.
        let mut vnc = h.open(&token, "vnc", &[("cookie", cookie.clone())]).await.unwrap();
        assert_eq!(read_close(&mut vnc).await, (1011, "this machine has no screen".to_owned()));

        // When the link's five minutes are over, no new socket opens; the open one stays open.
        let admin = format!("Bearer {}", h.state.admin_token);
        let r = h
            .http
            .post(h.url("/admin/v1/clock/advance"))
            .header("authorization", admin)
            .json(&json!({"duration": "301s"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(h.open(&token, "serial", &[("cookie", cookie)]).await.err(), Some(403));
        send(&mut ws, b"still here").await;
        read_until(&mut ws, "still here").await;
        drop(h.dir);
    }

    #[test]
    fn the_manifest_lists_every_asset() {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/console");
        let mut on_disk = Vec::new();
        walk(&root, &root, &mut on_disk);
        on_disk.retain(|p| p != "files.rs" && p != "README.md");
        on_disk.sort();
        let listed: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(listed, on_disk, "run scripts/vendor-console-assets --manifest");
    }

    #[test]
    fn credentials_round_trip_and_echo_cooks_input() {
        let key = [1u8; 32];
        let c = mint_credential(&key, "T", "INSTANCE-a", 100);
        assert_eq!(verify_credential(&key, "T", &c, 100).as_deref(), Some("INSTANCE-a"));
        assert_eq!(verify_credential(&key, "T", &c, 101), None);
        assert_eq!(verify_credential(&key, "U", &c, 50), None);
        assert_eq!(SimulatedSerial.echo(b"ab\x7f\r"), b"ab\x08 \x08\r\n");
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; openwinv_console=v1.x"));
        assert_eq!(cookie(&h, COOKIE_NAME), Some("v1.x"));
        h.insert(HOST, HeaderValue::from_static("example.com:8080"));
        h.insert(ORIGIN, HeaderValue::from_static("https://example.com:8080"));
        assert!(same_origin(&h));
        h.insert(ORIGIN, HeaderValue::from_static("https://example.com"));
        assert!(!same_origin(&h));
        h.insert("x-forwarded-host", HeaderValue::from_static("example.com"));
        assert!(same_origin(&h));
    }
}
