//! openwinv's real networks: each (account, zone) network in a Linux network namespace with a
//! bridge, dnsmasq and NAT, and firewalls enforced with nftables. See `docs/network.md`.
//!
//! - [`nft`]: the nftables back end of the firewall compiler (pure, golden files);
//! - [`eval`]: the pure evaluator, the same walk as the kernel (reachability answers);
//! - [`conntrack`]: which tracked connections a change cuts (pure);
//! - [`network`]: the thin layer that runs `ip`, `nft`, `dnsmasq` and `conntrack`;
//! - [`names`]: tap names, MACs, namespace names and transit addresses, all derived.

pub mod compiler;
pub mod conntrack;
pub mod eval;
pub mod model;
pub mod names;
pub mod network;
pub mod nft;

pub use eval::{CtState, Decision, Direction, From, L4, Packet, Step, evaluate, evaluate_hosts, evaluate_rules};
pub use model::{Machine, NetworkModel, Port, Subnet, TunnelModel};
pub use names::{Mac, tap_name};
pub use network::{Applied, Host, NetError, Network, NetworkSpec, Reconciled, Tunnel, check_tools, generation};
