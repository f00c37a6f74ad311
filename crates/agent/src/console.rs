//! Consoles through the control plane (`docs/hosts.md`, "Consoles"). The control plane cannot
//! dial an agent, so a browser opening a console of a machine on this host makes it hand the
//! agent a `console` work item: `{session, channel: serial|vnc, sim_log, connect}`. The agent
//! dials back `{connect}/internal/v1/hosts/console/{session}` (`connect`: the address of the
//! control-plane process holding the browser's socket; without it, from an older control plane,
//! its own `--control-plane` URL) with its host token (a websocket over its own HTTP client's
//! connection, so the same `--ca-file` trust) and splices that socket to the machine's
//! local console: the QEMU driver's serial or VNC Unix socket, or on a simulated host the same
//! simulated serial console the embedded driver plays (the boot log the control plane rendered,
//! then what is typed, echoed). Closing either side closes the other.
//!
//! A serial socket of QEMU serves one client at a time, so, as the control plane does for its own
//! machines, the agent keeps one connection per machine and shares it between its sessions: the
//! first frame of each session is the tail of the machine's serial log, then the live stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use openwinv_driver::{ConsoleAccess, ConsoleBroker, ConsoleEndpoints, SimulatedSerial};
use openwinv_wire::hosts::{WorkAck, WorkItem, WorkResult};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::control::{Control, error_chain};

/// How long the dial-back (connect, upgrade) and connecting to a machine's socket may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of the serial log a session replays first.
const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// Serial output chunks a slow session may fall behind before it skips some.
const SERIAL_BACKLOG: usize = 1024;

/// The machines' shared serial connections.
#[derive(Default)]
pub struct Consoles {
    serial: tokio::sync::Mutex<HashMap<String, Weak<SerialShare>>>,
}

#[derive(Debug, Clone)]
enum SerialOut {
    Data(Vec<u8>),
    Closed(&'static str),
}

struct SerialShare {
    output: broadcast::Sender<SerialOut>,
    input: mpsc::Sender<Vec<u8>>,
    ended: Arc<AtomicBool>,
}

/// One session: dial back, answer the item, splice.
pub(crate) async fn serve(
    control: Arc<Control>,
    broker: Arc<dyn ConsoleBroker>,
    consoles: Arc<Consoles>,
    item: WorkItem,
) {
    let session = item.payload["session"].as_str().unwrap_or_default().to_owned();
    let channel = item.payload["channel"].as_str().unwrap_or_default().to_owned();
    let instance_id = item.instance_id.clone().unwrap_or_default();
    let dialed = if session.is_empty() || !matches!(channel.as_str(), "serial" | "vnc") {
        Err("the console item names no session or channel".to_owned())
    } else {
        match dial_base(&control.base, &item.payload["connect"]) {
            Ok(base) => dial(&control, &base, &session).await,
            Err(e) => Err(e),
        }
    };
    // The item is answered either way; a session is never dialed twice.
    let result = match &dialed {
        Ok(_) => {
            WorkResult { key: item.key.clone(), outcome: "ok".into(), result: json!({"claimed": true}), error: None }
        }
        Err(e) => WorkResult {
            key: item.key.clone(),
            outcome: "permanent".into(),
            result: Value::Null,
            error: Some(e.clone()),
        },
    };
    let body = serde_json::to_value(&result).expect("a result serializes");
    if let Err(e) = control.call::<WorkAck>("work/result", Some(&body)).await {
        tracing::debug!(key = %item.key, error = ?e, "console item not answered (the control plane answers it too)");
    }
    let ws = match dialed {
        Ok(ws) => ws,
        Err(e) => return tracing::warn!(instance_id, session, error = %e, "console session not opened"),
    };
    tracing::info!(instance_id, channel, "console session open");
    let access = broker.console(&instance_id).await;
    match (channel.as_str(), access) {
        ("serial", Some(ConsoleAccess::Simulated(sim))) => {
            let log = item.payload["sim_log"].as_str().unwrap_or_default();
            simulated(ws, sim, log).await
        }
        ("serial", Some(ConsoleAccess::Sockets(e))) => serial(&consoles, &instance_id, &e, ws).await,
        ("vnc", Some(ConsoleAccess::Sockets(ConsoleEndpoints { vnc: Some(path), .. }))) => match connect(&path).await {
            Ok(stream) => pipe(stream, ws, "the screen closed").await,
            Err(e) => {
                tracing::warn!(instance_id, error = %e, "cannot reach the screen");
                close(ws, 1011, "the screen is not reachable").await
            }
        },
        ("vnc", Some(_)) => close(ws, 1011, "this machine has no screen").await,
        _ => close(ws, 1011, "the machine has no console now (is it running?)").await,
    }
    tracing::info!(instance_id, channel, "console session closed");
}

type Socket = WebSocketStream<reqwest::Upgraded>;

/// Where to dial back: the item's `connect` (the process holding the session), checked to be an
/// http(s) URL with a host and nothing else, or the agent's own control-plane URL without one.
fn dial_base(own: &str, connect: &Value) -> Result<String, String> {
    let url = match connect {
        Value::Null => return Ok(own.to_owned()),
        Value::String(u) => u.trim_end_matches('/'),
        other => return Err(format!("the console item's connect is not a URL: {other}")),
    };
    match reqwest::Url::parse(url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            Ok(url.to_owned())
        }
        _ => Err(format!("the console item's connect `{url}` is not an http:// or https:// URL; not dialed")),
    }
}

