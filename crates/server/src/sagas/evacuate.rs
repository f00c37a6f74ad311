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
//! 3. `import` on the target agent, with the machine's spec and the export; then each volume
//!    attached to the machine moves with it, as a volume moves to the host of its next instance
//!    (docs/hosts.md "Volumes"): detached from the machine on the source, exported there (on QEMU
//!    handed to the control plane by SHA-256), imported on the target, attached to the machine
//!    there. Undo: the volumes' copies on the target are dropped and the volumes attached to the
//!    machine on the source again, then the target's copy of the machine is destroyed, unless the
//!    move has switched (then the target's copies are the machine and its volumes).
//! 4. `switch`, the pivot: the placement names the target and the volumes' row the target as
//!    their host, in one transaction; the source's reservation is released only now. Never
//!    undone: from here the machine lives on the target.
//! 5. `destroy_source`: the source's copy is destroyed, then the source's storage of each volume
//!    that moved. A permanent refusal leaves the copy there (the source's next full report shows
//!    a machine as a stray) rather than undo a finished move.
//! 6. `settle`: the instance is `off` again, on its new host.
//!
//! A failure before the switch unwinds to where the machine was: on its source, `off`, its
//! volumes attached there. The runner does not undo the step that failed, so what a failed
//! `import` did (the machine's copy, volume moves part of the way) is taken back by `export`'s
//! undo, with the same idempotent unwinding as `import`'s undo.
//!
//! The volume calls are keyed `{operation}/{step}/{run|undo}/volumes/{volume}/{call}`, each
//! volume's calls under its own keys (never clashing with the numbered keys of the step's other
//! calls), so a retried step or undo finds the answered ones.
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
use openwinv_store::VolumeRecord;
use openwinv_store::host_work::DONE;

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

/// The position of `step` in the saga (as the runner numbers it).
fn index(step: Step) -> usize {
    Step::ALL.iter().position(|s| *s == step).expect("a step of the saga")
}

/// The key of one call about a volume of the move.
fn volume_key(op: &Op<Params>, step: Step, undo: bool, volume_id: &str, call: &str) -> String {
    let dir = if undo { "undo" } else { "run" };
    format!("{}/{}/{dir}/volumes/{volume_id}/{call}", op.operation_id, index(step))
}

impl Evacuate {
    fn remote(&self) -> RemoteDriver {
        let d = &self.0;
        RemoteDriver::new(d.store.clone(), d.clock.clone(), d.driver.clone(), d.images.disks_dir())
    }

    async fn reserve(&self, op: &Op<Params>) -> Result<(), StepError> {
        let deps = &self.0;
        // Every attached volume must be kept on the source, to move with the machine: checked
        // before anything is copied.
        self.volumes(op).await?;
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

    /// The volumes attached to the machine, each kept on the source (checked: the move copies
    /// what the source keeps).
    async fn volumes(&self, op: &Op<Params>) -> Result<Vec<VolumeRecord>, StepError> {
        let store = &self.0.store;
        let volumes = store.volumes_of_instance(&op.resource_id).await?;
        for v in &volumes {
            let kept = store.volume_host(&v.block_storage_id).await?;
            if kept.as_ref().map(|h| h.host_id.as_str()) != Some(op.params.source_host_id.as_str()) {
                return Err(StepError::Permanent(format!(
                    "volume {} attached to {} is kept on {}, not on {}: detach it first",
                    v.block_storage_id,
                    op.resource_id,
                    kept.map_or_else(|| "no host".to_owned(), |h| format!("the host {}", h.host_name)),
                    op.params.source_host
                )));
            }
        }
        Ok(volumes)
    }

    /// Part of `import`: each attached volume leaves the machine on the source and joins its copy
    /// on the target (`mv`'s host).
    async fn move_volumes(&self, op: &Op<Params>, mv: &openwinv_store::hosts::MoveRecord) -> Result<(), StepError> {
        let (p, remote, inst) = (&op.params, self.remote(), Some(op.resource_id.as_str()));
        for v in self.volumes(op).await? {
            let id = v.block_storage_id.as_str();
            let key = |call: &str| volume_key(op, Step::Import, false, id, call);
            let spec = json!({ "volume": crate::sagas::volume::spec(&v) });
            let vid = json!({ "volume_id": id });
            remote
                .keyed_on(&p.source_host_id, &p.source_host, inst, "detach_volume", &key("detach"), vid.clone())
                .await?;
            let export =
                remote.keyed_on(&p.source_host_id, &p.source_host, None, "export_volume", &key("export"), vid).await?;
            let payload = json!({ "volume": spec["volume"], "export": export });
            remote.keyed_on(&mv.host_id, &mv.host_name, None, "import_volume", &key("import"), payload).await?;
            crate::internal::disks::remove_exported(&self.0.images.disks_dir(), &export);
            remote.keyed_on(&mv.host_id, &mv.host_name, inst, "attach_volume", &key("attach"), spec).await?;
            tracing::info!(instance = %op.resource_id, volume = %id, from = %p.source_host, to = %mv.host_name,
                "evacuation: volume copied");
        }
        Ok(())
    }

    /// Takes back what `move_volumes` did, as far as it got (keyed under the undo of `step`):
    /// the target's copies of the volumes are detached and dropped while the move is pending (a
    /// target declared dead lost them), the control plane's copy of an export removed, and each
    /// volume attached to the machine on the source again while it is placed there (a source
    /// declared dead lost it). Nothing once the move has switched: the target's copies are the
    /// volumes.
    async fn unwind_volumes(&self, op: &Op<Params>, step: Step) -> Result<(), StepError> {
        let (p, deps, remote, inst) = (&op.params, &self.0, self.remote(), Some(op.resource_id.as_str()));
        let on_source = deps.store.placement(&op.resource_id).await?.is_some_and(|pl| pl.host_id == p.source_host_id);
        let target = deps.store.pending_move(&op.resource_id).await?.filter(|m| m.operation_id == op.operation_id);
        if !on_source && target.is_none() {
            return Ok(());
        }
        for v in deps.store.volumes_of_instance(&op.resource_id).await? {
            let id = v.block_storage_id.as_str();
            let ran = |call: &str| volume_key(op, Step::Import, false, id, call);
            let key = |call: &str| volume_key(op, step, true, id, call);
            let vid = json!({ "volume_id": id });
            if let Some(t) = &target
                && deps.store.work(&ran("import")).await?.is_some()
            {
                remote.keyed_on(&t.host_id, &t.host_name, inst, "detach_volume", &key("detach"), vid.clone()).await?;
                remote.keyed_on(&t.host_id, &t.host_name, None, "delete_volume", &key("drop"), vid).await?;
            }
            if let Some(w) = deps.store.work(&ran("export")).await?
                && w.state == DONE
                && let Some(export) = w.result.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok())
            {
                crate::internal::disks::remove_exported(&deps.images.disks_dir(), &export);
            }
            if on_source && deps.store.work(&ran("detach")).await?.is_some() {
                let spec = json!({ "volume": crate::sagas::volume::spec(&v) });
                remote.keyed_on(&p.source_host_id, &p.source_host, inst, "attach_volume", &key("attach"), spec).await?;
            }
        }
        Ok(())
    }

