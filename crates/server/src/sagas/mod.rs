//! The operation kinds this server runs.

pub mod addresses;
pub mod firewall;
pub mod instance;
pub mod volume;

use std::sync::Arc;

use openwinv_engine::{Clock, ComputeDriver, Saga};
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
}

/// Every saga, for the engine to register.
pub fn all(deps: Arc<Deps>) -> Vec<Arc<dyn Saga>> {
    let mut all: Vec<Arc<dyn Saga>> = instance::Kind::ALL
        .iter()
        .map(|k| Arc::new(instance::InstanceSaga::new(*k, deps.clone())) as Arc<dyn Saga>)
        .collect();
    all.extend(volume::Kind::ALL.iter().map(|k| Arc::new(volume::VolumeSaga::new(*k, deps.clone())) as Arc<dyn Saga>));
    all.extend(
        firewall::Kind::ALL.iter().map(|k| Arc::new(firewall::FirewallSaga::new(*k, deps.clone())) as Arc<dyn Saga>),
    );
    all
}

/// Every operation kind with its step names (for validating fault rules and documentation).
pub fn kinds() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut all: Vec<(&'static str, Vec<&'static str>)> =
        instance::Kind::ALL.iter().map(|k| (k.name(), k.steps().iter().map(|s| s.name).collect())).collect();
    all.extend(volume::Kind::ALL.iter().map(|k| (k.name(), k.steps().iter().map(|s| s.name).collect())));
    all.extend(firewall::Kind::ALL.iter().map(|k| (k.name(), k.steps().iter().map(|s| s.name).collect())));
    all
}
