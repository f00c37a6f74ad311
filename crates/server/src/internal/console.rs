//! `GET /internal/v1/hosts/console/{session}` [ext]: an agent dials back for a console session
//! its host was handed as a `console` work item (`crate::console::remote`). A websocket upgrade
//! with the host token; the agent's socket is then spliced to the browser's. Only the session's
//! own host may claim it, once.

use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use openwinv_store::hosts::HostIdentity;
use openwinv_wire::ErrorCode;

use crate::console::remote::{self, Refusal};
use crate::error::ApiError;
use crate::input::Path;

/// Largest frame an agent may send (a screen update, a burst of serial output).
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

#[utoipa::path(get, path = "/internal/v1/hosts/console/{session}", tag = "agent", security(("host_token" = [])),
    params(("session" = String, Path, description = "the session id of a `console` work item")),
    responses((status = 101, description = "websocket: the console's frames both ways"),
        (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope),
        (status = 403, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn claim_socket(
    Extension(host): Extension<HostIdentity>,
    Path(session): Path<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let refused = |r: Refusal| match r {
        Refusal::Unknown => ApiError::new(
            ErrorCode::NotFound,
            format!(
                "The console session `{session}` is not waiting in this control-plane process: it was claimed \
                 already, it expired (sessions are claimed within {} s), or another process made it.",
                remote::CLAIM_WITHIN.as_secs()
            ),
        )
        .into_response(),
        Refusal::OtherHost => ApiError::new(
            ErrorCode::CheckCredential,
            format!(
                "The console session `{session}` belongs to another host; the token of host `{}` claims only its own \
                 host's sessions.",
                host.name
            ),
        )
        .with_status(StatusCode::FORBIDDEN)
        .into_response(),
    };
    if let Err(r) = remote::check_claim(&session, &host.host_id) {
        tracing::warn!(host = %host.name, ?r, "console session refused");
        return refused(r);
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::param(format!(
                "A console session is claimed with a websocket upgrade (GET with `Upgrade: websocket`): {e}"
            ))
            .into_response();
        }
    };
    let host_id = host.host_id.clone();
    ws.max_message_size(MAX_MESSAGE_BYTES).on_upgrade(move |socket| async move {
        if let Err(r) = remote::claim(&session, &host_id, socket) {
            tracing::warn!(session, ?r, "console session gone before its socket opened");
        }
    })
}
