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
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openwinv_driver::contract::BootFile;
use openwinv_driver::{DriverError, MachineSpec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::control::Control;

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
    log_lock: std::sync::Mutex<()>,
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
            log_lock: Default::default(),
        })
    }

    fn lock_of(&self, sha256: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(sha256.to_owned()).or_default().clone()
    }

    fn log(&self, event: &str, sha256: &str, extra: Value) {
        let mut line = json!({"event": event, "sha256": sha256});
        if let (Some(o), Value::Object(e)) = (line.as_object_mut(), extra) {
            o.extend(e);
        }
        let line = format!("{line}\n");
        let _one = self.log_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("events.jsonl"))
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot append to the image cache's log");
        }
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
        if let Err(e) = crate::work::write_atomically(&self.dir.join("uses.json"), &bytes) {
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
        let mut last = String::new();
        for attempt in 1..=FETCH_ATTEMPTS {
            match self.fetch(f, &path).await {
                Ok(()) => return Ok(path),
                Err(DriverError::Permanent(m)) => return Err(DriverError::Permanent(m)),
                Err(DriverError::Transient(m)) => {
                    tracing::warn!(sha256 = %f.sha256, attempt, error = %m, "image file fetch failed");
                    last = m;
                }
            }
        }
        Err(trans(format!("image file {} not fetched after {FETCH_ATTEMPTS} attempts: {last}", f.sha256)))
    }

    /// Downloads `f` to a temporary, checking size and digest as it streams, then renames it
    /// to `path`.
    async fn fetch(&self, f: &BootFile, path: &Path) -> Result<(), DriverError> {
        let tmp = self.dir.join(format!("{TEMP_PREFIX}{}-{}", f.sha256, rand::random::<u64>()));
        let result = self.download(f, &tmp).await;
        match result {
            Ok(()) => {
                tokio::fs::rename(&tmp, path)
                    .await
                    .map_err(|e| trans(format!("cannot move {} into place: {e}", tmp.display())))?;
                if let Ok(d) = std::fs::File::open(&self.dir) {
                    let _ = d.sync_all();
                }
                self.log("fetched", &f.sha256, json!({"bytes": f.size}));
                tracing::info!(sha256 = %f.sha256, bytes = f.size, "image file fetched and verified");
                Ok(())
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn download(&self, f: &BootFile, tmp: &Path) -> Result<(), DriverError> {
        self.download_from("images", f, tmp).await
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
        let mut last = String::new();
        for attempt in 1..=FETCH_ATTEMPTS {
            let tmp = self.dir.join(format!("{TEMP_PREFIX}disk-{sha256}-{}", rand::random::<u64>()));
            match self.download_from("disks", &f, &tmp).await {
                Ok(()) => {
                    tokio::fs::rename(&tmp, dest)
                        .await
                        .map_err(|e| trans(format!("cannot move {} to {}: {e}", tmp.display(), dest.display())))?;
                    self.log("fetched", sha256, json!({"bytes": size, "kind": "disk"}));
                    return Ok(());
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    match e {
                        DriverError::Permanent(m) => return Err(DriverError::Permanent(m)),
                        DriverError::Transient(m) => {
                            tracing::warn!(%sha256, attempt, error = %m, "machine disk fetch failed");
                            last = m;
                        }
                    }
                }
            }
        }
        Err(trans(format!("machine disk {sha256} not fetched after {FETCH_ATTEMPTS} attempts: {last}")))
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
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use openwinv_driver::BootImage;
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A control plane that answers the n-th request with `bodies[n]` (the last one after that)
    /// and counts requests.
    async fn serving(bodies: Vec<&'static [u8]>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let body = bodies[n.min(bodies.len() - 1)];
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body).await;
            }
        });
        (base, served)
    }

    fn cache(dir: &Path, base: String, ttl: Duration) -> ImageCache {
        let config = crate::Config {
            control_plane: base,
            host_token: "owh_test".into(),
            driver: crate::Driver::Qemu,
            zone: "KR1-Z01".into(),
            data_dir: dir.to_owned(),
            ca_file: None,
            address: None,
            vcpus: None,
            memory_mb: None,
            disk_gb: None,
            sim_delay: Duration::ZERO,
            accel: openwinv_qemu::Accel::Tcg,
            image_cache_ttl: ttl,
            underlay: None,
            network: Default::default(),
            uplink: None,
        };
        ImageCache::open(dir, Arc::new(Control::new(&config).unwrap()), ttl).unwrap()
    }

    fn spec(id: &str) -> MachineSpec {
        MachineSpec {
            instance_id: id.into(),
            hostname: "h".into(),
            vcpu: 1,
            memory: 1,
            disk: 10,
            image_id: "IMG-x".into(),
            username: "root".into(),
            password: "pw".into(),
            ssh_keys: vec![],
            user_script: None,
            boot: Some(BootImage::Kernel {
                kernel: "/cp/images/IMG-x/vmlinuz".into(),
                initrd: None,
                cmdline: "console=ttyS0".into(),
                root_disk: None,
            }),
            network: None,
        }
    }

    fn payload(content: &[u8]) -> Value {
        let sha256 = hex::encode(Sha256::digest(content));
        json!({"boot_files": [{"path": "/cp/images/IMG-x/vmlinuz", "sha256": sha256, "size": content.len()}]})
    }

    fn events(dir: &Path, event: &str) -> usize {
        let text = std::fs::read_to_string(dir.join("images/events.jsonl")).unwrap_or_default();
        text.lines().filter(|l| serde_json::from_str::<Value>(l).unwrap()["event"] == event).count()
    }

    #[tokio::test]
    async fn a_corrupt_download_is_refused_and_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let (base, served) = serving(vec![b"evil!", b"good!"]).await;
        let c = cache(dir.path(), base, Duration::from_secs(60));
        let sha256 = hex::encode(Sha256::digest(b"good!"));
        let got = c.prepare(spec("INSTANCE-a"), &payload(b"good!")).await.unwrap();
        let copy = dir.path().join("images").join(&sha256);
        let Some(BootImage::Kernel { kernel, .. }) = &got.boot else { panic!("{got:?}") };
        assert_eq!(kernel, &copy, "the spec names the host's copy");
        assert_eq!(std::fs::read(&copy).unwrap(), b"good!");
        assert_eq!(
            (served.load(Ordering::SeqCst), events(dir.path(), "corrupt"), events(dir.path(), "fetched")),
            (2, 1, 1)
        );
        // A second machine uses the copy: verified, not fetched.
        c.prepare(spec("INSTANCE-b"), &payload(b"good!")).await.unwrap();
        assert_eq!((served.load(Ordering::SeqCst), events(dir.path(), "verified")), (2, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_share_one_fetch_per_digest() {
        let dir = tempfile::tempdir().unwrap();
        let (base, served) = serving(vec![b"good!"]).await;
        let c = Arc::new(cache(dir.path(), base, Duration::from_secs(60)));
        let calls = (0..4).map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.prepare(spec(&format!("INSTANCE-{i}")), &payload(b"good!")).await })
        });
        for call in calls.collect::<Vec<_>>() {
            call.await.unwrap().unwrap();
        }
        assert_eq!(served.load(Ordering::SeqCst), 1, "one download for four machines");
        assert_eq!((events(dir.path(), "fetched"), events(dir.path(), "verified")), (1, 3));
    }

    #[tokio::test]
    async fn a_download_that_never_verifies_is_never_used() {
        let dir = tempfile::tempdir().unwrap();
        let (base, served) = serving(vec![b"evil!"]).await;
        let c = cache(dir.path(), base, Duration::from_secs(60));
        let err = c.prepare(spec("INSTANCE-a"), &payload(b"good!")).await.unwrap_err();
        assert!(matches!(&err, DriverError::Transient(m) if m.contains("not fetched after 3 attempts")), "{err:?}");
        assert_eq!(served.load(Ordering::SeqCst), FETCH_ATTEMPTS as usize);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("images"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "uses.json" && n != "events.jsonl")
            .collect();
        assert!(left.is_empty(), "nothing cached, no temporary left: {left:?}");
        // A spec whose files the item does not name by content is refused for good.
        let err = c.prepare(spec("INSTANCE-a"), &json!({})).await.unwrap_err();
        assert!(matches!(&err, DriverError::Permanent(m) if m.contains("names no content")), "{err:?}");
    }

    #[tokio::test]
    async fn the_sweep_removes_only_copies_no_machine_uses_after_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let (base, _) = serving(vec![b"one", b"two"]).await;
        let c = cache(dir.path(), base, Duration::from_secs(60));
        let a = c.prepare(spec("INSTANCE-a"), &payload(b"one")).await.unwrap();
        c.settle(&a).await;
        let b = c.prepare(spec("INSTANCE-b"), &payload(b"two")).await.unwrap();
        c.settle(&b).await;
        let copy = |s: &MachineSpec| s.boot.as_ref().unwrap().files()[0].to_owned();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for s in [&a, &b] {
            std::fs::File::open(copy(s)).unwrap().set_modified(old).unwrap();
        }
        c.release("INSTANCE-b").await;
        c.sweep().await;
        assert!(copy(&a).exists(), "used by a machine");
        assert!(!copy(&b).exists(), "unused for longer than the ttl");
        // Unused but recent: kept.
        c.release("INSTANCE-a").await;
        std::fs::File::open(copy(&a)).unwrap().set_modified(SystemTime::now()).unwrap();
        c.sweep().await;
        assert!(copy(&a).exists(), "unused for less than the ttl");
        assert_eq!(events(dir.path(), "removed"), 1);
    }
}
