//! The files the agent keeps in its data directory: records replaced whole (a temporary renamed
//! over them) and append-only JSON-lines logs (`work/runs.jsonl`, `images/events.jsonl`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader (or a restart
/// after a crash) sees the whole file or none.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// A JSON-lines log: one object a line, `{"event": …}` first.
pub(crate) struct EventLog {
    path: PathBuf,
    /// What the log is, for the warning when it cannot be written.
    what: &'static str,
    lock: std::sync::Mutex<()>,
}

impl EventLog {
    pub(crate) fn new(path: PathBuf, what: &'static str) -> EventLog {
        EventLog { path, what, lock: Default::default() }
    }

    /// Appends `{"event": event, …fields, …extra}` (`fields` and `extra` are objects).
    pub(crate) fn append(&self, event: &str, fields: Value, extra: Value) {
        let mut line = json!({ "event": event });
        if let Some(o) = line.as_object_mut() {
            for part in [fields, extra] {
                if let Value::Object(p) = part {
                    o.extend(p);
                }
            }
        }
        // Writers run concurrently: one whole line per write, one writer at a time.
        let line = format!("{line}\n");
        let _one = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot append to {}", self.what);
        }
    }
}
