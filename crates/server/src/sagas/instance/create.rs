//! `instance.create`: addresses, the machine, the volumes asked for with it, the deprecated
//! `security_group`, first boot, then the instance is `active` and accrues.

use std::sync::Arc;

use openwinv_engine::{Op, Operation, StepError, Steps};
use openwinv_store::hosts::{Placed, PlacementRequest};
use openwinv_store::instances::{InstanceStatus, Power};
use openwinv_store::{InstanceRecord, Settle};
use serde::{Deserialize, Serialize};

use super::{Changes, fail, instance, require, settle, spec};
use crate::sagas::addresses::{self, as_number};
use crate::sagas::volume::with_instance::{self, Volumes};
use crate::sagas::{Deps, firewall};

/// What `POST /v1/instances` writes for each instance it creates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// The deprecated `security_group` of the request: a firewall to attach before first boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group: Option<String>,
    /// The request asked for no volumes: the volume steps have nothing to look for. Absent (false)
    /// in operations written before this hint: they look.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_volumes: bool,
    /// The zone and whether a public address is wanted, so that the address step does not read the
    /// instance back. Absent in operations written before them: the step reads the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_public_ip: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Hosts mode: the placement transaction (`Store::place`) chooses the instance's host;
    /// undone by releasing the reservation. Without hosts it has nothing to do.
    Place,
    AllocateAddresses,
    /// Hosts mode: every host holding machines of the instance's (account, zone) network is told
    /// the others, this host included (`set_peers`); undone by telling them without it.
    SetPeers,
    CreateMachine,
    /// Volumes asked for with the instance ride with the machine's steps (not paced).
    CreateVolumes,
    AttachVolumes,
    /// The deprecated `security_group` of create: attach and apply before first boot.
    AttachFirewall,
    PowerOn,
    Settle,
}

impl Steps for Step {
    const ALL: &'static [Step] = &[
        Step::Place,
        Step::AllocateAddresses,
        Step::SetPeers,
        Step::CreateMachine,
        Step::CreateVolumes,
        Step::AttachVolumes,
        Step::AttachFirewall,
        Step::PowerOn,
        Step::Settle,
    ];

    fn paced(self) -> bool {
        matches!(self, Step::CreateMachine | Step::PowerOn)
    }
}

/// What placing an instance asks of a host: the instance, and its flavor's size and
/// capabilities from the catalog. Create's `place` and evacuate's `reserve` both place with it.
pub(crate) struct Need {
    inst: InstanceRecord,
    vcpus: i64,
    memory_mb: i64,
    disk_gb: i64,
    capabilities: Vec<String>,
}

impl Need {
    pub(crate) async fn of(deps: &Deps, instance_id: &str) -> Result<Need, StepError> {
        let inst = require(deps, instance_id).await?;
        let catalog = deps.catalog.get();
        let flavor =
            catalog.flavors.iter().find(|f| f.id == inst.flavor_id).ok_or_else(|| {
                StepError::Permanent(format!("flavor {} is no longer in the catalog", inst.flavor_id))
            })?;
        let capabilities: Vec<String> = if flavor.gpu.unwrap_or(0) > 0 { vec!["gpu".to_owned()] } else { Vec::new() };
        Ok(Need {
            vcpus: i64::from(flavor.vcpu),
            memory_mb: i64::from(flavor.memory) * 1024,
            disk_gb: i64::from(flavor.disk),
            capabilities,
            inst,
        })
    }

    pub(crate) fn request(&self) -> PlacementRequest<'_> {
        PlacementRequest {
            instance_id: &self.inst.instance_id,
            zone_id: &self.inst.zone_id,
            vcpus: self.vcpus,
            memory_mb: self.memory_mb,
            disk_gb: self.disk_gb,
            capabilities: &self.capabilities,
        }
    }

    /// `i-… (2 vCPU, 4096 MB, 50 GB)`, for the message when no host has room.
    pub(crate) fn describe(&self) -> String {
        format!("{} ({} vCPU, {} MB, {} GB)", self.inst.instance_id, self.vcpus, self.memory_mb, self.disk_gb)
    }
}

pub struct Create(pub Arc<Deps>);

fn volumes(op: &Op<Params>) -> Volumes<'_> {
    Volumes { operation_id: &op.operation_id, instance_id: &op.resource_id, none: op.params.no_volumes }
}

impl Create {
    /// Reserves room for the instance on a host of its zone (idempotent per instance). No host
    /// with room is a transient failure: hosts may come back or free room before the attempts
    /// run out; then the create unwinds with the placement's reason.
    async fn place(&self, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        let need = Need::of(deps, &op.resource_id).await?;
        let req = need.request();
        match deps.store.place(&req, deps.clock.unix()).await? {
            Placed::New(p) | Placed::Existing(p) => {
                tracing::info!(instance = %req.instance_id, host = %p.host_name, "instance placed");
                Ok(())
            }
            Placed::NoHost { hosts, usable } => Err(StepError::Transient(format!(
                "no host of zone {} has room for {}: {hosts} host(s), {usable} usable",
                req.zone_id,
                need.describe()
            ))),
        }
    }

