//! `instance.resize`: the machine gets the new flavor's vCPU, memory and disk; the usage interval
//! switches to the new flavor's price as it completes. Ends in the power state the machine had.
//!
//! In hosts mode the instance's host is checked first: before the agent is driven, the
//! instance's reservation grows to the larger of the old and new flavors on each of vCPU,
//! memory and disk (`Store::resize_placement`, refused when the host has no room); `settle`
//! brings it to the new flavor, and the undo or a failure back to the recorded one. Holding the
//! larger of the two while the machine changes means the host is never overbooked, whichever
//! way the operation ends.

use std::sync::Arc;

use openwinv_engine::{Op, Operation, StepError, Steps};
use openwinv_store::hosts::Resized;
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

/// A flavor's size as a reservation counts it: vCPUs, memory in MB, disk in GB.
fn size(deps: &Deps, flavor_id: &str) -> Result<(i64, i64, i64), StepError> {
    let catalog = deps.catalog.get();
    let flavor = catalog
        .flavors
        .iter()
        .find(|f| f.id == flavor_id)
        .ok_or_else(|| StepError::Permanent(format!("flavor {flavor_id} is no longer in the catalog")))?;
    Ok((i64::from(flavor.vcpu), i64::from(flavor.memory) * 1024, i64::from(flavor.disk)))
}

/// Hosts mode: sets the instance's reservation on its host to `to`. A larger size is refused
/// (permanently) when the host has no room for it; a smaller one is always taken.
async fn reserve(deps: &Deps, instance_id: &str, to: (i64, i64, i64)) -> Result<(), StepError> {
    if !deps.hosts_mode {
        return Ok(());
    }
    let (vcpus, memory_mb, disk_gb) = to;
    match deps.store.resize_placement(instance_id, vcpus, memory_mb, disk_gb).await? {
        Resized::Done(_) => Ok(()),
        Resized::NoRoom(p) => Err(StepError::Permanent(format!(
            "the host {} of {instance_id} has no room for {vcpus} vCPU, {memory_mb} MB, {disk_gb} GB \
             beside its other instances",
            p.host_name
        ))),
        Resized::NotPlaced => Err(StepError::Permanent(format!("instance {instance_id} is on no host"))),
    }
}

/// Hosts mode: the reservation back to the flavor the instance records (a resize that did not
/// complete). Never refused: that size is no larger than what the operation reserved.
async fn restore(deps: &Deps, instance_id: &str) -> Result<(), StepError> {
    if !deps.hosts_mode {
        return Ok(());
    }
    let Some(inst) = instance(deps, instance_id).await? else { return Ok(()) };
    let (vcpus, memory_mb, disk_gb) = size(deps, &inst.flavor_id)?;
    match deps.store.resize_placement(instance_id, vcpus, memory_mb, disk_gb).await? {
        // No reservation: the host was declared dead, or the instance was never placed.
        Resized::Done(_) | Resized::NotPlaced => Ok(()),
        Resized::NoRoom(p) => Err(StepError::Transient(format!(
            "the reservation of {instance_id} on {} is smaller than its recorded flavor",
            p.host_name
        ))),
    }
}

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
                if deps.hosts_mode {
                    // The larger of the two flavors while the machine changes (see the module).
                    let (old, new) = (size(deps, &inst.flavor_id)?, size(deps, &op.params.flavor_id)?);
                    reserve(deps, &inst.instance_id, (old.0.max(new.0), old.1.max(new.1), old.2.max(new.2))).await?;
                }
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
                let change = Settle { flavor_id: Some(&op.params.flavor_id), vcpu, reprice, ..Settle::to(status) };
                settle(deps, op, &change).await?;
                // Then the reservation to the new flavor's size: no larger than what
                // `resize_machine` reserved, so never refused; after the settle, so that an undo
                // (back to the flavor recorded, now the new one) never has to grow it.
                reserve(deps, &op.resource_id, size(deps, &op.params.flavor_id)?).await
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
                restore(deps, &op.resource_id).await
            }
            Step::Settle => Ok(()),
        }
    }

    async fn failed(&self, op: &Op<Params>, error: &str) -> Result<(), StepError> {
        // `resize_machine` may have failed after it reserved (its own failure is not undone).
        restore(&self.0, &op.resource_id).await?;
        fail(&self.0, op, error, false).await
    }
}
