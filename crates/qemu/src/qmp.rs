//! A small QMP client over a Unix socket (tokio).
//!
//! Why not the `qapi` crate: it generates typed bindings for one QEMU schema, a large build for
//! the dozen commands used here, and its types must match the installed QEMU. This client speaks
//! the wire protocol (one JSON object per line) with untyped arguments and results.
//!
//! One connection serves one caller at a time: `execute` sends a command with a fresh id and
//! reads until the matching reply, queueing the events that arrive meanwhile, so that a caller
//! waiting for `DEVICE_DELETED` or `SHUTDOWN` sees events that came in while it was still
//! issuing the command. QEMU's QMP socket accepts one client at a time; callers connect, do
//! their work and drop the connection.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

/// An asynchronous event from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `SHUTDOWN`, `RESET`, `DEVICE_DELETED`, …
    pub name: String,
    pub data: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to the QMP socket {path}: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("QEMU did not answer {what} within {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("the QMP connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("QEMU closed the QMP connection")]
    Closed,
    #[error("QEMU sent something that is not QMP: {0}")]
    Protocol(String),
    #[error("QEMU refused {command}: {desc} ({class})")]
    Command { command: String, class: String, desc: String },
}

impl QmpError {
    /// The error class QEMU gave, for a refused command.
    pub fn class(&self) -> Option<&str> {
        match self {
            QmpError::Command { class, .. } => Some(class),
            _ => None,
        }
    }
}

pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Bytes of a line not yet complete (kept across cancelled reads).
    pending: Vec<u8>,
    events: VecDeque<Event>,
    next_id: u64,
    /// How long a command may take to be answered.
    pub timeout: Duration,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation mode. `timeout` bounds
    /// the whole handshake and, afterwards, each command.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| QmpError::Timeout { what: "the connection".into(), secs: timeout.as_secs() })?
            .map_err(|source| QmpError::Connect { path: path.display().to_string(), source })?;
        let (r, w) = stream.into_split();
        let mut qmp = Qmp {
            reader: BufReader::new(r),
            writer: w,
            pending: Vec::new(),
            events: VecDeque::new(),
            next_id: 1,
            timeout,
        };
        let deadline = Instant::now() + timeout;
        let greeting = qmp.read_message(deadline, "the greeting").await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!("expected a greeting, got {greeting}")));
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Runs `command` and returns its `return` value.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        let deadline = Instant::now() + self.timeout;
        tokio::time::timeout_at(deadline, self.writer.write_all(line.as_bytes()))
            .await
            .map_err(|_| QmpError::Timeout { what: command.into(), secs: self.timeout.as_secs() })??;
        loop {
            let msg = self.read_message(deadline, command).await?;
            if msg.get("event").is_some() {
                self.queue_event(msg);
                continue;
            }
            if msg.get("id").and_then(Value::as_u64) != Some(id) {
                // A reply to a command an earlier, cancelled call sent: not ours.
                continue;
            }
            if let Some(ret) = msg.get("return") {
                return Ok(ret.clone());
            }
            let err = msg.get("error").cloned().unwrap_or(Value::Null);
            return Err(QmpError::Command {
                command: command.into(),
                class: err["class"].as_str().unwrap_or("GenericError").into(),
                desc: err["desc"].as_str().unwrap_or("no description").into(),
            });
        }
    }

    /// The next event, waiting up to `wait`; `None` when none came.
    pub async fn next_event(&mut self, wait: Duration) -> Result<Option<Event>, QmpError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        let deadline = Instant::now() + wait;
        loop {
            match self.read_message(deadline, "an event").await {
                Ok(msg) if msg.get("event").is_some() => {
                    self.queue_event(msg);
                    return Ok(self.events.pop_front());
                }
                Ok(_) => continue,
                Err(QmpError::Timeout { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits up to `wait` for an event that `wanted` accepts; other events are dropped.
    pub async fn wait_event(
        &mut self,
        wait: Duration,
        wanted: impl Fn(&Event) -> bool,
    ) -> Result<Option<Event>, QmpError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await? {
                Some(e) if wanted(&e) => return Ok(Some(e)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Drops the queued events (before starting something whose events matter).
    pub fn clear_events(&mut self) {
        self.events.clear();
    }

    /// `query-status`'s `status`: `running`, `paused`, `shutdown`, `prelaunch`, …
    pub async fn status(&mut self) -> Result<String, QmpError> {
        let v = self.execute("query-status", None).await?;
        v["status"].as_str().map(str::to_owned).ok_or_else(|| QmpError::Protocol(format!("query-status returned {v}")))
    }

    fn queue_event(&mut self, msg: Value) {
        let name = msg["event"].as_str().unwrap_or_default().to_owned();
        let data = msg.get("data").cloned().unwrap_or(Value::Null);
        tracing::debug!(event = %name, %data, "QMP event");
        self.events.push_back(Event { name, data });
    }

    async fn read_message(&mut self, deadline: Instant, what: &str) -> Result<Value, QmpError> {
        loop {
            let read = tokio::time::timeout_at(deadline, self.reader.read_until(b'\n', &mut self.pending)).await;
            let n = match read {
                Ok(r) => r?,
                Err(_) => {
                    let secs = self.timeout.as_secs();
                    return Err(QmpError::Timeout { what: what.into(), secs });
                }
            };
            if n == 0 {
                return Err(QmpError::Closed);
            }
            if self.pending.last() != Some(&b'\n') {
                continue;
            }
            let line = std::mem::take(&mut self.pending);
            let text = String::from_utf8_lossy(&line);
            if text.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(text.trim()).map_err(|e| QmpError::Protocol(format!("{e}: {text}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixListener;

    /// A fake QEMU: greets, then answers from a script of (expected command, reply lines).
    async fn fake(listener: UnixListener, script: Vec<(&'static str, Vec<String>)>) {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n").await.expect("greet");
        let mut buf = Vec::new();
        for (cmd, replies) in script {
            // Read one command line.
            loop {
                let mut byte = [0u8; 1];
                if s.read(&mut byte).await.expect("read") == 0 {
                    return;
                }
                if byte[0] == b'\n' {
                    break;
                }
                buf.push(byte[0]);
            }
            let msg: Value = serde_json::from_slice(&buf).expect("json");
            buf.clear();
            assert_eq!(msg["execute"], cmd);
            let id = msg["id"].clone();
            for r in replies {
                let r = r.replace("$ID", &id.to_string());
                s.write_all(format!("{r}\r\n").as_bytes()).await.expect("reply");
            }
        }
        // Keep the connection open until the client is done.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    }

    #[tokio::test]
    async fn handshake_commands_and_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let server = tokio::spawn(fake(
            listener,
            vec![
                ("qmp_capabilities", vec![r#"{"return": {}, "id": $ID}"#.into()]),
                (
                    "device_del",
                    vec![
                        r#"{"timestamp": {}, "event": "RESET", "data": {}}"#.into(),
                        r#"{"return": {}, "id": $ID}"#.into(),
                        r#"{"timestamp": {}, "event": "DEVICE_DELETED", "data": {"device": "dev-1"}}"#.into(),
                    ],
                ),
                ("query-status", vec![r#"{"return": {"status": "running", "running": true}, "id": $ID}"#.into()]),
                (
                    "blockdev-del",
                    vec![r#"{"error": {"class": "GenericError", "desc": "no such node"}, "id": $ID}"#.into()],
                ),
            ],
        ));
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).await.expect("connect");
        q.execute("device_del", Some(json!({"id": "dev-1"}))).await.expect("device_del");
        let ev = q
            .wait_event(Duration::from_secs(5), |e| e.name == "DEVICE_DELETED" && e.data["device"] == "dev-1")
            .await
            .expect("wait")
            .expect("event");
        assert_eq!(ev.data["device"], "dev-1");
        assert_eq!(q.status().await.expect("status"), "running");
        let err = q.execute("blockdev-del", None).await.expect_err("refused");
        assert_eq!(err.class(), Some("GenericError"));
        assert!(err.to_string().contains("no such node"), "{err}");
        assert!(q.next_event(Duration::from_millis(50)).await.expect("no error").is_none(), "timeout is no event");
        drop(q);
        server.await.expect("server");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let err = Qmp::connect(&path, Duration::from_millis(200)).await.err().expect("timeout");
        assert!(matches!(err, QmpError::Timeout { .. }), "{err}");
        drop(listener);
        let err =
            Qmp::connect(&dir.path().join("absent.sock"), Duration::from_millis(200)).await.err().expect("absent");
        assert!(matches!(err, QmpError::Connect { .. }), "{err}");
    }
}
