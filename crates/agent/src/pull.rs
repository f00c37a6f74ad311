//! The host's work, pulled: a long poll of `/internal/v1/hosts/work`, each item run in a task of
//! its own ([`work::Runner`]) and answered after the machine's new state was reported; a
//! `console` item opens a console session instead ([`console`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use openwinv_wire::hosts::{WorkAck, WorkItem, WorkPull};

use crate::control::{Backoff, CallError, Control, REQUEST_TIMEOUT};
use crate::reports::report;
use crate::{console, work};

/// The console broker of the host's driver and the machines' shared serial connections.
pub(crate) type ConsoleParts = (Arc<dyn openwinv_driver::ConsoleBroker>, Arc<openwinv_driver::SerialHub>);

/// How long the control plane may hold a work pull open.
const PULL_WAIT_MS: u64 = 20_000;

/// Pulls the host's work (long poll) and runs each item in a task of its own (a `console` item
/// opens a console session), until the control plane refuses the token.
pub(crate) async fn pull_work(
    control: Arc<Control>,
    runner: Arc<work::Runner>,
    (broker, consoles): ConsoleParts,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    let timeout = Duration::from_millis(PULL_WAIT_MS) + REQUEST_TIMEOUT;
    let held = Held::default();
    loop {
        // Every pull says what the agent holds, so that an item handed to a poll whose answer
        // was lost (a partition, a timeout) comes back in this one.
        let body = serde_json::to_value(WorkPull { wait_ms: PULL_WAIT_MS, held: Some(held.keys()) })
            .expect("a pull serializes");
        match control.call_rows::<WorkItem>("work", Some(&body), timeout).await {
            Ok(items) => {
                backoff.reset();
                for item in items {
                    // Held from now until its answer is taken (or refused): not handed out again.
                    let Some(guard) = held.take(&item.key) else { continue };
                    // A console session is no machine call: no record, no runtime report.
                    if item.call == "console" {
                        let (control, broker, consoles) = (control.clone(), broker.clone(), consoles.clone());
                        tokio::spawn(async move {
                            console::serve(control, broker, consoles, item).await;
                            drop(guard);
                        });
                        continue;
                    }
                    let (control, runner) = (control.clone(), runner.clone());
                    tokio::spawn(async move {
                        handle(&control, &runner, item).await;
                        drop(guard);
                    });
                }
            }
            Err(CallError::Refused(m)) => bail!("the control plane refused the host token: {m}"),
            Err(CallError::Untrusted(m)) => bail!("{m}"),
            Err(CallError::Rejected(m) | CallError::NotRegistered(m) | CallError::Away(m)) => {
                let wait = backoff.wait();
                tracing::warn!(error = %m, retry_in = ?wait, "work pull failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Runs one item (or answers it from the record), reports the machine's change, then answers
/// the item: the report first, so that the control plane never sees the answer before the state.
async fn handle(control: &Control, runner: &work::Runner, item: WorkItem) {
    let (result, change) = runner.process(&item).await;
    if let Some(m) = change {
        report(control, vec![m]).await;
    }
    let body = serde_json::to_value(&result).expect("a result serializes");
    let mut backoff = Backoff::new();
    loop {
        match control.call::<WorkAck>("work/result", Some(&body)).await {
            Ok(ack) => {
                if !ack.recorded {
                    tracing::info!(key = %item.key, "the control plane had this answer already");
                }
                return;
            }
            Err(CallError::Refused(m) | CallError::Rejected(m) | CallError::Untrusted(m)) => {
                tracing::warn!(key = %item.key, error = %m, "the control plane refused an answer");
                return;
            }
            Err(CallError::Away(m) | CallError::NotRegistered(m)) => {
                let wait = backoff.wait();
                tracing::warn!(key = %item.key, error = %m, retry_in = ?wait, "could not answer a work item");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The keys of the items the agent received and has not had answered.
#[derive(Clone, Default)]
struct Held(Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>);

impl Held {
    fn keys(&self) -> Vec<String> {
        self.0.lock().expect("held items").iter().cloned().collect()
    }

    /// Holds `key` until the guard drops; None when it is held already (the same item handed
    /// out again while its first delivery still runs: that one answers it).
    fn take(&self, key: &str) -> Option<HeldGuard> {
        self.0.lock().expect("held items").insert(key.to_owned()).then(|| HeldGuard(self.clone(), key.to_owned()))
    }
}

/// An item held by the agent: let go when dropped.
struct HeldGuard(Held, String);

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.0.0.lock().expect("held items").remove(&self.1);
    }
}
