//! `volume.create`: the volume's storage is made and attached to the instance the request named;
//! then it is `in-use`. A failed create leaves no trace: the row goes.

use std::sync::Arc;

use openwinv_engine::{Op, Operation, StepError, Steps};
use openwinv_store::VolumeSettle;
use openwinv_store::volumes::status;
use serde::Serialize;

use super::{Params, instance_of, require, settle, spec, volume};
use crate::sagas::Deps;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    CreateVolume,
    Attach,
    Settle,
}

impl Steps for Step {
    const ALL: &'static [Step] = &[Step::CreateVolume, Step::Attach, Step::Settle];

    fn paced(self) -> bool {
        matches!(self, Step::CreateVolume | Step::Attach)
    }
}

pub struct Create(pub Arc<Deps>);

#[async_trait::async_trait]
impl Operation for Create {
    type Params = Params;
    type Step = Step;
    const KIND: &'static str = "volume.create";

    async fn run(&self, step: Step, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::CreateVolume => {
                let v = require(deps, &op.resource_id).await?;
                deps.driver.create_volume(&spec(&v)).await?;
                Ok(())
            }
            Step::Attach => {
                let v = require(deps, &op.resource_id).await?;
                deps.driver.attach_volume(instance_of(&v)?, &spec(&v)).await?;
                Ok(())
            }
            Step::Settle => {
                settle(deps, op, VolumeSettle { status: status::IN_USE, detach: false, error_reason: None }).await
            }
        }
    }

    async fn undo(&self, step: Step, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        let Some(v) = volume(deps, &op.resource_id).await? else {
            return Ok(());
        };
        match step {
            Step::CreateVolume => Ok(deps.driver.delete_volume(&v.block_storage_id).await?),
            Step::Attach => match &v.instance_id {
                Some(i) => Ok(deps.driver.detach_volume(i, &v.block_storage_id).await?),
                None => Ok(()),
            },
            // The last step never needs undoing.
            Step::Settle => Ok(()),
        }
    }

    /// Nothing was made: the driver lets go of the volume and the row goes.
    async fn failed(&self, op: &Op<Params>, _error: &str) -> Result<(), StepError> {
        let deps = &self.0;
        if let Some(v) = volume(deps, &op.resource_id).await?
            && v.operation_id.as_deref() == Some(op.operation_id.as_str())
        {
            if let Some(i) = &v.instance_id {
                deps.driver.detach_volume(i, &v.block_storage_id).await?;
            }
            deps.driver.delete_volume(&v.block_storage_id).await?;
            deps.store.remove_volume(&v.block_storage_id, deps.clock.unix()).await?;
        }
        Ok(())
    }
}
