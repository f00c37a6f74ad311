//! `firewall.sync`: a firewall's rules or `icmp` changed (or it was created); every instance it
//! is attached to gets its compiled rule set again. A failed sync keeps the accepted rule change;
//! the next apply (any later change, attach or detach) carries it to the driver.

use std::sync::Arc;

use openwinv_engine::{NoParams, Op, Operation, StepError};

use super::{Step, sync_instance};
use crate::sagas::Deps;

pub struct Sync(pub Arc<Deps>);

#[async_trait::async_trait]
impl Operation for Sync {
    type Params = NoParams;
    type Step = Step;
    const KIND: &'static str = "firewall.sync";

    async fn run(&self, step: Step, op: &Op<NoParams>) -> Result<(), StepError> {
        match step {
            Step::ApplyFirewall => {
                for id in self.0.store.instances_of_firewall(&op.resource_id).await? {
                    sync_instance(&self.0, &id).await?;
                }
                Ok(())
            }
        }
    }

    /// The only step is the last one; a failed apply left the driver as it was.
    async fn undo(&self, step: Step, _op: &Op<NoParams>) -> Result<(), StepError> {
        match step {
            Step::ApplyFirewall => Ok(()),
        }
    }

    async fn failed(&self, _op: &Op<NoParams>, _error: &str) -> Result<(), StepError> {
        Ok(())
    }
}
