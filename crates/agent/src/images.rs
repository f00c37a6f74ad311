//! Boot files by content on the host (issue 18): before a machine is created, rebuilt or resized
//! on a real driver, each file of its boot image — named in the work item's `boot_files` by
//! SHA-256 and size — is resolved to this host's copy `<data-dir>/images/<sha256>`, fetched from
//! `GET /internal/v1/images/{sha256}` when missing, and the spec's paths are rewritten to the
//! copies.
//!
//! - **Verified, never trusted.** A download is written to a temporary beside the cache while
//!   its SHA-256 is computed; a wrong size or digest removes it and fetches again (up to
//!   [`FETCH_ATTEMPTS`] times, then the call fails transiently and its step retries). A cached
//!   copy is hashed again before each use: a damaged one is removed and fetched again.
//! - **One fetch per digest.** Calls needing the same file wait on one lock per digest, so two
//!   creates at once fetch it once.
//! - **Removed when unused.** `uses.json` maps each machine of the host to the digests it boots
//!   (a kernel and initrd are read at every start; a disk is the backing file of the machine's
//!   overlay): a call's files are added before they are fetched, and the machine's earlier files
//!   are dropped only once the driver applied the new spec. A sweep every [`sweep_interval`] removes the copies no machine uses that were not
//!   used for `--image-cache-ttl`.
//!
//! `<data-dir>/images/events.jsonl` logs each `fetched` (with `kind: "disk"` for a machine disk
//! an evacuation brought, which is not kept in the cache), `verified` (a cached copy used),
//! `corrupt` (a download or copy refused) and `removed` (swept), one JSON object a line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openwinv_driver::contract::BootFile;
use openwinv_driver::{DriverError, MachineSpec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::control::Control;
use crate::files::{EventLog, write_atomically};

/// Downloads of one file before the call gives up (transiently).
pub const FETCH_ATTEMPTS: u32 = 3;
/// Longest a download may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3600);
/// Download temporaries older than this were left by a crash.
const STALE_TEMP: Duration = Duration::from_secs(3600);
const TEMP_PREFIX: &str = ".fetch-";

/// How often the cache is swept for a given ttl: a quarter of it, from 1 s to 10 min.
pub fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

pub struct ImageCache {
    dir: PathBuf,
    control: Arc<Control>,
    ttl: Duration,
    /// One lock per digest: a fetch, a verification and a removal of one file never overlap.
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// instance → digests its machine boots; persisted in `uses.json`.
    uses: tokio::sync::Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// `images/events.jsonl`.
    log: EventLog,
}

fn trans(m: String) -> DriverError {
    DriverError::Transient(m)
}

impl ImageCache {
    pub(crate) fn open(data_dir: &Path, control: Arc<Control>, ttl: Duration) -> anyhow::Result<ImageCache> {
        use anyhow::Context;
        let dir = data_dir.join("images");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let uses = match std::fs::read(dir.join("uses.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not the image cache's record", dir.join("uses.json").display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.join("uses.json").display())),
        };
        Ok(ImageCache {
            dir,
            control,
            ttl,
            locks: Default::default(),
            uses: tokio::sync::Mutex::new(uses),
            log: EventLog::new(data_dir.join("images").join("events.jsonl"), "the image cache's log"),
        })
    }

    fn lock_of(&self, sha256: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(sha256.to_owned()).or_default().clone()
    }

    fn log(&self, event: &str, sha256: &str, extra: Value) {
        self.log.append(event, json!({ "sha256": sha256 }), extra);
    }

    fn cached(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// `spec` with its boot files replaced by this host's verified copies, fetched as needed;
    /// `payload` is the work item's (its `boot_files` name the files by content). Records that
    /// the machine uses them, beside what it used before until [`ImageCache::settle`].
    pub async fn prepare(&self, mut spec: MachineSpec, payload: &Value) -> Result<MachineSpec, DriverError> {
        let Some(boot) = &spec.boot else { return Ok(spec) };
        let files: Vec<BootFile> = match payload.get("boot_files") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| DriverError::Permanent(format!("the work item's boot_files do not read: {e}")))?,
        };
        // Recorded first, with what the machine used before: a sweep never takes a file this
        // call is about to use (nor, until it succeeds, one the machine booted so far).
        let digests: BTreeSet<String> = files.iter().map(|f| f.sha256.clone()).collect();
        let before = self.uses.lock().await.get(&spec.instance_id).cloned().unwrap_or_default();
        self.set_uses(&spec.instance_id, Some(before.union(&digests).cloned().collect())).await;
        let mut local = HashMap::new();
        for f in &files {
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(DriverError::Permanent(format!("boot file {} has no SHA-256", f.path.display())));
            }
            let path = self.ensure(f).await?;
            local.insert(f.path.clone(), path);
        }
        let mut missing = None;
        let mapped = boot.map_files(|p| match local.get(p) {
            Some(l) => l.clone(),
            None => {
                missing.get_or_insert_with(|| p.to_owned());
                p.to_owned()
            }
        });
        if let Some(p) = missing {
            return Err(DriverError::Permanent(format!(
                "image {}: the work item names no content for its file {} (a control plane older than this agent \
                 sends paths only; this host boots images by SHA-256)",
                spec.image_id,
                p.display()
            )));
        }
        spec.boot = Some(mapped);
        Ok(spec)
    }

    /// The driver applied `spec` (prepared by [`ImageCache::prepare`]): the machine now uses
    /// its files alone, and the files it booted before may go once unused for the ttl.
    pub async fn settle(&self, spec: &MachineSpec) {
        let digests = spec
            .boot
            .iter()
            .flat_map(|b| b.files())
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        self.set_uses(&spec.instance_id, Some(digests)).await;
    }

    /// The machine is gone: its files may be swept once unused for the ttl.
    pub async fn release(&self, instance_id: &str) {
        self.set_uses(instance_id, None).await;
    }

    async fn set_uses(&self, instance_id: &str, digests: Option<BTreeSet<String>>) {
        let mut uses = self.uses.lock().await;
        match digests {
            Some(d) => uses.insert(instance_id.to_owned(), d),
            None => uses.remove(instance_id),
        };
        let bytes = serde_json::to_vec_pretty(&*uses).expect("uses serialize");
        if let Err(e) = write_atomically(&self.dir.join("uses.json"), &bytes) {
            tracing::warn!(error = %e, "cannot write the image cache's record");
        }
    }

    /// This host's verified copy of `f`, fetched if it has none (or a damaged one).
    async fn ensure(&self, f: &BootFile) -> Result<PathBuf, DriverError> {
        let lock = self.lock_of(&f.sha256);
        let _one = lock.lock().await;
        let path = self.cached(&f.sha256);
        if path.is_file() {
            match hash_file(&path).await {
                Ok((sum, size)) if sum == f.sha256 && size == f.size => {
                    touch(&path);
                    self.log("verified", &f.sha256, json!({"bytes": size}));
                    return Ok(path);
                }
                Ok((sum, size)) => {
                    tracing::warn!(sha256 = %f.sha256, found = %sum, size, "a cached image file is damaged; fetching it again");
                    self.log("corrupt", &f.sha256, json!({"where": "cache", "found": sum, "bytes": size}));
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(trans(format!("cannot read the cached image file {}: {e}", path.display()))),
            }
        }
        self.fetch_verified("images", f, &path).await?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.log("fetched", &f.sha256, json!({"bytes": f.size}));
        tracing::info!(sha256 = %f.sha256, bytes = f.size, "image file fetched and verified");
        Ok(path)
    }

    /// Fetches `f` from `GET /internal/v1/{kind}/{sha256}` (`images`: a boot file; `disks`: a
    /// machine disk in transit) to `dest`, verified: each attempt streams to a temporary beside
    /// the cache while hashing it and a wrong size or digest is refused and fetched again, up to
    /// [`FETCH_ATTEMPTS`] times; a permanent error ends it at once.
    async fn fetch_verified(&self, kind: &str, f: &BootFile, dest: &Path) -> Result<(), DriverError> {
        let (what, tag) = if kind == "disks" { ("machine disk", "disk-") } else { ("image file", "") };
        let mut last = String::new();
        for attempt in 1..=FETCH_ATTEMPTS {
            let tmp = self.dir.join(format!("{TEMP_PREFIX}{tag}{}-{}", f.sha256, rand::random::<u64>()));
            let fetched = match self.download_from(kind, f, &tmp).await {
                Ok(()) => tokio::fs::rename(&tmp, dest)
                    .await
                    .map_err(|e| trans(format!("cannot move {} to {}: {e}", tmp.display(), dest.display()))),
                Err(e) => Err(e),
            };
            match fetched {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    match e {
                        DriverError::Permanent(m) => return Err(DriverError::Permanent(m)),
                        DriverError::Transient(m) => {
                            tracing::warn!(sha256 = %f.sha256, attempt, error = %m, "{what} fetch failed");
                            last = m;
                        }
                    }
                }
            }
        }
        Err(trans(format!("{what} {} not fetched after {FETCH_ATTEMPTS} attempts: {last}", f.sha256)))
    }

    /// Downloads `GET /internal/v1/{kind}/{sha256}` to `tmp`, refusing a wrong size or digest.
    async fn download_from(&self, kind: &str, f: &BootFile, tmp: &Path) -> Result<(), DriverError> {
        let mut resp = self.control.get_file(kind, &f.sha256, FETCH_TIMEOUT).await?;
        let file = tokio::fs::File::create(tmp).await.map_err(|e| trans(format!("{}: {e}", tmp.display())))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let write_err = |e: std::io::Error| trans(format!("cannot write {}: {e}", tmp.display()));
        while let Some(chunk) = resp.chunk().await.map_err(|e| trans(format!("the download broke off: {e}")))? {
            size += chunk.len() as u64;
            if size > f.size {
                break;
            }
            hash.update(&chunk);
            out.write_all(&chunk).await.map_err(write_err)?;
        }
        let sum = hex::encode(hash.finalize());
        if size != f.size || sum != f.sha256 {
            self.log("corrupt", &f.sha256, json!({"where": "download", "found": sum, "bytes": size}));
            return Err(trans(format!(
                "the download of {} was refused: {size} bytes with SHA-256 {sum}, not {} bytes with that digest",
                f.sha256, f.size
            )));
        }
        out.flush().await.map_err(write_err)?;
        out.into_inner().sync_all().await.map_err(write_err)?;
        Ok(())
    }

    /// Evacuation's target: fetches the machine disk with SHA-256 `sha256` and `size` bytes
    /// that a source host handed to the control plane (`GET /internal/v1/disks/{sha256}`) to
    /// `dest`, verified as boot files are (streamed to a temporary while hashed, a wrong size or
    /// digest refused and fetched again, [`FETCH_ATTEMPTS`] times).
    pub async fn fetch_disk(&self, sha256: &str, size: u64, dest: &Path) -> Result<(), DriverError> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DriverError::Permanent(format!("the export names a disk without a SHA-256: `{sha256}`")));
        }
        let f = BootFile { path: dest.to_owned(), sha256: sha256.to_owned(), size };
        self.fetch_verified("disks", &f, dest).await?;
        self.log("fetched", sha256, json!({"bytes": size, "kind": "disk"}));
        Ok(())
    }

    /// Evacuation's source: hands the file at `path` to the control plane under its SHA-256
    /// (`PUT /internal/v1/disks/{sha256}`, which checks the digest); its digest and size.
    pub async fn upload_disk(&self, path: &Path) -> Result<(String, u64), DriverError> {
        let (sha256, size) =
            hash_file(path).await.map_err(|e| trans(format!("cannot read {}: {e}", path.display())))?;
        self.control.put_disk(&sha256, path, FETCH_TIMEOUT).await?;
        Ok((sha256, size))
    }

    /// Removes the copies no machine uses and not used for the ttl, and stale temporaries.
    pub async fn sweep(&self) {
        let used: BTreeSet<String> = self.uses.lock().await.values().flatten().cloned().collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let age = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if name.starts_with(TEMP_PREFIX) {
                if age.is_some_and(|a| a > STALE_TEMP) {
                    let _ = std::fs::remove_file(e.path());
                }
                continue;
            }
            if name.len() != 64 || used.contains(&name) || age.is_none_or(|a| a <= self.ttl) {
                continue;
            }
            // Not while a call fetches or verifies it.
            let lock = self.lock_of(&name);
            let Ok(_one) = lock.try_lock() else { continue };
            // A call may have started using it since the list was read.
            if self.uses.lock().await.values().any(|d| d.contains(&name)) {
                continue;
            }
            if std::fs::remove_file(e.path()).is_ok() {
                self.log("removed", &name, json!({"unused_for_s": age.map_or(0, |a| a.as_secs())}));
                tracing::info!(sha256 = %name, "unused image file removed");
            }
        }
    }
}

/// Marks a copy as used now (the sweep's clock).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

async fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok((hex::encode(hash.finalize()), size));
            }
            size += n as u64;
            hash.update(&buf[..n]);
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests;
