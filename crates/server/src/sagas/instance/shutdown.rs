//! `instance.shutdown`: hard power-off (as iwinv documents it), then `off`; usage stops accruing.

use std::sync::Arc;

use openwinv_engine::{NoParams, Op, Operation, StepError, Steps};
use openwinv_store::Settle;
use openwinv_store::instances::{InstanceStatus, Power};
use serde::Serialize;

use super::{fail, settle};
use crate::sagas::Deps;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    PowerOff,
    Settle,
}

impl Steps for Step {
    const ALL: &'static [Step] = &[Step::PowerOff, Step::Settle];

    fn paced(self) -> bool {
        matches!(self, Step::PowerOff)
    }
}

pub struct Shutdown(pub Arc<Deps>);

#[async_trait::async_trait]
impl Operation for Shutdown {
    type Params = NoParams;
    type Step = Step;
    const KIND: &'static str = "instance.shutdown";

    async fn run(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::PowerOff => deps.driver.stop(&op.resource_id).await.map(drop).map_err(Into::into),
            Step::Settle => {
                let now = deps.clock.unix();
                let change =
                    Settle { power: Some(Power::Off), stop_date: Some(Some(now)), ..Settle::to(InstanceStatus::Off) };
                settle(deps, op, &change).await
            }
        }
    }

    async fn undo(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        match step {
            Step::PowerOff => self.0.driver.start(&op.resource_id).await.map(drop).map_err(Into::into),
            Step::Settle => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<NoParams>, error: &str) -> Result<(), StepError> {
        fail(&self.0, op, error, false).await
    }
}
