//! Block-storage sagas, one module per kind: create (made attached to an instance), delete,
//! attach, detach. None has input: the volume row (and the instance it names) is what they act on.
//!
//! The request moved the volume to its transitional status and named the operation in the row's
//! `operation_id`; the last forward step (`settle`, or `remove` for a delete) writes the end
//! state guarded by that id, so running it twice changes nothing. Undo takes back what the
//! driver did. `failed`: a create leaves no trace (the row goes); the others leave the volume
//! `error` with the reason, still attached after a failed detach and detached otherwise.

pub mod attach;
pub mod create;
pub mod delete;
pub mod detach;

use openwinv_driver::VolumeSpec;
use openwinv_engine::{NoParams, Op, Operation, StepError};
use openwinv_store::volumes::VolumeStatus;
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
    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => create::Create::KIND,
            Kind::Delete => delete::Delete::KIND,
            Kind::Attach => attach::Attach::KIND,
            Kind::Detach => detach::Detach::KIND,
        }
    }
}

/// What the driver needs to know of a volume.
pub fn spec(v: &VolumeRecord) -> VolumeSpec {
    VolumeSpec {
        volume_id: v.block_storage_id.to_string(),
        size: u32::try_from(v.size).unwrap_or(u32::MAX),
        kind: v.kind.clone(),
    }
}

pub(super) async fn volume(deps: &Deps, id: &str) -> Result<Option<VolumeRecord>, StepError> {
    Ok(deps.store.volume_by_id(id).await?)
}

pub(super) async fn require(deps: &Deps, id: &str) -> Result<VolumeRecord, StepError> {
    volume(deps, id).await?.ok_or_else(|| StepError::Permanent(format!("volume {id} is gone")))
}

/// The instance the volume is attached to (or being attached to or detached from).
pub(super) fn instance_of(v: &VolumeRecord) -> Result<&str, StepError> {
    v.instance_id
        .as_deref()
        .ok_or_else(|| StepError::Permanent(format!("volume {} names no instance", v.block_storage_id)))
}

/// The `attach` step (of a create or an attach): the volume joins the instance its row names.
pub(super) async fn attach(deps: &Deps, op: &Op<NoParams>) -> Result<(), StepError> {
    let v = require(deps, &op.resource_id).await?;
    deps.driver.attach_volume(instance_of(&v)?, &spec(&v)).await?;
    Ok(())
}

/// Undo of `attach`: the volume leaves the instance its row names (if there is one).
pub(super) async fn undo_attach(deps: &Deps, op: &Op<NoParams>) -> Result<(), StepError> {
    match volume(deps, &op.resource_id).await? {
        Some(VolumeRecord { instance_id: Some(i), block_storage_id, .. }) => {
            Ok(deps.driver.detach_volume(&i, &block_storage_id).await?)
        }
        Some(_) | None => Ok(()),
    }
}

/// The `settle` of a create or an attach: the volume is `in-use`.
pub(super) async fn in_use(deps: &Deps, op: &Op<NoParams>) -> Result<(), StepError> {
    settle(deps, op, VolumeSettle { status: VolumeStatus::InUse, detach: false, error_reason: None }).await
}

pub(super) async fn settle(deps: &Deps, op: &Op<NoParams>, change: VolumeSettle<'_>) -> Result<(), StepError> {
    deps.store.settle_volume(&op.resource_id, &op.operation_id, &change).await?;
    Ok(())
}

/// The volume steps of the instance sagas: volumes asked for in `POST /v1/instances` are made
/// and attached with the machine, and an instance delete detaches and keeps its volumes. The
/// volumes concerned are those whose `operation_id` names the instance operation.
pub mod with_instance {
    use openwinv_engine::StepError;
    use openwinv_store::VolumeSettle;

    use super::{Deps, VolumeStatus, spec};

    /// The volumes of one instance operation.
    #[derive(Debug, Clone, Copy)]
    pub struct Volumes<'a> {
        pub operation_id: &'a str,
        pub instance_id: &'a str,
        /// The create said it has no volumes (operations written before this hint still look).
        pub none: bool,
    }

    /// `create_volumes`: the driver makes each volume's storage.
    pub async fn create(deps: &Deps, op: Volumes<'_>) -> Result<(), StepError> {
        if op.none {
            return Ok(());
        }
        for v in deps.store.volumes_of_operation(op.operation_id).await? {
            deps.driver.create_volume(&spec(&v)).await?;
        }
        Ok(())
    }

    pub async fn undo_create(deps: &Deps, op: Volumes<'_>) -> Result<(), StepError> {
        if op.none {
            return Ok(());
        }
        for v in deps.store.volumes_of_operation(op.operation_id).await? {
            deps.driver.delete_volume(&v.block_storage_id).await?;
        }
        Ok(())
    }

    /// `attach_volumes`: each volume is attached to the new machine, in order.
    pub async fn attach(deps: &Deps, op: Volumes<'_>) -> Result<(), StepError> {
        if op.none {
            return Ok(());
        }
        for v in deps.store.volumes_of_operation(op.operation_id).await? {
            deps.driver.attach_volume(op.instance_id, &spec(&v)).await?;
        }
        Ok(())
    }

    pub async fn undo_attach(deps: &Deps, op: Volumes<'_>) -> Result<(), StepError> {
        if op.none {
            return Ok(());
        }
        for v in deps.store.volumes_of_operation(op.operation_id).await? {
            deps.driver.detach_volume(op.instance_id, &v.block_storage_id).await?;
        }
        Ok(())
    }

    /// Part of the create's `settle`: the volumes are in use.
    pub async fn settle_created(deps: &Deps, op: Volumes<'_>) -> Result<(), StepError> {
        if op.none {
            return Ok(());
        }
        let change = VolumeSettle { status: VolumeStatus::InUse, detach: false, error_reason: None };
        Ok(deps.store.settle_volumes_of_operation(op.operation_id, &change).await?)
    }

    /// A failed create leaves no volume: the driver lets go of each, and the rows go.
    pub async fn drop_created(deps: &Deps, op: Volumes<'_>) -> Result<(), StepError> {
        if op.none {
            return Ok(());
        }
        for v in deps.store.volumes_of_operation(op.operation_id).await? {
            deps.driver.detach_volume(op.instance_id, &v.block_storage_id).await?;
            deps.driver.delete_volume(&v.block_storage_id).await?;
        }
        Ok(deps.store.remove_volumes_of_operation(op.operation_id).await?)
    }

    /// `detach_volumes` of a delete (after the machine is destroyed): each volume is detached
    /// and kept, `available`.
    pub async fn detach(deps: &Deps, op: Volumes<'_>) -> Result<(), StepError> {
        for v in deps.store.volumes_of_operation(op.operation_id).await? {
            deps.driver.detach_volume(op.instance_id, &v.block_storage_id).await?;
        }
        let change = VolumeSettle { status: VolumeStatus::Available, detach: true, error_reason: None };
        Ok(deps.store.settle_volumes_of_operation(op.operation_id, &change).await?)
    }

    /// A failed delete that did not reach `detach_volumes` leaves the volumes attached.
    pub async fn restore_attached(deps: &Deps, op: Volumes<'_>) -> Result<(), StepError> {
        let change = VolumeSettle { status: VolumeStatus::InUse, detach: false, error_reason: None };
        Ok(deps.store.settle_volumes_of_operation(op.operation_id, &change).await?)
    }
}
