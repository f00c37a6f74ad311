//! `admin hosts` and `admin placements`: hypervisor hosts, where instances are placed, and the
//! overcommit ratios (docs/hosts.md).

use clap::Subcommand;
use openwinv_sdk::AdminClient;
use openwinv_sdk::wire::hosts::{
    DeadHost, DestroyedStray, Evacuation, Host, IssuedHost, Overcommit, OvercommitUpdate, Placement,
};

use crate::output::{Column, Output, Tabular, joined, long, number, or_dash, text};

#[derive(Debug, Subcommand)]
pub enum HostAction {
    /// Add a host to a zone and print its token (shown only this once)
    Add {
        /// 1-63 of A-Z a-z 0-9 - _ .
        name: String,
        /// The zone its instances are in, e.g. KR1-Z01
        #[arg(long)]
        zone: String,
    },
    /// List hosts: state, status (alive after a heartbeat within 20 s), capacity, reserved
    List,
    /// Show one host
    Show { name: String },
    /// Place no new instance on the host
    Disable { name: String },
    /// Place new instances on the host again
    Enable { name: String },
    /// Place no new instance on the host; its instances are to leave it
    Drain { name: String },
    /// Declare an offline host dead: its in-flight operations unwind, its machines become error,
    /// its reservations are released
    DeclareDead { name: String },
    /// Move the host's stopped instances to other hosts of its zone (one operation each);
    /// running ones are left with the reason. Drain the host first to keep new ones away
    Evacuate { name: String },
    /// Destroy a machine the host has that no placement names (one of `show`'s strays)
    DestroyStray { name: String, instance_id: String },
    /// Remove a host that holds no instance (its token stops working)
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum PlacementAction {
    /// Place an existing instance on a host of its zone by its flavor (idempotent)
    Place {
        instance_id: String,
        /// Capabilities the host must have, comma-separated (e.g. kvm)
        #[arg(long, value_delimiter = ',')]
        capabilities: Option<Vec<String>>,
    },
    /// List placements, or those on one host
    List {
        #[arg(long)]
        host: Option<String>,
    },
    /// Show an instance's placement
    Show { instance_id: String },
    /// Release an instance's reservation
    Release { instance_id: String },
    /// Show the overcommit ratios, or set those given
    Overcommit {
        /// vCPUs placed per host vCPU (0.1-64)
        #[arg(long)]
        vcpu: Option<f64>,
        /// Memory placed per host MiB (0.1-64)
        #[arg(long)]
        memory: Option<f64>,
        /// Disk placed per host GiB (0.1-64)
        #[arg(long)]
        disk: Option<f64>,
    },
}

pub async fn run(admin: &AdminClient, action: HostAction, out: Output) -> anyhow::Result<()> {
    match action {
        HostAction::Add { name, zone } => {
            let issued = admin.add_host(&name, &zone).await?;
            out.record(&issued)?;
            if !out.machine() {
                eprintln!(
                    "The token is shown only this once. On the host: openwinv agent --control-plane {} \
                     --host-token <token> --zone {} --driver qemu",
                    admin.endpoint(),
                    issued.zone
                );
            }
            Ok(())
        }
        HostAction::List => out.list(&admin.hosts().await?),
        HostAction::Show { name } => out.record(&admin.host(&name).await?),
        HostAction::Disable { name } => out.record(&admin.disable_host(&name).await?),
        HostAction::Enable { name } => out.record(&admin.enable_host(&name).await?),
        HostAction::Drain { name } => out.record(&admin.drain_host(&name).await?),
        HostAction::DeclareDead { name } => out.record(&admin.declare_host_dead(&name).await?),
        HostAction::Evacuate { name } => out.record(&admin.evacuate_host(&name).await?),
        HostAction::DestroyStray { name, instance_id } => out.record(&admin.destroy_stray(&name, &instance_id).await?),
        HostAction::Remove { name } => out.record(&admin.remove_host(&name).await?),
    }
}

pub async fn placements(admin: &AdminClient, action: PlacementAction, out: Output) -> anyhow::Result<()> {
    match action {
        PlacementAction::Place { instance_id, capabilities } => {
            out.record(&admin.place(&instance_id, capabilities).await?)
        }
        PlacementAction::List { host } => out.list(&admin.placements(host.as_deref()).await?),
        PlacementAction::Show { instance_id } => out.record(&admin.placement(&instance_id).await?),
        PlacementAction::Release { instance_id } => out.record(&admin.release(&instance_id).await?),
        PlacementAction::Overcommit { vcpu, memory, disk } => {
            if vcpu.is_none() && memory.is_none() && disk.is_none() {
                out.record(&admin.overcommit().await?)
            } else {
                out.record(&admin.set_overcommit(&OvercommitUpdate { vcpu, memory, disk }).await?)
            }
        }
    }
}

impl Tabular for Host {
    const COLUMNS: &'static [Column] = &[
        long("NAME"),
        text("ZONE"),
        text("STATE"),
        text("STATUS"),
        text("DRIVER"),
        text("ADDRESS"),
        text("UNDERLAY"),
        text("VCPU"),
        text("MEMORY MB"),
        text("DISK GB"),
        number("INSTANCES"),
        number("HEARTBEAT AGE S"),
        number("STRAYS"),
        text("CAPABILITIES"),
        text("ID"),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.zone.clone(),
            self.state.clone(),
            self.status.clone(),
            or_dash(self.driver.clone()),
            or_dash(self.address.clone()),
            or_dash(self.underlay.clone()),
            format!("{}/{}", self.reserved.vcpus, self.capacity.vcpus),
            format!("{}/{}", self.reserved.memory_mb, self.capacity.memory_mb),
            format!("{}/{}", self.reserved.disk_gb, self.capacity.disk_gb),
            self.instances.to_string(),
            or_dash(self.heartbeat_age_s),
            self.strays.len().to_string(),
            joined(&self.capabilities),
            self.host_id.clone(),
        ]
    }
}

