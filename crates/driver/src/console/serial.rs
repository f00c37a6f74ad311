//! A machine's consoles as their viewers reach them, for both places that proxy them: the control
//! plane's browser console (embedded mode) and the agent's console sessions (hosts mode).
//!
//! A QEMU serial socket serves one client at a time, and every viewer should see the same stream,
//! so a [`SerialHub`] keeps one connection per machine and shares it between the viewers'
//! sessions: each session's first frame is the tail of the machine's serial log, then the live
//! stream; what any viewer types goes to the machine. The connection closes when the last viewer
//! leaves, and a viewer that joins after the machine closed its side connects anew.
//!
//! A viewer is whatever carries binary frames both ways ([`ConsoleSocket`]): the server's axum
//! websocket, the agent's dialled-back tungstenite one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc};

use super::{ConsoleEndpoints, SimulatedSerial};

/// How long connecting to a machine's console socket may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of the serial log a session replays first: enough for a boot, not the whole history.
pub const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// Serial output chunks a slow viewer may fall behind before it skips some.
pub const SERIAL_BACKLOG: usize = 1024;

/// A viewer's end of a console session: binary frames out, typed bytes in.
#[async_trait::async_trait]
pub trait ConsoleSocket: Send + Sized {
    /// Sends one binary frame; `false` once the viewer is gone.
    async fn send(&mut self, bytes: Bytes) -> bool;
    /// What the viewer sent next: `Some(Some(bytes))` typed bytes, `Some(None)` a frame that
    /// carries none (ping, pong), `None` at the end of the session.
    async fn recv(&mut self) -> Option<Option<Bytes>>;
    /// Ends the session with a websocket close code and reason.
    async fn close(self, code: u16, reason: &str);
}

/// Connects to a machine's console socket, giving up after [`CONNECT_TIMEOUT`].
pub async fn connect(path: &Path) -> std::io::Result<UnixStream> {
    tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(path))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// The last [`LOG_TAIL_BYTES`] of the serial log, from a line start when it had to cut; `None`
/// when there is no log to read.
pub async fn log_tail(endpoints: &ConsoleEndpoints) -> Option<Vec<u8>> {
    let mut file = tokio::fs::File::open(endpoints.serial_log.as_ref()?).await.ok()?;
    let len = file.metadata().await.ok()?.len();
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    file.seek(std::io::SeekFrom::Start(start)).await.ok()?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    // The log may grow while it is read; what comes after `len` arrives live.
    file.take(len - start).read_to_end(&mut buf).await.ok()?;
    if start > 0
        && let Some(nl) = buf.iter().position(|b| *b == b'\n')
    {
        buf.drain(..=nl);
    }
    Some(buf)
}

/// Bytes between a stream (the screen's RFB) and a viewer until either side closes; `closed` is
/// the reason the viewer is given when the stream ends.
pub async fn pipe(stream: impl AsyncRead + AsyncWrite, mut socket: impl ConsoleSocket, closed: &'static str) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => return socket.close(1000, closed).await,
                Ok(n) => {
                    if !socket.send(Bytes::copy_from_slice(&buf[..n])).await {
                        return;
                    }
                }
            },
            msg = socket.recv() => match msg {
                Some(Some(bytes)) => {
                    if wr.write_all(&bytes).await.is_err() {
                        return socket.close(1011, closed).await;
                    }
                }
                Some(None) => {}
                None => return,
            },
        }
    }
}

impl SimulatedSerial {
    /// Plays the simulated machine's serial console to a viewer: `log` (the boot log the control
    /// plane rendered, [`SimulatedSerial::log`]) as the first frame, then what is typed, echoed.
    pub async fn play(&self, mut socket: impl ConsoleSocket, log: &str) {
        let log = format!("{} ", log.replace('\n', "\r\n"));
        if !socket.send(Bytes::from(log)).await {
            return;
        }
        while let Some(typed) = socket.recv().await {
            let Some(bytes) = typed else { continue };
            if !socket.send(Bytes::from(self.echo(&bytes))).await {
                return;
            }
        }
    }
}

