//! Consoles of instances on hosts (issue 18): the browser talks to the control plane only; the
//! control plane hands the host's agent a console session (a `console` work item), the agent
//! dials back `GET /internal/v1/hosts/console/{session}` with its host token, and the two
//! websockets are spliced (docs/hosts.md, "Consoles"). Here with sim agents, SQLite or
//! PostgreSQL; the QEMU agent's guest console is in `hosts_qemu.rs`.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use openwinv_tests::browser::{BROWSER_TIMEOUT_SECS, console_mjs, require_browser_tools};
use openwinv_tests::console::{open, read_to_close, read_until, send};
use openwinv_tests::hosts::{ZONE, add_host, create_succeeded, hosts_mode, spawn_agent};
use openwinv_tests::{Server, binary};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// A bound on every read, so that a test fails instead of hanging; not a timing assertion.
const READ: Duration = Duration::from_secs(30);

/// A running `openwinv agent --driver sim`.
struct Agent {
    token: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Agent {
    async fn start(s: &Server, name: &str) -> Agent {
        let token = add_host(s, name).await;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(binary());
        cmd.args(["agent", "--control-plane", &s.endpoint, "--host-token", &token, "--driver", "sim"])
            .args(["--zone", ZONE, "--vcpus", "8", "--memory-mb", "8192", "--disk-gb", "400", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info");
        let (child, _) = spawn_agent(cmd, name, &dir.path().join("agent.log"), READ).await;
        Agent { token, dir, child: Some(child) }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }
}

async fn create(s: &Server, name: &str) -> String {
    create_succeeded(s, name, "IMG-ubuntu-2404").await
}

/// The sim agent plays the machine's serial console: the boot log the control plane rendered
/// from its records, then what is typed, echoed, all through the control plane's socket; the
/// screen channel reaches the agent too (a simulated machine has none); closing the browser's
/// socket ends the agent's session.
#[tokio::test]
async fn a_sim_agents_serial_console_through_the_control_plane() {
    let s = hosts_mode(&["--default-rate-limit", "0"]).await;
    let agent = Agent::start(&s, "h1").await;
    let id = create(&s, "console-on-h1").await;

    let mut ws = open(&s, &id, "serial").await;
    let read = read_until(&mut ws, b"login:", READ).await;
    let text = read.text();
    assert!(read.closed.is_none(), "the console closed: {read:?}\nagent log:\n{}", agent.log());
    assert!(text.contains("cloud-init: hostname console-on-h1"), "{text}");
    assert!(text.contains(&format!("cloud-init: instance-id {id}")), "{text}");
    // A session outlives the agent's request timeout (5 s): the upgraded connection has none.
    tokio::time::sleep(Duration::from_secs(6)).await;
    send(&mut ws, b"typed-through-the-agent\r").await;
    let read = read_until(&mut ws, b"typed-through-the-agent\r\n", READ).await;
    assert!(read.text().contains("typed-through-the-agent\r\n"), "the echo came back: {read:?}");
    assert!(agent.log().contains("console session open"), "the agent served it:\n{}", agent.log());

    // The browser leaves: the agent's side closes too.
    ws.close(None).await.unwrap();
    drop(ws);
    let closed = async {
        for _ in 0..300 {
            if agent.log().contains("console session closed") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(closed.await, "the agent's session did not end:\n{}", agent.log());

    // The screen: the agent answers that a simulated machine has none, through the proxy.
    let mut ws = open(&s, &id, "vnc").await;
    let read = read_to_close(&mut ws, READ).await;
    assert_eq!(read.closed, Some((1011, "this machine has no screen".into())), "{read:?}");

    // The real browser: the console page's terminal shows the agent's console and what is typed.
    require_browser_tools();
    let link =
        s.get(&format!("/v1/instances/{id}/remote-console")).await.ok_rows()[0]["link"].as_str().unwrap().to_owned();
    let timeout = BROWSER_TIMEOUT_SECS.to_string();
    let (ok, out) = console_mjs(
        &link,
        &[
            "cloud-init: hostname console-on-h1",
            &timeout,
            "--type",
            "via-browser-7\\r",
            "--then",
            "login: via-browser-7",
        ],
    )
    .await;
    assert!(ok, "the console page did not show the agent's console:\n{out}\nagent log:\n{}", agent.log());
}

/// The session protocol as an agent sees it, played by the test with host tokens: the session
/// comes as a `console` work item; another host's token is refused (403) and does not spend it;
/// its own host claims it once, and frames pass both ways; the agent's close reaches the
/// browser. A session nobody claims ends with an error naming the host, and a host that is
/// offline is refused at once.
#[tokio::test]
async fn a_session_is_claimed_once_by_its_own_host_or_the_browser_is_told() {
    let s = hosts_mode(&["--default-rate-limit", "0"]).await;
    let mut agent = Agent::start(&s, "h1").await;
    let other = add_host(&s, "h2").await;
    let id = create(&s, "console-played").await;
    // The test plays h1's agent from now on.
    agent.kill9().await;
    let http = reqwest::Client::new();
    let internal = |path: &str| format!("{}/internal/v1/hosts/{path}", s.endpoint);
    let heartbeat = http.post(internal("heartbeat")).bearer_auth(&agent.token).send().await.unwrap();
    assert_eq!(heartbeat.status(), 200);

    let mut browser = open(&s, &id, "serial").await;
    let pulled: Value = http
        .post(internal("work"))
        .bearer_auth(&agent.token)
        .json(&json!({"wait_ms": 10_000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = pulled["result"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["call"] == "console"))
        .unwrap_or_else(|| panic!("no console item for h1: {pulled}"))
        .clone();
    assert_eq!(item["instance_id"], id.as_str());
    assert_eq!(item["payload"]["channel"], "serial");
    // The process holding the browser's socket names itself (derived from its listen address).
    assert_eq!(item["payload"]["connect"], s.endpoint.as_str(), "{item}");
    assert!(item["payload"]["sim_log"].as_str().unwrap().contains("hostname console-played"), "{item}");
    let session = item["payload"]["session"].as_str().unwrap().to_owned();
    let claim_url = internal(&format!("console/{session}"));

    // Refusals, none of which spends the session.
    let r = http.get(&claim_url).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = http.get(&claim_url).bearer_auth(&other).send().await.unwrap();
    assert_eq!(r.status(), 403, "another host's token");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_code"], "CHECK_CREDENTIAL", "{body}");
    assert!(body["message"].as_str().unwrap().contains("another host"), "{body}");
    let r = http.get(&claim_url).bearer_auth(&agent.token).send().await.unwrap();
    assert_eq!(r.status(), 400, "not a websocket upgrade");
    let r = http.get(internal("console/0123")).bearer_auth(&agent.token).send().await.unwrap();
    assert_eq!(r.status(), 404, "an unknown session");
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], "NOT_FOUND");

    // Its own host claims it: frames both ways, then the agent's close reaches the browser.
    let mut agent_ws = claim(&claim_url, &agent.token).await.expect("h1 claims its session");
    agent_ws.send(Message::Binary(b"from-the-host\r\n".to_vec().into())).await.unwrap();
    let read = read_until(&mut browser, b"from-the-host", READ).await;
    assert!(read.text().contains("from-the-host"), "{read:?}");
    send(&mut browser, b"from-the-browser").await;
    let got = tokio::time::timeout(READ, agent_ws.next()).await.expect("a frame").expect("open").unwrap();
    assert_eq!(got.into_data().as_ref(), b"from-the-browser");
    let frame = CloseFrame { code: 1011.into(), reason: "the machine went away".into() };
    agent_ws.send(Message::Close(Some(frame))).await.unwrap();
    let read = read_to_close(&mut browser, READ).await;
    assert_eq!(read.closed, Some((1011, "the machine went away".into())), "{read:?}");
    // Single use.
    assert_eq!(claim(&claim_url, &agent.token).await.err(), Some(404), "a claimed session is spent");

    // Nobody claims: the browser is told, naming the host, after the claim window.
    let mut browser = open(&s, &id, "serial").await;
    let read = read_to_close(&mut browser, READ).await;
    let (code, reason) = read.closed.clone().unwrap_or_else(|| panic!("no close: {read:?}"));
    assert_eq!(code, 1011, "{read:?}");
    assert!(
        reason.contains("console unavailable") && reason.contains("h1") && reason.contains("did not connect"),
        "{reason}"
    );

    // The host offline by the server clock: refused at once, saying so.
    s.cli_run(&["admin", "clock", "advance", "21s"]).await.ok();
    let mut browser = open(&s, &id, "serial").await;
    let read = read_to_close(&mut browser, READ).await;
    let (_, reason) = read.closed.clone().unwrap_or_else(|| panic!("no close: {read:?}"));
    assert!(reason.contains("console unavailable: the host h1 is unreachable"), "{reason}");
}

/// A websocket dial-back as an agent makes it; the refusal's status otherwise.
async fn claim(url: &str, token: &str) -> Result<openwinv_tests::console::Ws, u16> {
    let mut req = url.replacen("http://", "ws://", 1).into_client_request().unwrap();
    req.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("dial-back: {e}"),
    }
}

/// Two control-plane processes on one database, the agent registered against the first: a
/// console opened through the second is handed to the agent through the database with the
/// second's own address (derived from its listen address), the agent dials that process back,
/// and the console works both ways there; through the first process it works too.
#[tokio::test]
async fn a_console_opened_through_another_process_reaches_its_agent() {
    let s = hosts_mode(&["--default-rate-limit", "0"]).await;
    let second = Server::start_sharing(&s, &["--placement", "hosts", "--default-rate-limit", "0"]).await;
    let agent = Agent::start(&s, "h1").await;
    let id = create(&s, "console-two-processes").await;

    let mut ws = open(&second, &id, "serial").await;
    let read = read_until(&mut ws, b"login:", READ).await;
    assert!(read.closed.is_none(), "the console closed: {read:?}\nagent log:\n{}", agent.log());
    assert!(read.text().contains("hostname console-two-processes"), "{read:?}");
    send(&mut ws, b"typed-via-the-second\r").await;
    let read = read_until(&mut ws, b"typed-via-the-second\r\n", READ).await;
    assert!(read.text().contains("typed-via-the-second\r\n"), "the echo came back: {read:?}");
    ws.close(None).await.unwrap();

    let mut ws = open(&s, &id, "serial").await;
    let read = read_until(&mut ws, b"login:", READ).await;
    assert!(read.text().contains("hostname console-two-processes"), "{read:?}");
}

/// A process whose internal URL is wrong: one naming a closed port makes the agent's dial-back
/// fail (it says so and answers the item), one naming the other process reaches a process that
/// holds no such session (404 naming this); either way the browser gets the claim timeout's
/// error naming the host, not a hang. A `serve --internal-url` that is not http(s) is refused
/// at start.
#[tokio::test]
async fn a_dial_back_to_a_wrong_internal_url_fails_clearly() {
    let s = hosts_mode(&["--default-rate-limit", "0"]).await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = format!("http://127.0.0.1:{closed_port}");
    let unreachable =
        Server::start_sharing(&s, &["--placement", "hosts", "--default-rate-limit", "0", "--internal-url", &closed])
            .await;
    let agent = Agent::start(&s, "h1").await;
    let id = create(&s, "console-wrong-url").await;

    let mut ws = open(&unreachable, &id, "serial").await;
    let read = read_to_close(&mut ws, READ).await;
    let (code, reason) = read.closed.clone().unwrap_or_else(|| panic!("no close: {read:?}"));
    assert_eq!(code, 1011, "{read:?}");
    assert!(reason.contains("h1's agent did not connect within 5 s"), "{reason}");
    let log = agent.log();
    assert!(log.contains("console session not opened") && log.contains("cannot dial back"), "{log}");

    // An internal URL naming the first process: the session is not there.
    let other = Server::start_sharing(
        &s,
        &["--placement", "hosts", "--default-rate-limit", "0", "--internal-url", &s.endpoint],
    )
    .await;
    let mut ws = open(&other, &id, "serial").await;
    let read = read_to_close(&mut ws, READ).await;
    let (_, reason) = read.closed.clone().unwrap_or_else(|| panic!("no close: {read:?}"));
    assert!(reason.contains("h1's agent did not connect within 5 s"), "{reason}");
    let log = agent.log();
    assert!(log.contains("not waiting in this control-plane process"), "{log}");

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--internal-url", "ftp://127.0.0.1:21", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("internal_url must be an http:// or https:// URL"), "{stderr}");
}
