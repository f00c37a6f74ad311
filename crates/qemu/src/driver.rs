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

    /// Every machine the driver keeps on (account, zone), with its last rule set: what a
    /// network is ensured with, so that a restarted server leaves no port open.
    fn known_machines(&self, account: &str, zone: &str) -> Vec<Machine> {
        let Ok(dir) = std::fs::read_dir(self.data.vms()) else { return Vec::new() };
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let Ok(bytes) = std::fs::read(entry.path().join("spec.json")) else { continue };
            let Ok(rec) = serde_json::from_slice::<VmRecord>(&bytes) else { continue };
            if let Some(n) = rec.spec.network.as_ref().filter(|n| n.account_id == account && n.zone_id == zone) {
                let rules = rec.rules.clone().unwrap_or_else(CompiledRules::open);
                out.push(Machine { port: port_of(&rec.spec.instance_id, n), rules });
            }
        }
        out
    }

    /// Plugs the machine into its network and opens its tap for QEMU; `None` on user-mode
    /// networking.
    async fn plug(&self, rec: &VmRecord) -> Result<Option<(OwnedFd, String)>, DriverError> {
        let (Some(nets), Some(n)) = (&self.networks, &rec.spec.network) else { return Ok(None) };
        let id = &rec.spec.instance_id;
        let net = nets.network(n, || self.known_machines(&n.account_id, &n.zone_id)).await?;
        let port = port_of(id, n);
        let (tap, mac) = (port.tap.clone(), port.mac.to_string());
        let rules = rec.rules.clone().unwrap_or_else(CompiledRules::open);
        net.attach_port(port, rules).await.map_err(|e| trans(format!("instance {id}: network: {e}")))?;
        let fd = tokio::task::spawn_blocking(move || net.open_tap(&tap))
            .await
            .map_err(|e| trans(format!("instance {id}: opening the tap: {e}")))?
            .map_err(|e| trans(format!("instance {id}: network: {e}")))?;
        Ok(Some((fd, mac)))
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

    fn attached(&self, paths: &VmPaths) -> Result<Vec<VolumeSpec>, DriverError> {
        match std::fs::read(paths.volumes()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| perm(format!("{} is damaged ({e}); fix or remove it", paths.volumes().display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(trans(format!("cannot read {}: {e}", paths.volumes().display()))),
        }
    }

    fn save_attached(&self, paths: &VmPaths, vols: &[VolumeSpec]) -> Result<(), DriverError> {
        let bytes = serde_json::to_vec_pretty(vols).map_err(|e| perm(format!("cannot encode volumes.json: {e}")))?;
        write_private(&paths.volumes(), &bytes)
    }

    /// The machine `volume_id` is attached to, from every machine's records.
    fn attachment_of(&self, volume_id: &str) -> Result<Option<String>, DriverError> {
        let dir = match std::fs::read_dir(self.data.vms()) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(trans(format!("cannot list {}: {e}", self.data.vms().display()))),
        };
        for entry in dir.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if self.attached(&VmPaths::new(entry.path()))?.iter().any(|v| v.volume_id == volume_id) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// SSH ports recorded by machines, running or not, so a new machine does not take one.
    fn ports_in_use(&self) -> Vec<u16> {
        let Ok(dir) = std::fs::read_dir(self.data.vms()) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| std::fs::read(e.path().join("spec.json")).ok())
            .filter_map(|b| serde_json::from_slice::<VmRecord>(&b).ok())
            .map(|r| r.ssh_port)
            .collect()
    }

    fn pick_port(&self) -> Result<u16, DriverError> {
        let taken = self.ports_in_use();
        for _ in 0..32 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| trans(format!("cannot find a free TCP port on 127.0.0.1 for SSH: {e}")))?
                .port();
            if !taken.contains(&port) {
                return Ok(port);
            }
        }
        Err(trans("cannot find a TCP port on 127.0.0.1 that no machine has recorded"))
    }

    // ---- qemu-img ------------------------------------------------------------------------

    async fn qemu_img(&self, args: &[OsString]) -> Result<String, DriverError> {
        let run =
            tokio::process::Command::new(&self.qemu_img).args(args).stdin(Stdio::null()).kill_on_drop(true).output();
        let shown = || {
            let mut s = self.qemu_img.display().to_string();
            for a in args {
                s.push(' ');
                s.push_str(&a.to_string_lossy());
            }
            s
        };
        let out = tokio::time::timeout(self.timeouts.qemu_img, run)
            .await
            .map_err(|_| trans(format!("`{}` did not finish within {:?}", shown(), self.timeouts.qemu_img)))?
            .map_err(|e| perm(format!("cannot run {} ({e}): install qemu-utils", self.qemu_img.display())))?;
        if !out.status.success() {
            return Err(perm(format!("`{}` failed: {}", shown(), String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `qemu-img info` of `path`: (format, virtual size in bytes). `-U` reads images a running
    /// QEMU holds.
    async fn image_info(&self, path: &Path) -> Result<(String, u64), DriverError> {
        let out =
            self.qemu_img(&["info".into(), "-U".into(), "--output=json".into(), path.as_os_str().to_owned()]).await?;
        let info = crate::img::parse_info(out.as_bytes()).map_err(|e| perm(format!("{} ({e})", path.display())))?;
        Ok((info.format.unwrap_or_else(|| "raw".into()), info.virtual_size))
    }

    /// (Re)makes `root.qcow2`: an overlay on the image's disk (or root disk), at least the
    /// flavor's size, or a blank disk for a kernel image without one.
    async fn make_root_disk(&self, paths: &VmPaths, spec: &MachineSpec) -> Result<(), DriverError> {
        let backing = match &spec.boot {
            None => return Err(no_boot(spec)),
            Some(BootImage::Disk { path, format }) => {
                if format != "qcow2" && format != "raw" {
                    return Err(perm(format!(
                        "image {} is registered with format {format:?}; re-import it as qcow2 or raw with `openwinv \
                         admin images import`",
                        spec.image_id
                    )));
                }
                Some((path.clone(), Some(format.clone())))
            }
            Some(BootImage::Kernel { root_disk, .. }) => root_disk.clone().map(|p| (p, None)),
        };
        let want = u64::from(spec.disk) * GIB;
        let tmp = paths.dir.join("root.qcow2.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut args: Vec<OsString> = vec!["create".into(), "-q".into(), "-f".into(), "qcow2".into()];
        let size = match backing {
            Some((path, format)) => {
                let path = std::path::absolute(&path).unwrap_or(path);
                if !path.is_file() {
                    return Err(missing_file(spec, &path));
                }
                let (probed, backing_size) = self.image_info(&path).await?;
                args.extend(["-F".into(), format.unwrap_or(probed).into(), "-b".into(), path.into_os_string()]);
                // Never smaller than the image: that would cut off its file system.
                want.max(backing_size)
            }
            None => want,
        };
        args.extend([tmp.clone().into_os_string(), size.to_string().into()]);
        self.qemu_img(&args).await?;
        std::fs::rename(&tmp, paths.root_disk())
            .map_err(|e| trans(format!("cannot move {} into place: {e}", tmp.display())))?;
        Ok(())
    }

    fn write_seed(&self, paths: &VmPaths, spec: &MachineSpec) -> Result<Seed, DriverError> {
        let seed = Seed::render(spec).map_err(|e| perm(format!("instance {}: {e}", spec.instance_id)))?;
        let iso = seed.iso().map_err(perm)?;
        write_private(&paths.seed(), &iso)?;
        Ok(seed)
    }

    // ---- processes -----------------------------------------------------------------------

    async fn qmp(&self, paths: &VmPaths) -> Result<Qmp, QmpError> {
        Qmp::connect(&paths.qmp(), self.timeouts.qmp).await
    }

    /// What the machine is doing: `None` when no QEMU of ours runs, else its pid and QMP status
    /// (`None` status when QMP does not answer).
    async fn observe(&self, paths: &VmPaths) -> Option<(i32, Option<String>)> {
        let pid = live_pid(paths)?;
        let status = match self.qmp(paths).await {
            Ok(mut q) => q.status().await.ok(),
            Err(e) => {
                tracing::warn!(dir = %paths.dir.display(), error = %e, "QEMU runs but QMP does not answer");
                None
            }
        };
        Some((pid, status))
    }

    /// Ends the machine's QEMU: QMP `quit`, then SIGKILL after `timeouts.stop`.
    async fn kill(&self, id: &str, paths: &VmPaths) -> Result<(), DriverError> {
        let Some(pid) = live_pid(paths) else {
            return Ok(());
        };
        if let Ok(mut q) = self.qmp(paths).await {
            // QEMU may exit before it answers.
            let _ = q.execute("quit", None).await;
        }
        if wait_gone(paths, pid, self.timeouts.stop).await {
            return Ok(());
        }
        tracing::warn!(instance = %id, pid, "QEMU did not quit; killing it");
        // SAFETY: kill(2) has no memory effects; `pid` was checked to be this machine's QEMU.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        if wait_gone(paths, pid, Duration::from_secs(10)).await {
            return Ok(());
        }
        Err(trans(format!("instance {id}: QEMU (pid {pid}) survives SIGKILL; look at the host")))
    }

    /// Starts the machine unless it runs. The caller holds the machine's lock.
    async fn start_locked(&self, id: &str, paths: &VmPaths, rec: &mut VmRecord) -> Result<(), DriverError> {
        if let Some((_, status)) = self.observe(paths).await {
            match status.as_deref() {
                Some("running") | None => return self.note(paths, rec, Power::Running),
                Some("paused" | "prelaunch" | "suspended" | "debug") => {
                    let mut q = self.qmp(paths).await.map_err(|e| qmp_err(id, e))?;
                    q.execute("cont", None).await.map_err(|e| qmp_err(id, e))?;
                    return self.note(paths, rec, Power::Running);
                }
                // Powered off by its guest (`-no-shutdown` keeps QEMU), or crashed: a fresh
                // process also picks up a changed size.
                Some(_) => self.kill(id, paths).await?,
            }
        }
        check_socket_path(&paths.serial())?;
        for stale in [paths.qmp(), paths.serial(), paths.vnc(), paths.pidfile()] {
            let _ = std::fs::remove_file(stale);
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, rec.ssh_port)).is_err() {
            let port = self.pick_port()?;
            tracing::warn!(instance = %id, old = rec.ssh_port, new = port, "SSH port taken by another program; moved");
            rec.ssh_port = port;
            self.save(paths, rec)?;
        }
        let kernel = match &rec.spec.boot {
            None => return Err(no_boot(&rec.spec)),
            Some(BootImage::Disk { .. }) => None,
            Some(BootImage::Kernel { kernel, initrd, cmdline, .. }) => {
                for f in std::iter::once(kernel).chain(initrd.iter()) {
                    if !f.is_file() {
                        return Err(missing_file(&rec.spec, f));
                    }
                }
                Some(KernelBoot { kernel: kernel.clone(), initrd: initrd.clone(), cmdline: cmdline.clone() })
            }
        };
        let plugged = self.plug(rec).await?;
        let tap = plugged.as_ref().map(|(fd, mac)| TapNic { fd: fd.as_raw_fd(), mac: mac.clone() });
        let volumes = self
            .attached(paths)?
            .into_iter()
            .map(|v| VolumeAttachment { path: self.data.volume(&v.volume_id), volume_id: v.volume_id })
            .collect();
        let config = VmConfig {
            instance_id: id.to_owned(),
            paths: paths.clone(),
            vcpu: rec.spec.vcpu.max(1),
            memory_mb: u64::from(rec.spec.memory.max(1)) * 1024,
            accel: self.accel.resolve(&self.qemu).await,
            kernel,
            ssh_port: rec.ssh_port,
            tap,
            volumes,
        };
        let args = cmdline::argv(&config);
        tracing::info!(instance = %id, accel = config.accel.name(), "starting QEMU");
        tracing::debug!(instance = %id, cmdline = %cmdline::render(&self.qemu.to_string_lossy(), &args));
        // With -daemonize the command returns once the machine is set up; QEMU then lives in its
        // own session, outliving this process.
        let mut cmd = tokio::process::Command::new(&self.qemu);
        cmd.args(&args)
            .current_dir(&paths.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some((fd, _)) = &plugged {
            let fd = fd.as_raw_fd();
            // SAFETY: between fork and exec only fcntl(2), which is async-signal-safe: the tap's
            // descriptor (close-on-exec in this process) is inherited by QEMU alone.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let run = cmd.output();
        let out = tokio::time::timeout(self.timeouts.start, run)
            .await
            .map_err(|_| trans(format!("instance {id}: QEMU did not start within {:?}", self.timeouts.start)))?
            .map_err(|e| perm(format!("cannot run {} ({e}): install qemu-system-x86", self.qemu.display())))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            let text = format!("instance {id}: QEMU failed to start: {msg}");
            // A port taken between the check and QEMU's bind: the retry picks another.
            return Err(if msg.contains("host forwarding") { trans(text) } else { perm(text) });
        }
        if live_pid(paths).is_none() {
            return Err(trans(format!(
                "instance {id}: QEMU started but its process is gone; see {}",
                paths.serial_log().display()
            )));
        }
        let mut q = self.qmp(paths).await.map_err(|e| qmp_err(id, e))?;
        let status = q.status().await.map_err(|e| qmp_err(id, e))?;
        if status != "running" {
            q.execute("cont", None).await.map_err(|e| qmp_err(id, e))?;
        }
        self.note(paths, rec, Power::Running)
    }

    /// Records `power`, bumping the generation if it changed.
    fn note(&self, paths: &VmPaths, rec: &mut VmRecord, power: Power) -> Result<(), DriverError> {
        if rec.power != power {
            rec.power = power;
            rec.generation += 1;
            self.save(paths, rec)?;
        }
        Ok(())
    }

    fn bump(&self, paths: &VmPaths, rec: &mut VmRecord) -> Result<(), DriverError> {
        rec.generation += 1;
        self.save(paths, rec)
    }

    async fn stop_locked(&self, id: &str, paths: &VmPaths, rec: &mut VmRecord) -> Result<(), DriverError> {
        self.kill(id, paths).await?;
        self.note(paths, rec, Power::Stopped)
    }

    /// Whether the guest runs (a QEMU whose guest powered off does not count).
    async fn is_running(&self, paths: &VmPaths) -> bool {
        matches!(self.observe(paths).await, Some((_, status)) if status.as_deref() != Some("shutdown"))
    }

    async fn create_locked(&self, spec: &MachineSpec, paths: &VmPaths) -> Result<MachineState, DriverError> {
        if let Some(rec) = self.load(&spec.instance_id, paths)? {
            return Ok(rec.state());
        }
        if spec.boot.is_none() {
            return Err(no_boot(spec));
        }
        create_private_dir(&paths.dir)?;
        self.make_root_disk(paths, spec).await?;
        let seed = self.write_seed(paths, spec)?;
        let rec = VmRecord {
            spec: spec.clone(),
            ssh_port: self.pick_port()?,
            seed_instance_id: seed.instance_id,
            generation: 1,
            power: Power::Stopped,
            rules: None,
        };
        // Written last: its presence means the machine is complete.
        self.save(paths, &rec)?;
        tracing::info!(instance = %spec.instance_id, ssh_port = rec.ssh_port, "machine created");
        Ok(rec.state())
    }

    // ---- evacuation ----------------------------------------------------------------------

    /// Writes the stopped machine's root disk to `out` as one qcow2 file, its backing image
    /// merged in (`qemu-img convert`), so that another host needs nothing else to boot it.
    /// Refused for good while the machine runs: only a stopped machine is moved.
    pub async fn export_disk(&self, id: &str, out: &Path) -> Result<(), DriverError> {
        let paths = self.vm(id)?;
        let _guard = self.lock(id).await;
        self.require(id, &paths)?;
        if self.is_running(&paths).await {
            return Err(perm(format!("instance {id} runs: only a stopped machine is exported")));
        }
        let tmp = out.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        self.qemu_img(&[
            "convert".into(),
            "-q".into(),
            "-O".into(),
            "qcow2".into(),
            paths.root_disk().into_os_string(),
            tmp.clone().into_os_string(),
        ])
        .await?;
        std::fs::rename(&tmp, out).map_err(|e| trans(format!("cannot move {} into place: {e}", tmp.display())))?;
        tracing::info!(instance = %id, to = %out.display(), "machine disk exported");
        Ok(())
    }

    /// Creates the machine of `spec`, stopped, with `disk` (a qcow2 file another host exported)
    /// as its root disk instead of a fresh overlay; the file is moved into the machine's
    /// directory. A machine already here is left as it is (a repeated call).
    pub async fn import_disk(&self, spec: &MachineSpec, disk: &Path) -> Result<MachineState, DriverError> {
        let paths = self.vm(&spec.instance_id)?;
        let _guard = self.lock(&spec.instance_id).await;
        if let Some(rec) = self.load(&spec.instance_id, &paths)? {
            return Ok(rec.state());
        }
        if spec.boot.is_none() {
            return Err(no_boot(spec));
        }
        let (format, _) = self.image_info(disk).await?;
        if format != "qcow2" {
            return Err(perm(format!("the imported disk {} is {format}, not qcow2", disk.display())));
        }
        create_private_dir(&paths.dir)?;
        std::fs::rename(disk, paths.root_disk())
            .or_else(|_| std::fs::copy(disk, paths.root_disk()).map(|_| ()))
            .map_err(|e| trans(format!("cannot move {} into {}: {e}", disk.display(), paths.dir.display())))?;
        let seed = self.write_seed(&paths, spec)?;
        let rec = VmRecord {
            spec: spec.clone(),
            ssh_port: self.pick_port()?,
            seed_instance_id: seed.instance_id,
            generation: 1,
            power: Power::Stopped,
            rules: None,
        };
        self.save(&paths, &rec)?;
        tracing::info!(instance = %spec.instance_id, ssh_port = rec.ssh_port, "machine imported");
        Ok(rec.state())
    }

    // ---- volumes -------------------------------------------------------------------------

    /// Plugs `v` into the running machine (each half only if missing) and checks it is there.
    async fn hot_plug(&self, id: &str, q: &mut Qmp, v: &VolumeAttachment) -> Result<(), DriverError> {
        let e = |e| qmp_err(id, e);
        if !node_exists(q, &v.node_name()).await.map_err(e)? {
            q.execute("blockdev-add", Some(cmdline::volume_blockdev_qmp(v))).await.map_err(e)?;
        }
        if !device_exists(q, &v.device_id()).await.map_err(e)?
            && let Err(err) = q.execute("device_add", Some(cmdline::volume_device_qmp(v))).await
        {
            let _ = q.execute("blockdev-del", Some(json!({ "node-name": v.node_name() }))).await;
            return Err(qmp_err(id, err));
        }
        let blocks = q.execute("query-block", None).await.map_err(e)?;
        let plugged = blocks.as_array().is_some_and(|bs| {
            bs.iter().any(|b| {
                b["inserted"]["node-name"] == v.node_name()
                    && b["qdev"].as_str().is_some_and(|d| d.contains(&format!("/{}/", v.device_id())))
            })
        });
        if !plugged {
            return Err(trans(format!("instance {id}: volume {} was added but QEMU does not show it", v.volume_id)));
        }
        Ok(())
    }

    /// Unplugs `v` from the running machine: `device_del`, wait for the guest to let go, then
    /// `blockdev-del`.
    async fn hot_unplug(&self, id: &str, q: &mut Qmp, v: &VolumeAttachment) -> Result<(), DriverError> {
        let e = |e| qmp_err(id, e);
        let dev = v.device_id();
        if device_exists(q, &dev).await.map_err(e)? {
            q.clear_events();
            if let Err(err) = q.execute("device_del", Some(json!({ "id": dev }))).await {
                // A second request while the first is pending is refused; wait for the first.
                tracing::debug!(instance = %id, error = %err, "device_del refused");
            }
            let deadline = tokio::time::Instant::now() + self.timeouts.detach;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let ev = q
                    .wait_event(left.min(Duration::from_secs(1)), |ev| {
                        ev.name == "DEVICE_DELETED" && ev.data["device"] == dev.as_str()
                    })
                    .await
                    .map_err(e)?;
                if ev.is_some() || !device_exists(q, &dev).await.map_err(e)? {
                    break;
                }
                if left.is_zero() {
                    return Err(trans(format!(
                        "instance {id}: the guest did not release volume {} within {} s (is it still booting, or \
                         is the disk in use?); try again, or stop the instance and detach it then",
                        v.volume_id,
                        self.timeouts.detach.as_secs()
                    )));
                }
            }
        }
        if node_exists(q, &v.node_name()).await.map_err(e)? {
            q.execute("blockdev-del", Some(json!({ "node-name": v.node_name() }))).await.map_err(e)?;
        }
        Ok(())
    }

    fn check_volume(&self, volume_id: &str) -> Result<PathBuf, DriverError> {
        check_id("volume", volume_id, MAX_VOLUME_ID).map_err(perm)?;
        Ok(self.data.volume(volume_id))
    }
}

/// The longest Unix socket path Linux takes (`sun_path` holds 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;

/// QEMU cannot bind a socket whose path is longer; say so before it fails obscurely.
fn check_socket_path(path: &Path) -> Result<(), DriverError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(perm(format!(
            "{} is {len} bytes, longer than a Unix socket path may be ({MAX_SOCKET_PATH}): use a shorter data directory",
            path.display()
        )));
    }
    Ok(())
}

fn no_boot(spec: &MachineSpec) -> DriverError {
    perm(format!(
        "image {} has no bootable file in this cloud: an operator must import it with `openwinv admin images import`",
        spec.image_id
    ))
}

fn missing_file(spec: &MachineSpec, path: &Path) -> DriverError {
    perm(format!(
        "image {} points at {}, which is missing: re-import it with `openwinv admin images import`",
        spec.image_id,
        path.display()
    ))
}

async fn node_exists(q: &mut Qmp, node: &str) -> Result<bool, QmpError> {
    let nodes = q.execute("query-named-block-nodes", Some(json!({ "flat": true }))).await?;
    Ok(nodes.as_array().is_some_and(|ns| ns.iter().any(|n| n["node-name"] == node)))
}

async fn device_exists(q: &mut Qmp, id: &str) -> Result<bool, QmpError> {
    let list = q.execute("qom-list", Some(json!({ "path": "/machine/peripheral" }))).await?;
    Ok(list.as_array().is_some_and(|ps| ps.iter().any(|p| p["name"] == id)))
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

/// The pid of this machine's QEMU if it runs: the pidfile names a live process whose command
/// line has this machine's pidfile (so a reused pid is not mistaken for it).
pub fn live_pid(paths: &VmPaths) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(paths.pidfile()).ok()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let pidfile = paths.pidfile();
    let ours = cmdline.split(|b| *b == 0).any(|arg| arg == pidfile.as_os_str().as_encoded_bytes());
    if !ours {
        reap_if_child(pid);
        return None;
    }
    Some(pid)
}

/// A QEMU that exited while this process is its parent (a control plane running as PID 1, or
/// as a subreaper) stays a zombie until waited for.
fn reap_if_child(pid: i32) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return;
    };
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next();
    let ppid: Option<u32> = fields.next().and_then(|p| p.parse().ok());
    if state == Some("Z") && ppid == Some(std::process::id()) {
        // SAFETY: waitpid on our own zombie child, without blocking; no memory is shared.
        unsafe {
            libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
        }
    }
}

