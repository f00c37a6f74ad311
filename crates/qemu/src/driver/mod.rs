//! [`QemuDriver`]: the [`ComputeDriver`] that runs every instance as a QEMU virtual machine on
//! this host.
//!
//! The driver keeps no state in memory that matters: a machine is its directory
//! (`<data>/vms/<id>/`, see `docs/qemu.md`) and, when it runs, a daemonized QEMU process whose
//! pidfile is in that directory. A control plane that restarts finds its machines as they are.
//!
//! Every call looks at the machine before acting, so a saga step that runs twice (or after a
//! crash) converges on the same result. Calls on one machine are serialized by a per-machine
//! async mutex; nothing global is held while waiting for a guest. Volume attachment records are
//! guarded by one short-held lock, always taken after the machine's.

mod console;
mod disks;
mod machine;
mod transfer;

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use openwinv_driver::firewall::CompiledRules;
use openwinv_driver::{
    BootImage, Capabilities, ComputeDriver, ConsoleAccess, ConsoleBroker, ConsoleEndpoints, DriverError, MachineInfo,
    MachineSpec, MachineState, Pacing, Power, VolumeSpec,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::accel::{Accel, Accelerator};
use crate::cmdline::{self, KernelBoot, TapNic, VmConfig, VolumeAttachment};
use crate::networks::{Networks, port_of};
use crate::paths::{DataDir, MAX_INSTANCE_ID, MAX_VOLUME_ID, VmPaths, check_id};
use crate::qmp::{Qmp, QmpError};
use crate::seed::Seed;
use openwinv_net::Machine;

use disks::{missing_file, no_boot};
use machine::check_socket_path;
pub use machine::live_pid;

const GIB: u64 = 1 << 30;

/// How long the driver waits for things. The defaults suit real guests; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Reboot SOFT: how long the guest has to power off after the ACPI power button before the
    /// driver resets it anyway.
    pub soft_reboot: Duration,
    /// Detach: how long the guest has to release a hot-plugged disk.
    pub detach: Duration,
    /// Stop: how long QEMU has to exit after QMP `quit` before it is killed.
    pub stop: Duration,
    /// Start: how long QEMU has to set the machine up and daemonize.
    pub start: Duration,
    /// One QMP command (and the connection handshake).
    pub qmp: Duration,
    /// One `qemu-img` run.
    pub qemu_img: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            soft_reboot: Duration::from_secs(60),
            detach: Duration::from_secs(30),
            stop: Duration::from_secs(10),
            start: Duration::from_secs(60),
            qmp: Duration::from_secs(10),
            qemu_img: Duration::from_secs(300),
        }
    }
}

/// `spec.json`: what the driver knows about a machine between calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VmRecord {
    /// The last spec applied (create, rebuild, resize).
    spec: MachineSpec,
    /// The host port (127.0.0.1) forwarded to the guest's port 22.
    ssh_port: u16,
    /// The seed's `instance-id`.
    seed_instance_id: String,
    /// Bumped on every change the driver makes or observes.
    generation: u64,
    /// The power last reported, to notice changes made behind the driver's back.
    power: Power,
    /// The firewall rule set last applied (real networks): what the port gets when it is
    /// plugged in again.
    #[serde(default)]
    rules: Option<CompiledRules>,
}

impl VmRecord {
    /// A machine just set up on this host (created or imported): stopped, at generation 1,
    /// with no firewall rule set applied yet.
    fn new_stopped(spec: &MachineSpec, ssh_port: u16, seed_instance_id: String) -> VmRecord {
        VmRecord { spec: spec.clone(), ssh_port, seed_instance_id, generation: 1, power: Power::Stopped, rules: None }
    }

    fn state(&self) -> MachineState {
        MachineState { power: self.power, generation: self.generation }
    }
}

fn perm(msg: impl Into<String>) -> DriverError {
    DriverError::Permanent(msg.into())
}

fn trans(msg: impl Into<String>) -> DriverError {
    DriverError::Transient(msg.into())
}

