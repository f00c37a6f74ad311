//! Instance lifecycle sagas: create, start, shutdown, reboot, rebuild, resize, delete.
//!
//! Each kind is an ordered list of idempotent steps with undos. The last forward step (`settle`)
//! writes the end state and clears the instance's `operation_id`, guarded by that id, so running
//! it twice changes nothing. `failed` leaves the instance `error` with the reason.

use std::sync::Arc;

use openwinv_engine::driver::MachineSpec;
use openwinv_engine::{OpContext, Saga, StepDef, StepError};
use openwinv_store::instances::status;
use openwinv_store::{InstanceRecord, Rate, Reprice, Settle};

use super::addresses::{self, as_number};
use super::{Deps, volume};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Start,
    Shutdown,
    Reboot,
    Rebuild,
    Resize,
    Delete,
}

impl Kind {
    pub const ALL: [Kind; 7] =
        [Kind::Create, Kind::Start, Kind::Shutdown, Kind::Reboot, Kind::Rebuild, Kind::Resize, Kind::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => "instance.create",
            Kind::Start => "instance.start",
            Kind::Shutdown => "instance.shutdown",
            Kind::Reboot => "instance.reboot",
            Kind::Rebuild => "instance.rebuild",
            Kind::Resize => "instance.resize",
            Kind::Delete => "instance.delete",
        }
    }

    /// The statuses an operation of this kind may start from (spec §7).
    pub fn allowed_from(self) -> &'static [&'static str] {
        match self {
            Kind::Create => &[],
            Kind::Start => &[status::OFF, status::ERROR],
            Kind::Shutdown | Kind::Reboot => &[status::ACTIVE],
            Kind::Rebuild | Kind::Resize => &[status::ACTIVE, status::OFF],
            Kind::Delete => &[status::ACTIVE, status::OFF, status::ERROR],
        }
    }

    pub fn steps(self) -> &'static [StepDef] {
        const CREATE: &[StepDef] = &[
            StepDef::local("allocate_addresses"),
            StepDef::driver("create_machine"),
            // Volumes asked for with the instance ride with the machine's steps (not paced).
            StepDef::local("create_volumes"),
            StepDef::local("attach_volumes"),
            // The deprecated `security_group` of create: attach and apply before first boot.
            StepDef::local("attach_firewall"),
            StepDef::driver("power_on"),
            StepDef::local("settle"),
        ];
        const START: &[StepDef] = &[StepDef::driver("power_on"), StepDef::local("settle")];
        const SHUTDOWN: &[StepDef] = &[StepDef::driver("power_off"), StepDef::local("settle")];
        const REBOOT: &[StepDef] = &[StepDef::driver("reboot"), StepDef::local("settle")];
        const REBUILD: &[StepDef] = &[StepDef::driver("rebuild_machine"), StepDef::local("settle")];
        const RESIZE: &[StepDef] = &[StepDef::driver("resize_machine"), StepDef::local("settle")];
        const DELETE: &[StepDef] = &[
            StepDef::driver("destroy_machine"),
            StepDef::local("detach_volumes"),
            StepDef::local("release_addresses"),
            StepDef::local("remove"),
        ];
        match self {
            Kind::Create => CREATE,
            Kind::Start => START,
            Kind::Shutdown => SHUTDOWN,
            Kind::Reboot => REBOOT,
            Kind::Rebuild => REBUILD,
            Kind::Resize => RESIZE,
            Kind::Delete => DELETE,
        }
    }
}

pub struct InstanceSaga {
    kind: Kind,
    deps: Arc<Deps>,
}

impl InstanceSaga {
    pub fn new(kind: Kind, deps: Arc<Deps>) -> InstanceSaga {
        InstanceSaga { kind, deps }
    }

    async fn instance(&self, op: &OpContext) -> Result<Option<InstanceRecord>, StepError> {
        Ok(self.deps.store.instance_by_id(&op.resource_id).await?)
    }

    async fn require(&self, op: &OpContext) -> Result<InstanceRecord, StepError> {
        self.instance(op).await?.ok_or_else(|| StepError::Permanent(format!("instance {} is gone", op.resource_id)))
    }