    async fn allocate_addresses(&self, op: &Op<Params>) -> Result<(), StepError> {
        // Operations written before the create carried these read them from the instance.
        let (zone_id, public_wanted) =
            if let (Some(zone), Some(public)) = (&op.params.zone_id, op.params.attach_public_ip) {
                (zone.clone(), public)
            } else {
                let inst = require(&self.0, &op.resource_id).await?;
                (inst.zone_id, inst.attach_public_ip)
            };
        let (account_id, instance_id) = (&op.account_id, &op.resource_id);
        let store = &self.0.store;
        let now = self.0.clock.unix();
        let held = store.addresses_of(instance_id).await?;
        let find = |kind: &str| held.iter().find(|(k, _)| k == kind).and_then(|(_, a)| a.parse().ok());
        let private = match find("private") {
            Some(ip) => ip,
            None => {
                let net = addresses::private_net();
                let scope = format!("private:{account_id}");
                addresses::allocate(store, &net, &scope, "private", account_id, instance_id, now).await?
            }
        };
        // The (account, zone) network's VXLAN id, made with its first address (kept after).
        store.network_vni(account_id, &zone_id, now).await?;
        let pool = self.0.catalog.get().zones.iter().find(|z| z.id == zone_id).and_then(|z| z.public_pool.clone());
        let public = match (find("public"), pool) {
            (Some(ip), _) => Some(ip),
            (None, Some(pool)) if public_wanted => {
                let net = pool.parse().map_err(|_| StepError::Permanent(format!("bad pool {pool}")))?;
                let scope = format!("public:{zone_id}");
                Some(addresses::allocate(store, &net, &scope, "public", account_id, instance_id, now).await?)
            }
            // No public address wanted, or the zone has no pool.
            (None, Some(_) | None) => None,
        };
        let public_s = public.map(|p| p.to_string());
        let private_s = private.to_string();
        store
            .set_instance_addresses(
                instance_id,
                public_s.as_deref().zip(public.map(as_number)),
                Some((&private_s, as_number(private))),
            )
            .await?;
        Ok(())
    }

    /// Tells the hosts of the instance's network their peers, leaving out `except`.
    async fn set_peers(&self, op: &Op<Params>, except: Option<&str>) -> Result<(), StepError> {
        let zone_id = match &op.params.zone_id {
            Some(zone) => zone.clone(),
            None => match instance(&self.0, &op.resource_id).await? {
                Some(inst) => inst.zone_id,
                None => return Ok(()),
            },
        };
        let deps = &self.0;
        crate::remote_driver::tell_peers(&deps.store, &deps.clock, &op.account_id, &zone_id, except).await?;
        Ok(())
    }

    async fn attach_firewall(&self, op: &Op<Params>, firewall_id: &str) -> Result<(), StepError> {
        let id = &op.resource_id;
        let inst = require(&self.0, id).await?;
        let mut conn = self.0.store.writer().acquire().await.map_err(|e| StepError::Transient(e.to_string()))?;
        if !self.0.store.firewall_exists(&inst.account_id, firewall_id).await? {
            return Err(StepError::Permanent(format!("firewall {firewall_id} no longer exists")));
        }
        openwinv_store::firewalls::insert_attachment(&mut conn, firewall_id, id, &inst.account_id, inst.created_at)
            .await?;
        drop(conn);
        firewall::sync_instance(&self.0, id).await
    }
}

#[async_trait::async_trait]
impl Operation for Create {
    type Params = Params;
    type Step = Step;
    const KIND: &'static str = "instance.create";

    fn noop(&self, step: Step, op: &Op<Params>) -> bool {
        match step {
            // Every process of one cloud runs in one placement mode, so the answer is the same
            // wherever the operation is driven.
            Step::Place | Step::SetPeers => !self.0.hosts_mode,
            Step::CreateVolumes | Step::AttachVolumes => op.params.no_volumes,
            Step::AttachFirewall => op.params.security_group.is_none(),
            Step::AllocateAddresses | Step::CreateMachine | Step::PowerOn | Step::Settle => false,
        }
    }

    async fn run(&self, step: Step, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        let id = &op.resource_id;
        match step {
            Step::Place => self.place(op).await,
            Step::AllocateAddresses => self.allocate_addresses(op).await,
            Step::SetPeers => self.set_peers(op, None).await,
            Step::CreateMachine => {
                let inst = require(deps, id).await?;
                deps.driver.create(&spec(deps, &inst, Changes::default()).await?).await?;
                Ok(())
            }
            Step::CreateVolumes => with_instance::create(deps, volumes(op)).await,
            Step::AttachVolumes => with_instance::attach(deps, volumes(op)).await,
            Step::AttachFirewall => match &op.params.security_group {
                None => Ok(()),
                Some(fw) => self.attach_firewall(op, fw).await,
            },
            Step::PowerOn => deps.driver.start(id).await.map(drop).map_err(Into::into),
            Step::Settle => {
                with_instance::settle_created(deps, volumes(op)).await?;
                let change = Settle { power: Some(Power::On), ..Settle::to(InstanceStatus::Active) };
                settle(deps, op, &change).await
            }
        }
    }

    async fn undo(&self, step: Step, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        let id = &op.resource_id;
        match step {
            Step::Place => {
                if deps.hosts_mode {
                    deps.store.release(id).await?;
                }
                Ok(())
            }
            Step::AllocateAddresses => Ok(deps.store.release_addresses(id).await?),
            Step::SetPeers => {
                if deps.hosts_mode {
                    self.set_peers(op, Some(id)).await?;
                }
                Ok(())
            }
            Step::CreateMachine => deps.driver.destroy(id).await.map_err(Into::into),
            Step::CreateVolumes => with_instance::undo_create(deps, volumes(op)).await,
            Step::AttachVolumes => with_instance::undo_attach(deps, volumes(op)).await,
            Step::AttachFirewall => {
                if op.params.security_group.is_some() {
                    deps.store.detach_all(id).await?;
                }
                Ok(())
            }
            Step::PowerOn => deps.driver.stop(id).await.map(drop).map_err(Into::into),
            // The last step never needs undoing.
            Step::Settle => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<Params>, error: &str) -> Result<(), StepError> {
        fail(&self.0, op, error, true).await?;
        with_instance::drop_created(&self.0, volumes(op)).await
    }
}