fn qmp_err(id: &str, e: QmpError) -> DriverError {
    trans(format!("instance {id}: {e}"))
}

pub struct QemuDriver {
    data: DataDir,
    accel: Accel,
    qemu: PathBuf,
    qemu_img: PathBuf,
    timeouts: Timeouts,
    /// One mutex per machine, created on first use.
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Guards the volume attachment records (`volumes.json` of every machine).
    attachments: Mutex<()>,
    /// Real networks (`--network namespaces`); `None`: user-mode networking.
    networks: Option<Arc<Networks>>,
}

impl QemuDriver {
    /// A driver keeping its machines under `data_dir` (made absolute against the current
    /// directory). Touches nothing: call [`QemuDriver::preflight`] at startup to find problems
    /// before the first instance does.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        accel: Accel,
        qemu_binary: impl Into<PathBuf>,
        qemu_img_binary: impl Into<PathBuf>,
    ) -> QemuDriver {
        let data_dir = data_dir.into();
        let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
        QemuDriver {
            data: DataDir::new(data_dir),
            accel,
            qemu: qemu_binary.into(),
            qemu_img: qemu_img_binary.into(),
            timeouts: Timeouts::default(),
            locks: Default::default(),
            attachments: Mutex::new(()),
            networks: None,
        }
    }

    /// Puts machines on real networks: a tap on their (account, zone) network's bridge, DHCP,
    /// NAT, public addresses, and firewalls enforced with nftables.
    pub fn with_networks(mut self, networks: Arc<Networks>) -> QemuDriver {
        self.networks = Some(networks);
        self
    }

    pub fn networks(&self) -> Option<&Arc<Networks>> {
        self.networks.as_ref()
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> QemuDriver {
        self.timeouts = timeouts;
        self
    }

    pub fn data_dir(&self) -> &Path {
        &self.data.root
    }

    /// Checks what the driver needs and picks the accelerator (probing KVM for `Accel::Auto`),
    /// so that a broken setup stops the server at startup with a sentence, not the first
    /// instance. Returns the accelerator machines will run with.
    pub async fn preflight(&self) -> Result<Accelerator, String> {
        if self.data.root.to_str().is_none() {
            return Err(format!(
                "the data directory {} must be a UTF-8 path (it is written into QEMU's command line)",
                self.data.root.display()
            ));
        }
        // Store ids are 31 characters (`INSTANCE-` and 22 more).
        let sample = self.data.vm("INSTANCE-0000000000000000000000").serial();
        check_socket_path(&sample).map_err(|e| e.to_string())?;
        for dir in [self.data.vms(), self.data.volumes()] {
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        for (bin, package) in [(&self.qemu, "qemu-system-x86"), (&self.qemu_img, "qemu-utils")] {
            let out = tokio::process::Command::new(bin).arg("--version").output().await;
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    return Err(format!(
                        "{} --version failed: {}",
                        bin.display(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    ));
                }
                Err(e) => {
                    return Err(format!("cannot run {} ({e}): install it (apt-get install {package})", bin.display()));
                }
            }
        }
        if self.accel == Accel::Kvm
            && let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm")
        {
            return Err(format!("the accelerator is kvm but /dev/kvm cannot be opened ({e}): use auto or tcg"));
        }
        Ok(self.accel.resolve(&self.qemu).await)
    }

    fn lock_of(&self, id: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_owned()).or_default().clone()
    }

    async fn lock(&self, id: &str) -> OwnedMutexGuard<()> {
        self.lock_of(id).lock_owned().await
    }

    fn vm(&self, id: &str) -> Result<VmPaths, DriverError> {
        check_id("instance", id, MAX_INSTANCE_ID).map_err(perm)?;
        Ok(self.data.vm(id))
    }

    // ---- records -------------------------------------------------------------------------

    fn load(&self, id: &str, paths: &VmPaths) -> Result<Option<VmRecord>, DriverError> {
        match std::fs::read(paths.spec()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                perm(format!(
                    "instance {id}: {} is damaged ({e}); destroy and recreate the instance, or restore the file",
                    paths.spec().display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(trans(format!("instance {id}: cannot read {}: {e}", paths.spec().display()))),
        }
    }

    fn require(&self, id: &str, paths: &VmPaths) -> Result<VmRecord, DriverError> {
        self.load(id, paths)?.ok_or_else(|| perm(format!("instance {id} has no machine on this host; create it first")))
    }

    fn save(&self, paths: &VmPaths, rec: &VmRecord) -> Result<(), DriverError> {
        let bytes = serde_json::to_vec_pretty(rec).map_err(|e| perm(format!("cannot encode spec.json: {e}")))?;
        write_private(&paths.spec(), &bytes)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, readable by the owner only
/// (spec.json and the seed carry the password).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DriverError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| trans(format!("cannot write {}: {e}", path.display())))
}

fn create_private_dir(dir: &Path) -> Result<(), DriverError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| trans(format!("cannot create {}: {e}", dir.display())))
}

