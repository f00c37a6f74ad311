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

    /// What the driver needs, with `flavor_id` / `image_id` / password overridden by the op. The
    /// boot files come from the image's catalog entry (`None` without one: the simulated driver
    /// needs none, a real one refuses), the user script from the account's stored script.
    async fn spec(&self, inst: &InstanceRecord, op: &OpContext) -> Result<MachineSpec, StepError> {
        let user_script = match &inst.user_script_id {
            None => None,
            Some(id) => match self.deps.store.script(&inst.account_id, id).await? {
                Some(script) => Some(script.content),
                None => {
                    // Scripts may be deleted while instances keep their id; a rebuild then runs none.
                    tracing::warn!(instance = %inst.instance_id, script = %id, "the user script no longer exists");
                    None
                }
            },
        };
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
        let image_id = op.str("image_id").unwrap_or(&inst.image_id);
        let boot = catalog.images.iter().find(|i| i.id == image_id).and_then(|i| self.deps.images.boot_image(i));
        Ok(MachineSpec {
            instance_id: inst.instance_id.clone(),
            hostname: inst.name.clone(),
            vcpu: flavor.vcpu,
            memory: flavor.memory,
            disk: flavor.disk,
            image_id: image_id.to_owned(),
            username: inst.username.clone(),
            password,
            ssh_keys: keys.iter().filter_map(|k| k["public_key"].as_str().map(String::from)).collect(),
            user_script,
            boot,
        })
    }

    async fn allocate_addresses(&self, op: &OpContext) -> Result<(), StepError> {
        // The create carries what this step needs (operations written before it did not: read).
        let public_wanted = op.params.get("attach_public_ip").and_then(serde_json::Value::as_bool);
        let (zone_id, public_wanted) = match (op.str("zone_id"), public_wanted) {
            (Some(zone), Some(public)) => (zone.to_owned(), public),
            _ => {
                let inst = self.require(op).await?;
                (inst.zone_id, inst.attach_public_ip != 0)
            }
        };
        let (account_id, instance_id) = (&op.account_id, &op.resource_id);
        let store = &self.deps.store;
        let now = self.deps.clock.unix();
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
        let pool = self.deps.catalog.get().zones.iter().find(|z| z.id == zone_id).and_then(|z| z.public_pool.clone());
        let public = match (find("public"), pool) {
            (Some(ip), _) => Some(ip),
            (None, Some(pool)) if public_wanted => {
                let net = pool.parse().map_err(|_| StepError::Permanent(format!("bad pool {pool}")))?;
                let scope = format!("public:{zone_id}");
                Some(addresses::allocate(store, &net, &scope, "public", account_id, instance_id, now).await?)
            }
            _ => None,
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

    /// The end state of a successful operation.
    async fn settle(&self, op: &OpContext) -> Result<(), StepError> {
        // A rebuild or resize ends in the power state the machine had; the others know theirs.
        let now = self.deps.clock.unix();
        let catalog = self.deps.catalog.get();
        let mut accrue = None;
        let resting = match self.kind {
            Kind::Rebuild | Kind::Resize => match self.instance(op).await? {
                Some(inst) if inst.power == "on" => status::ACTIVE,
                Some(_) => status::OFF,
                None => return Ok(()),
            },
            Kind::Start => {
                // An instance whose create failed was never charged: it starts accruing now.
                let Some(inst) = self.instance(op).await? else {
                    return Ok(());
                };
                match catalog.flavors.iter().find(|f| f.id == inst.flavor_id) {
                    Some(f) => {
                        accrue = Some(Reprice { rate: Rate { hourly: f.price_hour, monthly: f.price_month }, now })
                    }
                    None => tracing::warn!(instance = %inst.instance_id, flavor = %inst.flavor_id,
                        "the flavor is no longer in the catalog: a start cannot open a usage interval"),
                }
                status::ACTIVE
            }
            _ => status::ACTIVE,
        };
        let flavor = op.str("flavor_id").and_then(|id| catalog.flavors.iter().find(|f| f.id == id));
        let vcpu = flavor.map(|f| i64::from(f.vcpu));
        // A resize switches the usage interval to the new flavor's price as it completes.
        let reprice = flavor.map(|f| Reprice { rate: Rate { hourly: f.price_hour, monthly: f.price_month }, now });
        let change = match self.kind {
            Kind::Create | Kind::Start | Kind::Reboot => {
                Settle { status: resting, power: Some("on"), accrue, ..Default::default() }
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

    fn noop(&self, step: usize, op: &OpContext) -> bool {
        match self.kind.steps()[step].name {
            "create_volumes" | "attach_volumes" => volume::with_instance::none(op),
            "attach_firewall" => op.str("security_group").is_none(),
            _ => false,
        }
    }

    async fn run(&self, step: usize, op: &mut OpContext) -> Result<(), StepError> {
        let driver = &self.deps.driver;
        let id = op.resource_id.clone();
        match (self.kind, self.kind.steps()[step].name) {
            (_, "allocate_addresses") => self.allocate_addresses(op).await,
            (_, "create_machine") => {
                let inst = self.require(op).await?;
                driver.create(&self.spec(&inst, op).await?).await?;
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
                driver.rebuild(&self.spec(&inst, op).await?).await?;
                Ok(())
            }
            (_, "resize_machine") => {
                let inst = self.require(op).await?;
                driver.resize(&self.spec(&inst, op).await?).await?;
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
                        self.deps.store.writer().acquire().await.map_err(|e| StepError::Transient(e.to_string()))?;
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
                driver.resize(&self.spec(&inst, &back).await?).await?;
                Ok(())
            }
            // Reboots, rebuilt disks, destroyed machines and removed rows cannot be taken back;
            // `settle` is the last step and never needs undoing.
            _ => Ok(()),
        }
    }

    async fn failed(&self, op: &mut OpContext, error: &str) -> Result<(), StepError> {
        // A create that failed is not charged (no usage interval); the row stays, `error`.
        let discard_usage = self.kind == Kind::Create;
        let change = Settle { status: status::ERROR, error_reason: Some(error), discard_usage, ..Default::default() };
        self.deps.store.settle_instance(&op.resource_id, &op.operation_id, &change).await?;
        match self.kind {
            Kind::Create => volume::with_instance::drop_created(&self.deps, op).await,
            Kind::Delete => volume::with_instance::restore_attached(&self.deps, op).await,
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use openwinv_engine::driver::BootImage;
    use openwinv_engine::{Clock, Pacing, SimDriver};
    use openwinv_store::crypto::Sealer;
    use openwinv_store::{ScriptRecord, Store};
    use openwinv_wire::images::ImageBoot;

    use super::*;
    use crate::catalog::{CatalogCache, CatalogFile, DEFAULT_CATALOG};
    use crate::images::ImageStore;

    #[tokio::test]
    async fn spec_carries_the_image_files_as_absolute_paths_and_the_user_script() {
        let db = std::env::temp_dir().join(format!("owt_spec_{}.db", rand::random::<u64>()));
        let store = Store::open(&format!("sqlite://{}?mode=rwc", db.display())).await.unwrap();
        let mut catalog = CatalogFile::parse(DEFAULT_CATALOG).unwrap();
        catalog.images[0].boot = Some(ImageBoot {
            kind: "kernel".into(),
            kernel: Some("vmlinuz".into()),
            initrd: Some("initrd.img".into()),
            cmdline: Some("console=ttyS0".into()),
            root_disk: Some("root.raw".into()),
            ..ImageBoot::default()
        });
        let (with_boot, without_boot) = (catalog.images[0].id.clone(), catalog.images[1].id.clone());
        store.replace_catalog(&catalog.to_entries()).await.unwrap();
        let account = store.create_account("spec", 0).await.unwrap();
        let script = "#!/bin/sh\necho hello\n";
        let record = ScriptRecord {
            user_script_id: "SCRIPT-spec".into(),
            account_id: account.account_id.clone(),
            name: "hello".into(),
            content: script.into(),
            created_at: 0,
        };
        store.insert_script(&record).await.unwrap();
        let sealer = Sealer::from_hex(&Sealer::generate_hex()).unwrap();
        let deps = Arc::new(Deps {
            store: store.clone(),
            driver: Arc::new(SimDriver::new(Pacing::Immediate)),
            catalog: Arc::new(CatalogCache::load(&store).await.unwrap()),
            // A relative data directory, as `--data-dir ./data` gives: drivers still get absolute paths.
            images: ImageStore::new(Path::new("spec-data")),
            sealer: sealer.clone(),
            clock: Clock::new(true),
        });
        let inst = InstanceRecord {
            instance_id: "INSTANCE-spec".into(),
            account_id: account.account_id.clone(),
            name: "web".into(),
            description: None,
            status: status::ACTIVE.into(),
            power: "on".into(),
            zone_id: "KR1-Z01".into(),
            flavor_id: catalog.flavors[0].id.clone(),
            image_id: with_boot.clone(),
            username: "root".into(),
            password_sealed: sealer.seal("pw"),
            user_script_id: Some(record.user_script_id.clone()),
            ssh_keys: "[]".into(),
            attach_public_ip: 0,
            public_ip: None,
            private_ip: None,
            public_ip_num: None,
            private_ip_num: None,
            operation_id: None,
            error_reason: None,
            generation: 0,
            created_at: 0,
            stop_date: None,
            vcpu: 1,
        };
        let mut op = OpContext {
            operation_id: "OP-spec".into(),
            account_id: account.account_id.clone(),
            kind: Kind::Create.name().into(),
            resource_id: inst.instance_id.clone(),
            params: Default::default(),
        };
        let saga = InstanceSaga::new(Kind::Create, deps);

        let spec = saga.spec(&inst, &op).await.unwrap();
        let dir = std::env::current_dir().unwrap().join("spec-data/images").join(&with_boot);
        assert_eq!(
            spec.boot,
            Some(BootImage::Kernel {
                kernel: dir.join("vmlinuz"),
                initrd: Some(dir.join("initrd.img")),
                cmdline: "console=ttyS0".into(),
                root_disk: Some(dir.join("root.raw")),
            })
        );
        assert!(dir.is_absolute());
        assert_eq!(spec.user_script.as_deref(), Some(script));

        // A rebuild onto an image without files: nothing to boot (a real driver refuses).
        op.set("image_id", without_boot.as_str());
        let rebuilt = saga.spec(&inst, &op).await.unwrap();
        assert_eq!((rebuilt.image_id.as_str(), rebuilt.boot), (without_boot.as_str(), None));

        // A script deleted since: none runs.
        store.delete_script(&account.account_id, &record.user_script_id).await.unwrap();
        assert_eq!(saga.spec(&inst, &op).await.unwrap().user_script, None);
        let no_script = InstanceRecord { user_script_id: None, ..inst };
        assert_eq!(saga.spec(&no_script, &op).await.unwrap().user_script, None);

        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }
}
