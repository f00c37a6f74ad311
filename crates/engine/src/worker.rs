//! Who this process's workers are, and who they were before a crash.
//!
//! Workers claim operations under an owner id (the lease). A process killed mid-step leaves its
//! leases behind; any process on the database may take them over once they expire (the lease
//! time, host clock), because it cannot tell a dead owner from a slow one. A process can tell its
//! own previous run, though: the owner id of each run is recorded in the data directory
//! (`worker-id`), and the next run starting on that directory releases that owner's leases at
//! once, before its workers claim anything. The file is locked while the process runs, so a
//! second live process on the same directory never releases the leases of the first: it runs
//! under an id of its own and recovers nothing early.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The file in the data directory holding the owner id of the run that holds its lock.
pub const WORKER_ID_FILE: &str = "worker-id";

/// This run's owner id and, when known, the previous run's.
#[derive(Debug)]
pub struct WorkerIdentity {
    /// The lease owner of this run's workers.
    pub owner: String,
    /// The owner id of the run that used this data directory before (dead: we hold the lock).
    pub previous: Option<String>,
    /// The locked `worker-id` file, where this run's id is written once the previous run's
    /// leases are released.
    file: Option<File>,
}

impl WorkerIdentity {
    /// A fresh id with no past: nothing to recover early.
    pub fn ephemeral() -> WorkerIdentity {
        WorkerIdentity { owner: openwinv_store::ids::new_id("WORKER"), previous: None, file: None }
    }

    /// The identity of a process whose data directory is `dir`: locks `dir/worker-id` and reads
    /// the previous run's owner from it. When another live process holds the lock, a fresh id.
    pub fn in_data_dir(dir: &Path) -> std::io::Result<WorkerIdentity> {
        let path = dir.join(WORKER_ID_FILE);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                tracing::warn!(file = %path.display(), "another live process uses this data directory: \
                    its leases are not recovered early");
                return Ok(WorkerIdentity::ephemeral());
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let previous = Some(text.trim().to_owned()).filter(|id| !id.is_empty());
        Ok(WorkerIdentity { owner: openwinv_store::ids::new_id("WORKER"), previous, file: Some(file) })
    }

    /// Records this run's owner id as the one the next run recovers from.
    pub fn record(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(format!("{}\n", self.owner).as_bytes())?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_learns_the_previous_runs_id_and_a_concurrent_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = WorkerIdentity::in_data_dir(dir.path()).unwrap();
        assert_eq!(first.previous, None);
        first.record().unwrap();
        // A second live process on the same directory: a fresh id, no past.
        let concurrent = WorkerIdentity::in_data_dir(dir.path()).unwrap();
        assert_eq!(concurrent.previous, None);
        assert_ne!(concurrent.owner, first.owner);
        let first_owner = first.owner.clone();
        drop(first);
        // The next run (the first one ended) learns who it was.
        let mut second = WorkerIdentity::in_data_dir(dir.path()).unwrap();
        assert_eq!(second.previous.as_deref(), Some(first_owner.as_str()));
        second.record().unwrap();
        let second_owner = second.owner.clone();
        drop(second);
        let third = WorkerIdentity::in_data_dir(dir.path()).unwrap();
        assert_eq!(third.previous, Some(second_owner));
    }
}
