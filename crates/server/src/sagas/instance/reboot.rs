//! `instance.reboot`: soft (ACPI) or hard, then `active`.

use std::sync::Arc;

use openwinv_engine::{Op, Operation, StepError, Steps};
use openwinv_store::Settle;
use openwinv_store::instances::{InstanceStatus, Power};
use serde::{Deserialize, Serialize};

use super::{fail, settle};
use crate::sagas::Deps;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// `type: HARD` of the request (a reset); false is an ACPI reboot.
    #[serde(default)]
    pub hard: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Reboot,
    Settle,
}

impl Steps for Step {
    const ALL: &'static [Step] = &[Step::Reboot, Step::Settle];

    fn paced(self) -> bool {
        matches!(self, Step::Reboot)
    }
}

pub struct Reboot(pub Arc<Deps>);

#[async_trait::async_trait]
impl Operation for Reboot {
    type Params = Params;
    type Step = Step;
    const KIND: &'static str = "instance.reboot";

    async fn run(&self, step: Step, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::Reboot => deps.driver.reboot(&op.resource_id, op.params.hard).await.map(drop).map_err(Into::into),
            Step::Settle => {
                let change = Settle { power: Some(Power::On), ..Settle::to(InstanceStatus::Active) };
                settle(deps, op, &change).await
            }
        }
    }

    /// A reboot cannot be taken back; `settle` is last and never undone.
    async fn undo(&self, step: Step, _op: &Op<Params>) -> Result<(), StepError> {
        match step {
            Step::Reboot | Step::Settle => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<Params>, error: &str) -> Result<(), StepError> {
        fail(&self.0, op, error, false).await
    }
}
