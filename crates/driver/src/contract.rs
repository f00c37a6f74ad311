//! The compute driver contract: the hypervisor side. Handlers never call a driver; saga steps do
//! (and the reconciler reads machine states).
//!
//! Calls are idempotent (keyed by the instance id), so a step that runs twice has one effect.
//! State reports carry a generation number so that a late report cannot roll state back.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::firewall::CompiledRules;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

/// How the engine paces the steps that are hypervisor work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Run at once (real drivers take the time they take).
    Immediate,
    /// Wait this long on the server clock before each paced step (simulated, timed mode).
    Timed(Duration),
    /// Wait until the operator grants a step (simulated, explicit mode).
    Explicit,
}

/// Everything a driver needs to build or change a machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineSpec {
    pub instance_id: String,
    pub hostname: String,
    pub vcpu: u32,
    /// GB.
    pub memory: u32,
    /// GB.
    pub disk: u32,
    pub image_id: String,
    pub username: String,
    pub password: String,
    pub ssh_keys: Vec<String>,
    /// The user script's content, run once per instance at first boot.
    pub user_script: Option<String>,
    /// What to boot: the file the catalog maps the image to (`openwinv admin images import`).
    /// `None` when the image has no file in this cloud; a driver that boots real machines refuses.
    #[serde(default)]
    pub boot: Option<BootImage>,
    /// The machine's place on its (account, zone) private network, as the control plane
    /// allocated it. A driver with real networks plugs the machine in there (and the seed
    /// carries the same static address); `None` for machines made before addresses existed.
    #[serde(default)]
    pub network: Option<MachineNetwork>,
}

/// A machine's addresses, as the control plane hands them out (the only allocator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineNetwork {
    pub account_id: String,
    pub zone_id: String,
    /// The private address on the account's subnet.
    pub ip: std::net::Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The subnet's gateway (DHCP, DNS, the default route).
    pub gateway: std::net::Ipv4Addr,
    /// The public address 1:1 NATed to the machine, if any.
    pub public_ip: Option<std::net::Ipv4Addr>,
    /// The network's VXLAN id when it may span hosts (the control plane's number for the
    /// (account, zone) network, unique cloud-wide); `None`: the network lives on one host.
    #[serde(default)]
    pub vni: Option<u32>,
}

/// The file behind a catalog image, as a real driver boots it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BootImage {
    /// A bootable disk image; instance root disks are qcow2 overlays on it.
    Disk {
        path: std::path::PathBuf,
        /// `qcow2` or `raw`.
        format: String,
    },
    /// Direct kernel boot, with an optional root disk that instance overlays are made on.
    Kernel {
        kernel: std::path::PathBuf,
        initrd: Option<std::path::PathBuf>,
        cmdline: String,
        root_disk: Option<std::path::PathBuf>,
    },
}

impl BootImage {
    /// Every file the image names, in a fixed order (kernel, initrd, root disk; or the disk).
    pub fn files(&self) -> Vec<&std::path::Path> {
        match self {
            BootImage::Disk { path, .. } => vec![path.as_path()],
            BootImage::Kernel { kernel, initrd, root_disk, .. } => {
                std::iter::once(kernel).chain(initrd).chain(root_disk).map(|p| p.as_path()).collect()
            }
        }
    }

    /// The same image with every file path passed through `f` (a host's cached copy of it).
    pub fn map_files(&self, mut f: impl FnMut(&std::path::Path) -> std::path::PathBuf) -> BootImage {
        match self {
            BootImage::Disk { path, format } => BootImage::Disk { path: f(path), format: format.clone() },
            BootImage::Kernel { kernel, initrd, cmdline, root_disk } => BootImage::Kernel {
                kernel: f(kernel),
                initrd: initrd.as_deref().map(&mut f),
                cmdline: cmdline.clone(),
                root_disk: root_disk.as_deref().map(&mut f),
            },
        }
    }
}

/// A boot file named by its content, as a remote host receives it beside the spec (the work
/// item's `boot_files`): the host fetches the file by `sha256` from the control plane
/// (`GET /internal/v1/images/{sha256}`), checks size and digest, and boots its own copy in place
/// of `path`, which is the control plane's file (`docs/hosts.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootFile {
    /// The path in [`BootImage`] this file stands for.
    pub path: std::path::PathBuf,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// A block-storage volume as a driver sees it. The driver owns the volume's storage (the QEMU