    /// The target's copy of the machine goes, while the move is pending.
    async fn destroy_target(&self, op: &Op<Params>) -> Result<(), StepError> {
        // Switched (or the target was declared dead): nothing of the move to take back.
        let Some(mv) = self.0.store.pending_move(&op.resource_id).await? else { return Ok(()) };
        if mv.operation_id != op.operation_id {
            return Ok(());
        }
        self.remote().call_on(&mv.host_id, &mv.host_name, &op.resource_id, "destroy", json!({})).await?;
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
        self.move_volumes(op, &mv).await
    }

    /// The move's export (from its source agent), while the move is pending.
    async fn export_of(&self, op: &Op<Params>) -> Result<Option<Value>, StepError> {
        let mv = self.0.store.pending_move(&op.resource_id).await?.filter(|m| m.operation_id == op.operation_id);
        Ok(mv.and_then(|m| m.export).and_then(|e| serde_json::from_str(&e).ok()))
    }

    async fn destroy_source(&self, op: &Op<Params>) -> Result<(), StepError> {
        let p = &op.params;
        match self.remote().call_on(&p.source_host_id, &p.source_host, &op.resource_id, "destroy", json!({})).await {
            Ok(_) => {}
            Err(DriverError::Permanent(e)) => {
                tracing::warn!(instance = %op.resource_id, host = %p.source_host, error = %e,
                    "evacuation: the source's copy could not be destroyed; it stays there as a stray");
            }
            Err(e) => return Err(e.into()),
        }
        // The source's storage of each volume that moved (the switch made the target keep it); a
        // volume still kept on the source (none should be) keeps its only copy.
        let store = &self.0.store;
        for v in store.volumes_of_instance(&op.resource_id).await? {
            let id = v.block_storage_id.as_str();
            if store.volume_host(id).await?.is_none_or(|h| h.host_id == p.source_host_id) {
                continue;
            }
            let key = volume_key(op, Step::DestroySource, false, id, "drop");
            let payload = json!({ "volume_id": id });
            match self.remote().keyed_on(&p.source_host_id, &p.source_host, None, "delete_volume", &key, payload).await
            {
                Ok(_) => {}
                Err(DriverError::Permanent(e)) => {
                    tracing::warn!(instance = %op.resource_id, volume = %id, host = %p.source_host, error = %e,
                        "evacuation: the source's copy of a volume could not be deleted; it stays there");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
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
                self.unwind_volumes(op, Step::Import).await?;
                self.destroy_target(op).await
            }
            Step::Export => {
                // An `import` that failed part of the way is not undone by the runner: what it
                // did is taken back here. It failed when its machine call was queued (the step's
                // first key) and its undo's was not (the undo's first call destroys the target's
                // copy, after the volumes' own keys).
                let import = index(Step::Import);
                let queued = |dir: &str| format!("{}/{import}/{dir}/0", op.operation_id);
                let store = &self.0.store;
                if store.work(&queued("run")).await?.is_some() && store.work(&queued("undo")).await?.is_none() {
                    self.unwind_volumes(op, Step::Export).await?;
                    self.destroy_target(op).await?;
                }
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
