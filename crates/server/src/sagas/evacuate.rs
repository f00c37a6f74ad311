//! `instance.evacuate` [ext]: the operator's `admin hosts evacuate NAME` moves each stopped
//! instance of a host to another host of its zone, one operation per instance (docs/hosts.md,
//! "Evacuate").
//!
//! Steps, each idempotent and each driver call a work item keyed like every other step's:
//!
//! 1. `reserve`: room on another host, chosen as placement chooses (`Store::reserve_move`, the
//!    same transaction shape as create's `place`), held beside the source's placement. Undo:
//!    the reservation is dropped.
//! 2. `export` on the source agent: the machine, which must be stopped, is made ready to leave;
//!    its answer (on the simulated hypervisor the machine record; on QEMU the disk's digest, to
//!    be fetched through the control plane) is kept with the move.
//! 3. `import` on the target agent, with the machine's spec and the export. Undo: the target's
//!    copy is destroyed, unless the move has switched (then the target's copy is the machine).
//! 4. `switch`, the pivot: the placement names the target, in one transaction; the source's
//!    reservation is released only now. Never undone: from here the machine lives on the
//!    target.
//! 5. `destroy_source`: the source's copy is destroyed. A permanent refusal leaves the copy
//!    there (the source's next full report shows it as a stray) rather than undo a finished move.
//! 6. `settle`: the instance is `off` again, on its new host.
//!
//! A failure before the switch unwinds to where the machine was: on its source, `off`.
//!
//! A QEMU source's export is its machine's disk, flattened and handed to the control plane
//! (`PUT /internal/v1/disks/{sha256}`); the target's agent fetches it by digest. The control
//! plane removes the file at the switch, or when the export is undone.

use std::sync::Arc;

use openwinv_driver::DriverError;
use openwinv_engine::{Op, Operation, StepError, Steps};
use openwinv_store::Settle;
use openwinv_store::hosts::{MoveFrom, Placed};
use openwinv_store::instances::InstanceStatus;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Deps;
use super::instance::create::Need;
use super::instance::{Changes, require, settle, spec};
use crate::remote_driver::RemoteDriver;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub source_host_id: String,
    pub source_host: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Reserve,
    Export,
    Import,
    Switch,
    DestroySource,
    Settle,
}

impl Steps for Step {
    const ALL: &'static [Step] =
        &[Step::Reserve, Step::Export, Step::Import, Step::Switch, Step::DestroySource, Step::Settle];

    fn paced(self) -> bool {
        false
    }
}

pub struct Evacuate(pub Arc<Deps>);

impl Evacuate {
    fn remote(&self) -> RemoteDriver {
        let d = &self.0;
        RemoteDriver::new(d.store.clone(), d.clock.clone(), d.driver.clone(), d.images.disks_dir())
    }

    async fn reserve(&self, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        let need = Need::of(deps, &op.resource_id).await?;
        let req = need.request();
        let from = MoveFrom { source_host_id: &op.params.source_host_id, operation_id: &op.operation_id };
        match deps.store.reserve_move(&req, &from, deps.clock.unix()).await? {
            Placed::New(p) | Placed::Existing(p) => {
                tracing::info!(instance = %req.instance_id, from = %op.params.source_host, to = %p.host_name,
                    "evacuation: room reserved");
                Ok(())
            }
            Placed::NoHost { hosts, usable } => Err(StepError::Permanent(format!(
                "no other host of zone {} has room for {}: {hosts} host(s), {usable} usable besides {}",
                req.zone_id,
                need.describe(),
                op.params.source_host
            ))),
        }
    }

    async fn pending(&self, op: &Op<Params>) -> Result<openwinv_store::hosts::MoveRecord, StepError> {
        self.0
            .store
            .pending_move(&op.resource_id)
            .await?
            .filter(|m| m.operation_id == op.operation_id)
            .ok_or_else(|| StepError::Permanent(format!("the move of {} was cancelled", op.resource_id)))
    }

    async fn export(&self, op: &Op<Params>) -> Result<(), StepError> {
        self.pending(op).await?;
        let p = &op.params;
        let answer =
            self.remote().call_on(&p.source_host_id, &p.source_host, &op.resource_id, "export", json!({})).await?;
        if !self.0.store.record_export(&op.resource_id, &op.operation_id, &answer.to_string()).await? {
            return Err(StepError::Permanent(format!("the move of {} was cancelled", op.resource_id)));
        }
        Ok(())
    }

