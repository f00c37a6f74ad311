//! The console against a real server.

use std::time::Duration;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

use futures_util::{SinkExt, StreamExt};
use openwinv_driver::ConsoleBroker;
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use axum::body::Bytes;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue};
use openwinv_driver::{ConsoleAccess, ConsoleEndpoints, SimulatedSerial};
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::Inner;
use crate::assets::CONSOLE;
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
            encryption_key: share
                .map(|f| std::fs::read_to_string(f.dir.path().join("data/encryption-key")).unwrap().trim().to_owned()),
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
                pages: Default::default(),
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
        let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": name});
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
    let prefix = format!("{}/", CONSOLE.base());
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
    let stale = h.http.get(h.url(&format!("{}/0000/console.js", CONSOLE.root()))).send().await.unwrap();
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
