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
//! first frame of each session is the tail of the machine's serial log, then the live stream. That
//! sharing, the screen's pipe and the simulated console are the driver crate's
//! ([`openwinv_driver::console::serial`]), the same code the control plane's browser console runs.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use openwinv_driver::console::serial::{ConsoleSocket, SerialHub, connect, pipe};
use openwinv_driver::{ConsoleAccess, ConsoleBroker, ConsoleEndpoints};
use openwinv_wire::hosts::{WorkAck, WorkItem, WorkResult};
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::control::{Control, error_chain};

/// How long the dial-back (connect, upgrade) may take, and the close handshake at the end.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// One session: dial back, answer the item, splice.
pub(crate) async fn serve(
    control: Arc<Control>,
    broker: Arc<dyn ConsoleBroker>,
    consoles: Arc<SerialHub>,
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
            sim.play(ws, log).await
        }
        ("serial", Some(ConsoleAccess::Sockets(e))) => consoles.session(&instance_id, &e, ws, "console").await,
        ("vnc", Some(ConsoleAccess::Sockets(ConsoleEndpoints { vnc: Some(path), .. }))) => match connect(&path).await {
            Ok(stream) => pipe(stream, ws, "the screen closed").await,
            Err(e) => {
                tracing::warn!(instance_id, error = %e, "cannot reach the screen");
                ws.close(1011, "the screen is not reachable").await
            }
        },
        ("vnc", Some(_)) => ws.close(1011, "this machine has no screen").await,
        _ => ws.close(1011, "the machine has no console now (is it running?)").await,
    }
    tracing::info!(instance_id, channel, "console session closed");
}

/// The control plane's end of a session: a websocket over the agent's own HTTP connection.
struct Socket(WebSocketStream<reqwest::Upgraded>);

#[async_trait::async_trait]
impl ConsoleSocket for Socket {
    async fn send(&mut self, bytes: Bytes) -> bool {
        self.0.send(Message::Binary(bytes)).await.is_ok()
    }

    async fn recv(&mut self) -> Option<Option<Bytes>> {
        match self.0.next().await {
            Some(Ok(Message::Binary(b))) => Some(Some(b)),
            Some(Ok(Message::Text(t))) => Some(Some(Bytes::copy_from_slice(t.as_bytes()))),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Some(None),
            Some(Ok(Message::Close(_)) | Err(_)) | None => None,
        }
    }

    async fn close(mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
        let _ = self.0.send(Message::Close(Some(frame))).await;
        // Let the close handshake finish, so the control plane reads the frame before the end.
        let _ = tokio::time::timeout(DIAL_TIMEOUT, async { while let Some(Ok(_)) = self.0.next().await {} }).await;
    }
}

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
    Ok(Socket(WebSocketStream::from_raw_socket(upgraded, Role::Client, Some(config)).await))
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