async fn wait_gone(paths: &VmPaths, pid: i32, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if live_pid(paths) != Some(pid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// The console port: the sockets QEMU serves, and the SSH forward and stop reason of the view.
#[async_trait::async_trait]
impl ConsoleBroker for QemuDriver {
    /// The machine's serial socket, serial log and VNC socket, once the machine exists.
    async fn console(&self, id: &str) -> Option<ConsoleAccess> {
        let paths = self.vm(id).ok()?;
        if !paths.dir.exists() {
            return None;
        }
        Some(ConsoleAccess::Sockets(ConsoleEndpoints {
            serial: Some(paths.serial()),
            serial_log: Some(paths.serial_log()),
            vnc: Some(paths.vnc()),
        }))
    }

    async fn info(&self, id: &str) -> MachineInfo {
        let Ok(paths) = self.vm(id) else {
            return MachineInfo::default();
        };
        let Ok(Some(rec)) = self.load(id, &paths) else {
            return MachineInfo::default();
        };
        // On a real network the machine is reached at its addresses, not a forwarded port.
        let ssh_port = if self.networks.is_some() && rec.spec.network.is_some() { None } else { Some(rec.ssh_port) };
        let mut info = MachineInfo { ssh_port, error: None };
        // Without waiting behind a long call (a soft reboot).
        if let Ok(_guard) = self.lock_of(id).try_lock_owned()
            && let Some((_, Some(status))) = self.observe(&paths).await
        {
            info.error = match status.as_str() {
                "guest-panicked" => Some("the guest operating system crashed (kernel panic); reboot it".into()),
                "internal-error" => Some("QEMU stopped the machine on an internal error; reboot it".into()),
                "io-error" => Some("the machine is paused on a disk I/O error (is the host disk full?)".into()),
                _ => None,
            };
        }
        info
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