    /// What the driver needs, with `flavor_id` / `image_id` / password overridden by the op.
    fn spec(&self, inst: &InstanceRecord, op: &OpContext) -> Result<MachineSpec, StepError> {
        let catalog = self.deps.catalog.get();
        let flavor_id = op.str("flavor_id").unwrap_or(&inst.flavor_id);
        let flavor = catalog
            .flavors
            .iter()
            .find(|f| f.id == flavor_id)
            .ok_or_else(|| StepError::Permanent(format!("flavor {flavor_id} is no longer in the catalog")))?;
        let sealed = op.str("password_sealed").unwrap_or(&inst.password_sealed);
        let password = self.deps.sealer.open(sealed).map_err(|e| StepError::Permanent(e.to_string()))?;
        let keys: Vec<serde_json::Value> = serde_json::from_str(&inst.ssh_keys).unwrap_or_default();
        Ok(MachineSpec {
            instance_id: inst.instance_id.clone(),
            hostname: inst.name.clone(),
            vcpu: flavor.vcpu,
            memory: flavor.memory,
            disk: flavor.disk,
            image_id: op.str("image_id").unwrap_or(&inst.image_id).to_owned(),
            username: inst.username.clone(),
            password,
            ssh_keys: keys.iter().filter_map(|k| k["public_key"].as_str().map(String::from)).collect(),
            user_script: None,
            boot: None,
        })
    }

    async fn allocate_addresses(&self, op: &OpContext) -> Result<(), StepError> {
        let inst = self.require(op).await?;
        let store = &self.deps.store;
        let now = self.deps.clock.unix();
        let held = store.addresses_of(&inst.instance_id).await?;
        let find = |kind: &str| held.iter().find(|(k, _)| k == kind).and_then(|(_, a)| a.parse().ok());
        let private = match find("private") {
            Some(ip) => ip,
            None => {
                let net = addresses::private_net();
                let scope = format!("private:{}", inst.account_id);
                addresses::allocate(store, &net, &scope, "private", &inst.account_id, &inst.instance_id, now).await?
            }
        };
        let pool =
            self.deps.catalog.get().zones.iter().find(|z| z.id == inst.zone_id).and_then(|z| z.public_pool.clone());
        let public = match (find("public"), pool) {
            (Some(ip), _) => Some(ip),
            (None, Some(pool)) if inst.attach_public_ip != 0 => {
                let net = pool.parse().map_err(|_| StepError::Permanent(format!("bad pool {pool}")))?;
                let scope = format!("public:{}", inst.zone_id);
                Some(
                    addresses::allocate(store, &net, &scope, "public", &inst.account_id, &inst.instance_id, now)
                        .await?,
                )
            }
            _ => None,
        };
        let public_s = public.map(|p| p.to_string());
        let private_s = private.to_string();
        store
            .set_instance_addresses(
                &inst.instance_id,
                public_s.as_deref().zip(public.map(as_number)),
                Some((&private_s, as_number(private))),
            )
            .await?;
        Ok(())
    }

    /// The end state of a successful operation.
    async fn settle(&self, op: &OpContext) -> Result<(), StepError> {
        let Some(inst) = self.instance(op).await? else {
            return Ok(());
        };
        let now = self.deps.clock.unix();
        let resting = if inst.power == "on" { status::ACTIVE } else { status::OFF };
        let catalog = self.deps.catalog.get();
        let flavor = op.str("flavor_id").and_then(|id| catalog.flavors.iter().find(|f| f.id == id));
        let vcpu = flavor.map(|f| i64::from(f.vcpu));
        // A resize switches the usage interval to the new flavor's price as it completes.
        let reprice = flavor.map(|f| Reprice { rate: Rate { hourly: f.price_hour, monthly: f.price_month }, now });
        let change = match self.kind {
            Kind::Create | Kind::Start | Kind::Reboot => {
                Settle { status: status::ACTIVE, power: Some("on"), ..Default::default() }
            }
            Kind::Shutdown => {
                Settle { status: status::OFF, power: Some("off"), stop_date: Some(Some(now)), ..Default::default() }
            }
            Kind::Rebuild => Settle {
                status: resting,
                image_id: op.str("image_id"),
                password_sealed: op.str("password_sealed"),
                ..Default::default()
            },
            Kind::Resize => {
                Settle { status: resting, flavor_id: op.str("flavor_id"), vcpu, reprice, ..Default::default() }
            }
            Kind::Delete => return Ok(()),
        };
        if self.kind == Kind::Create {
            volume::with_instance::settle_created(&self.deps, op).await?;
        }
        self.deps.store.settle_instance(&op.resource_id, &op.operation_id, &change).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Saga for InstanceSaga {
    fn kind(&self) -> &'static str {
        self.kind.name()
    }

    fn steps(&self) -> &'static [StepDef] {
        self.kind.steps()
    }

