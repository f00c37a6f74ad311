//! The operation kinds this server runs, one module per kind. Each has a typed contract
//! ([`openwinv_engine::Operation`]): the `Params` its request writes and the `Step` enum its
//! `run` and `undo` match.

pub mod addresses;
pub mod evacuate;
pub mod firewall;
pub mod instance;
pub mod volume;

use std::sync::Arc;

use openwinv_driver::ComputeDriver;
use openwinv_engine::{Clock, Operation, Saga, Typed};
use openwinv_store::Store;
use openwinv_store::crypto::Sealer;

use crate::catalog::CatalogCache;

/// What saga steps need: the store, the driver, the catalog and image files, secrets and the clock.
pub struct Deps {
    pub store: Store,
    pub driver: Arc<dyn ComputeDriver>,
    pub catalog: Arc<CatalogCache>,
    /// Resolves an image to the files a driver boots.
    pub images: crate::images::ImageStore,
    pub sealer: Sealer,
    pub clock: Arc<Clock>,
    /// `serve --placement hosts`: a new instance is placed on a host first (the create saga's
    /// `place` step) and `driver` is the remote driver.
    pub hosts_mode: bool,
}

/// Every operation kind, for the engine to register.
pub fn all(deps: Arc<Deps>) -> Vec<Arc<dyn Saga>> {
    fn typed<O: Operation>(op: O) -> Arc<dyn Saga> {
        Arc::new(Typed::new(op))
    }
    let d = || deps.clone();
    vec![
        typed(instance::create::Create(d())),
        typed(instance::start::Start(d())),
        typed(instance::shutdown::Shutdown(d())),
        typed(instance::reboot::Reboot(d())),
        typed(instance::rebuild::Rebuild(d())),
        typed(instance::resize::Resize(d())),
        typed(instance::delete::Delete(d())),
        typed(evacuate::Evacuate(d())),
        typed(volume::create::Create(d())),
        typed(volume::delete::Delete(d())),
        typed(volume::attach::Attach(d())),
        typed(volume::detach::Detach(d())),
        typed(firewall::Pair::<true>(d())),
        typed(firewall::Pair::<false>(d())),
        typed(firewall::sync::Sync(d())),
    ]
}

/// Every operation kind with its step names (for validating fault rules and documentation).
pub fn kinds() -> Vec<(&'static str, Vec<&'static str>)> {
    fn kind<O: Operation>() -> (&'static str, Vec<&'static str>) {
        (O::KIND, Typed::<O>::step_names())
    }
    vec![
        kind::<instance::create::Create>(),
        kind::<instance::start::Start>(),
        kind::<instance::shutdown::Shutdown>(),
        kind::<instance::reboot::Reboot>(),
        kind::<instance::rebuild::Rebuild>(),
        kind::<instance::resize::Resize>(),
        kind::<instance::delete::Delete>(),
        kind::<evacuate::Evacuate>(),
        kind::<volume::create::Create>(),
        kind::<volume::delete::Delete>(),
        kind::<volume::attach::Attach>(),
        kind::<volume::detach::Detach>(),
        kind::<firewall::attach::Attach>(),
        kind::<firewall::detach::Detach>(),
        kind::<firewall::sync::Sync>(),
    ]
}
