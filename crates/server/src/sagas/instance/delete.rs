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
    /// Hosts mode: the hosts still holding machines of the account's networks are told their
    /// peers without this instance's host (its placement went with the row). Last, so that the
    /// indices of the steps before it stay those of running operations.
    ForgetPeers,
}

impl Steps for Step {
    const ALL: &'static [Step] =
        &[Step::DestroyMachine, Step::DetachVolumes, Step::ReleaseAddresses, Step::Remove, Step::ForgetPeers];

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

    fn noop(&self, step: Step, _op: &Op<NoParams>) -> bool {
        step == Step::ForgetPeers && !self.0.hosts_mode
    }

    async fn run(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        let deps = &self.0;
        let id = &op.resource_id;
        match step {
            Step::DestroyMachine => deps.driver.destroy(id).await.map_err(Into::into),
            Step::DetachVolumes => with_instance::detach(deps, volumes(op)).await,
            Step::ReleaseAddresses => Ok(deps.store.release_addresses(id).await?),
            Step::Remove => Ok(deps.store.remove_instance(id, deps.clock.unix()).await?),
            // The row is gone with its zone: every network of the account (an account has few).
            Step::ForgetPeers => {
                for zone in deps.store.network_zones(&op.account_id).await? {
                    crate::remote_driver::tell_peers(&deps.store, &deps.clock, &op.account_id, &zone, Some(id)).await?;
                }
                Ok(())
            }
        }
    }

    /// A destroyed machine and a removed row cannot come back.
    async fn undo(&self, step: Step, _op: &Op<NoParams>) -> Result<(), StepError> {
        match step {
            Step::DestroyMachine | Step::DetachVolumes | Step::ReleaseAddresses | Step::Remove | Step::ForgetPeers => {
                Ok(())
            }
        }
    }

    /// A failed delete that did not reach `detach_volumes` leaves the volumes attached.
    async fn failed(&self, op: &Op<NoParams>, error: &str) -> Result<(), StepError> {
        fail(&self.0, op, error, false).await?;
        with_instance::restore_attached(&self.0, volumes(op)).await
    }
}