#[async_trait::async_trait]
impl ComputeDriver for QemuDriver {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn pacing(&self) -> Pacing {
        Pacing::Immediate
    }

    fn reconciles(&self) -> bool {
        true
    }

    /// Volumes and consoles; firewalls and public addresses need real networks, which user-mode
    /// networking is not.
    fn capabilities(&self) -> Capabilities {
        let real = self.networks.is_some();
        Capabilities { firewalls: real, public_ips: real, block_storage: true, consoles: true }
    }

    async fn create(&self, spec: &MachineSpec) -> Result<MachineState, DriverError> {
        let paths = self.vm(&spec.instance_id)?;
        let _guard = self.lock(&spec.instance_id).await;
        self.create_locked(spec, &paths).await
    }

    async fn start(&self, id: &str) -> Result<MachineState, DriverError> {
        let paths = self.vm(id)?;
        let _guard = self.lock(id).await;
        let mut rec = self.require(id, &paths)?;
        self.start_locked(id, &paths, &mut rec).await?;
        Ok(rec.state())
    }

    async fn stop(&self, id: &str) -> Result<MachineState, DriverError> {
        let paths = self.vm(id)?;
        let _guard = self.lock(id).await;
        let Some(mut rec) = self.load(id, &paths)? else {
            return Ok(MachineState { power: Power::Absent, generation: 0 });
        };
        self.stop_locked(id, &paths, &mut rec).await?;
        Ok(rec.state())
    }