/// `GET {base}/internal/v1/hosts/console/{session}` as a websocket, over the agent's HTTP client.
async fn dial(control: &Control, base: &str, session: &str) -> Result<Socket, String> {
    use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
    let key = generate_key();
    let url = format!("{base}/internal/v1/hosts/console/{session}");
    let sent = control
        .http
        .get(&url)
        .bearer_auth(&control.token)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", &key)
        .timeout(DIAL_TIMEOUT)
        .send();
    let resp = tokio::time::timeout(DIAL_TIMEOUT, sent)
        .await
        .map_err(|_| "the dial-back timed out".to_owned())?
        .map_err(|e| format!("cannot dial back: {}", error_chain(&e)))?;
    if resp.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        return Err(format!(
            "the control plane refused the session: {status} {}",
            json["message"].as_str().unwrap_or(&text)
        ));
    }
    let accept = resp.headers().get("sec-websocket-accept").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if accept != derive_accept_key(key.as_bytes()) {
        return Err("the control plane's websocket answer has a wrong Sec-WebSocket-Accept".into());
    }
    let upgraded = resp.upgrade().await.map_err(|e| format!("the upgrade failed: {}", error_chain(&e)))?;
    let config = WebSocketConfig::default().max_message_size(Some(4 << 20));
    Ok(WebSocketStream::from_raw_socket(upgraded, Role::Client, Some(config)).await)
}