#[derive(Debug, Clone)]
enum SerialOut {
    Data(Bytes),
    Closed(&'static str),
}

/// One connection to a machine's serial socket and the sessions watching it: output goes to all
/// of them, input from any of them goes to the machine. It lives while a session holds it.
struct SerialShare {
    output: broadcast::Sender<SerialOut>,
    input: mpsc::Sender<Bytes>,
    /// Set when the machine's side closed; the next session connects anew.
    ended: Arc<AtomicBool>,
}

/// The machines' shared serial connections, one per machine.
#[derive(Default)]
pub struct SerialHub {
    shares: tokio::sync::Mutex<HashMap<String, Weak<SerialShare>>>,
}

impl SerialHub {
    /// A viewer's session on the machine's serial console: first the log so far (one frame,
    /// empty or not), then the live stream, until either side closes. `viewer` names the viewer
    /// in the note shown when it fell behind ("browser", "console").
    pub async fn session(
        &self,
        instance_id: &str,
        endpoints: &ConsoleEndpoints,
        mut socket: impl ConsoleSocket,
        viewer: &str,
    ) {
        // Join before reading the log, so nothing printed in between is lost (it may show twice).
        let joined = match &endpoints.serial {
            Some(path) => match self.join(instance_id, path).await {
                Ok(j) => Some(j),
                Err(e) => {
                    tracing::warn!(instance_id, error = %e, "cannot reach the serial console");
                    None
                }
            },
            None => None,
        };
        // The first frame is always the history: a page answers no terminal queries (cursor
        // position and the like) found in it, since the program that asked is long gone.
        let history = log_tail(endpoints).await.unwrap_or_default();
        if !socket.send(Bytes::from(history)).await {
            return;
        }
        let Some((share, mut rx)) = joined else {
            return socket.close(1011, "the serial console is not reachable; the log above is what it printed").await;
        };
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Ok(SerialOut::Data(b)) => {
                        if !socket.send(b).await {
                            return;
                        }
                    }
                    Ok(SerialOut::Closed(reason)) => return socket.close(1011, reason).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let note = format!("\r\n[openwinv: some output was skipped; this {viewer} fell behind]\r\n");
                        if !socket.send(Bytes::from(note)).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return socket.close(1011, "the serial console closed").await;
                    }
                },
                msg = socket.recv() => match msg {
                    Some(Some(bytes)) => {
                        if share.input.send(bytes).await.is_err() {
                            return socket.close(1011, "the serial console closed").await;
                        }
                    }
                    Some(None) => {}
                    None => return,
                },
            }
        }
    }

    /// Joins the machine's serial connection, connecting when no session watches it yet.
    async fn join(
        &self,
        instance_id: &str,
        path: &Path,
    ) -> std::io::Result<(Arc<SerialShare>, broadcast::Receiver<SerialOut>)> {
        let mut shares = self.shares.lock().await;
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::net::UnixListener;

    use super::*;

    /// A viewer played by the test: frames it was sent arrive on `out`, what it types is sent on
    /// the sender `recv` reads from.
    struct Viewer {
        out: mpsc::UnboundedSender<Bytes>,
        typed: mpsc::UnboundedReceiver<Bytes>,
    }

    #[async_trait::async_trait]
    impl ConsoleSocket for Viewer {
        async fn send(&mut self, bytes: Bytes) -> bool {
            self.out.send(bytes).is_ok()
        }
        async fn recv(&mut self) -> Option<Option<Bytes>> {
            self.typed.recv().await.map(Some)
        }
        async fn close(self, _: u16, _: &str) {}
    }

    fn viewer() -> (Viewer, mpsc::UnboundedReceiver<Bytes>, mpsc::UnboundedSender<Bytes>) {
        let (out, seen) = mpsc::unbounded_channel();
        let (typing, typed) = mpsc::unbounded_channel();
        (Viewer { out, typed }, seen, typing)
    }

    /// The next frame a viewer was sent (failing, not hanging, when none comes).
    async fn next(seen: &mut mpsc::UnboundedReceiver<Bytes>) -> Bytes {
        tokio::time::timeout(Duration::from_secs(30), seen.recv()).await.expect("a frame").expect("the session is open")
    }

    #[tokio::test]
    async fn two_viewers_share_one_connection_see_the_log_first_and_both_see_the_answer_to_either() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("serial.log"), "booted\nlogin: ").unwrap();
        let listener = UnixListener::bind(dir.path().join("serial.sock")).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        // The machine: answers each chunk typed with `got:` and the chunk.
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        let answer = [b"got:", &buf[..n]].concat();
                        if stream.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let endpoints = ConsoleEndpoints {
            serial: Some(dir.path().join("serial.sock")),
            serial_log: Some(dir.path().join("serial.log")),
            vnc: None,
        };
        let hub = Arc::new(SerialHub::default());
        let (a, mut seen_a, typing_a) = viewer();
        let (b, mut seen_b, typing_b) = viewer();
        for v in [a, b] {
            let (hub, endpoints) = (hub.clone(), endpoints.clone());
            tokio::spawn(async move { hub.session("INSTANCE-1", &endpoints, v, "viewer").await });
        }
        assert_eq!(&next(&mut seen_a).await[..], b"booted\nlogin: ");
        assert_eq!(&next(&mut seen_b).await[..], b"booted\nlogin: ");
        typing_b.send(Bytes::from_static(b"ls\r")).unwrap();
        assert_eq!(&next(&mut seen_a).await[..], b"got:ls\r");
        assert_eq!(&next(&mut seen_b).await[..], b"got:ls\r");
        typing_a.send(Bytes::from_static(b"pwd\r")).unwrap();
        assert_eq!(&next(&mut seen_b).await[..], b"got:pwd\r");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection to the serial socket");
    }
}
