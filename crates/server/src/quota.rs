//! Account quotas (spec §7): defaults here, overridable per account by the operator.

use openwinv_store::{AccountRecord, QuotaOverrides, Usage};
use openwinv_wire::admin::Quota;

/// Instances per account.
pub const DEFAULT_INSTANCES: i64 = 20;
/// vCPUs over all of an account's instances.
pub const DEFAULT_VCPU: i64 = 64;
/// GB of block storage per account.
pub const DEFAULT_STORAGE_GB: i64 = 4000;

/// The quotas in force for an account.
pub fn of(account: &AccountRecord) -> Quota {
    with_overrides(QuotaOverrides {
        instances: account.quota_instances,
        vcpu: account.quota_vcpu,
        storage_gb: account.quota_storage_gb,
    })
}

/// Whether an account's usage after a create is within its quotas.
pub fn fits(usage: Usage, overrides: QuotaOverrides) -> bool {
    let quota = with_overrides(overrides);
    usage.instances <= quota.instances && usage.vcpu <= quota.vcpu && usage.storage_gb <= quota.block_storage_gb
}

/// The quotas in force given an account's overrides.
pub fn with_overrides(o: QuotaOverrides) -> Quota {
    Quota {
        instances: o.instances.unwrap_or(DEFAULT_INSTANCES),
        vcpu: o.vcpu.unwrap_or(DEFAULT_VCPU),
        block_storage_gb: o.storage_gb.unwrap_or(DEFAULT_STORAGE_GB),
    }
}
