//! Block-storage sagas: create (made attached to an instance), delete, attach, detach.
//!
//! The request moved the volume to its transitional status and named the operation in the row's
//! `operation_id`; the last forward step (`settle`, or `remove` for a delete) writes the end
//! state guarded by that id, so running it twice changes nothing. Undo takes back what the
//! driver did. `failed`: a create leaves no trace (the row goes); the others leave the volume
//! `error` with the reason, still attached after a failed detach and detached otherwise.

use std::sync::Arc;

use openwinv_engine::driver::VolumeSpec;
use openwinv_engine::{OpContext, Saga, StepDef, StepError};
use openwinv_store::volumes::status;
use openwinv_store::{VolumeRecord, VolumeSettle};

use super::Deps;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Delete,
    Attach,
    Detach,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Create, Kind::Delete, Kind::Attach, Kind::Detach];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => "volume.create",
            Kind::Delete => "volume.delete",
            Kind::Attach => "volume.attach",
            Kind::Detach => "volume.detach",
        }
    }

    pub fn steps(self) -> &'static [StepDef] {
        const CREATE: &[StepDef] =
            &[StepDef::driver("create_volume"), StepDef::driver("attach"), StepDef::local("settle")];
        const DELETE: &[StepDef] = &[StepDef::driver("delete_volume"), StepDef::local("remove")];
        const ATTACH: &[StepDef] = &[StepDef::driver("attach"), StepDef::local("settle")];
        const DETACH: &[StepDef] = &[StepDef::driver("detach"), StepDef::local("settle")];
        match self {
            Kind::Create => CREATE,
            Kind::Delete => DELETE,
            Kind::Attach => ATTACH,
            Kind::Detach => DETACH,
        }
    }
}

/// What the driver needs to know of a volume.
pub fn spec(v: &VolumeRecord) -> VolumeSpec {
    VolumeSpec {
        volume_id: v.block_storage_id.clone(),
        size: u32::try_from(v.size).unwrap_or(u32::MAX),
        kind: v.kind.clone(),
    }
}

pub struct VolumeSaga {
    kind: Kind,
    deps: Arc<Deps>,
}

impl VolumeSaga {
    pub fn new(kind: Kind, deps: Arc<Deps>) -> VolumeSaga {
        VolumeSaga { kind, deps }
    }

    async fn volume(&self, op: &OpContext) -> Result<Option<VolumeRecord>, StepError> {
        Ok(self.deps.store.volume_by_id(&op.resource_id).await?)
    }

    async fn require(&self, op: &OpContext) -> Result<VolumeRecord, StepError> {
        self.volume(op).await?.ok_or_else(|| StepError::Permanent(format!("volume {} is gone", op.resource_id)))
    }

    /// The instance the volume is attached to (or being attached to or detached from).
    fn instance_of(v: &VolumeRecord) -> Result<&str, StepError> {
        v.instance_id
            .as_deref()
            .ok_or_else(|| StepError::Permanent(format!("volume {} names no instance", v.block_storage_id)))
    }

    async fn settle(&self, op: &OpContext, change: VolumeSettle<'_>) -> Result<(), StepError> {
        self.deps.store.settle_volume(&op.resource_id, &op.operation_id, &change).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Saga for VolumeSaga {
    fn kind(&self) -> &'static str {
        self.kind.name()
    }

    fn steps(&self) -> &'static [StepDef] {
        self.kind.steps()
    }

    async fn run(&self, step: usize, op: &mut OpContext) -> Result<(), StepError> {
        let driver = &self.deps.driver;
        match self.kind.steps()[step].name {
            "create_volume" => {
                let v = self.require(op).await?;
                driver.create_volume(&spec(&v)).await?;
                Ok(())
            }
            "attach" => {
                let v = self.require(op).await?;
                driver.attach_volume(Self::instance_of(&v)?, &spec(&v)).await?;
                Ok(())
            }
            "detach" => {
                let v = self.require(op).await?;
                driver.detach_volume(Self::instance_of(&v)?, &v.block_storage_id).await?;
                Ok(())
            }
            "delete_volume" => Ok(driver.delete_volume(&op.resource_id).await?),
            "remove" => Ok(self.deps.store.remove_volume(&op.resource_id, self.deps.clock.unix()).await?),
            "settle" => {
                let change = match self.kind {
                    Kind::Create | Kind::Attach => {
                        VolumeSettle { status: status::IN_USE, detach: false, error_reason: None }
                    }
                    Kind::Detach => VolumeSettle { status: status::AVAILABLE, detach: true, error_reason: None },
                    Kind::Delete => return Ok(()),
                };
                self.settle(op, change).await
            }
            name => Err(StepError::Permanent(format!("{} has no step {name}", self.kind.name()))),
        }
    }

    async fn undo(&self, step: usize, op: &mut OpContext) -> Result<(), StepError> {
        let driver = &self.deps.driver;
        let Some(v) = self.volume(op).await? else {
            return Ok(());
        };
        match (self.kind, self.kind.steps()[step].name) {
            (_, "create_volume") => Ok(driver.delete_volume(&v.block_storage_id).await?),
            (_, "attach") => match &v.instance_id {
                Some(i) => Ok(driver.detach_volume(i, &v.block_storage_id).await?),
                None => Ok(()),
            },
            (_, "detach") => match &v.instance_id {
                Some(i) => Ok(driver.attach_volume(i, &spec(&v)).await?),
                None => Ok(()),
            },
            // A deleted volume cannot come back; `settle` and `remove` are last and never undone.
            _ => Ok(()),
        }
    }

