//! `instance.delete`: the machine is destroyed, its volumes detached and kept (`available`), its
//! addresses released, the row removed.

use std::sync::Arc;

use openwinv_engine::{NoParams, Op, Operation, StepError, Steps};
use serde::Serialize;

use super::fail;
use crate::sagas::Deps;
use crate::sagas::volume::with_instance::{self, Volumes};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    DestroyMachine,
    DetachVolumes,
    ReleaseAddresses,
    Remove,
}

impl Steps for Step {
    const ALL: &'static [Step] = &[Step::DestroyMachine, Step::DetachVolumes, Step::ReleaseAddresses, Step::Remove];

    fn paced(self) -> bool {
        matches!(self, Step::DestroyMachine)
    }
}

pub struct Delete(pub Arc<Deps>);

fn volumes(op: &Op<NoParams>) -> Volumes<'_> {
    Volumes { operation_id: &op.operation_id, instance_id: &op.resource_id, none: false }
}

#[async_trait::async_trait]
impl Operation for Delete {
    type Params = NoParams;
    type Step = Step;
    const KIND: &'static str = "instance.delete";

    async fn run(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        let deps = &self.0;
        let id = &op.resource_id;
        match step {
            Step::DestroyMachine => deps.driver.destroy(id).await.map_err(Into::into),
            Step::DetachVolumes => with_instance::detach(deps, volumes(op)).await,
            Step::ReleaseAddresses => Ok(deps.store.release_addresses(id).await?),
            Step::Remove => Ok(deps.store.remove_instance(id, deps.clock.unix()).await?),
        }
    }

    /// A destroyed machine and a removed row cannot come back.
    async fn undo(&self, step: Step, _op: &Op<NoParams>) -> Result<(), StepError> {
        match step {
            Step::DestroyMachine | Step::DetachVolumes | Step::ReleaseAddresses | Step::Remove => Ok(()),
        }
    }

    /// A failed delete that did not reach `detach_volumes` leaves the volumes attached.
    async fn failed(&self, op: &Op<NoParams>, error: &str) -> Result<(), StepError> {
        fail(&self.0, op, error, false).await?;
        with_instance::restore_attached(&self.0, volumes(op)).await
    }
}
