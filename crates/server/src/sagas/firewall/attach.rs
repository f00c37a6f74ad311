//! `firewall.attach`: the request wrote the attachment change with the operation; the one step
//! applies the instance's compiled rule set. A failed attach leaves no trace: the pair goes back to
//! how it was and the instance gets the matching rule set.

use std::sync::Arc;

use openwinv_engine::{Op, Operation, StepError};

use super::{Pairing, Step, put_back, sync_instance};
use crate::sagas::Deps;

pub struct Attach(pub Arc<Deps>);

#[async_trait::async_trait]
impl Operation for Attach {
    type Params = Pairing;
    type Step = Step;
    const KIND: &'static str = "firewall.attach";

    async fn run(&self, step: Step, op: &Op<Pairing>) -> Result<(), StepError> {
        match step {
            Step::ApplyFirewall => sync_instance(&self.0, &op.params.instance_id).await,
        }
    }

    /// The only step is the last one; a failed apply left the driver as it was.
    async fn undo(&self, step: Step, _op: &Op<Pairing>) -> Result<(), StepError> {
        match step {
            Step::ApplyFirewall => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<Pairing>, _error: &str) -> Result<(), StepError> {
        put_back(&self.0, op, true).await
    }
}
