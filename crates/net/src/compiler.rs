//! The one place this crate names the firewall compiler's crate. The compiler moves from
//! `openwinv-engine` to `openwinv-driver`; that move changes only this path.

pub use openwinv_engine::firewall::{
    Allow, Chain, CompiledRules, FirewallSpec, PortRange, Protocol, Rule, Verdict, compile,
};