    async fn import(&self, op: &Op<Params>) -> Result<(), StepError> {
        let mv = self.pending(op).await?;
        let export: Value = mv.export.as_deref().and_then(|e| serde_json::from_str(e).ok()).ok_or_else(|| {
            StepError::Permanent(format!("the move of {} has no export from its source", op.resource_id))
        })?;
        let inst = require(&self.0, &op.resource_id).await?;
        let spec = spec(&self.0, &inst, Changes::default()).await?;
        // The spec with its boot files by content (`boot_files`), as a create sends it: a QEMU
        // target fetches the kernel and initrd the way it does for a create.
        let spec = crate::remote_driver::spec_json(&spec).await?;
        let payload = json!({ "spec": spec, "export": export });
        self.remote().call_on(&mv.host_id, &mv.host_name, &op.resource_id, "import", payload).await?;
        Ok(())
    }

    /// The move's export (from its source agent), while the move is pending.
    async fn export_of(&self, op: &Op<Params>) -> Result<Option<Value>, StepError> {
        let mv = self.0.store.pending_move(&op.resource_id).await?.filter(|m| m.operation_id == op.operation_id);
        Ok(mv.and_then(|m| m.export).and_then(|e| serde_json::from_str(&e).ok()))
    }

    async fn destroy_source(&self, op: &Op<Params>) -> Result<(), StepError> {
        let p = &op.params;
        match self.remote().call_on(&p.source_host_id, &p.source_host, &op.resource_id, "destroy", json!({})).await {
            Ok(_) => Ok(()),
            Err(DriverError::Permanent(e)) => {
                tracing::warn!(instance = %op.resource_id, host = %p.source_host, error = %e,
                    "evacuation: the source's copy could not be destroyed; it stays there as a stray");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait::async_trait]
impl Operation for Evacuate {
    type Params = Params;
    type Step = Step;
    const KIND: &'static str = "instance.evacuate";

    async fn run(&self, step: Step, op: &Op<Params>) -> Result<(), StepError> {
        match step {
            Step::Reserve => self.reserve(op).await,
            Step::Export => self.export(op).await,
            Step::Import => self.import(op).await,
            Step::Switch => {
                // The export, read before the move row goes with the switch: the disks the
                // control plane holds for it are removed once the target has the machine.
                let export = self.export_of(op).await?;
                if let Some(source) = self.0.store.switch_move(&op.resource_id, &op.operation_id).await? {
                    tracing::info!(instance = %op.resource_id, from = %source, "evacuation: placement switched");
                }
                if let Some(export) = export {
                    crate::internal::disks::remove_exported(&self.0.images.disks_dir(), &export);
                }
                Ok(())
            }
            Step::DestroySource => self.destroy_source(op).await,
            Step::Settle => settle(&self.0, op, &Settle::to(InstanceStatus::Off)).await,
        }
    }

    async fn undo(&self, step: Step, op: &Op<Params>) -> Result<(), StepError> {
        match step {
            Step::Reserve => {
                self.0.store.cancel_move(&op.resource_id, &op.operation_id).await?;
                Ok(())
            }
            Step::Import => {
                // Switched (or the target was declared dead): nothing of the move to take back.
                let Some(mv) = self.0.store.pending_move(&op.resource_id).await? else { return Ok(()) };
                if mv.operation_id != op.operation_id {
                    return Ok(());
                }
                self.remote().call_on(&mv.host_id, &mv.host_name, &op.resource_id, "destroy", json!({})).await?;
                Ok(())
            }
            Step::Export => {
                // The disks the source handed over for this move are of no use now.
                if let Some(export) = self.export_of(op).await? {
                    crate::internal::disks::remove_exported(&self.0.images.disks_dir(), &export);
                }
                Ok(())
            }
            Step::Switch | Step::DestroySource | Step::Settle => Ok(()),
        }
    }

    /// The machine is where the unwinding left it, stopped: `off`, unless its host was declared
    /// dead meanwhile (no placement any more), then `error` with the reason.
    async fn failed(&self, op: &Op<Params>, error: &str) -> Result<(), StepError> {
        let deps = &self.0;
        if deps.store.placement(&op.resource_id).await?.is_none() {
            let reason = format!("evacuation failed and the instance is on no host: {error}");
            let change = Settle { error_reason: Some(&reason), ..Settle::to(InstanceStatus::Error) };
            return settle(deps, op, &change).await;
        }
        settle(deps, op, &Settle::to(InstanceStatus::Off)).await
    }
}