impl Tabular for IssuedHost {
    const COLUMNS: &'static [Column] = &[long("NAME"), text("ZONE"), text("ID"), text("TOKEN")];

    fn cells(&self) -> Vec<String> {
        vec![self.name.clone(), self.zone.clone(), self.host_id.clone(), self.token.clone()]
    }
}

impl Tabular for Placement {
    const COLUMNS: &'static [Column] = &[
        text("INSTANCE"),
        long("HOST"),
        number("VCPU"),
        number("MEMORY MB"),
        number("DISK GB"),
        text("CREATED"),
        text("NEW"),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.instance_id.clone(),
            self.host.clone(),
            self.reserved.vcpus.to_string(),
            self.reserved.memory_mb.to_string(),
            self.reserved.disk_gb.to_string(),
            self.created_at.clone(),
            super::accounts::yes_no(self.new),
        ]
    }
}

impl Tabular for Overcommit {
    const COLUMNS: &'static [Column] = &[text("VCPU"), text("MEMORY"), text("DISK")];

    fn cells(&self) -> Vec<String> {
        vec![self.vcpu.to_string(), self.memory.to_string(), self.disk.to_string()]
    }
}

impl Tabular for DeadHost {
    const COLUMNS: &'static [Column] =
        &[long("NAME"), text("STATE"), number("INSTANCES"), number("VOLUMES"), number("FAILED WORK"), long("REASON")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.host.name.clone(),
            self.host.state.clone(),
            self.instances.len().to_string(),
            self.volumes.len().to_string(),
            self.failed_work.to_string(),
            self.reason.clone(),
        ]
    }
}

impl Tabular for Evacuation {
    const COLUMNS: &'static [Column] = &[long("HOST"), long("MOVING"), long("LEFT")];

    fn cells(&self) -> Vec<String> {
        let moving: Vec<String> =
            self.moving.iter().map(|m| format!("{} ({})", m.instance_id, m.operation_id)).collect();
        let left: Vec<String> = self.left.iter().map(|l| format!("{}: {}", l.instance_id, l.reason)).collect();
        vec![self.host.clone(), joined(&moving), joined(&left)]
    }
}

impl Tabular for DestroyedStray {
    const COLUMNS: &'static [Column] = &[long("HOST"), text("INSTANCE")];

    fn cells(&self) -> Vec<String> {
        vec![self.host.clone(), self.instance_id.clone()]
    }
}
