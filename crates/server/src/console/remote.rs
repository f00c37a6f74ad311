//! Consoles of instances placed on a host (hosts mode, `docs/hosts.md` "Consoles"): the browser
//! talks to this process only; the machine's console is on the host, whose agent makes outbound
//! calls only. So the console is a **session**: this process makes a random, single-use session
//! id, queues a `console` work item for the host (delivered by the agent's long poll of
//! `/internal/v1/hosts/work`, whichever control-plane process holds it), and waits
//! [`CLAIM_WITHIN`] for the agent to dial back `GET /internal/v1/hosts/console/{session}` (a
//! websocket, host token). The two websockets are then spliced, frame for frame; a close on either
//! side closes the other with the same code and reason.
//!
//! Sessions live in the memory of the process holding the browser's socket, so the item names
//! that process's own address (`connect`: `--internal-url`, or derived from the listen address)
//! and the agent dials it, whichever process it polls: several processes on one database each
//! serve their own consoles. A dial-back reaching another process anyway (a wrong internal URL,
//! no `connect` because a wildcard address named none) is answered 404 naming this; one that
//! reaches nothing fails at the agent; the browser then gets the claim timeout's error, never a
//! hang.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use openwinv_store::host_work::{NewWork, WorkOutcome};
use openwinv_store::hosts::{DEAD, InstanceHost};
use rand::Rng;
use serde_json::json;
use tokio::sync::oneshot;

use crate::AppState;

use super::*;

/// How long the host's agent has to claim a session before the browser is told the console is
/// unavailable. The agent's long poll hears of it at once in this process, within a second
/// through another one.
pub const CLAIM_WITHIN: Duration = Duration::from_secs(5);

/// A session waiting for its agent: the host that may claim it and where its socket goes.
struct Pending {
    host_id: String,
    socket: oneshot::Sender<WebSocket>,
}

static SESSIONS: LazyLock<Mutex<HashMap<String, Pending>>> = LazyLock::new(Default::default);

fn sessions() -> std::sync::MutexGuard<'static, HashMap<String, Pending>> {
    SESSIONS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a dial-back was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such session here: expired, claimed already, or made by another process.
    Unknown,
    /// The session is another host's.
    OtherHost,
}

/// Where an agent's claimed socket goes. Checking and taking are apart, so that a dial-back
/// that fails its upgrade does not spend the session.
pub fn check_claim(session: &str, host_id: &str) -> Result<(), Refusal> {
    match sessions().get(session) {
        None => Err(Refusal::Unknown),
        Some(p) if p.host_id != host_id => Err(Refusal::OtherHost),
        Some(_) => Ok(()),
    }
}

/// Takes the session (single use) and hands the agent's socket to the browser's side.
pub fn claim(session: &str, host_id: &str, socket: WebSocket) -> Result<(), Refusal> {
    let pending = {
        let mut map = sessions();
        match map.get(session) {
            None => return Err(Refusal::Unknown),
            Some(p) if p.host_id != host_id => return Err(Refusal::OtherHost),
            Some(_) => map.remove(session).ok_or(Refusal::Unknown)?,
        }
    };
    // The browser's side gave up in between (timeout): the agent's socket is dropped, closing it.
    pending.socket.send(socket).map_err(|_| Refusal::Unknown)
}

/// A close frame's reason holds at most 123 bytes: a long host name is cut, not the frame lost.
fn clip(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

fn host_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Channel {
    fn wire(self) -> &'static str {
        match self {
            Channel::Serial => "serial",
            Channel::Screen => "vnc",
        }
    }
}

