//! Firewall sagas: attach, detach, and sync (re-apply after a rule change).
//!
//! The request writes the desired state (the attachment row, or the changed rules) and the
//! operation in one transaction; the saga's one driver step compiles what the store says is
//! attached to the instance and hands it to the driver. Applying is a replace of the whole set,
//! so running the step twice, or after a crash, converges on the same result. When an attach or
//! detach fails, `failed` puts the attachment back as it was and re-applies.
//!
//! Operation params: `{"instance_id": …, "changed": bool}` for attach/detach (`changed` false
//! when the request repeated the current state); `{}` for sync, whose resource is the firewall.

use std::sync::Arc;

use openwinv_engine::firewall::{self, CompiledRules, FirewallSpec, Rule};
use openwinv_engine::{OpContext, Saga, StepDef, StepError};
use openwinv_store::Store;

use super::Deps;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Attach,
    Detach,
    Sync,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Attach, Kind::Detach, Kind::Sync];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Attach => "firewall.attach",
            Kind::Detach => "firewall.detach",
            Kind::Sync => "firewall.sync",
        }
    }

    pub fn steps(self) -> &'static [StepDef] {
        const APPLY: &[StepDef] = &[StepDef::driver("apply_firewall")];
        APPLY
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
            firewall_id: f.firewall_id,
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

pub struct FirewallSaga {
    kind: Kind,
    deps: Arc<Deps>,
}

impl FirewallSaga {
    pub fn new(kind: Kind, deps: Arc<Deps>) -> FirewallSaga {
        FirewallSaga { kind, deps }
    }

    fn instance_id(op: &OpContext) -> Result<String, StepError> {
        op.str("instance_id")
            .map(str::to_owned)
            .ok_or_else(|| StepError::Permanent("the operation names no instance".into()))
    }

    async fn apply(&self, op: &OpContext) -> Result<(), StepError> {
        match self.kind {
            Kind::Attach | Kind::Detach => sync_instance(&self.deps, &Self::instance_id(op)?).await,
            Kind::Sync => {
                for id in self.deps.store.instances_of_firewall(&op.resource_id).await? {
                    sync_instance(&self.deps, &id).await?;
                }
                Ok(())
            }
        }
    }
}

#[async_trait::async_trait]
impl Saga for FirewallSaga {
    fn kind(&self) -> &'static str {
        self.kind.name()
    }

    fn steps(&self) -> &'static [StepDef] {
        self.kind.steps()
    }

    async fn run(&self, step: usize, op: &mut OpContext) -> Result<(), StepError> {
        match self.kind.steps()[step].name {
            "apply_firewall" => self.apply(op).await,
            name => Err(StepError::Permanent(format!("{} has no step {name}", self.kind.name()))),
        }
    }

    /// The only step is the last one; a failed apply left the driver as it was.
    async fn undo(&self, _step: usize, _op: &mut OpContext) -> Result<(), StepError> {
        Ok(())
    }

    /// A failed attach or detach leaves no trace: the pair goes back to how it was and the
    /// instance gets the matching rule set. A failed sync keeps the accepted rule change; the
    /// next apply (any later change, attach or detach) carries it to the driver.
    async fn failed(&self, op: &mut OpContext, _error: &str) -> Result<(), StepError> {
        if self.kind == Kind::Sync {
            return Ok(());
        }
        let instance_id = Self::instance_id(op)?;
        let changed = op.params.get("changed").and_then(serde_json::Value::as_bool).unwrap_or(false);
        if changed {
            self.deps
                .store
                .revert_firewall_attachment(
                    &op.resource_id,
                    &instance_id,
                    self.kind == Kind::Attach,
                    self.deps.clock.unix(),
                )
                .await?;
        }
        sync_instance(&self.deps, &instance_id).await
    }
}