async fn close(mut ws: Socket, code: u16, reason: &str) {
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
    let _ = ws.send(Message::Close(Some(frame))).await;
    // Let the close handshake finish, so the control plane reads the frame before the end.
    let _ = tokio::time::timeout(DIAL_TIMEOUT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

/// What typed bytes a frame carries; `None` at the end of the session.
fn input(msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Option<Option<Vec<u8>>> {
    match msg {
        Some(Ok(Message::Binary(b))) => Some(Some(b.to_vec())),
        Some(Ok(Message::Text(t))) => Some(Some(t.as_bytes().to_vec())),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Some(None),
        Some(Ok(Message::Close(_)) | Err(_)) | None => None,
    }
}

/// The simulated machine's serial console: the boot log, then what is typed, echoed.
async fn simulated(mut ws: Socket, sim: SimulatedSerial, log: &str) {
    let log = format!("{} ", log.replace('\n', "\r\n"));
    if ws.send(Message::Binary(log.into_bytes().into())).await.is_err() {
        return;
    }
    while let Some(typed) = input(ws.next().await) {
        let Some(bytes) = typed else { continue };
        if ws.send(Message::Binary(sim.echo(&bytes).into())).await.is_err() {
            return;
        }
    }
}

async fn connect(path: &std::path::Path) -> std::io::Result<UnixStream> {
    tokio::time::timeout(DIAL_TIMEOUT, UnixStream::connect(path))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Bytes between a stream (the screen's RFB) and the session until either side closes.
async fn pipe(stream: impl AsyncRead + AsyncWrite, mut ws: Socket, closed: &'static str) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => return close(ws, 1000, closed).await,
                Ok(n) => {
                    if ws.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        return;
                    }
                }
            },
            msg = ws.next() => match input(msg) {
                Some(Some(bytes)) => {
                    if wr.write_all(&bytes).await.is_err() {
                        return close(ws, 1011, closed).await;
                    }
                }
                Some(None) => {}
                None => return,
            },
        }
    }
}

/// The last [`LOG_TAIL_BYTES`] of the serial log, from a line start when it had to cut.
async fn log_tail(endpoints: &ConsoleEndpoints) -> Vec<u8> {
    let Some(path) = &endpoints.serial_log else { return Vec::new() };
    let Ok(mut file) = tokio::fs::File::open(path).await else { return Vec::new() };
    let len = file.metadata().await.map_or(0, |m| m.len());
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    let mut buf = Vec::new();
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err()
        || (&mut file).take(len - start).read_to_end(&mut buf).await.is_err()
    {
        return Vec::new();
    }
    if start > 0
        && let Some(nl) = buf.iter().position(|b| *b == b'\n')
    {
        buf.drain(..=nl);
    }
    buf
}

impl Consoles {
    /// Joins the machine's serial connection, connecting when no session watches it yet.
    async fn join(
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
        tokio::spawn(pump(stream, input_rx, output.clone(), ended.clone()));
        let share = Arc::new(SerialShare { output, input, ended });
        shares.retain(|_, w| w.strong_count() > 0);
        shares.insert(instance_id.to_owned(), Arc::downgrade(&share));
        Ok((share, rx))
    }
}

/// Moves bytes between the machine's serial socket and its share until the machine closes it or
/// every session has left.
async fn pump(
    stream: UnixStream,
    mut input: mpsc::Receiver<Vec<u8>>,
    output: broadcast::Sender<SerialOut>,
    ended: Arc<AtomicBool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 16 * 1024];
    let reason = loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => break "the serial console closed (did the machine stop?)",
                Ok(n) => drop(output.send(SerialOut::Data(buf[..n].to_vec()))),
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

/// A real machine's serial console: the log so far (one frame), then the live stream.
async fn serial(consoles: &Consoles, instance_id: &str, endpoints: &ConsoleEndpoints, mut ws: Socket) {
    // Join before reading the log, so nothing printed in between is lost (it may show twice).
    let joined = match &endpoints.serial {
        Some(path) => match consoles.join(instance_id, path).await {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::warn!(instance_id, error = %e, "cannot reach the serial console");
                None
            }
        },
        None => None,
    };
    if ws.send(Message::Binary(log_tail(endpoints).await.into())).await.is_err() {
        return;
    }
    let Some((share, mut rx)) = joined else {
        return close(ws, 1011, "the serial console is not reachable; the log above is what it printed").await;
    };
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Ok(SerialOut::Data(b)) => {
                    if ws.send(Message::Binary(b.into())).await.is_err() {
                        return;
                    }
                }
                Ok(SerialOut::Closed(reason)) => return close(ws, 1011, reason).await,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let note = b"\r\n[openwinv: some output was skipped; this console fell behind]\r\n".to_vec();
                    if ws.send(Message::Binary(note.into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return close(ws, 1011, "the serial console closed").await,
            },
            msg = ws.next() => match input(msg) {
                Some(Some(bytes)) => {
                    if share.input.send(bytes).await.is_err() {
                        return close(ws, 1011, "the serial console closed").await;
                    }
                }
                Some(None) => {}
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dial_base;
    use serde_json::{Value, json};

    #[test]
    fn the_dial_back_goes_to_the_items_http_address_or_the_agents_own() {
        let own = "https://cp.example:8443";
        assert_eq!(dial_base(own, &Value::Null).as_deref(), Ok(own));
        assert_eq!(dial_base(own, &json!("http://10.0.0.6:8080/")).as_deref(), Ok("http://10.0.0.6:8080"));
        assert_eq!(dial_base(own, &json!("https://cp-2.internal:8443")).as_deref(), Ok("https://cp-2.internal:8443"));
        for bad in [
            json!("ftp://10.0.0.6:21"),
            json!("unix:/run/x.sock"),
            json!("file:///etc/passwd"),
            json!("10.0.0.6:8080"),
            json!("http://user:pw@10.0.0.6"),
            json!("http://10.0.0.6/?x=1"),
            json!(7),
        ] {
            let e = dial_base(own, &bad).unwrap_err();
            assert!(e.contains("connect"), "{bad}: {e}");
        }
    }
}
