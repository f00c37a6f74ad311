//! Compute drivers: the hypervisor side. Handlers never call a driver; saga steps do.
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

/// Where a machine's consoles are, for the server's browser console to proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleEndpoints {
    /// A Unix stream socket carrying the serial console (raw bytes both ways).
    pub serial: Option<std::path::PathBuf>,
    /// A file with everything the serial console printed so far.
    pub serial_log: Option<std::path::PathBuf>,
    /// A Unix stream socket speaking RFB (VNC) for the screen.
    pub vnc: Option<std::path::PathBuf>,
}

/// Facts about a machine a user sees as extensions of the instance view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// The host port forwarded to the guest's SSH port (user-mode networking).
    pub ssh_port: Option<u16>,
    /// Why the machine is in error, when the driver knows.
    pub error: Option<String>,
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
    /// The simulated driver's machines live in its memory only: its records are the truth.
    fn reconciles(&self) -> bool {
        false
    }
    /// Where the machine's consoles are; the simulated driver has none (the server renders its log).
    async fn console(&self, instance_id: &str) -> Option<ConsoleEndpoints> {
        let _ = instance_id;
        None
    }
    /// Extension facts for the instance view.
    async fn info(&self, instance_id: &str) -> MachineInfo {
        let _ = instance_id;
        MachineInfo::default()
    }
    /// Replaces the firewall rule set enforced for the machine's traffic with `rules` (the
    /// compiled effect of every firewall attached to it). Idempotent: applying the same set twice
    /// is one change. A driver that cannot enforce firewalls refuses, so nothing passes silently.
    async fn apply_firewall(&self, instance_id: &str, rules: &CompiledRules) -> Result<(), DriverError> {
        let _ = (instance_id, rules);
        Err(DriverError::Permanent(format!("the {} driver cannot enforce firewalls", self.name())))
    }
    /// Forgets what the driver keeps in memory about machines, volumes and applied rule sets,
    /// after the operator reset the store or restored a snapshot under it. Only for a driver
    /// whose records are its truth (the simulated one); others keep their machines.
    fn forget_all(&self) {}
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

/// A simulated volume: its spec and the machine it is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimVolume {
    pub spec: VolumeSpec,
    pub attached_to: Option<String>,
}

/// The simulated hypervisor: a product feature, not a mock. Machines exist as records; every call
/// succeeds (faults come from the engine's fault rules), and its pacing makes lifecycles take
/// realistic time on the server clock, or advance only when the operator steps them.
pub struct SimDriver {
    pacing: Pacing,
    machines: std::sync::Mutex<std::collections::HashMap<String, MachineState>>,
    /// The firewall rule set applied to each machine (absent: none applied, everything passes).
    firewalls: std::sync::Mutex<std::collections::HashMap<String, CompiledRules>>,
    volumes: std::sync::Mutex<std::collections::HashMap<String, SimVolume>>,
}

impl SimDriver {
    pub fn new(pacing: Pacing) -> SimDriver {
        SimDriver { pacing, machines: Default::default(), firewalls: Default::default(), volumes: Default::default() }
    }

    /// A simulated volume, if it exists.
    pub fn volume(&self, volume_id: &str) -> Option<SimVolume> {
        self.volumes.lock().expect("sim volumes").get(volume_id).cloned()
    }

    /// The rule set last applied to a machine, if any.
    pub fn applied_firewall(&self, instance_id: &str) -> Option<CompiledRules> {
        self.firewalls.lock().expect("sim firewalls").get(instance_id).cloned()
    }

    fn set(&self, id: &str, power: Power) -> MachineState {
        let mut m = self.machines.lock().expect("sim machines");
        let entry = m.entry(id.to_owned()).or_insert(MachineState { power, generation: 0 });
        entry.power = power;
        entry.generation += 1;
        *entry
    }
}

#[async_trait::async_trait]
impl ComputeDriver for SimDriver {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn pacing(&self) -> Pacing {
        self.pacing
    }

