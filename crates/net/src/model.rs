//! What one network is made of, as plain data: the nftables renderer and the evaluator both read
//! it, so that the text the kernel runs and the answer the evaluator gives come from one model.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::compiler::CompiledRules;
use crate::names::Mac;

/// An IPv4 network (address with its host bits cleared, and the prefix length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// `None` when the prefix is above 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Subnet> {
        (prefix <= 32).then(|| Subnet { network: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix })
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

pub(crate) fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) }
}

/// A machine's place on its network: its tap on the bridge, its MAC and private address, and
/// the public address 1:1 NATed to it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub tap: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub public_ip: Option<Ipv4Addr>,
}

/// A port and the firewall rule set enforced on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub port: Port,
    pub rules: CompiledRules,
}

/// How this host's copy of a network reaches its copies on other hosts: a vxlan port on the
/// bridge, sending to every peer (head-end replication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelModel {
    /// The network's VXLAN network identifier, the same on every host.
    pub vni: u32,
    /// This host's underlay address.
    pub local: Ipv4Addr,
    /// The underlay addresses of the other hosts with machines on the network.
    pub peers: BTreeSet<Ipv4Addr>,
    /// Machines on other hosts whose host is known, by MAC: frames for them go to that host
    /// alone instead of every peer.
    pub remotes: BTreeMap<Mac, Ipv4Addr>,
}

/// One (account, zone) network, as one host holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkModel {
    pub subnet: Subnet,
    /// The gateway's address on the bridge (DHCP, DNS, the default route).
    pub gateway: Ipv4Addr,
    /// By tap name: the machines on this host.
    pub machines: BTreeMap<String, Machine>,
    /// `Some` when the network spans hosts.
    pub tunnel: Option<TunnelModel>,
}

impl NetworkModel {
    pub fn new(subnet: Subnet, gateway: Ipv4Addr) -> NetworkModel {
        NetworkModel { subnet, gateway, machines: BTreeMap::new(), tunnel: None }
    }

    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<&Machine> {
        self.machines.values().find(|m| m.port.ip == ip)
    }

    pub fn by_public_ip(&self, ip: Ipv4Addr) -> Option<&Machine> {
        self.machines.values().find(|m| m.port.public_ip == Some(ip))
    }
}
