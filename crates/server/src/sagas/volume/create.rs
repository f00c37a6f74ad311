//! `volume.create`: the volume's storage is made and attached to the instance the request named;
//! then it is `in-use`. A failed create leaves no trace: the row goes.

use std::sync::Arc;

use openwinv_engine::{NoParams, Op, Operation, StepError, Steps};
use serde::Serialize;

use super::{attach, in_use, require, spec, undo_attach, volume};
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
    type Params = NoParams;
    type Step = Step;
    const KIND: &'static str = "volume.create";

    async fn run(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::CreateVolume => {
                let v = require(deps, &op.resource_id).await?;
                deps.driver.create_volume(&spec(&v)).await?;
                Ok(())
            }
            Step::Attach => attach(deps, op).await,
            Step::Settle => in_use(deps, op).await,
        }
    }

    async fn undo(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::CreateVolume => match volume(deps, &op.resource_id).await? {
                Some(v) => Ok(deps.driver.delete_volume(&v.block_storage_id).await?),
                None => Ok(()),
            },
            Step::Attach => undo_attach(deps, op).await,
            // The last step never needs undoing.
            Step::Settle => Ok(()),
        }
    }

    /// Nothing was made: the driver lets go of the volume and the row goes.
    async fn failed(&self, op: &Op<NoParams>, _error: &str) -> Result<(), StepError> {
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
