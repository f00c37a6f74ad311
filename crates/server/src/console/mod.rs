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
use std::sync::{Arc, Mutex, OnceLock};

use axum::routing::get;
use axum::{Extension, Router};

use crate::AppState;
use crate::config::Config;

mod credentials;
mod page;
pub mod remote;
mod serial;
mod sockets;
#[cfg(test)]
mod tests;

pub use credentials::{credential_key, mint_credential, verify_credential};
pub use page::*;
use serial::*;
use sockets::*;

/// Websockets one server process keeps open per instance and channel (serial, screen): a few
/// browser tabs, not an unbounded number of proxied connections.
pub const MAX_SOCKETS_PER_INSTANCE: usize = 4;
/// Largest websocket message accepted from the browser (a paste into the terminal, a clipboard).
pub(super) const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
pub(super) const COOKIE_NAME: &str = "openwinv_console";
pub(super) const NOT_FOUND_PAGE: &str =
    "<!doctype html><title>Console</title><p>This console link is unknown, expired or already used.</p>";

/// The console's routes: the page, its two websockets and its assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/{token}", get(open_page))
        .route("/console/{token}/serial", get(socket::<Serial>))
        .route("/console/{token}/vnc", get(socket::<Screen>))
        .route("/console-assets/{version}/{*path}", get(crate::assets::serve_console))
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
    serial: openwinv_driver::SerialHub,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Channel {
    Serial,
    Screen,
}

/// One counted websocket; dropping it frees the place.
pub(super) struct Slot {
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
