//! Instances in the web console, a file per job: the list with its filters, polling and bulk
//! actions (`list.rs`), the create wizard (`wizard.rs`) and the detail page with its actions
//! (`detail.rs`). Every read and action is a `/v1` handler called with the session's caller.
//! Here: what the other pages share (the self-refreshing parts' timing, query encoding).

mod detail;
mod list;
mod wizard;

pub use self::detail::{action, console, detail, password, status_badge};
pub use self::list::{bulk, list, rows};
pub use self::wizard::{create, wizard};
use crate::input::Query;

/// Seconds between refreshes of a list or badge while something is changing, and otherwise.
pub const FAST_REFRESH: u32 = 3;
pub const SLOW_REFRESH: u32 = 60;
/// The first refresh of a part that shows something transitional (ms); each refresh after it
/// waits twice as long, up to [`FAST_REFRESH`]. Most operations on the simulated driver, and
/// quick ones anywhere, end within a second: the badge turns without waiting out 3 s.
const FIRST_REFRESH_MS: u32 = 250;

/// The htmx trigger of a part that refreshes itself, the round it is in (`n` in the query of
/// its refresh) and its delay in ms: quickly, then every 3 s at the most, while something is
/// transitional (`busy`); every 60 s otherwise.
pub fn refresh(busy: bool, q: &Query) -> (String, u32, u32) {
    if !busy {
        return (format!("every {SLOW_REFRESH}s"), 0, SLOW_REFRESH * 1000);
    }
    let round = q.str("n").and_then(|n| n.parse::<u32>().ok()).unwrap_or(0).min(16);
    let ms = FIRST_REFRESH_MS.saturating_mul(1 << round.min(8)).min(FAST_REFRESH * 1000);
    (format!("load delay:{ms}ms"), round + 1, ms)
}

/// Percent-encodes a query value.
pub fn enc(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
