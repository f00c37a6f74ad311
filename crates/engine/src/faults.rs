//! Named, seedable fault injection for the simulated driver: fail a given step of a given
//! operation kind once, N times, until cleared (sticky), or at random with a seed.

use openwinv_store::{FaultRecord, Store};

use crate::saga::StepError;

/// Decides whether step `step` of operation `operation_id` (of kind `kind`) fails, given the
/// rules read when the operation was claimed (a counted rule is consumed in the store, atomically,
/// so a rule read by several workers still fires only as often as it says).
pub async fn check(
    store: &Store,
    rules: &[FaultRecord],
    kind: &str,
    step: &str,
    operation_id: &str,
) -> openwinv_store::Result<Option<StepError>> {
    for f in rules {
        if !(f.kind == "*" || f.kind == kind) || !(f.step == "*" || f.step == step) {
            continue;
        }
        let fires = match f.mode.as_str() {
            "once" | "count" => f.remaining > 0 && store.take_fault(&f.fault_id, true).await?,
            "sticky" => store.take_fault(&f.fault_id, false).await?,
            "random" => {
                let hit = roll(f.seed, operation_id, step) < f.remaining as u64;
                hit && store.take_fault(&f.fault_id, false).await?
            }
            _ => false,
        };
        if fires {
            return Ok(Some(error_of(f, kind, step)));
        }
    }
    Ok(None)
}

fn error_of(f: &FaultRecord, kind: &str, step: &str) -> StepError {
    let msg = format!("injected fault {} at step `{step}` of {kind}", f.fault_id);
    if f.effect == "transient" { StepError::Transient(msg) } else { StepError::Permanent(msg) }
}

/// A number in 0..1000 that depends only on the seed, the operation and the step, so that a
/// seeded run fails the same steps again.
pub fn roll(seed: i64, operation_id: &str, step: &str) -> u64 {
    // FNV-1a: stable across builds and platforms, unlike the standard hasher.
    let mut h: u64 = 0xcbf29ce484222325 ^ (seed as u64);
    for b in operation_id.bytes().chain([0]).chain(step.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h % 1000
}

#[cfg(test)]
mod tests {
    #[test]
    fn roll_is_deterministic_and_spread() {
        assert_eq!(super::roll(7, "OP-1", "boot"), super::roll(7, "OP-1", "boot"));
        let hits = (0..1000).filter(|i| super::roll(42, &format!("OP-{i}"), "boot") < 250).count();
        assert!((150..350).contains(&hits), "{hits}");
    }
}
