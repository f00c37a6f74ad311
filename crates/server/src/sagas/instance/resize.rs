//! `instance.resize`: the machine gets the new flavor's vCPU, memory and disk; the usage interval
//! switches to the new flavor's price as it completes. Ends in the power state the machine had.

use std::sync::Arc;

use openwinv_engine::{Op, Operation, StepError, Steps};
use openwinv_store::{Rate, Reprice, Settle};
use serde::{Deserialize, Serialize};

use super::{Changes, fail, instance, require, resting, settle, spec};
use crate::sagas::Deps;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// The new flavor.
    pub flavor_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    ResizeMachine,
    Settle,
}

impl Steps for Step {
    const ALL: &'static [Step] = &[Step::ResizeMachine, Step::Settle];

    fn paced(self) -> bool {
        matches!(self, Step::ResizeMachine)
    }
}

pub struct Resize(pub Arc<Deps>);

#[async_trait::async_trait]
impl Operation for Resize {
    type Params = Params;
    type Step = Step;
    const KIND: &'static str = "instance.resize";

    async fn run(&self, step: Step, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::ResizeMachine => {
                let inst = require(deps, &op.resource_id).await?;
                let changes = Changes { flavor_id: Some(&op.params.flavor_id), ..Changes::default() };
                deps.driver.resize(&spec(deps, &inst, changes).await?).await?;
                Ok(())
            }
            Step::Settle => {
                let Some(status) = resting(deps, &op.resource_id).await? else {
                    return Ok(());
                };
                let now = deps.clock.unix();
                let catalog = deps.catalog.get();
                let flavor = catalog.flavors.iter().find(|f| f.id == op.params.flavor_id);
                let vcpu = flavor.map(|f| i64::from(f.vcpu));
                let reprice =
                    flavor.map(|f| Reprice { rate: Rate { hourly: f.price_hour, monthly: f.price_month }, now });
                let change =
                    Settle { status, flavor_id: Some(&op.params.flavor_id), vcpu, reprice, ..Default::default() };
                settle(deps, op, &change).await
            }
        }
    }

    async fn undo(&self, step: Step, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::ResizeMachine => {
                // Back to the flavor the instance still records.
                let Some(inst) = instance(deps, &op.resource_id).await? else {
                    return Ok(());
                };
                deps.driver.resize(&spec(deps, &inst, Changes::default()).await?).await?;
                Ok(())
            }
            Step::Settle => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<Params>, error: &str) -> Result<(), StepError> {
        fail(&self.0, op, error, false).await
    }
}
