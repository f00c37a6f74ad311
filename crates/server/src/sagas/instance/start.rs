//! `instance.start`: power on, then `active`. An instance whose create failed was never charged:
//! it starts accruing now.

use std::sync::Arc;

use openwinv_engine::{NoParams, Op, Operation, StepError, Steps};
use openwinv_store::instances::{InstanceStatus, Power};
use openwinv_store::{Rate, Reprice, Settle};
use serde::Serialize;

use super::{fail, instance, settle};
use crate::sagas::Deps;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    PowerOn,
    Settle,
}

impl Steps for Step {
    const ALL: &'static [Step] = &[Step::PowerOn, Step::Settle];

    fn paced(self) -> bool {
        matches!(self, Step::PowerOn)
    }
}

pub struct Start(pub Arc<Deps>);

#[async_trait::async_trait]
impl Operation for Start {
    type Params = NoParams;
    type Step = Step;
    const KIND: &'static str = "instance.start";

    async fn run(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::PowerOn => deps.driver.start(&op.resource_id).await.map(drop).map_err(Into::into),
            Step::Settle => {
                let Some(inst) = instance(deps, &op.resource_id).await? else {
                    return Ok(());
                };
                let now = deps.clock.unix();
                let accrue = match deps.catalog.get().flavors.iter().find(|f| f.id == inst.flavor_id) {
                    Some(f) => Some(Reprice { rate: Rate { hourly: f.price_hour, monthly: f.price_month }, now }),
                    None => {
                        tracing::warn!(instance = %inst.instance_id, flavor = %inst.flavor_id,
                            "the flavor is no longer in the catalog: a start cannot open a usage interval");
                        None
                    }
                };
                let change = Settle { power: Some(Power::On), accrue, ..Settle::to(InstanceStatus::Active) };
                settle(deps, op, &change).await
            }
        }
    }

    async fn undo(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        match step {
            Step::PowerOn => self.0.driver.stop(&op.resource_id).await.map(drop).map_err(Into::into),
            Step::Settle => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<NoParams>, error: &str) -> Result<(), StepError> {
        fail(&self.0, op, error, false).await
    }
}
