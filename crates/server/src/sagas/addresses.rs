//! Address allocation: a public address from the zone's pool, a private one from the account's
//! subnet. Uniqueness comes from the store (one row per scope and address), so concurrent
//! allocations cannot collide; probing starts at a random host so they rarely even try to.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use openwinv_engine::StepError;
use openwinv_store::Store;
use rand::Rng;

/// Every account's private network (each account has its own, so they may overlap).
pub const PRIVATE_SUBNET: &str = "10.16.0.0/16";
/// Probes before giving up on a pool that looks full.
const PROBES: usize = 256;
/// Probes tried before the pool is counted to tell an exhausted pool from a busy one.
const FIRST_PROBES: u64 = 4;

pub fn private_net() -> Ipv4Net {
    PRIVATE_SUBNET.parse().expect("valid constant")
}

/// The gateway is the first host; it is never handed out.
pub fn gateway(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// Allocates one address of `net` in `scope` for `instance_id`.
pub async fn allocate(
    store: &Store,
    net: &Ipv4Net,
    scope: &str,
    kind: &str,
    account_id: &str,
    instance_id: &str,
    now: i64,
) -> Result<Ipv4Addr, StepError> {
    let first = u32::from(net.network()) + 2; // skip the network address and the gateway
    let last = u32::from(net.broadcast()) - 1;
    if last < first {
        return Err(StepError::Permanent(format!("the address pool {net} has no usable hosts")));
    }
    let size = u64::from(last - first) + 1;
    let start = rand::thread_rng().gen_range(0..size);
    for i in 0..(size.min(PROBES as u64 * 64)) {
        // Counting the pool costs a scan of it, so it is done only once a few probes failed.
        if i == FIRST_PROBES && store.addresses_in_scope(scope).await? as u64 >= size {
            return Err(StepError::Permanent(format!("the address pool {net} is exhausted")));
        }
        let ip = Ipv4Addr::from(first + ((start + i) % size) as u32);
        if store.claim_address(scope, &ip.to_string(), kind, account_id, instance_id, now).await? {
            return Ok(ip);
        }
    }
    if store.addresses_in_scope(scope).await? as u64 >= size {
        return Err(StepError::Permanent(format!("the address pool {net} is exhausted")));
    }
    Err(StepError::Transient(format!("no free address found in {net}; retrying")))
}

/// An address as the integer stored for CIDR filters.
pub fn as_number(ip: Ipv4Addr) -> i64 {
    i64::from(u32::from(ip))
}