    async fn reboot(&self, id: &str, hard: bool) -> Result<MachineState, DriverError> {
        let paths = self.vm(id)?;
        let _guard = self.lock(id).await;
        let mut rec = self.require(id, &paths)?;
        if !self.is_running(&paths).await {
            // Rebooting a machine that is off starts it.
            self.start_locked(id, &paths, &mut rec).await?;
            return Ok(rec.state());
        }
        let e = |e| qmp_err(id, e);
        let mut q = self.qmp(&paths).await.map_err(e)?;
        if !hard {
            q.clear_events();
            q.execute("system_powerdown", None).await.map_err(e)?;
            let deadline = tokio::time::Instant::now() + self.timeouts.soft_reboot;
            let mut off = false;
            while !off {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                off = q
                    .wait_event(left.min(Duration::from_secs(1)), |ev| ev.name == "SHUTDOWN")
                    .await
                    .map_err(e)?
                    .is_some()
                    || q.status().await.map_err(e)? == "shutdown";
            }
            if !off {
                tracing::warn!(instance = %id, secs = self.timeouts.soft_reboot.as_secs(), "the guest did not power off for a soft reboot; resetting it");
            }
        }
        q.execute("system_reset", None).await.map_err(e)?;
        // The reset is carried out by QEMU's main loop: a machine that was powered off goes from
        // `shutdown` to `prelaunch` and then needs `cont`.
        let deadline = tokio::time::Instant::now() + self.timeouts.qmp;
        loop {
            match q.status().await.map_err(e)?.as_str() {
                "running" => break,
                "shutdown" if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    q.execute("cont", None).await.map_err(e)?;
                    break;
                }
            }
        }
        rec.power = Power::Running;
        self.bump(&paths, &mut rec)?;
        Ok(rec.state())
    }

    async fn rebuild(&self, spec: &MachineSpec) -> Result<MachineState, DriverError> {
        let id = spec.instance_id.as_str();
        let paths = self.vm(id)?;
        let _guard = self.lock(id).await;
        let Some(mut rec) = self.load(id, &paths)? else {
            return self.create_locked(spec, &paths).await;
        };
        if spec.boot.is_none() {
            return Err(no_boot(spec));
        }
        // Check the seed before touching anything.
        Seed::render(spec).map_err(|e| perm(format!("instance {id}: {e}")))?;
        let was_running = self.is_running(&paths).await;
        self.stop_locked(id, &paths, &mut rec).await?;
        self.make_root_disk(&paths, spec).await?;
        let seed = self.write_seed(&paths, spec)?;
        rec.spec = spec.clone();
        rec.seed_instance_id = seed.instance_id;
        self.bump(&paths, &mut rec)?;
        tracing::info!(instance = %id, image = %spec.image_id, "machine rebuilt");
        if was_running {
            self.start_locked(id, &paths, &mut rec).await?;
        }
        Ok(rec.state())
    }

    async fn resize(&self, spec: &MachineSpec) -> Result<MachineState, DriverError> {
        let id = spec.instance_id.as_str();
        let paths = self.vm(id)?;
        let _guard = self.lock(id).await;
        let mut rec = self.require(id, &paths)?;
        let (_, current) = self.image_info(&paths.root_disk()).await?;
        let want = u64::from(spec.disk) * GIB;
        let grow = want > current;
        if want < current {
            tracing::info!(instance = %id, current, want, "root disks are never shrunk; keeping the larger size");
        }
        let same = rec.spec.vcpu == spec.vcpu && rec.spec.memory == spec.memory && rec.spec.disk == spec.disk;
        if same && !grow {
            return Ok(rec.state());
        }
        let was_running = self.is_running(&paths).await;
        if was_running {
            self.stop_locked(id, &paths, &mut rec).await?;
        }
        if grow {
            self.qemu_img(&["resize".into(), "-q".into(), paths.root_disk().into_os_string(), want.to_string().into()])
                .await?;
        }
        rec.spec.vcpu = spec.vcpu;
        rec.spec.memory = spec.memory;
        rec.spec.disk = spec.disk;
        self.bump(&paths, &mut rec)?;
        tracing::info!(instance = %id, vcpu = spec.vcpu, memory = spec.memory, disk = spec.disk, "machine resized");
        if was_running {
            self.start_locked(id, &paths, &mut rec).await?;
        }
        Ok(rec.state())
    }

    async fn destroy(&self, id: &str) -> Result<(), DriverError> {
        let paths = self.vm(id)?;
        let _guard = self.lock(id).await;
        if !paths.dir.exists() {
            return Ok(());
        }
        self.kill(id, &paths).await?;
        if let (Some(nets), Ok(Some(rec))) = (&self.networks, self.load(id, &paths))
            && let Some(n) = &rec.spec.network
            && let Some(net) = nets.get(&n.account_id, &n.zone_id).await
        {
            net.detach_port(&openwinv_net::tap_name(id))
                .await
                .map_err(|e| trans(format!("instance {id}: network: {e}")))?;
        }
        std::fs::remove_dir_all(&paths.dir)
            .map_err(|e| trans(format!("instance {id}: cannot remove {}: {e}", paths.dir.display())))?;
        tracing::info!(instance = %id, "machine destroyed");
        Ok(())
    }

    async fn state(&self, id: &str) -> Result<MachineState, DriverError> {
        let paths = self.vm(id)?;
        if !paths.dir.exists() {
            return Ok(MachineState { power: Power::Absent, generation: 0 });
        }
        let Ok(_guard) = self.lock_of(id).try_lock_owned() else {
            // Another call is changing the machine: report what it last recorded, and let that
            // call's result carry the change.
            return Ok(self
                .load(id, &paths)?
                .map_or(MachineState { power: Power::Stopped, generation: 0 }, |r| r.state()));
        };
        let Some(mut rec) = self.load(id, &paths)? else {
            // A create that did not finish.
            return Ok(MachineState { power: Power::Stopped, generation: 0 });
        };
        let power = match self.observe(&paths).await {
            None => Power::Stopped,
            Some((_, Some(status))) if status == "shutdown" => {
                // The guest powered itself off; QEMU stays because of -no-shutdown.
                self.kill(id, &paths).await?;
                Power::Stopped
            }
            Some(_) => Power::Running,
        };
        self.note(&paths, &mut rec, power)?;
        Ok(rec.state())
    }

    /// Firewalls are not enforced yet (user-mode networking has no packet filter here), so a
    /// rule set that filters is refused, as the trait's default refuses: nothing passes
    /// silently. The open set ("nothing attached, everything passes") is what every machine
    /// has, so applying it is true; accepting it lets a failed firewall attach put things back
    /// (the firewall saga's `failed` re-applies the open set, and would retry forever on a
    /// refusal).
    async fn apply_firewall(&self, id: &str, rules: &CompiledRules) -> Result<(), DriverError> {
        if let Some(nets) = &self.networks {
            let paths = self.vm(id)?;
            let _guard = self.lock(id).await;
            let Some(mut rec) = self.load(id, &paths)? else {
                return Err(perm(format!("instance {id}: no such machine")));
            };
            rec.rules = Some(rules.clone());
            self.save(&paths, &rec)?;
            // A machine never started has no port yet; it gets these rules when plugged in.
            if let Some(n) = &rec.spec.network
                && let Some(net) = nets.get(&n.account_id, &n.zone_id).await
                && net.model().await.machines.contains_key(&openwinv_net::tap_name(id))
            {
                nets.apply(&net, &openwinv_net::tap_name(id), rules.clone()).await?;
            }
            return Ok(());
        }
        if rules.is_filtered() {
            return Err(perm(format!(
                "the qemu driver cannot enforce firewalls yet: instance {id} would not be filtered; detach the \
                 firewall, or run the server with a driver that filters"
            )));
        }
        Ok(())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), DriverError> {
        let path = self.check_volume(&spec.volume_id)?;
        let _guard = self.attachments.lock().await;
        if path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(self.data.volumes())
            .map_err(|e| trans(format!("cannot create {}: {e}", self.data.volumes().display())))?;
        let tmp = path.with_extension("qcow2.tmp");
        let size = u64::from(spec.size) * GIB;
        self.qemu_img(&[
            "create".into(),
            "-q".into(),
            "-f".into(),
            "qcow2".into(),
            tmp.clone().into(),
            size.to_string().into(),
        ])
        .await?;
        std::fs::rename(&tmp, &path).map_err(|e| trans(format!("cannot move {} into place: {e}", tmp.display())))?;
        tracing::info!(volume = %spec.volume_id, size = spec.size, "volume created");
        Ok(())
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), DriverError> {
        let path = self.check_volume(volume_id)?;
        let _guard = self.attachments.lock().await;
        if let Some(m) = self.attachment_of(volume_id)? {
            return Err(perm(format!("volume {volume_id} is attached to instance {m}: detach it first")));
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(volume = %volume_id, "volume deleted");
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(trans(format!("cannot remove {}: {e}", path.display()))),
        }
    }

    async fn attach_volume(&self, id: &str, spec: &VolumeSpec) -> Result<(), DriverError> {
        let paths = self.vm(id)?;
        let path = self.check_volume(&spec.volume_id)?;
        let _guard = self.lock(id).await;
        let mut rec = self.require(id, &paths)?;
        if !path.is_file() {
            return Err(perm(format!("volume {} has no storage on this host; create it first", spec.volume_id)));
        }
        let newly = {
            let _att = self.attachments.lock().await;
            match self.attachment_of(&spec.volume_id)? {
                Some(m) if m != id => {
                    return Err(perm(format!("volume {} is attached to instance {m}", spec.volume_id)));
                }
                Some(_) => false,
                None => {
                    let mut vols = self.attached(&paths)?;
                    vols.push(spec.clone());
                    self.save_attached(&paths, &vols)?;
                    true
                }
            }
        };
        if self.is_running(&paths).await {
            let v = VolumeAttachment { volume_id: spec.volume_id.clone(), path };
            let plugged = match self.qmp(&paths).await {
                Ok(mut q) => self.hot_plug(id, &mut q, &v).await,
                Err(e) => Err(qmp_err(id, e)),
            };
            if let Err(err) = plugged {
                if newly {
                    let _att = self.attachments.lock().await;
                    let mut vols = self.attached(&paths)?;
                    vols.retain(|x| x.volume_id != spec.volume_id);
                    self.save_attached(&paths, &vols)?;
                }
                return Err(err);
            }
        }
        if newly {
            self.bump(&paths, &mut rec)?;
            tracing::info!(instance = %id, volume = %spec.volume_id, "volume attached");
        }
        Ok(())
    }

    async fn detach_volume(&self, id: &str, volume_id: &str) -> Result<(), DriverError> {
        let paths = self.vm(id)?;
        let path = self.check_volume(volume_id)?;
        let _guard = self.lock(id).await;
        let Some(mut rec) = self.load(id, &paths)? else {
            return Ok(());
        };
        if self.is_running(&paths).await {
            let v = VolumeAttachment { volume_id: volume_id.to_owned(), path };
            let mut q = self.qmp(&paths).await.map_err(|e| qmp_err(id, e))?;
            self.hot_unplug(id, &mut q, &v).await?;
        }
        let _att = self.attachments.lock().await;
        let mut vols = self.attached(&paths)?;
        let before = vols.len();
        vols.retain(|v| v.volume_id != volume_id);
        if vols.len() != before {
            self.save_attached(&paths, &vols)?;
            self.bump(&paths, &mut rec)?;
            tracing::info!(instance = %id, volume = %volume_id, "volume detached");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openwinv_driver::firewall::{self, FirewallSpec};

    use super::*;

    #[tokio::test]
    async fn firewalls_open_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = QemuDriver::new(dir.path(), Accel::Tcg, "qemu-system-x86_64", "qemu-img");
        d.apply_firewall("INSTANCE-a", &CompiledRules::open()).await.expect("the open set is what machines have");
        let filtered = firewall::compile(&[FirewallSpec { firewall_id: "FW-1".into(), icmp: true, rules: vec![] }]);
        let err = d.apply_firewall("INSTANCE-a", &filtered).await.expect_err("filtering is refused");
        assert!(matches!(err, DriverError::Permanent(_)));
        assert!(err.to_string().contains("cannot enforce firewalls"), "{err}");
    }

    #[tokio::test]
    async fn preflight_checks_socket_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("x".repeat(90));
        let d = QemuDriver::new(&deep, Accel::Tcg, "qemu-system-x86_64", "qemu-img");
        let err = d.preflight().await.expect_err("too deep");
        assert!(err.contains("shorter data directory"), "{err}");
        let d = QemuDriver::new(dir.path(), Accel::Tcg, "qemu-system-x86_64", "/nonexistent/qemu-img");
        let err = d.preflight().await.expect_err("no qemu-img");
        assert!(err.contains("qemu-utils"), "{err}");
        let d = QemuDriver::new(dir.path(), Accel::Tcg, "qemu-system-x86_64", "qemu-img");
        assert_eq!(d.preflight().await, Ok(Accelerator::Tcg));
        assert!(dir.path().join("vms").is_dir() && dir.path().join("volumes").is_dir());
    }
}
