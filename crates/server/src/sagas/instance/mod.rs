//! Instance lifecycle sagas, one module per kind: create, start, shutdown, reboot, rebuild,
//! resize, delete.
//!
//! Each kind is an ordered list of idempotent steps with undos. The last forward step (`settle`)
//! writes the end state and clears the instance's `operation_id`, guarded by that id, so running
//! it twice changes nothing. `failed` leaves the instance `error` with the reason.

pub mod create;
pub mod delete;
pub mod reboot;
pub mod rebuild;
pub mod resize;
pub mod shutdown;
pub mod start;

use openwinv_driver::{MachineNetwork, MachineSpec};
use openwinv_engine::{Op, Operation, StepError};
use openwinv_store::instances::InstanceStatus;
use openwinv_store::{InstanceRecord, Settle};

use super::{Deps, addresses};

/// The instance operation kinds, for the requests that start them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Start,
    Shutdown,
    Reboot,
    Rebuild,
    Resize,
    Delete,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => create::Create::KIND,
            Kind::Start => start::Start::KIND,
            Kind::Shutdown => shutdown::Shutdown::KIND,
            Kind::Reboot => reboot::Reboot::KIND,
            Kind::Rebuild => rebuild::Rebuild::KIND,
            Kind::Resize => resize::Resize::KIND,
            Kind::Delete => delete::Delete::KIND,
        }
    }

    /// The statuses an operation of this kind may start from (spec §7).
    pub fn allowed_from(self) -> &'static [InstanceStatus] {
        match self {
            Kind::Create => &[],
            Kind::Start => &[InstanceStatus::Off, InstanceStatus::Error],
            Kind::Shutdown | Kind::Reboot => &[InstanceStatus::Active],
            Kind::Rebuild | Kind::Resize => &[InstanceStatus::Active, InstanceStatus::Off],
            Kind::Delete => &[InstanceStatus::Active, InstanceStatus::Off, InstanceStatus::Error],
        }
    }
}

pub(super) async fn instance(deps: &Deps, id: &str) -> Result<Option<InstanceRecord>, StepError> {
    Ok(deps.store.instance_by_id(id).await?)
}

pub(super) async fn require(deps: &Deps, id: &str) -> Result<InstanceRecord, StepError> {
    instance(deps, id).await?.ok_or_else(|| StepError::Permanent(format!("instance {id} is gone")))
}

/// What an operation changes of the machine the instance records (a resize's flavor, a rebuild's
/// image and password); `None` keeps the recorded one.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Changes<'a> {
    pub flavor_id: Option<&'a str>,
    pub image_id: Option<&'a str>,
    pub password_sealed: Option<&'a str>,
}

/// What the driver needs, with the instance's flavor, image and password overridden by
/// `changes`. The boot files come from the image's catalog entry (`None` without one: the
/// simulated driver needs none, a real one refuses), the user script from the account's stored
/// script.
pub(super) async fn spec(deps: &Deps, inst: &InstanceRecord, changes: Changes<'_>) -> Result<MachineSpec, StepError> {
    let user_script = match &inst.user_script_id {
        None => None,
        Some(id) => match deps.store.script(&inst.account_id, id).await? {
            Some(script) => Some(script.content),
            None => {
                // Scripts may be deleted while instances keep their id; a rebuild then runs none.
                tracing::warn!(instance = %inst.instance_id, script = %id, "the user script no longer exists");
                None
            }
        },
    };
    let catalog = deps.catalog.get();
    let flavor_id = changes.flavor_id.unwrap_or(&inst.flavor_id);
    let flavor = catalog
        .flavors
        .iter()
        .find(|f| f.id == flavor_id)
        .ok_or_else(|| StepError::Permanent(format!("flavor {flavor_id} is no longer in the catalog")))?;
    let sealed = changes.password_sealed.unwrap_or(&inst.password_sealed);
    let password = deps.sealer.open(sealed).map_err(|e| StepError::Permanent(e.to_string()))?;
    let image_id = changes.image_id.unwrap_or(&inst.image_id);
    let boot = catalog.images.iter().find(|i| i.id == image_id).and_then(|i| deps.images.boot_image(i));
    // Across hosts the network spans them by its VXLAN id; one process's machines share one host.
    let vni = match deps.hosts_mode {
        true => deps.store.known_vni(&inst.account_id, &inst.zone_id).await?,
        false => None,
    };
    Ok(MachineSpec {
        instance_id: inst.instance_id.to_string(),
        hostname: inst.name.clone(),
        vcpu: flavor.vcpu,
        memory: flavor.memory,
        disk: flavor.disk,
        image_id: image_id.to_owned(),
        username: inst.username.clone(),
        password,
        ssh_keys: inst.ssh_keys.iter().map(|k| k.public_key.clone()).collect(),
        user_script,
        boot,
        network: inst.private_ip.as_deref().and_then(|ip| ip.parse().ok()).map(|ip| {
            let net = addresses::private_net();
            MachineNetwork {
                account_id: inst.account_id.to_string(),
                zone_id: inst.zone_id.clone(),
                ip,
                prefix: net.prefix_len(),
                gateway: addresses::gateway(&net),
                public_ip: inst.public_ip.as_deref().and_then(|p| p.parse().ok()),
                vni,
            }
        }),
    })
}

/// The end state of a successful operation, guarded by the operation's id.
pub(super) async fn settle<P>(deps: &Deps, op: &Op<P>, change: &Settle<'_>) -> Result<(), StepError> {
    deps.store.settle_instance(&op.resource_id, &op.operation_id, change).await?;
    Ok(())
}

/// The status a rebuild or resize ends in: the power state the machine had. `None`: the
/// instance is gone.
pub(super) async fn resting(deps: &Deps, id: &str) -> Result<Option<InstanceStatus>, StepError> {
    Ok(instance(deps, id).await?.map(|inst| inst.power.at_rest()))
}

/// `failed` of every kind: the instance is `error` with the reason. A create that failed is not
/// charged (`discard_usage`: no usage interval); the row stays.
pub(super) async fn fail<P>(deps: &Deps, op: &Op<P>, error: &str, discard_usage: bool) -> Result<(), StepError> {
    let change = Settle { error_reason: Some(error), discard_usage, ..Settle::to(InstanceStatus::Error) };
    settle(deps, op, &change).await
}

#[cfg(test)]
mod tests;