    async fn create(&self, spec: &MachineSpec) -> Result<MachineState, DriverError> {
        Ok(self.set(&spec.instance_id, Power::Stopped))
    }

    async fn start(&self, id: &str) -> Result<MachineState, DriverError> {
        Ok(self.set(id, Power::Running))
    }

    async fn stop(&self, id: &str) -> Result<MachineState, DriverError> {
        Ok(self.set(id, Power::Stopped))
    }

    async fn reboot(&self, id: &str, _hard: bool) -> Result<MachineState, DriverError> {
        Ok(self.set(id, Power::Running))
    }

    async fn rebuild(&self, spec: &MachineSpec) -> Result<MachineState, DriverError> {
        let power = self.state(&spec.instance_id).await?.power;
        Ok(self.set(&spec.instance_id, if power == Power::Absent { Power::Stopped } else { power }))
    }

    async fn resize(&self, spec: &MachineSpec) -> Result<MachineState, DriverError> {
        self.rebuild(spec).await
    }

    async fn destroy(&self, id: &str) -> Result<(), DriverError> {
        self.machines.lock().expect("sim machines").remove(id);
        self.firewalls.lock().expect("sim firewalls").remove(id);
        // A destroyed machine lets go of its volumes; they are kept.
        for v in self.volumes.lock().expect("sim volumes").values_mut() {
            if v.attached_to.as_deref() == Some(id) {
                v.attached_to = None;
            }
        }
        Ok(())
    }

    async fn state(&self, id: &str) -> Result<MachineState, DriverError> {
        let m = self.machines.lock().expect("sim machines");
        Ok(m.get(id).copied().unwrap_or(MachineState { power: Power::Absent, generation: 0 }))
    }

    fn forget_all(&self) {
        self.machines.lock().expect("sim machines").clear();
        self.firewalls.lock().expect("sim firewalls").clear();
        self.volumes.lock().expect("sim volumes").clear();
    }

    async fn apply_firewall(&self, id: &str, rules: &CompiledRules) -> Result<(), DriverError> {
        let mut f = self.firewalls.lock().expect("sim firewalls");
        if rules.is_filtered() {
            f.insert(id.to_owned(), rules.clone());
        } else {
            f.remove(id);
        }
        Ok(())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), DriverError> {
        self.volumes
            .lock()
            .expect("sim volumes")
            .entry(spec.volume_id.clone())
            .or_insert_with(|| SimVolume { spec: spec.clone(), attached_to: None });
        Ok(())
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), DriverError> {
        let mut v = self.volumes.lock().expect("sim volumes");
        if let Some(SimVolume { attached_to: Some(m), .. }) = v.get(volume_id) {
            return Err(DriverError::Permanent(format!("volume {volume_id} is attached to {m}")));
        }
        v.remove(volume_id);
        Ok(())
    }

    async fn attach_volume(&self, instance_id: &str, spec: &VolumeSpec) -> Result<(), DriverError> {
        let mut v = self.volumes.lock().expect("sim volumes");
        // The simulator keeps its records in memory: after a restart it learns volumes again.
        let entry =
            v.entry(spec.volume_id.clone()).or_insert_with(|| SimVolume { spec: spec.clone(), attached_to: None });
        match &entry.attached_to {
            Some(m) if m != instance_id => {
                Err(DriverError::Permanent(format!("volume {} is attached to {m}", spec.volume_id)))
            }
            _ => {
                entry.attached_to = Some(instance_id.to_owned());
                Ok(())
            }
        }
    }

    async fn detach_volume(&self, instance_id: &str, volume_id: &str) -> Result<(), DriverError> {
        if let Some(v) = self.volumes.lock().expect("sim volumes").get_mut(volume_id)
            && v.attached_to.as_deref() == Some(instance_id)
        {
            v.attached_to = None;
        }
        Ok(())
    }
}
