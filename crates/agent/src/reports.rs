//! Machine states told to the control plane (`runtime`): after each item that changed a machine,
//! in full after every registration, and, on a QEMU host, whenever the driver's poll finds a
//! machine that changed on its own.

use std::sync::Arc;
use std::time::Duration;

use openwinv_wire::hosts::{MachineReport, RuntimeAck};
use serde_json::Value;

use crate::control::{Backoff, CallError, Control, REQUEST_TIMEOUT};
use crate::work;

/// How often a QEMU host's machines are compared with what the agent last reported.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Reports machines that changed on their own (a guest powered off from inside, a QEMU process
/// killed), as the embedded control plane's reconcile notices them: the control plane moves the
/// instance at rest (`active` + stopped → `off`, `off` + running → `active`, gone → `error`).
pub(crate) async fn poll_machines(control: Arc<Control>, runner: Arc<work::Runner>) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        report(&control, runner.poll().await).await;
    }
}

/// Reports machine states; a report that cannot be delivered now is sent again in full at the
/// next registration.
pub(crate) async fn report(control: &Control, machines: Vec<MachineReport>) {
    if machines.is_empty() {
        return;
    }
    send_report(control, serde_json::json!({ "machines": machines })).await
}

/// Every machine of the host (even none): the control plane reconciles its placements with it.
pub(crate) async fn report_full(control: &Control, machines: Vec<MachineReport>, as_of: i64) {
    send_report(control, serde_json::json!({ "machines": machines, "full": true, "as_of": as_of })).await
}

async fn send_report(control: &Control, body: Value) {
    let mut backoff = Backoff::new();
    for _ in 0..5 {
        match control.call_rows::<RuntimeAck>("runtime", Some(&body), REQUEST_TIMEOUT).await {
            Ok(_) => return,
            Err(CallError::Refused(m) | CallError::Rejected(m) | CallError::Untrusted(m)) => {
                tracing::warn!(error = %m, "the control plane refused a runtime report");
                return;
            }
            Err(CallError::Away(m) | CallError::NotRegistered(m)) => {
                tracing::warn!(error = %m, "could not report machine states; retrying");
                tokio::time::sleep(backoff.wait()).await;
            }
        }
    }
}
