//! The serial console: one shared connection per machine (the driver crate's
//! [`SerialHub`](openwinv_driver::SerialHub), which the agent's console sessions run too), and the
//! simulated machine's console.

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket};
use openwinv_driver::{ConsoleEndpoints, ConsoleSocket, MachineFacts, SimulatedSerial};

use crate::AppState;

use super::*;

/// A browser's websocket as the viewer of a console session.
pub(super) struct Browser(pub(super) WebSocket);

#[async_trait::async_trait]
impl ConsoleSocket for Browser {
    async fn send(&mut self, bytes: Bytes) -> bool {
        self.0.send(Message::Binary(bytes)).await.is_ok()
    }

    async fn recv(&mut self) -> Option<Option<Bytes>> {
        match self.0.recv().await {
            Some(Ok(Message::Binary(b))) => Some(Some(b)),
            Some(Ok(Message::Text(t))) => Some(Some(Bytes::copy_from_slice(t.as_bytes()))),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Some(None),
            Some(Ok(Message::Close(_)) | Err(_)) | None => None,
        }
    }

    async fn close(self, code: u16, reason: &str) {
        close(self.0, code, reason).await
    }
}

/// A browser socket on a machine's serial console: first the log so far (one frame), then the
/// live stream.
pub(super) async fn serial_proxy(hub: &Hub, instance_id: &str, endpoints: &ConsoleEndpoints, socket: WebSocket) {
    hub.serial.session(instance_id, endpoints, Browser(socket), "browser").await
}

/// The simulated machine's serial console: its boot log (the history frame), then what is typed,
/// echoed.
pub(super) async fn simulated_serial(state: &AppState, sim: SimulatedSerial, instance_id: &str, socket: WebSocket) {
    let Ok(Some(r)) = state.store.instance_by_id(instance_id).await else {
        return close(socket, 1011, "the instance is gone").await;
    };
    sim.play(Browser(socket), &sim.log(&machine_facts(state, &r).await)).await
}

/// What the store records of an instance, as a simulated serial console prints it: the image's
/// name, the SSH keys, the user script's name, the private address and the compiled firewall.
pub(super) async fn machine_facts(state: &AppState, r: &openwinv_store::InstanceRecord) -> MachineFacts {
    let catalog = state.catalog.get();
    let image = catalog.images.iter().find(|i| i.id == r.image_id).map_or(r.image_id.as_str(), |i| i.name.as_str());
    let ssh_keys = r.ssh_keys.iter().map(|k| (k.fingerprint.clone(), k.name.clone())).collect();
    let user_script = match &r.user_script_id {
        None => None,
        Some(id) => {
            Some(state.store.script(&r.account_id, id).await.ok().flatten().map_or_else(|| id.clone(), |s| s.name))
        }
    };
    MachineFacts {
        instance_id: r.instance_id.to_string(),
        hostname: r.name.clone(),
        image: image.to_owned(),
        flavor_id: r.flavor_id.clone(),
        ssh_keys,
        user_script,
        private_ip: r.private_ip.clone(),
        firewall: crate::sagas::firewall::compiled_text_for(&state.store, &r.instance_id).await,
    }
}
