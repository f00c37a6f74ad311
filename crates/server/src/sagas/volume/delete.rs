//! `volume.delete`: the volume's storage goes, then its row. A failed delete leaves the volume
//! `error`, detached.

use std::sync::Arc;

use openwinv_engine::{NoParams, Op, Operation, StepError, Steps};
use openwinv_store::VolumeSettle;
use openwinv_store::volumes::VolumeStatus;
use serde::Serialize;

use super::settle;
use crate::sagas::Deps;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    DeleteVolume,
    Remove,
}

impl Steps for Step {
    const ALL: &'static [Step] = &[Step::DeleteVolume, Step::Remove];

    fn paced(self) -> bool {
        matches!(self, Step::DeleteVolume)
    }
}

pub struct Delete(pub Arc<Deps>);

#[async_trait::async_trait]
impl Operation for Delete {
    type Params = NoParams;
    type Step = Step;
    const KIND: &'static str = "volume.delete";

    async fn run(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::DeleteVolume => Ok(deps.driver.delete_volume(&op.resource_id).await?),
            Step::Remove => Ok(deps.store.remove_volume(&op.resource_id, deps.clock.unix()).await?),
        }
    }

    /// A deleted volume cannot come back; `remove` is last and never undone.
    async fn undo(&self, step: Step, _op: &Op<NoParams>) -> Result<(), StepError> {
        match step {
            Step::DeleteVolume | Step::Remove => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<NoParams>, error: &str) -> Result<(), StepError> {
        settle(&self.0, op, VolumeSettle { status: VolumeStatus::Error, detach: true, error_reason: Some(error) }).await
    }
}
