//! `volume.detach`: the volume is detached from its instance, then `available`. A failed detach
//! leaves the volume `error`, still attached.

use std::sync::Arc;

use openwinv_engine::{NoParams, Op, Operation, StepError, Steps};
use openwinv_store::VolumeSettle;
use openwinv_store::volumes::VolumeStatus;
use serde::Serialize;

use super::{instance_of, require, settle, spec, volume};
use crate::sagas::Deps;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Detach,
    Settle,
}

impl Steps for Step {
    const ALL: &'static [Step] = &[Step::Detach, Step::Settle];

    fn paced(self) -> bool {
        matches!(self, Step::Detach)
    }
}

pub struct Detach(pub Arc<Deps>);

#[async_trait::async_trait]
impl Operation for Detach {
    type Params = NoParams;
    type Step = Step;
    const KIND: &'static str = "volume.detach";

    async fn run(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::Detach => {
                let v = require(deps, &op.resource_id).await?;
                deps.driver.detach_volume(instance_of(&v)?, &v.block_storage_id).await?;
                Ok(())
            }
            Step::Settle => {
                settle(deps, op, VolumeSettle { status: VolumeStatus::Available, detach: true, error_reason: None })
                    .await
            }
        }
    }

    async fn undo(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        let deps = &self.0;
        let Some(v) = volume(deps, &op.resource_id).await? else {
            return Ok(());
        };
        match step {
            Step::Detach => match &v.instance_id {
                Some(i) => Ok(deps.driver.attach_volume(i, &spec(&v)).await?),
                None => Ok(()),
            },
            Step::Settle => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<NoParams>, error: &str) -> Result<(), StepError> {
        settle(&self.0, op, VolumeSettle { status: VolumeStatus::Error, detach: false, error_reason: Some(error) })
            .await
    }
}
