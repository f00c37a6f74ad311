//! `instance.rebuild`: the root disk is made anew from the image with a new password; addresses
//! and volumes stay. Ends in the power state the machine had.

use std::sync::Arc;

use openwinv_engine::{Op, Operation, StepError, Steps};
use openwinv_store::Settle;
use serde::{Deserialize, Serialize};

use super::{Changes, fail, require, resting, settle, spec};
use crate::sagas::Deps;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// The image to reinstall from (the request's, or the current one).
    pub image_id: String,
    /// The new password, sealed.
    pub password_sealed: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    RebuildMachine,
    Settle,
}

impl Steps for Step {
    const ALL: &'static [Step] = &[Step::RebuildMachine, Step::Settle];

    fn paced(self) -> bool {
        matches!(self, Step::RebuildMachine)
    }
}

pub struct Rebuild(pub Arc<Deps>);

#[async_trait::async_trait]
impl Operation for Rebuild {
    type Params = Params;
    type Step = Step;
    const KIND: &'static str = "instance.rebuild";

    async fn run(&self, step: Step, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        match step {
            Step::RebuildMachine => {
                let inst = require(deps, &op.resource_id).await?;
                let changes = Changes {
                    image_id: Some(&op.params.image_id),
                    password_sealed: Some(&op.params.password_sealed),
                    ..Changes::default()
                };
                deps.driver.rebuild(&spec(deps, &inst, changes).await?).await?;
                Ok(())
            }
            Step::Settle => {
                let Some(status) = resting(deps, &op.resource_id).await? else {
                    return Ok(());
                };
                let change = Settle {
                    image_id: Some(&op.params.image_id),
                    password_sealed: Some(&op.params.password_sealed),
                    ..Settle::to(status)
                };
                settle(deps, op, &change).await
            }
        }
    }

    /// A rebuilt disk cannot be taken back; `settle` is last and never undone.
    async fn undo(&self, step: Step, _op: &Op<Params>) -> Result<(), StepError> {
        match step {
            Step::RebuildMachine | Step::Settle => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<Params>, error: &str) -> Result<(), StepError> {
        fail(&self.0, op, error, false).await
    }
}
