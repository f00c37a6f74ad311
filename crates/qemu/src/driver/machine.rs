//! A machine's life cycle: its network port, its SSH port, its QEMU process (start, watch,
//! stop) and its record's power and generation.

use super::*;

impl QemuDriver {
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
    pub(super) async fn plug(&self, rec: &VmRecord) -> Result<Option<(OwnedFd, String)>, DriverError> {
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

    pub(super) fn pick_port(&self) -> Result<u16, DriverError> {
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

    // ---- processes -----------------------------------------------------------------------

    pub(super) async fn qmp(&self, paths: &VmPaths) -> Result<Qmp, QmpError> {
        Qmp::connect(&paths.qmp(), self.timeouts.qmp).await
    }

    /// What the machine is doing: `None` when no QEMU of ours runs, else its pid and QMP status
    /// (`None` status when QMP does not answer).
    pub(super) async fn observe(&self, paths: &VmPaths) -> Option<(i32, Option<String>)> {
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
    pub(super) async fn kill(&self, id: &str, paths: &VmPaths) -> Result<(), DriverError> {
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
    pub(super) async fn start_locked(&self, id: &str, paths: &VmPaths, rec: &mut VmRecord) -> Result<(), DriverError> {
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
    pub(super) fn note(&self, paths: &VmPaths, rec: &mut VmRecord, power: Power) -> Result<(), DriverError> {
        if rec.power != power {
            rec.power = power;
            rec.generation += 1;
            self.save(paths, rec)?;
        }
        Ok(())
    }

    pub(super) fn bump(&self, paths: &VmPaths, rec: &mut VmRecord) -> Result<(), DriverError> {
        rec.generation += 1;
        self.save(paths, rec)
    }

    pub(super) async fn stop_locked(&self, id: &str, paths: &VmPaths, rec: &mut VmRecord) -> Result<(), DriverError> {
        self.kill(id, paths).await?;
        self.note(paths, rec, Power::Stopped)
    }

    /// Whether the guest runs (a QEMU whose guest powered off does not count).
    pub(super) async fn is_running(&self, paths: &VmPaths) -> bool {
        matches!(self.observe(paths).await, Some((_, status)) if status.as_deref() != Some("shutdown"))
    }

    pub(super) async fn create_locked(&self, spec: &MachineSpec, paths: &VmPaths) -> Result<MachineState, DriverError> {
        if let Some(rec) = self.load(&spec.instance_id, paths)? {
            return Ok(rec.state());
        }
        if spec.boot.is_none() {
            return Err(no_boot(spec));
        }
        create_private_dir(&paths.dir)?;
        self.make_root_disk(paths, spec).await?;
        let seed = self.write_seed(paths, spec)?;
        let rec = VmRecord::new_stopped(spec, self.pick_port()?, seed.instance_id);
        // Written last: its presence means the machine is complete.
        self.save(paths, &rec)?;
        tracing::info!(instance = %spec.instance_id, ssh_port = rec.ssh_port, "machine created");
        Ok(rec.state())
    }
}

/// The longest Unix socket path Linux takes (`sun_path` holds 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;

/// QEMU cannot bind a socket whose path is longer; say so before it fails obscurely.
pub(super) fn check_socket_path(path: &Path) -> Result<(), DriverError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(perm(format!(
            "{} is {len} bytes, longer than a Unix socket path may be ({MAX_SOCKET_PATH}): use a shorter data directory",
            path.display()
        )));
    }
    Ok(())
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
