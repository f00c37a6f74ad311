//! The serial console: one shared connection per machine, and the simulated machine's console.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket};
use openwinv_driver::{ConsoleEndpoints, MachineFacts, SimulatedSerial};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc};

use crate::AppState;

use super::*;

#[derive(Debug, Clone)]
pub(super) enum SerialOut {
    Data(Bytes),
    Closed(&'static str),
}

/// One connection to a machine's serial socket and the browser sockets watching it: output goes
/// to all of them, input from any of them goes to the machine. It lives while a browser socket
/// holds it; the last one leaving closes the connection.
pub(super) struct SerialShare {
    output: broadcast::Sender<SerialOut>,
    input: mpsc::Sender<Bytes>,
    /// Set when the machine's side closed; the next browser socket connects anew.
    ended: Arc<AtomicBool>,
}

impl Hub {
    /// Joins the machine's serial connection, connecting when nobody is watching it yet.
    async fn join_serial(
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
        tokio::spawn(pump_serial(stream, input_rx, output.clone(), ended.clone()));
        let share = Arc::new(SerialShare { output, input, ended });
        shares.retain(|_, w| w.strong_count() > 0);
        shares.insert(instance_id.to_owned(), Arc::downgrade(&share));
        Ok((share, rx))
    }
}

/// Moves bytes between the machine's serial socket and the share until the machine closes it or
/// every browser socket has left.
pub(super) async fn pump_serial(
    stream: UnixStream,
    mut input: mpsc::Receiver<Bytes>,
    output: broadcast::Sender<SerialOut>,
    ended: Arc<AtomicBool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 16 * 1024];
    let reason = loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => break "the serial console closed (did the machine stop?)",
                // No receiver is fine: output nobody watches is in the serial log anyway.
                Ok(n) => drop(output.send(SerialOut::Data(Bytes::copy_from_slice(&buf[..n])))),
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

/// A browser socket on a machine's serial console: first the log so far (one frame), then the
/// live stream.
pub(super) async fn serial_proxy(hub: &Hub, instance_id: &str, endpoints: &ConsoleEndpoints, mut socket: WebSocket) {
    // Join before reading the log, so nothing printed in between is lost (it may show twice).
    let joined = match &endpoints.serial {
        Some(path) => match hub.join_serial(instance_id, path).await {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::warn!(instance_id, error = %e, "cannot reach the serial console");
                None
            }
        },
        None => None,
    };
    // The first frame is always the history, empty or not: the page answers no terminal queries
    // (cursor position and the like) found in it, since the program that asked is long gone.
    let history = log_tail(endpoints).await.unwrap_or_default();
    if socket.send(Message::Binary(history.into())).await.is_err() {
        return;
    }
    let Some((share, mut rx)) = joined else {
        return close(socket, 1011, "the serial console is not reachable; the log above is what it printed").await;
    };
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Ok(SerialOut::Data(b)) => {
                    if socket.send(Message::Binary(b)).await.is_err() {
                        return;
                    }
                }
                Ok(SerialOut::Closed(reason)) => return close(socket, 1011, reason).await,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let note = Bytes::from_static(b"\r\n[openwinv: some output was skipped; this browser fell behind]\r\n");
                    if socket.send(Message::Binary(note)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return close(socket, 1011, "the serial console closed").await;
                }
            },
            msg = socket.recv() => {
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(t))) => Bytes::copy_from_slice(t.as_bytes()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                if share.input.send(bytes).await.is_err() {
                    return close(socket, 1011, "the serial console closed").await;
                }
            }
        }
    }
}

/// The simulated machine's serial console: its boot log (the history frame), then what is typed,
/// echoed.
pub(super) async fn simulated_serial(state: &AppState, sim: SimulatedSerial, instance_id: &str, mut socket: WebSocket) {
    let Ok(Some(r)) = state.store.instance_by_id(instance_id).await else {
        return close(socket, 1011, "the instance is gone").await;
    };
    let log = format!("{} ", sim.log(&machine_facts(state, &r).await).replace('\n', "\r\n"));
    if socket.send(Message::Binary(log.into())).await.is_err() {
        return;
    }
    while let Some(Ok(msg)) = socket.recv().await {
        let input = match msg {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if socket.send(Message::Binary(sim.echo(&input).into())).await.is_err() {
            return;
        }
    }
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
