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
/// Addresses swept (× 64) before giving up on a pool that looks full.
const PROBES: usize = 256;
/// Candidates offered to the store in one statement.
const BATCH: usize = 16;
/// Batches drawn at random before the sweep. One is nearly always enough: at half the pool
/// taken, all 16 candidates are taken once in 65,536 allocations.
const RANDOM_BATCHES: u64 = 2;

pub fn private_net() -> Ipv4Net {
    PRIVATE_SUBNET.parse().expect("valid constant")
}

/// The gateway is the first host; it is never handed out.
pub fn gateway(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// Allocates one address of `net` in `scope` for `instance_id`.
///
/// Each attempt offers the store a batch of candidates and takes the first free one in one
/// statement, so an allocation costs one write whatever the pool's fill. The first batches are
/// drawn at random over the whole pool (probing consecutive addresses from a random start made
/// clusters: at 10,000 addresses of the /16, 2.5 writes per allocation); should they all be
/// taken, consecutive windows from a random start sweep the pool, so a nearly full pool still
/// finds its last free addresses.
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
    let at = |i: u64| Ipv4Addr::from(first + (i % size) as u32);
    let start = rand::thread_rng().gen_range(0..size);
    let sweep = size.min(PROBES as u64 * 64);
    let windows = sweep.div_ceil(BATCH as u64);
    // A pool no larger than a batch is swept at once.
    let random = if size > BATCH as u64 { RANDOM_BATCHES } else { 0 };
    for attempt in 0..(random + windows) {
        let candidates: Vec<String> = if attempt < random {
            let mut rng = rand::thread_rng();
            (0..BATCH).map(|_| at(rng.gen_range(0..size)).to_string()).collect()
        } else {
            let from = (attempt - random) * BATCH as u64;
            (from..(from + BATCH as u64).min(sweep)).map(|i| at(start + i).to_string()).collect()
        };
        if let Some(ip) = store.claim_first_free_address(scope, &candidates, kind, account_id, instance_id, now).await?
        {
            return ip.parse().map_err(|_| StepError::Permanent(format!("the store gave a bad address {ip}")));
        }
        // Counting the pool costs a scan of it, so it is done only once a batch found nothing free.
        if attempt == 0 && store.addresses_in_scope(scope).await? as u64 >= size {
            return Err(StepError::Permanent(format!("the address pool {net} is exhausted")));
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