/// driver keeps one qcow2 file per volume); the store owns its record and attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub volume_id: String,
    /// GB.
    pub size: u32,
    /// The catalog type (`ssd`, `sata`, …).
    pub kind: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Power {
    Running,
    Stopped,
    Absent,
}

/// A driver's view of one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    pub power: Power,
    /// Increases with every change the driver observes.
    pub generation: u64,
}

/// What a driver can do beyond machines' life cycle. The API reads it before accepting a
/// request, so that asking for a feature the host lacks is a clear refusal up front (spec'd in
/// `docs/compat.md`), never an operation that fails on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Firewalls are enforced on the machines' traffic ([`ComputeDriver::apply_firewall`]).
    pub firewalls: bool,
    /// Public addresses reach the machines (a pool the host routes).
    pub public_ips: bool,
    /// Block-storage volumes ([`ComputeDriver::create_volume`] and the rest).
    pub block_storage: bool,
    /// A remote console per machine.
    pub consoles: bool,
}

impl Capabilities {
    /// Nothing beyond machines: what the trait's default methods give.
    pub const NONE: Capabilities =
        Capabilities { firewalls: false, public_ips: false, block_storage: false, consoles: false };
    /// Everything.
    pub const ALL: Capabilities =
        Capabilities { firewalls: true, public_ips: true, block_storage: true, consoles: true };
}

#[async_trait::async_trait]
pub trait ComputeDriver: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn pacing(&self) -> Pacing;
    /// Creates (or finds) the machine, powered off.
    async fn create(&self, spec: &MachineSpec) -> Result<MachineState, DriverError>;
    async fn start(&self, instance_id: &str) -> Result<MachineState, DriverError>;
    /// Hard power-off, as iwinv documents shutdown.
    async fn stop(&self, instance_id: &str) -> Result<MachineState, DriverError>;
    async fn reboot(&self, instance_id: &str, hard: bool) -> Result<MachineState, DriverError>;
    /// Replaces the root disk from `spec.image_id` and reseeds it; keeps addresses and volumes.
    async fn rebuild(&self, spec: &MachineSpec) -> Result<MachineState, DriverError>;
    /// Applies `spec`'s vCPU, memory and disk.
    async fn resize(&self, spec: &MachineSpec) -> Result<MachineState, DriverError>;
    /// Removes the machine; absent machines are fine.
    async fn destroy(&self, instance_id: &str) -> Result<(), DriverError>;
    async fn state(&self, instance_id: &str) -> Result<MachineState, DriverError>;
    /// Whether machines outlive the control plane and can stop on their own (a QEMU process
    /// killed, a guest powered off), so the server must reconcile its records with `state`.
    /// The simulated driver's machines are the store's records: nothing to reconcile.
    fn reconciles(&self) -> bool {
        false
    }
    /// What this driver can do; the default is nothing beyond machines, matching the default
    /// methods below, which refuse.
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }
    /// Replaces the firewall rule set enforced for the machine's traffic with `rules` (the
    /// compiled effect of every firewall attached to it). Idempotent: applying the same set twice
    /// is one change. A driver that cannot enforce firewalls refuses, so nothing passes silently.
    async fn apply_firewall(&self, instance_id: &str, rules: &CompiledRules) -> Result<(), DriverError> {
        let _ = (instance_id, rules);
        Err(DriverError::Permanent(format!("the {} driver cannot enforce firewalls", self.name())))
    }
    /// Creates (or finds) the volume's storage, detached. A driver without block storage refuses.
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), DriverError> {
        let _ = spec;
        Err(DriverError::Permanent(format!("the {} driver has no block storage", self.name())))
    }
    /// Deletes the volume's storage; an absent volume is fine, an attached one is refused.
    async fn delete_volume(&self, volume_id: &str) -> Result<(), DriverError> {
        let _ = volume_id;
        Err(DriverError::Permanent(format!("the {} driver has no block storage", self.name())))
    }
    /// Attaches the volume to the machine (hot-plugged when it runs); attaching it again to the
    /// same machine is one change, to another machine is refused.
    async fn attach_volume(&self, instance_id: &str, spec: &VolumeSpec) -> Result<(), DriverError> {
        let _ = (instance_id, spec);
        Err(DriverError::Permanent(format!("the {} driver has no block storage", self.name())))
    }
    /// Detaches the volume from the machine; a volume not attached to it, or an absent machine
    /// or volume, is fine.
    async fn detach_volume(&self, instance_id: &str, volume_id: &str) -> Result<(), DriverError> {
        let _ = (instance_id, volume_id);
        Err(DriverError::Permanent(format!("the {} driver has no block storage", self.name())))
    }
}
