//! `volume.attach`: the volume is attached to the instance its row names (hot-plugged when the
//! machine runs), then `in-use`. A failed attach leaves the volume `error`, detached.

use std::sync::Arc;

use openwinv_engine::{NoParams, Op, Operation, StepError, Steps};
use openwinv_store::VolumeSettle;
use openwinv_store::volumes::VolumeStatus;
use serde::Serialize;

use super::{attach, in_use, settle, undo_attach};
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
    type Params = NoParams;
    type Step = Step;
    const KIND: &'static str = "volume.attach";

    async fn run(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::Attach => attach(deps, op).await,
            Step::Settle => in_use(deps, op).await,
        }
    }

    async fn undo(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        match step {
            Step::Attach => undo_attach(&self.0, op).await,
            Step::Settle => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<NoParams>, error: &str) -> Result<(), StepError> {
        settle(&self.0, op, VolumeSettle { status: VolumeStatus::Error, detach: true, error_reason: Some(error) }).await
    }
}
