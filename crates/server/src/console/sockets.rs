//! The websockets: authorization, the screen's byte pipe, the serial log's tail.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use openwinv_driver::console::serial::{connect, pipe};
use openwinv_driver::{ConsoleAccess, ConsoleEndpoints};

use crate::AppState;
use crate::input::Path;

use super::serial::Browser;
use super::*;

/// A websocket route's channel, as a type, so that one handler serves both routes.
pub(super) trait ChannelRoute {
    const CHANNEL: Channel;
}

/// `GET /console/{token}/serial`: the serial console, raw bytes both ways as binary frames.
pub(super) struct Serial;

/// `GET /console/{token}/vnc`: the screen, RFB bytes both ways as binary frames (noVNC speaks RFB
/// over the websocket itself).
pub(super) struct Screen;

impl ChannelRoute for Serial {
    const CHANNEL: Channel = Channel::Serial;
}

impl ChannelRoute for Screen {
    const CHANNEL: Channel = Channel::Screen;
}

/// The handler of both websocket routes (`socket::<Serial>`, `socket::<Screen>`).
pub(super) async fn socket<C: ChannelRoute>(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<Hub>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    open_socket(state, hub, &token, &headers, ws, C::CHANNEL).await
}

/// Both sockets: the token and origin checked, a slot of `channel` taken for the instance, the
/// upgrade; then the channel's bytes, through the instance's host in hosts mode, else from this
/// process's console broker.
pub(super) async fn open_socket(
    state: AppState,
    hub: Arc<Hub>,
    token: &str,
    headers: &HeaderMap,
    ws: WebSocketUpgrade,
    channel: Channel,
) -> Response {
    let instance_id = match authorize(&state, &hub, token, headers).await {
        Ok(id) => id,
        Err(refusal) => return refusal,
    };
    let slot = hub.take_slot(&instance_id, channel);
    ws.max_message_size(MAX_MESSAGE_BYTES).on_upgrade(move |socket| async move {
        let Some(_slot) = slot else {
            let busy = match channel {
                Channel::Serial => "too many open consoles for this instance",
                Channel::Screen => "too many open screens for this instance",
            };
            return close(socket, 1013, busy).await;
        };
        match placed_on(&state, &instance_id).await {
            Where::Here => {}
            Where::Host(host) => return remote::proxy(&state, host, channel, socket).await,
            Where::Nowhere(why) => return close(socket, 1011, why).await,
        }
        let access = state.consoles.console(&instance_id).await;
        match channel {
            Channel::Serial => match access {
                Some(ConsoleAccess::Sockets(endpoints)) => serial_proxy(&hub, &instance_id, &endpoints, socket).await,
                Some(ConsoleAccess::Simulated(sim)) => simulated_serial(&state, sim, &instance_id, socket).await,
                None => close(socket, 1011, "the machine has no console now (is it running?)").await,
            },
            Channel::Screen => match access {
                Some(ConsoleAccess::Sockets(ConsoleEndpoints { vnc: Some(path), .. })) => match connect(&path).await {
                    Ok(stream) => pipe(stream, Browser(socket), "the screen closed").await,
                    Err(e) => {
                        tracing::warn!(instance_id, error = %e, "cannot reach the screen");
                        close(socket, 1011, "the screen is not reachable").await
                    }
                },
                Some(ConsoleAccess::Sockets(_) | ConsoleAccess::Simulated(_)) | None => {
                    close(socket, 1011, "this machine has no screen").await
                }
            },
        }
    })
}

/// Where an instance's consoles are.
pub(super) enum Where {
    /// On this process's driver (embedded mode).
    Here,
    /// On a host, reached through its agent ([`remote`]).
    Host(openwinv_store::hosts::InstanceHost),
    /// In hosts mode on no host (never placed, or its host was declared dead): the reason.
    Nowhere(&'static str),
}

pub(super) async fn placed_on(state: &AppState, instance_id: &str) -> Where {
    if state.config.placement != crate::config::Placement::Hosts {
        return Where::Here;
    }
    match state.store.host_of_instance(instance_id).await {
        Ok(Some(h)) => Where::Host(h),
        Ok(None) => Where::Nowhere("console unavailable: the instance is on no host"),
        Err(e) => {
            tracing::error!(instance_id, error = %e, "cannot read the instance's host");
            Where::Nowhere("console unavailable: the instance's host could not be read")
        }
    }
}

/// The instance a socket request may open, or the refusal: 403 for a missing, forged or expired
/// credential or for a page of another origin (cookies are not a defence against that alone).
pub(super) async fn authorize(
    state: &AppState,
    hub: &Hub,
    token: &str,
    headers: &HeaderMap,
) -> Result<String, Response> {
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
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else { return true };
    let Some(authority) = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, a)| a) else {
        return false;
    };
    ["x-forwarded-host", HOST.as_str()]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .any(|host| host.eq_ignore_ascii_case(authority))
}

pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(super) async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}