    async fn run(&self, step: usize, op: &mut OpContext) -> Result<(), StepError> {
        let driver = &self.deps.driver;
        let id = op.resource_id.clone();
        match (self.kind, self.kind.steps()[step].name) {
            (_, "allocate_addresses") => self.allocate_addresses(op).await,
            (_, "create_machine") => {
                let inst = self.require(op).await?;
                driver.create(&self.spec(&inst, op)?).await?;
                Ok(())
            }
            (_, "power_on") => driver.start(&id).await.map(drop).map_err(Into::into),
            (_, "power_off") => driver.stop(&id).await.map(drop).map_err(Into::into),
            (_, "reboot") => {
                let hard = op.params.get("hard").and_then(serde_json::Value::as_bool).unwrap_or(false);
                driver.reboot(&id, hard).await.map(drop).map_err(Into::into)
            }
            (_, "rebuild_machine") => {
                let inst = self.require(op).await?;
                driver.rebuild(&self.spec(&inst, op)?).await?;
                Ok(())
            }
            (_, "resize_machine") => {
                let inst = self.require(op).await?;
                driver.resize(&self.spec(&inst, op)?).await?;
                Ok(())
            }
            (_, "destroy_machine") => driver.destroy(&id).await.map_err(Into::into),
            (_, "create_volumes") => volume::with_instance::create(&self.deps, op).await,
            (_, "attach_volumes") => volume::with_instance::attach(&self.deps, op).await,
            (_, "detach_volumes") => volume::with_instance::detach(&self.deps, op).await,
            (_, "release_addresses") => Ok(self.deps.store.release_addresses(&id).await?),
            (_, "remove") => Ok(self.deps.store.remove_instance(&id, self.deps.clock.unix()).await?),
            (_, "attach_firewall") => match op.str("security_group").map(str::to_owned) {
                None => Ok(()),
                Some(fw) => {
                    let inst = self.require(op).await?;
                    let mut conn =
                        self.deps.store.pool().acquire().await.map_err(|e| StepError::Transient(e.to_string()))?;
                    if !self.deps.store.firewall_exists(&inst.account_id, &fw).await? {
                        return Err(StepError::Permanent(format!("firewall {fw} no longer exists")));
                    }
                    openwinv_store::firewalls::insert_attachment(
                        &mut conn,
                        &fw,
                        &id,
                        &inst.account_id,
                        inst.created_at,
                    )
                    .await?;
                    drop(conn);
                    crate::sagas::firewall::sync_instance(&self.deps, &id).await
                }
            },
            (_, "settle") => self.settle(op).await,
            (kind, name) => Err(StepError::Permanent(format!("{kind:?} has no step {name}"))),
        }
    }

    async fn undo(&self, step: usize, op: &mut OpContext) -> Result<(), StepError> {
        let driver = &self.deps.driver;
        let id = op.resource_id.clone();
        match (self.kind, self.kind.steps()[step].name) {
            (_, "allocate_addresses") => Ok(self.deps.store.release_addresses(&id).await?),
            (_, "attach_firewall") => {
                if op.str("security_group").is_some() {
                    self.deps.store.detach_all(&id).await?;
                }
                Ok(())
            }
            (_, "create_machine") => driver.destroy(&id).await.map_err(Into::into),
            (_, "create_volumes") => volume::with_instance::undo_create(&self.deps, op).await,
            (_, "attach_volumes") => volume::with_instance::undo_attach(&self.deps, op).await,
            (Kind::Create | Kind::Start, "power_on") => driver.stop(&id).await.map(drop).map_err(Into::into),
            (Kind::Shutdown, "power_off") => driver.start(&id).await.map(drop).map_err(Into::into),
            (Kind::Resize, "resize_machine") => {
                // Back to the flavor the instance still records.
                let Some(inst) = self.instance(op).await? else {
                    return Ok(());
                };
                let mut back = op.clone();
                back.params.remove("flavor_id");
                driver.resize(&self.spec(&inst, &back)?).await?;
                Ok(())
            }
            // Reboots, rebuilt disks, destroyed machines and removed rows cannot be taken back;
            // `settle` is the last step and never needs undoing.
            _ => Ok(()),
        }
    }

    async fn failed(&self, op: &mut OpContext, error: &str) -> Result<(), StepError> {
        let change = Settle { status: status::ERROR, error_reason: Some(error), ..Default::default() };
        self.deps.store.settle_instance(&op.resource_id, &op.operation_id, &change).await?;
        match self.kind {
            Kind::Create => volume::with_instance::drop_created(&self.deps, op).await,
            Kind::Delete => volume::with_instance::restore_attached(&self.deps, op).await,
            _ => Ok(()),
        }
    }
}
