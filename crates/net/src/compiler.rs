//! The one place this crate names the firewall compiler's crate (`openwinv-driver`, which links no
//! database: neither does this crate, so an agent can link both).

pub use openwinv_driver::firewall::{
    Allow, Chain, CompiledRules, FirewallSpec, PortRange, Protocol, Rule, Verdict, compile, reference_shapes,
};