    async fn failed(&self, op: &mut OpContext, error: &str) -> Result<(), StepError> {
        match self.kind {
            Kind::Create => {
                // Nothing was made: the driver lets go of the volume and the row goes.
                if let Some(v) = self.volume(op).await?
                    && v.operation_id.as_deref() == Some(op.operation_id.as_str())
                {
                    if let Some(i) = &v.instance_id {
                        self.deps.driver.detach_volume(i, &v.block_storage_id).await?;
                    }
                    self.deps.driver.delete_volume(&v.block_storage_id).await?;
                    self.deps.store.remove_volume(&v.block_storage_id, self.deps.clock.unix()).await?;
                }
                Ok(())
            }
            Kind::Delete | Kind::Attach => {
                self.settle(op, VolumeSettle { status: status::ERROR, detach: true, error_reason: Some(error) }).await
            }
            Kind::Detach => {
                self.settle(op, VolumeSettle { status: status::ERROR, detach: false, error_reason: Some(error) }).await
            }
        }
    }
}

/// The volume steps of the instance sagas: volumes asked for in `POST /v1/instances` are made
/// and attached with the machine, and an instance delete detaches and keeps its volumes. The
/// volumes concerned are those whose `operation_id` names the instance operation.
pub mod with_instance {
    use openwinv_engine::{OpContext, StepError};
    use openwinv_store::VolumeSettle;
    use openwinv_store::volumes::status;

    use super::{Deps, spec};

    /// The create said it has no volumes (operations written before this hint still look).
    pub fn none(op: &OpContext) -> bool {
        op.params.get("no_volumes").and_then(serde_json::Value::as_bool) == Some(true)
    }

    /// `create_volumes`: the driver makes each volume's storage.
    pub async fn create(deps: &Deps, op: &OpContext) -> Result<(), StepError> {
        if none(op) {
            return Ok(());
        }
        for v in deps.store.volumes_of_operation(&op.operation_id).await? {
            deps.driver.create_volume(&spec(&v)).await?;
        }
        Ok(())
    }

    pub async fn undo_create(deps: &Deps, op: &OpContext) -> Result<(), StepError> {
        if none(op) {
            return Ok(());
        }
        for v in deps.store.volumes_of_operation(&op.operation_id).await? {
            deps.driver.delete_volume(&v.block_storage_id).await?;
        }
        Ok(())
    }

    /// `attach_volumes`: each volume is attached to the new machine, in order.
    pub async fn attach(deps: &Deps, op: &OpContext) -> Result<(), StepError> {
        if none(op) {
            return Ok(());
        }
        for v in deps.store.volumes_of_operation(&op.operation_id).await? {
            deps.driver.attach_volume(&op.resource_id, &spec(&v)).await?;
        }
        Ok(())
    }

    pub async fn undo_attach(deps: &Deps, op: &OpContext) -> Result<(), StepError> {
        if none(op) {
            return Ok(());
        }
        for v in deps.store.volumes_of_operation(&op.operation_id).await? {
            deps.driver.detach_volume(&op.resource_id, &v.block_storage_id).await?;
        }
        Ok(())
    }

    /// Part of the create's `settle`: the volumes are in use.
    pub async fn settle_created(deps: &Deps, op: &OpContext) -> Result<(), StepError> {
        if none(op) {
            return Ok(());
        }
        let change = VolumeSettle { status: status::IN_USE, detach: false, error_reason: None };
        Ok(deps.store.settle_volumes_of_operation(&op.operation_id, &change).await?)
    }

    /// A failed create leaves no volume: the driver lets go of each, and the rows go.
    pub async fn drop_created(deps: &Deps, op: &OpContext) -> Result<(), StepError> {
        if none(op) {
            return Ok(());
        }
        for v in deps.store.volumes_of_operation(&op.operation_id).await? {
            deps.driver.detach_volume(&op.resource_id, &v.block_storage_id).await?;
            deps.driver.delete_volume(&v.block_storage_id).await?;
        }
        Ok(deps.store.remove_volumes_of_operation(&op.operation_id).await?)
    }

    /// `detach_volumes` of a delete (after the machine is destroyed): each volume is detached
    /// and kept, `available`.
    pub async fn detach(deps: &Deps, op: &OpContext) -> Result<(), StepError> {
        for v in deps.store.volumes_of_operation(&op.operation_id).await? {
            deps.driver.detach_volume(&op.resource_id, &v.block_storage_id).await?;
        }
        let change = VolumeSettle { status: status::AVAILABLE, detach: true, error_reason: None };
        Ok(deps.store.settle_volumes_of_operation(&op.operation_id, &change).await?)
    }

    /// A failed delete that did not reach `detach_volumes` leaves the volumes attached.
    pub async fn restore_attached(deps: &Deps, op: &OpContext) -> Result<(), StepError> {
        let change = VolumeSettle { status: status::IN_USE, detach: false, error_reason: None };
        Ok(deps.store.settle_volumes_of_operation(&op.operation_id, &change).await?)
    }
}
