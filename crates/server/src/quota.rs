//! Account quotas (spec §7): defaults here, overridable per account by the operator.

use openwinv_store::AccountRecord;
use openwinv_wire::admin::Quota;

/// Instances per account.
pub const DEFAULT_INSTANCES: i64 = 20;
/// vCPUs over all of an account's instances.
pub const DEFAULT_VCPU: i64 = 64;
/// GB of block storage per account.
pub const DEFAULT_STORAGE_GB: i64 = 4000;

/// The quotas in force for an account.
pub fn of(account: &AccountRecord) -> Quota {
    Quota {
        instances: account.quota_instances.unwrap_or(DEFAULT_INSTANCES),
        vcpu: account.quota_vcpu.unwrap_or(DEFAULT_VCPU),
        block_storage_gb: account.quota_storage_gb.unwrap_or(DEFAULT_STORAGE_GB),
    }
}
