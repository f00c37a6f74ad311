//! `volume.attach`: the volume is attached to the instance its row names (hot-plugged when the
//! machine runs), then `in-use`. A failed attach leaves the volume `error`, detached.

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
    Attach,
    Settle,
}

impl Steps for Step {
    const ALL: &'static [Step] = &[Step::Attach, Step::Settle];

    fn paced(self) -> bool {
        matches!(self, Step::Attach)
    }
}

pub struct Attach(pub Arc<Deps>);

#[async_trait::async_trait]
impl Operation for Attach {
    type Params = Params;
    type Step = Step;
    const KIND: &'static str = "volume.attach";

    async fn run(&self, step: Step, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
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
            Step::Attach => match &v.instance_id {
                Some(i) => Ok(deps.driver.detach_volume(i, &v.block_storage_id).await?),
                None => Ok(()),
            },
            Step::Settle => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<Params>, error: &str) -> Result<(), StepError> {
        settle(&self.0, op, VolumeSettle { status: status::ERROR, detach: true, error_reason: Some(error) }).await
    }
}
