//! The driver's capabilities, checked before a request is accepted: asking for a feature this
//! cloud's host does not offer is a 400 `UNAVAILABLE_COMBINATION` naming the field that asked
//! (the request combines a feature with a host that lacks it), never an operation that fails on
//! the host. See `docs/compat.md`.

use openwinv_driver::Capabilities;
use openwinv_wire::ErrorCode;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Firewalls,
    PublicIps,
    BlockStorage,
    Consoles,
}

impl Feature {
    fn offered(self, c: Capabilities) -> bool {
        match self {
            Feature::Firewalls => c.firewalls,
            Feature::PublicIps => c.public_ips,
            Feature::BlockStorage => c.block_storage,
            Feature::Consoles => c.consoles,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Feature::Firewalls => "enforced firewalls",
            Feature::PublicIps => "public addresses",
            Feature::BlockStorage => "block storage",
            Feature::Consoles => "remote consoles",
        }
    }

    fn hint(self, driver: &str) -> &'static str {
        match (self, driver) {
            (Feature::Firewalls, "qemu") => {
                " (the operator enables them with `serve --driver qemu --network namespaces`)"
            }
            (Feature::PublicIps, "qemu") => " (the operator enables them with `--network namespaces --public-pool …`)",
            _ => "",
        }
    }
}

/// Whether the driver offers `feature`.
pub fn offers(state: &AppState, feature: Feature) -> bool {
    feature.offered(state.driver.capabilities())
}

/// `Ok` when the driver offers `feature`; else the refusal naming `asked_by` (a sentence
/// fragment such as "The body field `security_group`").
pub fn require(state: &AppState, feature: Feature, asked_by: &str) -> ApiResult<()> {
    if offers(state, feature) {
        return Ok(());
    }
    let driver = state.driver.name();
    Err(ApiError::new(
        ErrorCode::UnavailableCombination,
        format!(
            "{asked_by} asks for {}, which this cloud's `{driver}` driver does not offer{}.",
            feature.what(),
            feature.hint(driver)
        ),
    ))
}
