//! Firewall sagas, one module per kind: attach, detach, and sync (re-apply after a rule change).
//!
//! The request writes the desired state (the attachment row, or the changed rules) and the
//! operation in one transaction; the saga's one driver step compiles what the store says is
//! attached to the instance and hands it to the driver. Applying is a replace of the whole set,
//! so running the step twice, or after a crash, converges on the same result. When an attach or
//! detach fails, `failed` puts the attachment back as it was and re-applies.
//!
//! Operation params: [`Pairing`] for attach/detach, written by the store with the attachment
//! (`{"instance_id": …, "changed": bool}`, `changed` false when the request repeated the current
//! state); `{}` for sync, whose resource is the firewall.

pub mod attach;
pub mod detach;
pub mod sync;

use openwinv_driver::firewall::{self, CompiledRules, FirewallSpec, Rule};
use openwinv_engine::{Op, Operation, StepError};
use openwinv_store::Store;
use serde::{Deserialize, Serialize};

use super::Deps;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Attach,
    Detach,
    Sync,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Attach => attach::Attach::KIND,
            Kind::Detach => detach::Detach::KIND,
            Kind::Sync => sync::Sync::KIND,
        }
    }
}

/// The input of an attach or detach: the instance, and whether the request changed the
/// attachment (false when it repeated the current state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pairing {
    pub instance_id: String,
    #[serde(default)]
    pub changed: bool,
}

/// The one step of every firewall kind: compile what the store says is attached and apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    ApplyFirewall,
}

impl openwinv_engine::Steps for Step {
    const ALL: &'static [Step] = &[Step::ApplyFirewall];

    fn paced(self) -> bool {
        match self {
            Step::ApplyFirewall => true,
        }
    }
}

/// `firewall.attach` (`ATTACH`) or `firewall.detach`: the request wrote the attachment change
/// with the operation; the one step applies the instance's compiled rule set. A failed one leaves
/// no trace: the pair goes back to how it was (when the request changed it) and the instance gets
/// the matching rule set. One implementation, two kinds (see `attach.rs`, `detach.rs`).
pub struct Pair<const ATTACH: bool>(pub std::sync::Arc<Deps>);

#[async_trait::async_trait]
impl<const ATTACH: bool> Operation for Pair<ATTACH> {
    type Params = Pairing;
    type Step = Step;
    const KIND: &'static str = if ATTACH { "firewall.attach" } else { "firewall.detach" };

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
        let deps = &self.0;
        let instance_id = &op.params.instance_id;
        if op.params.changed {
            deps.store.revert_firewall_attachment(&op.resource_id, instance_id, ATTACH, deps.clock.unix()).await?;
        }
        sync_instance(deps, instance_id).await
    }
}

/// The effective rule set of an instance from what the store says is attached to it.
pub async fn compiled_for(store: &Store, instance_id: &str) -> openwinv_store::Result<CompiledRules> {
    let attached = store.firewalls_of_instance(instance_id).await?;
    let specs: Vec<FirewallSpec> = attached
        .into_iter()
        .map(|(f, rules)| FirewallSpec {
            icmp: f.icmp == "Y",
            rules: rules
                .iter()
                .filter_map(|r| match Rule::parse(r.rule_id, &r.bound, &r.protocol, &r.port, &r.ip) {
                    Ok(rule) => Some(rule),
                    Err(e) => {
                        tracing::warn!(firewall = %f.firewall_id, rule = r.rule_id, error = ?e, "stored rule does not parse; skipped");
                        None
                    }
                })
                .collect(),
            firewall_id: f.firewall_id.into(),
        })
        .collect();
    Ok(firewall::compile(&specs))
}

/// The compiled rule set of an instance as text, for its console page; `None` when no firewall
/// is attached (everything passes) or the store cannot be read.
pub async fn compiled_text_for(store: &Store, instance_id: &str) -> Option<String> {
    match compiled_for(store, instance_id).await {
        Ok(c) if c.is_filtered() => Some(c.render()),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(instance = %instance_id, error = %e, "could not compile the firewall");
            None
        }
    }
}

/// Compiles and applies the firewall of one instance; an instance that is gone is skipped.
/// Usable from other sagas (instance create with `security_group`).
pub async fn sync_instance(deps: &Deps, instance_id: &str) -> Result<(), StepError> {
    if deps.store.instance_by_id(instance_id).await?.is_none() {
        return Ok(());
    }
    let compiled = compiled_for(&deps.store, instance_id).await?;
    deps.driver.apply_firewall(instance_id, &compiled).await?;
    Ok(())
}