/// The console of an instance placed on `host`: a session for its agent, then the splice.
pub(super) async fn proxy(state: &AppState, host: InstanceHost, channel: Channel, browser: WebSocket) {
    let instance_id = host.instance_id.clone();
    let now = state.clock.unix();
    if host.host_state == DEAD {
        let why = format!("console unavailable: the host {} was declared dead", host.host_name);
        return close(browser, 1011, clip(&why)).await;
    }
    if !host.alive(now) {
        let silent = host
            .last_heartbeat_at
            .map_or_else(|| "never registered".to_owned(), |t| format!("no heartbeat for {} s", now - t));
        let why = format!("console unavailable: the host {} is unreachable ({silent})", host.host_name);
        return close(browser, 1011, clip(&why)).await;
    }
    let session: String = {
        let mut rng = rand::thread_rng();
        (0..32).map(|_| format!("{:02x}", rng.r#gen::<u8>())).collect()
    };
    // What a simulated host's console prints: the same boot log as the embedded simulator's,
    // from what this store records (the agent has no store). A QEMU host ignores it.
    let sim_log = match state.store.instance_by_id(&instance_id).await {
        Ok(Some(r)) => openwinv_driver::SimulatedSerial.log(&machine_facts(state, &r).await),
        _ => String::new(),
    };
    let (tx, rx) = oneshot::channel();
    sessions().insert(session.clone(), Pending { host_id: host.host_id.clone(), socket: tx });
    let key = format!("console/{session}");
    let mut payload = json!({ "session": session, "channel": channel.wire(), "sim_log": sim_log });
    if let Some(url) = &state.config.internal_url {
        payload["connect"] = json!(url);
    }
    let payload = payload.to_string();
    let queued = state
        .store
        .queue_work(&NewWork {
            work_key: &key,
            host_id: &host.host_id,
            instance_id: Some(&instance_id),
            call: "console",
            payload: &payload,
            now_ms: host_ms(),
        })
        .await;
    if let Err(e) = queued {
        sessions().remove(&session);
        tracing::error!(instance_id, error = %e, "cannot queue a console session");
        return close(browser, 1011, "console unavailable: the session could not be queued").await;
    }
    crate::remote_driver::work_queued(&host.host_id);
    tracing::info!(instance_id, host = %host.host_name, channel = channel.wire(), "console session for the host's agent");
    let claimed = tokio::time::timeout(CLAIM_WITHIN, rx).await;
    // Claimed or not, the item is answered here, so that an agent coming back later is not
    // handed a session that is over (`recorded` false when the agent answered first).
    let done = match &claimed {
        Ok(Ok(_)) => WorkOutcome::Ok(json!({ "claimed": true }).to_string()),
        _ => WorkOutcome::Permanent(format!("not claimed within {} s", CLAIM_WITHIN.as_secs())),
    };
    let _ = state.store.complete_work(&host.host_id, &key, &done, host_ms()).await;
    let agent = match claimed {
        Ok(Ok(agent)) => agent,
        _ => {
            sessions().remove(&session);
            tracing::warn!(instance_id, host = %host.host_name, "console session not claimed in time");
            let why = format!(
                "console unavailable: the host {}'s agent did not connect within {} s (host unreachable or timed out)",
                host.host_name,
                CLAIM_WITHIN.as_secs()
            );
            return close(browser, 1011, clip(&why)).await;
        }
    };
    splice(browser, agent).await;
}

/// Frames both ways until either side closes; its close (code and reason) is passed on.
async fn splice(mut browser: WebSocket, mut agent: WebSocket) {
    loop {
        tokio::select! {
            msg = browser.recv() => match msg {
                Some(Ok(Message::Close(frame))) => return drop(agent.send(Message::Close(frame)).await),
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    if agent.send(m).await.is_err() {
                        return close(browser, 1011, "the host's agent went away").await;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(_)) | None => return close(agent, 1000, "the browser left").await,
            },
            msg = agent.recv() => match msg {
                Some(Ok(Message::Close(frame))) => return drop(browser.send(Message::Close(frame)).await),
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    if browser.send(m).await.is_err() {
                        return close(agent, 1000, "the browser left").await;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(_)) | None => {
                    let frame = CloseFrame { code: 1011, reason: "the host's agent went away".into() };
                    return drop(browser.send(Message::Close(Some(frame))).await);
                }
            },
        }
    }
}
