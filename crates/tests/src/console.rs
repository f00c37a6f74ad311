//! The browser console's websockets, opened the way the console page opens them: a one-time link
//! from the API, the page (which spends the link and sets the sockets' credential cookie), then
//! `/console/{token}/serial` or `/vnc` with that cookie and the page's origin.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::Server;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a console socket gave before it ended.
#[derive(Debug)]
pub struct Read {
    pub bytes: Vec<u8>,
    /// The close frame's code and reason, when it closed.
    pub closed: Option<(u16, String)>,
}

impl Read {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Opens the instance's console `channel` (`serial` or `vnc`) as the browser does.
pub async fn open(s: &Server, instance_id: &str, channel: &str) -> Ws {
    let r = s.get(&format!("/v1/instances/{instance_id}/remote-console")).await;
    let link = r.ok_rows()[0]["link"].as_str().expect("a console link").to_owned();
    let page = reqwest::get(&link).await.expect("the console page");
    assert_eq!(page.status(), 200, "the console page of {instance_id}");
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("openwinv_console="))
        .and_then(|v| v.split(';').next())
        .expect("the page sets the console credential")
        .to_owned();
    let url = format!("{}/{channel}", link.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().expect("a websocket request");
    req.headers_mut().insert("cookie", HeaderValue::from_str(&cookie).unwrap());
    req.headers_mut().insert("origin", HeaderValue::from_str(&s.endpoint).unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap_or_else(|e| panic!("the {channel} socket: {e}"));
    ws
}

/// Reads frames until the bytes read contain `needle`, the socket closes, or `within` passes
/// (a bound so that a test never hangs, not a timing assertion).
pub async fn read_until(ws: &mut Ws, needle: &[u8], within: Duration) -> Read {
    let mut read = Read { bytes: Vec::new(), closed: None };
    let _ = tokio::time::timeout(within, async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Binary(b)) => read.bytes.extend_from_slice(&b),
                Ok(Message::Text(t)) => read.bytes.extend_from_slice(t.as_bytes()),
                Ok(Message::Close(frame)) => {
                    read.closed = Some(frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.to_string())));
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
            if !needle.is_empty() && read.bytes.windows(needle.len()).any(|w| w == needle) {
                return;
            }
        }
    })
    .await;
    read
}

/// Reads until the socket closes (or `within` passes): everything it sent and its close.
pub async fn read_to_close(ws: &mut Ws, within: Duration) -> Read {
    read_until(ws, b"", within).await
}

/// Sends bytes as the browser's terminal does (a binary frame).
pub async fn send(ws: &mut Ws, bytes: &[u8]) {
    ws.send(Message::Binary(bytes.to_vec().into())).await.expect("send on the console socket");
}
