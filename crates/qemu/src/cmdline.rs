//! The QEMU command line of a machine: a pure function of its configuration, so that what a
//! machine looks like to its guest is reviewed in one place and pinned by golden files
//! (`tests/golden/`).
//!
//! The machine is the one agreed with the test guest (`docs/qemu.md`): i440fx (`pc`), the root
//! disk as the first virtio-blk disk (`vda`), the seed as an IDE CD on `ide.1`, user-mode
//! networking with the guest's port 22 forwarded from 127.0.0.1, the serial console on a Unix
//! socket with a log file, QMP and VNC on Unix sockets, daemonized with a pidfile.

use std::path::PathBuf;

use crate::accel::Accelerator;
use crate::paths::{VmPaths, opt_path};

/// Direct kernel boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

/// A volume plugged in at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeAttachment {
    pub volume_id: String,
    pub path: PathBuf,
}

impl VolumeAttachment {
    /// The QEMU block node of the volume.
    pub fn node_name(&self) -> String {
        node_name(&self.volume_id)
    }

    /// The QEMU device id of the volume's virtio-blk device.
    pub fn device_id(&self) -> String {
        device_id(&self.volume_id)
    }
}

pub fn node_name(volume_id: &str) -> String {
    format!("vol-{volume_id}")
}

pub fn device_id(volume_id: &str) -> String {
    format!("dev-{volume_id}")
}

/// A tap device QEMU inherits as descriptor `fd`, and the machine's MAC on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapNic {
    pub fd: i32,
    pub mac: String,
}

/// Everything the command line depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub instance_id: String,
    /// The machine's directory: root disk, seed, sockets, log and pidfile live there.
    pub paths: VmPaths,
    pub vcpu: u32,
    pub memory_mb: u64,
    pub accel: Accelerator,
    /// `None` boots from the root disk (BIOS).
    pub kernel: Option<KernelBoot>,
    /// The user-mode network's forwarded SSH port (used when `tap` is `None`).
    pub ssh_port: u16,
    /// The machine's tap on its real network, opened by the driver and inherited by QEMU.
    pub tap: Option<TapNic>,
    /// Attached volumes in attach order; they become `vdb`, `vdc`, … in the guest.
    pub volumes: Vec<VolumeAttachment>,
}

/// The arguments after `qemu-system-x86_64`. Paths are rendered as UTF-8 (the driver refuses a
/// data directory whose path is not), with commas doubled inside `key=value` options.
pub fn argv(c: &VmConfig) -> Vec<String> {
    let p = &c.paths;
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-name", &c.instance_id.replace(',', ",,")]);
    push(&["-machine", "pc", "-accel", c.accel.name()]);
    push(&["-nodefaults", "-no-user-config", "-display", "none", "-vga", "std"]);
    push(&["-smp", &c.vcpu.to_string(), "-m", &c.memory_mb.to_string(), "-no-shutdown"]);
    if let Some(k) = &c.kernel {
        push(&["-kernel", &k.kernel.to_string_lossy()]);
        if let Some(initrd) = &k.initrd {
            push(&["-initrd", &initrd.to_string_lossy()]);
        }
        push(&["-append", &k.cmdline]);
    }
    // With -kernel, QEMU's Linux boot option ROM holds boot index 0 (and QEMU refuses a second);
    // the root disk is then only a disk.
    let root_device = match c.kernel {
        None => "virtio-blk-pci,drive=root,id=root-disk,bootindex=0",
        Some(_) => "virtio-blk-pci,drive=root,id=root-disk",
    };
    push(&[
        "-blockdev",
        &format!("driver=qcow2,node-name=root,file.driver=file,file.filename={}", opt_path(&p.root_disk())),
        "-device",
        root_device,
    ]);
    // `format=raw` keeps QEMU from probing the seed's format (and warning about it); the guest
    // sees the same CD either way.
    push(&[
        "-drive",
        &format!("file={},format=raw,if=none,id=seed,media=cdrom,readonly=on", opt_path(&p.seed())),
        "-device",
        "ide-cd,drive=seed,bus=ide.1,unit=0",
    ]);
    match &c.tap {
        None => push(&[
            "-netdev",
            &format!("user,id=net0,hostfwd=tcp:127.0.0.1:{}-:22", c.ssh_port),
            "-device",
            "virtio-net-pci,netdev=net0",
        ]),
        Some(t) => push(&[
            "-netdev",
            &format!("tap,id=net0,fd={},vhost=off", t.fd),
            "-device",
            &format!("virtio-net-pci,netdev=net0,mac={}", t.mac),
        ]),
    }
    push(&[
        "-chardev",
        &format!(
            "socket,id=ser0,path={},server=on,wait=off,logfile={},logappend=on",
            opt_path(&p.serial()),
            opt_path(&p.serial_log())
        ),
        "-serial",
        "chardev:ser0",
    ]);
    push(&["-qmp", &format!("unix:{},server=on,wait=off", opt_path(&p.qmp()))]);
    push(&["-vnc", &format!("unix:{}", opt_path(&p.vnc()))]);
    push(&["-pidfile", &p.pidfile().to_string_lossy(), "-daemonize"]);
    for v in &c.volumes {
        push(&["-blockdev", &volume_blockdev(v), "-device", &volume_device(v)]);
    }
    a
}

/// `-blockdev` of a volume; the QMP `blockdev-add` of a hot-plug says the same in JSON.
pub fn volume_blockdev(v: &VolumeAttachment) -> String {
    format!("driver=qcow2,node-name={},file.driver=file,file.filename={}", v.node_name(), opt_path(&v.path))
}

/// `-device` of a volume; the QMP `device_add` of a hot-plug says the same in JSON.
pub fn volume_device(v: &VolumeAttachment) -> String {
    format!("virtio-blk-pci,drive={},id={}", v.node_name(), v.device_id())
}

/// The QMP arguments of `blockdev-add` for a hot-plugged volume.
pub fn volume_blockdev_qmp(v: &VolumeAttachment) -> serde_json::Value {
    serde_json::json!({
        "driver": "qcow2",
        "node-name": v.node_name(),
        "file": { "driver": "file", "filename": v.path.to_string_lossy() },
    })
}

/// The QMP arguments of `device_add` for a hot-plugged volume.
pub fn volume_device_qmp(v: &VolumeAttachment) -> serde_json::Value {
    serde_json::json!({ "driver": "virtio-blk-pci", "drive": v.node_name(), "id": v.device_id() })
}

/// The command line as text, one argument per line (golden files, logs).
pub fn render(binary: &str, args: &[String]) -> String {
    let mut out = String::from(binary);
    out.push('\n');
    for a in args {
        out.push_str(a);
        out.push('\n');
    }
    out
}
