//! Keeps instance records true to machines that can change on their own: with a real driver a
//! QEMU process can be killed or a guest can power itself off, and nothing in the API knows.
//! Only instances at rest are corrected; an instance in `work` belongs to its operation.

use std::time::Duration;

use openwinv_driver::Power;
use openwinv_store::instances::InstanceStatus;

use crate::AppState;

/// How often records are compared with the machines.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Runs forever (for drivers that reconcile).
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = once(&state).await {
            tracing::warn!(error = %e, "could not reconcile instances with their machines");
        }
    }
}

/// One pass; returns how many instances were corrected.
pub async fn once(state: &AppState) -> anyhow::Result<usize> {
    let mut corrected = 0;
    for (id, status) in state.store.instances_at_rest().await? {
        let power = match state.driver.state(&id).await {
            Ok(s) => s.power,
            Err(e) => {
                tracing::warn!(instance = %id, error = %e, "could not read a machine's state");
                continue;
            }
        };
        let (to, reason) = match (status, power) {
            (InstanceStatus::Active, Power::Stopped) => (InstanceStatus::Off, None),
            (InstanceStatus::Active | InstanceStatus::Off, Power::Absent) => {
                (InstanceStatus::Error, Some("the machine is gone from the hypervisor"))
            }
            (InstanceStatus::Off, Power::Running) => (InstanceStatus::Active, None),
            _ => continue,
        };
        if state.store.reconcile_instance(&id, status, to, reason, state.clock.unix()).await? {
            tracing::warn!(instance = %id, from = %status, %to, "instance reconciled with its machine");
            corrected += 1;
        }
    }
    Ok(corrected)
}
