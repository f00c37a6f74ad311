//! The driver against real QEMU guests: the test image of `scripts/build-test-image` (a Debian
//! kernel and a busybox initramfs that reports on the serial console, `docs/qemu.md`).
//!
//! Needs `OPENWINV_TEST_IMAGE=<dir>`; fails (never skips) without it. Guests run under TCG unless
//! `OPENWINV_TEST_ACCEL` says otherwise, so the tests behave the same on every host.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openwinv_driver::{BootImage, ComputeDriver, ConsoleBroker, MachineSpec, Power, VolumeSpec};
use openwinv_qemu::driver::live_pid;
use openwinv_qemu::paths::DataDir;
use openwinv_qemu::{Accel, QemuDriver, Timeouts};

/// Long enough for a TCG boot on a busy two-core machine.
const BOOT: Duration = Duration::from_secs(240);

fn image_dir() -> PathBuf {
    match std::env::var_os("OPENWINV_TEST_IMAGE") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "OPENWINV_TEST_IMAGE is not set. These tests boot the test guest: build it with \
             `scripts/build-test-image target/test-image`, then run \
             `OPENWINV_TEST_IMAGE=$PWD/target/test-image cargo test -p openwinv-qemu`"
        ),
    }
}

fn accel() -> Accel {
    std::env::var("OPENWINV_TEST_ACCEL").ok().and_then(|a| a.parse().ok()).unwrap_or(Accel::Tcg)
}

fn spec(id: &str, name: &str, password: &str) -> MachineSpec {
    let dir = image_dir();
    let cmdline = std::fs::read_to_string(dir.join("cmdline"))
        .unwrap_or_else(|e| panic!("{}/cmdline: {e}; rebuild the test image", dir.display()));
    MachineSpec {
        instance_id: id.into(),
        hostname: name.into(),
        vcpu: 1,
        memory: 1,
        disk: 1,
        image_id: "IMG-test".into(),
        username: "root".into(),
        password: password.into(),
        ssh_keys: vec![],
        user_script: None,
        boot: Some(BootImage::Kernel {
            kernel: dir.join("vmlinuz"),
            initrd: Some(dir.join("initrd.img")),
            cmdline: cmdline.trim().into(),
            root_disk: Some(dir.join("root.raw")),
        }),
        network: None,
    }
}

/// A data directory whose QEMUs are killed when the test ends, passed or failed.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn driver(&self) -> QemuDriver {
        QemuDriver::new(self.dir.path(), accel(), "qemu-system-x86_64", "qemu-img").with_timeouts(Timeouts {
            soft_reboot: Duration::from_secs(120),
            detach: Duration::from_secs(60),
            ..Timeouts::default()
        })
    }

    fn data(&self) -> DataDir {
        DataDir::new(self.dir.path())
    }

    fn log(&self, id: &str) -> Log {
        Log { path: self.data().vm(id).serial_log(), seen: 0 }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let Ok(vms) = std::fs::read_dir(self.data().vms()) else {
            return;
        };
        for vm in vms.flatten() {
            if let Some(pid) = live_pid(&openwinv_qemu::paths::VmPaths::new(vm.path())) {
                // SAFETY: kill(2) on a QEMU this test started (checked by live_pid).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// The serial log of a machine, read forward: each wait looks only at what came after the
/// previous match.
struct Log {
    path: PathBuf,
    seen: usize,
}

impl Log {
    /// Waits for `needle`; returns it with the rest of its line.
    async fn wait(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let text = std::fs::read(&self.path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            if let Some(rest) = text.get(self.seen..)
                && let Some(at) = rest.find(needle)
            {
                // From the needle on: after a reset the first line may follow the shell's prompt.
                let line_end = rest[at..].find('\n').map_or(rest.len(), |i| at + i);
                let line = rest[at..line_end].trim_end_matches('\r').to_owned();
                self.seen += line_end;
                return line;
            }
            if start.elapsed() > BOOT {
                let tail: String = text.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
                panic!("no {needle:?} on the serial console within {BOOT:?}; it ends with:\n{tail}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Everything printed after the last match so far.
    fn rest(&self) -> String {
        let text = std::fs::read(&self.path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        text.get(self.seen..).unwrap_or_default().to_owned()
    }
}

fn pid(env: &Env, id: &str) -> Option<i32> {
    live_pid(&env.data().vm(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle() {
    let env = Env::new();
    let d = env.driver();
    let id = "INSTANCE-life";
    let sp = spec(id, "웹서버 01", "hunter2");

    let s = d.create(&sp).await.expect("create");
    assert_eq!(s.power, Power::Stopped);
    assert_eq!(d.create(&sp).await.expect("create again"), s, "create is idempotent");
    assert!(d.info(id).await.ssh_port.is_some());

    let g1 = d.start(id).await.expect("start");
    assert_eq!(g1.power, Power::Running);
    let first_pid = pid(&env, id).expect("qemu runs");
    assert_eq!(d.start(id).await.expect("start again"), g1, "start of a running machine changes nothing");
    assert_eq!(pid(&env, id), Some(first_pid));
    let mut log = env.log(id);
    assert_eq!(log.wait("openwinv-guest: boot ").await, "openwinv-guest: boot 1");
    assert_eq!(log.wait("openwinv-guest: hostname ").await, "openwinv-guest: hostname wepseobeo-01");
    log.wait("openwinv-guest: ready").await;

    // Reboot HARD: same process, the guest boots again.
    let g2 = d.reboot(id, true).await.expect("reboot hard");
    assert!(g2.generation > g1.generation);
    assert_eq!(pid(&env, id), Some(first_pid));
    assert_eq!(log.wait("openwinv-guest: boot ").await, "openwinv-guest: boot 2");
    log.wait("openwinv-guest: ready").await;

    // A volume, hot-plugged and hot-unplugged.
    let vol = VolumeSpec { volume_id: "BS-hot".into(), size: 1, kind: "ssd".into() };
    d.create_volume(&vol).await.expect("create volume");
    d.create_volume(&vol).await.expect("create volume again");
    d.attach_volume(id, &vol).await.expect("attach");
    d.attach_volume(id, &vol).await.expect("attach again");
    assert_eq!(log.wait("openwinv-guest: disk-added ").await, "openwinv-guest: disk-added vdb 1073741824");
    let err = d.delete_volume("BS-hot").await.expect_err("attached volumes are not deleted");
    assert!(err.to_string().contains("detach it first"), "{err}");
    let err = d.attach_volume("INSTANCE-other", &vol).await.expect_err("no such machine");
    assert!(err.to_string().contains("no machine"), "{err}");
    d.detach_volume(id, "BS-hot").await.expect("detach");
    d.detach_volume(id, "BS-hot").await.expect("detach again");
    assert_eq!(log.wait("openwinv-guest: disk-removed ").await, "openwinv-guest: disk-removed vdb");

    // Stop: the process goes.
    let s = d.stop(id).await.expect("stop");
    assert_eq!(s.power, Power::Stopped);
    assert_eq!(pid(&env, id), None);
    assert_eq!(d.stop(id).await.expect("stop again").power, Power::Stopped);
    assert_eq!(d.state(id).await.expect("state").power, Power::Stopped);

    // Start again, with the volume attached while stopped: it is there at boot.
    d.attach_volume(id, &vol).await.expect("attach while stopped");
    d.start(id).await.expect("start again");
    assert_eq!(log.wait("openwinv-guest: boot ").await, "openwinv-guest: boot 3");
    assert_eq!(log.wait("openwinv-guest: disks ").await, "openwinv-guest: disks vda:1073741824 vdb:1073741824");
    log.wait("openwinv-guest: ready").await;
    let running_pid = pid(&env, id).expect("qemu runs");

    // The control plane restarts: a new driver finds the machine running, same process.
    drop(d);
    let d = env.driver();
    let s = d.state(id).await.expect("state after restart");
    assert_eq!(s.power, Power::Running);
    assert_eq!(pid(&env, id), Some(running_pid));

    // QEMU killed behind the driver's back: Stopped, with a new generation.
    // SAFETY: kill(2) on this test's QEMU.
    unsafe {
        libc::kill(running_pid, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid(&env, id).is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = d.state(id).await.expect("state after kill");
    assert_eq!(after.power, Power::Stopped);
    assert!(after.generation > s.generation, "an observed change bumps the generation");

    // Destroy: the directory goes, the volume stays and is free again.
    d.destroy(id).await.expect("destroy");
    d.destroy(id).await.expect("destroy again");
    assert!(!env.data().vm(id).dir.exists());
    assert_eq!(d.state(id).await.expect("state").power, Power::Absent);
    assert!(env.data().volume("BS-hot").exists());
    d.delete_volume("BS-hot").await.expect("delete the freed volume");
    assert!(!env.data().volume("BS-hot").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_reboot_rebuild_resize() {
    let env = Env::new();
    let d = env.driver();
    let id = "INSTANCE-soft";
    let mut sp = spec(id, "soft", "first-password");
    sp.user_script = Some("#!/bin/sh\necho hello from the script\nopenwinv-marker kept\n".into());
    d.create(&sp).await.expect("create");
    d.start(id).await.expect("start");
    let mut log = env.log(id);
    let first_iid = log.wait("openwinv-guest: instance-id ").await;
    log.wait("openwinv-guest: first-boot").await;
    log.wait("hello from the script").await;
    log.wait("openwinv-guest: script-exit 0").await;
    log.wait("openwinv-guest: ready").await;

    // Reboot SOFT: ACPI power button, the guest powers off, the driver resets it.
    let started = Instant::now();
    d.reboot(id, false).await.expect("soft reboot");
    eprintln!("soft reboot took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(110), "the guest powered off by itself (no fallback to HARD)");
    assert_eq!(log.wait("openwinv-guest: boot ").await, "openwinv-guest: boot 2");
    assert_eq!(log.wait("openwinv-guest: instance-id ").await, first_iid, "same seed, no first boot");
    log.wait("openwinv-guest: marker kept").await;
    log.wait("openwinv-guest: ready").await;
    assert!(!log.rest().contains("first-boot"));

    // Resize while running: restarted with the new size, disk grown.
    let mut bigger = sp.clone();
    bigger.vcpu = 2;
    bigger.memory = 2;
    bigger.disk = 2;
    let before = d.state(id).await.expect("state");
    let after = d.resize(&bigger).await.expect("resize");
    assert_eq!(after.power, Power::Running);
    assert!(after.generation > before.generation);
    assert_eq!(d.resize(&bigger).await.expect("resize again"), after, "the same size again is no change");
    let cpus = log.wait("openwinv-guest: cpus ").await;
    assert!(cpus.starts_with("openwinv-guest: cpus 2 memory-kb "), "{cpus}");
    let kb: u64 = cpus.rsplit(' ').next().and_then(|k| k.parse().ok()).expect("memory-kb");
    assert!(kb > 1_500_000, "about 2 GiB: {cpus}");
    assert_eq!(log.wait("openwinv-guest: disks ").await, "openwinv-guest: disks vda:2147483648");
    log.wait("openwinv-guest: ready").await;

    // Rebuild with a new password: fresh disk, new instance-id, first boot again.
    let mut rebuilt = bigger.clone();
    rebuilt.password = "second-password".into();
    rebuilt.user_script = None;
    d.rebuild(&rebuilt).await.expect("rebuild");
    assert_eq!(d.state(id).await.expect("state").power, Power::Running);
    assert_eq!(log.wait("openwinv-guest: boot ").await, "openwinv-guest: boot 1", "a fresh root disk");
    let iid = log.wait("openwinv-guest: instance-id ").await;
    assert_ne!(iid, first_iid);
    log.wait("openwinv-guest: first-boot").await;
    log.wait("openwinv-guest: ready").await;
    assert!(!log.rest().contains("marker kept"), "the old disk's marker is gone");

    // Stopped machine: reboot starts it.
    d.stop(id).await.expect("stop");
    assert_eq!(d.reboot(id, true).await.expect("reboot of a stopped machine").power, Power::Running);
    log.wait("openwinv-guest: ready").await;
    d.destroy(id).await.expect("destroy");
}

/// A guest that powers itself off is reported Stopped, and its QEMU (kept by -no-shutdown)
/// goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_poweroff_is_stopped() {
    let env = Env::new();
    let d = env.driver();
    let id = "INSTANCE-off";
    let mut sp = spec(id, "off", "pw");
    // The user script powers the guest off on its first boot.
    sp.user_script = Some("#!/bin/sh\nsync\npoweroff -f\n".into());
    d.create(&sp).await.expect("create");
    d.start(id).await.expect("start");
    let mut log = env.log(id);
    log.wait("openwinv-guest: first-boot").await;
    let deadline = Instant::now() + BOOT;
    loop {
        let s = d.state(id).await.expect("state");
        if s.power == Power::Stopped {
            break;
        }
        assert!(Instant::now() < deadline, "the guest did not power off");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(pid(&env, id), None, "QEMU quit");
    d.destroy(id).await.expect("destroy");
}

#[tokio::test]
async fn refusals() {
    let env = Env::new();
    let d = env.driver();
    let mut sp = spec("INSTANCE-noboot", "x", "pw");
    sp.boot = None;
    let err = d.create(&sp).await.expect_err("no boot image");
    assert!(err.to_string().contains("openwinv admin images import"), "{err}");
    assert!(matches!(err, openwinv_driver::DriverError::Permanent(_)));
    let err = d.start("INSTANCE-none").await.expect_err("no machine");
    assert!(err.to_string().contains("no machine"), "{err}");
    assert_eq!(d.state("INSTANCE-none").await.expect("state").power, Power::Absent);
    d.destroy("INSTANCE-none").await.expect("destroying nothing is fine");
    d.detach_volume("INSTANCE-none", "BS-x").await.expect("detaching from nothing is fine");
    let err = d.create(&spec("../escape", "x", "pw")).await.expect_err("bad id");
    assert!(err.to_string().contains("letters"), "{err}");
    let mut missing = spec("INSTANCE-missing", "x", "pw");
    if let Some(BootImage::Kernel { root_disk, .. }) = &mut missing.boot {
        *root_disk = Some(Path::new("/nonexistent/root.raw").into());
    }
    let err = d.create(&missing).await.expect_err("missing file");
    assert!(err.to_string().contains("/nonexistent/root.raw"), "{err}");
    assert!(d.console("INSTANCE-none").await.is_none());
}

/// A disk image (BIOS boot): the overlay lies on the image in its format, at least the
/// flavor's size, and the machine runs (the test image's blank disk boots nowhere, which is
/// fine for QEMU).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_image() {
    let env = Env::new();
    let d = env.driver();
    let id = "INSTANCE-disk";
    let mut sp = spec(id, "disk", "pw");
    sp.boot = Some(BootImage::Disk { path: image_dir().join("root.raw"), format: "raw".into() });
    d.create(&sp).await.expect("create");
    let root = env.data().vm(id).root_disk();
    let out = std::process::Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&root)
        .output()
        .expect("qemu-img info");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["backing-filename-format"], "raw");
    assert_eq!(info["backing-filename"], image_dir().join("root.raw").to_string_lossy().as_ref());
    assert_eq!(info["virtual-size"], 1u64 << 30);
    assert_eq!(d.start(id).await.expect("start").power, Power::Running);
    assert_eq!(d.state(id).await.expect("state").power, Power::Running);
    assert_eq!(d.stop(id).await.expect("stop").power, Power::Stopped);
    d.destroy(id).await.expect("destroy");
}
