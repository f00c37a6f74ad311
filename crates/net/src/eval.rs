//! The pure evaluator: would this packet pass? The same walk the kernel does through the ruleset
//! [`crate::nft`] renders, over the same [`NetworkModel`]: anti-spoofing on the sender's tap, the
//! sender's outbound chain, then the receiver's inbound chain. It answers the simulated driver's
//! reachability questions and decides which tracked connections a rule change cuts; the packet
//! tests hold it to the kernel's verdicts.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::compiler::{Chain, CompiledRules, Protocol, Verdict};
use crate::model::{Machine, NetworkModel, mask};
use crate::names::Mac;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L4 {
    Tcp,
    Udp,
    Icmp,
}

/// The packet's connection-tracking state when it reaches the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Into a machine.
    In,
    /// Out of a machine.
    Out,
}

/// What decided inside one machine's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A reply to an allowed connection.
    Established,
    /// Conntrack calls it invalid.
    Invalid,
    /// ICMP inbound, allowed by these firewalls' `icmp: Y`.
    Icmp(Vec<String>),
    /// An allow rule, with the `FIREWALL#rule` sources that asked for it.
    Rule(Vec<String>),
    /// Nothing matched: the chain's default (everything passes when no firewall is attached or,
    /// outbound, when no attached firewall has an OUT rule).
    Default,
}

/// One machine chain's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainDecision {
    pub tap: String,
    pub direction: Direction,
    pub verdict: Verdict,
    pub step: Step,
}

/// Why a packet was dropped before (or instead of) the machines' chains, or passed without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// Both chains (or the one that applies) decided.
    Chains,
    /// A DHCP request to the gateway: always allowed.
    Dhcp,
    /// The tap is not a port of this network.
    UnknownPort,
    /// The source MAC is not the port's.
    SpoofedMac,
    /// The source address is not the port's.
    SpoofedIp,
    /// A private source address arriving from outside the network.
    SpoofedFromOutside,
    /// No machine of this network has the destination address.
    NoSuchMachine,
    /// From outside to an address that is no machine's public address.
    NotPublic,
}

/// Where a packet enters the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// From a machine's tap, with the packet's source MAC and address (which may lie).
    Tap { tap: String, mac: Mac, ip: Ipv4Addr },
    /// From the transit link (the host, the Internet), with its source address.
    Uplink(Ipv4Addr),
    /// From the network's vxlan port (a machine of the same network on another host, whose
    /// own host checked its MAC and address), with its source address.
    Tunnel(Ipv4Addr),
}

/// A packet as the filter sees it. `port` is the destination port (ignored for ICMP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub from: From,
    pub to: Ipv4Addr,
    pub protocol: L4,
    pub port: u16,
    pub state: CtState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub gate: Gate,
    /// The sender's outbound chain, when the sender is a machine and got that far.
    pub outbound: Option<ChainDecision>,
    /// The receiver's inbound chain, when the receiver is a machine and got that far.
    pub inbound: Option<ChainDecision>,
}

impl Decision {
    fn gate(verdict: Verdict, gate: Gate) -> Decision {
        Decision { verdict, gate, outbound: None, inbound: None }
    }

    /// The chain decision that settled the verdict, if a chain did.
    pub fn decided_by(&self) -> Option<&ChainDecision> {
        match (&self.outbound, &self.inbound) {
            (Some(o), _) if o.verdict == Verdict::Drop => Some(o),
            (_, Some(i)) => Some(i),
            (o, None) => o.as_ref(),
        }
    }
}

fn matches_proto(p: Protocol, l4: L4) -> bool {
    matches!((p, l4), (Protocol::Tcp, L4::Tcp) | (Protocol::Udp, L4::Udp))
}

/// One direction's chain, in the order [`crate::nft`] writes it: conntrack, ICMP, allow rules,
/// the default. `peer` is the source address inbound and the destination address outbound.
pub fn evaluate_chain(chain: &Chain, peer: Ipv4Addr, protocol: L4, port: u16, state: CtState) -> (Verdict, Step) {
    if chain.established {
        match state {
            CtState::Established | CtState::Related => return (Verdict::Accept, Step::Established),
            CtState::Invalid => return (Verdict::Drop, Step::Invalid),
            CtState::New => {}
        }
    }
    if protocol == L4::Icmp && !chain.icmp_from.is_empty() {
        return (Verdict::Accept, Step::Icmp(chain.icmp_from.clone()));
    }
    for a in &chain.allow {
        let in_net = u32::from(peer) & mask(a.prefix) == u32::from(a.network);
        if matches_proto(a.protocol, protocol) && (a.ports.first..=a.ports.last).contains(&port) && in_net {
            let sources = a.sources.iter().map(|s| format!("{}#{}", s.firewall_id, s.rule_id)).collect();
            return (Verdict::Accept, Step::Rule(sources));
        }
    }
    (chain.otherwise, Step::Default)
}

/// One machine's rule set alone (no network): the chain of `direction`. For the reachability
/// question "can `peer` reach this machine on `protocol`/`port`?" ask `Direction::In`.
pub fn evaluate_rules(
    rules: &CompiledRules,
    direction: Direction,
    peer: Ipv4Addr,
    protocol: L4,
    port: u16,
    state: CtState,
) -> (Verdict, Step) {
    let chain = match direction {
        Direction::In => &rules.inbound,
        Direction::Out => &rules.outbound,
    };
    evaluate_chain(chain, peer, protocol, port, state)
}

fn chain_decision(m: &Machine, direction: Direction, peer: Ipv4Addr, pkt: &Packet) -> ChainDecision {
    let chain = match direction {
        Direction::In => &m.rules.inbound,
        Direction::Out => &m.rules.outbound,
    };
    let (verdict, step) = evaluate_chain(chain, peer, pkt.protocol, pkt.port, pkt.state);
    ChainDecision { tap: m.port.tap.clone(), direction, verdict, step }
}

/// Would the kernel pass this packet? See the module doc for the walk.
pub fn evaluate(model: &NetworkModel, pkt: &Packet) -> Decision {
    let dhcp = pkt.protocol == L4::Udp && pkt.port == 67;
    let (src, src_ip, dst) = match &pkt.from {
        From::Tap { tap, mac, ip } => {
            let Some(m) = model.machines.get(tap) else {
                return Decision::gate(Verdict::Drop, Gate::UnknownPort);
            };
            if *mac != m.port.mac {
                return Decision::gate(Verdict::Drop, Gate::SpoofedMac);
            }
            if dhcp && ip.is_unspecified() && pkt.to == Ipv4Addr::BROADCAST {
                return Decision::gate(Verdict::Accept, Gate::Dhcp);
            }
            if *ip != m.port.ip {
                return Decision::gate(Verdict::Drop, Gate::SpoofedIp);
            }
            if pkt.to == model.gateway {
                if dhcp {
                    return Decision::gate(Verdict::Accept, Gate::Dhcp);
                }
                (Some(m), *ip, None)
            } else if model.subnet.contains(pkt.to) {
                match model.by_ip(pkt.to) {
                    Some(d) => (Some(m), *ip, Some(d)),
                    // Into the tunnel: only the sender's chain applies here; the receiver's
                    // host applies the receiver's ([`evaluate_hosts`]).
                    None if model.tunnel.is_some() => (Some(m), *ip, None),
                    None => return Decision::gate(Verdict::Drop, Gate::NoSuchMachine),
                }
            } else {
                // Elsewhere: out through the transit link (NAT); only the sender's chain applies.
                (Some(m), *ip, None)
            }
        }
        From::Tunnel(ip) => {
            if model.tunnel.is_none() {
                return Decision::gate(Verdict::Drop, Gate::UnknownPort);
            }
            if !model.subnet.contains(*ip) || *ip == model.gateway {
                return Decision::gate(Verdict::Drop, Gate::SpoofedFromOutside);
            }
            if dhcp || pkt.to == model.gateway {
                // Nothing of the gateway crosses the tunnel.
                return Decision::gate(Verdict::Drop, Gate::NoSuchMachine);
            }
            match model.by_ip(pkt.to) {
                Some(d) => (None, *ip, Some(d)),
                None => return Decision::gate(Verdict::Drop, Gate::NoSuchMachine),
            }
        }
        From::Uplink(ip) => {
            if model.subnet.contains(*ip) {
                return Decision::gate(Verdict::Drop, Gate::SpoofedFromOutside);
            }
            match model.by_public_ip(pkt.to) {
                Some(d) => (None, *ip, Some(d)),
                None => return Decision::gate(Verdict::Drop, Gate::NotPublic),
            }
        }
    };
    // After DNAT the destination is the receiver's private address.
    let dst_ip = dst.map_or(pkt.to, |d| d.port.ip);
    let outbound = src.map(|m| chain_decision(m, Direction::Out, dst_ip, pkt));
    if let Some(o) = &outbound
        && o.verdict == Verdict::Drop
    {
        return Decision { verdict: Verdict::Drop, gate: Gate::Chains, outbound, inbound: None };
    }
    let inbound = dst.map(|m| chain_decision(m, Direction::In, src_ip, pkt));
    let verdict = inbound.as_ref().map_or(Verdict::Accept, |i| i.verdict);
    Decision { verdict, gate: Gate::Chains, outbound, inbound }
}

/// Would the kernels pass this packet, across the hosts of one network? `models` are the
/// host copies of one (account, zone) network (one per host, as each host's [`NetworkModel`]
/// holds it). The packet enters at the copy holding the sender's tap (or, from outside, the
/// receiver's public address); a machine address that is on none of that host's ports goes into
/// the tunnel, to the copy (same VNI) of a peer that holds it, where the receiver's chain runs.
/// The way back needs the receiver's host to list the sender's as a peer too, except for UDP
/// (the packet tests call a datagram that arrives "passed").
pub fn evaluate_hosts(models: &[&NetworkModel], pkt: &Packet) -> Decision {
    let first = match &pkt.from {
        From::Tap { tap, .. } => models.iter().position(|m| m.machines.contains_key(tap)),
        From::Uplink(_) => models.iter().position(|m| m.by_public_ip(pkt.to).is_some()),
        From::Tunnel(_) => None,
    };
    let Some(first) = first else {
        return match models.first() {
            Some(m) => evaluate(m, pkt),
            None => Decision::gate(Verdict::Drop, Gate::UnknownPort),
        };
    };
    let here = models[first];
    let d = evaluate(here, pkt);
    let (Some(tunnel), From::Tap { ip: src, .. }) = (&here.tunnel, &pkt.from) else { return d };
    let crosses = d.verdict == Verdict::Accept
        && d.gate == Gate::Chains
        && d.inbound.is_none()
        && here.subnet.contains(pkt.to)
        && pkt.to != here.gateway;
    if !crosses {
        return d;
    }
    let there = models.iter().enumerate().find(|(i, m)| {
        *i != first
            && m.by_ip(pkt.to).is_some()
            && m.tunnel.as_ref().is_some_and(|t| {
                t.vni == tunnel.vni
                    && tunnel.peers.contains(&t.local)
                    && (pkt.protocol == L4::Udp || t.peers.contains(&tunnel.local))
            })
    });
    let Some((_, there)) = there else {
        return Decision { verdict: Verdict::Drop, gate: Gate::NoSuchMachine, outbound: d.outbound, inbound: None };
    };
    let arrived = evaluate(there, &Packet { from: From::Tunnel(*src), ..pkt.clone() });
    Decision { verdict: arrived.verdict, gate: arrived.gate, outbound: d.outbound, inbound: arrived.inbound }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::{FirewallSpec, Rule, compile};
    use crate::model::{Port, Subnet};

    fn rule(id: i64, bound: &str, protocol: &str, port: &str, ip: &str) -> Rule {
        Rule::parse(id, bound, protocol, port, ip).unwrap()
    }

    fn fw(id: &str, icmp: bool, rules: Vec<Rule>) -> FirewallSpec {
        FirewallSpec { firewall_id: id.into(), icmp, rules }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn model(machines: &[(&str, &str, Option<&str>, CompiledRules)]) -> NetworkModel {
        let mut m = NetworkModel::new(Subnet::new(ip("10.16.0.0"), 16).unwrap(), ip("10.16.0.1"));
        for (tap, addr, public, rules) in machines {
            let port =
                Port { tap: tap.to_string(), mac: Mac::for_instance(tap), ip: ip(addr), public_ip: public.map(ip) };
            m.machines.insert(tap.to_string(), Machine { port, rules: rules.clone() });
        }
        m
    }

    fn from_tap(m: &NetworkModel, tap: &str) -> From {
        let p = &m.machines[tap].port;
        From::Tap { tap: tap.into(), mac: p.mac, ip: p.ip }
    }

    fn pkt(from: From, to: &str, protocol: L4, port: u16) -> Packet {
        Packet { from, to: ip(to), protocol, port, state: CtState::New }
    }

    #[test]
    fn chain_order_is_conntrack_icmp_rules_default() {
        let c = compile(&[fw("FW-a", true, vec![rule(1, "IN", "TCP", "20-30", "10.0.0.0/8")])]);
        let e = |peer: &str, l4, port, state| evaluate_chain(&c.inbound, ip(peer), l4, port, state);
        assert_eq!(e("1.2.3.4", L4::Tcp, 80, CtState::Established), (Verdict::Accept, Step::Established));
        assert_eq!(e("1.2.3.4", L4::Tcp, 80, CtState::Related), (Verdict::Accept, Step::Established));
        assert_eq!(e("10.0.0.1", L4::Tcp, 22, CtState::Invalid), (Verdict::Drop, Step::Invalid));
        assert_eq!(e("1.2.3.4", L4::Icmp, 0, CtState::New), (Verdict::Accept, Step::Icmp(vec!["FW-a".into()])));
        assert_eq!(e("10.9.9.9", L4::Tcp, 20, CtState::New), (Verdict::Accept, Step::Rule(vec!["FW-a#1".into()])));
        assert_eq!(e("10.9.9.9", L4::Tcp, 30, CtState::New).0, Verdict::Accept);
        assert_eq!(e("10.9.9.9", L4::Tcp, 31, CtState::New), (Verdict::Drop, Step::Default));
        assert_eq!(e("10.9.9.9", L4::Udp, 22, CtState::New), (Verdict::Drop, Step::Default));
        assert_eq!(e("11.0.0.1", L4::Tcp, 22, CtState::New), (Verdict::Drop, Step::Default));
        // No OUT rule: outbound is not filtered at all, not even invalid packets.
        assert_eq!(evaluate_chain(&c.outbound, ip("1.1.1.1"), L4::Tcp, 1, CtState::Invalid).0, Verdict::Accept);
        assert_eq!(
            evaluate_rules(&c, Direction::In, ip("10.1.1.1"), L4::Tcp, 25, CtState::New),
            (Verdict::Accept, Step::Rule(vec!["FW-a#1".into()]))
        );
        // No firewall: nothing is filtered.
        let open = CompiledRules::open();
        assert_eq!(evaluate_chain(&open.inbound, ip("1.1.1.1"), L4::Udp, 9, CtState::Invalid).0, Verdict::Accept);
    }

    #[test]
    fn out_rules_restrict_outbound_and_icmp() {
        let c = compile(&[fw("FW-e", false, vec![rule(1, "OUT", "TCP", "443", "0.0.0.0/0")])]);
        let e = |l4, port, state| evaluate_chain(&c.outbound, ip("93.184.216.34"), l4, port, state).0;
        assert_eq!(e(L4::Tcp, 443, CtState::New), Verdict::Accept);
        assert_eq!(e(L4::Tcp, 80, CtState::New), Verdict::Drop);
        assert_eq!(e(L4::Icmp, 0, CtState::New), Verdict::Drop);
        assert_eq!(e(L4::Tcp, 80, CtState::Established), Verdict::Accept);
    }

    #[test]
    fn network_walk() {
        let web = compile(&[fw("FW-web", false, vec![rule(1, "IN", "TCP", "80", "0.0.0.0/0")])]);
        let egress = compile(&[fw("FW-eg", false, vec![rule(1, "OUT", "TCP", "443", "0.0.0.0/0")])]);
        let m = model(&[
            ("tapa", "10.16.0.2", Some("203.0.113.2"), web.clone()),
            ("tapb", "10.16.0.3", None, CompiledRules::open()),
            ("tapc", "10.16.0.4", None, egress),
        ]);
        let d = evaluate(&m, &pkt(from_tap(&m, "tapb"), "10.16.0.2", L4::Tcp, 80));
        assert_eq!((d.verdict, d.gate), (Verdict::Accept, Gate::Chains));
        assert_eq!(d.decided_by().unwrap().step, Step::Rule(vec!["FW-web#1".into()]));
        assert_eq!(evaluate(&m, &pkt(from_tap(&m, "tapb"), "10.16.0.2", L4::Tcp, 81)).verdict, Verdict::Drop);
        assert_eq!(evaluate(&m, &pkt(from_tap(&m, "tapa"), "10.16.0.3", L4::Udp, 9)).verdict, Verdict::Accept);
        // The sender's OUT rules come first.
        let d = evaluate(&m, &pkt(from_tap(&m, "tapc"), "10.16.0.2", L4::Tcp, 80));
        assert_eq!((d.verdict, d.decided_by().unwrap().direction), (Verdict::Drop, Direction::Out));
        assert_eq!(evaluate(&m, &pkt(from_tap(&m, "tapc"), "1.1.1.1", L4::Tcp, 443)).verdict, Verdict::Accept);
        // Public address: DNAT to the machine, then its inbound chain, with the outside source.
        let up = |src: &str, to: &str, port| evaluate(&m, &pkt(From::Uplink(ip(src)), to, L4::Tcp, port));
        assert_eq!(up("198.51.100.2", "203.0.113.2", 80).verdict, Verdict::Accept);
        assert_eq!(up("198.51.100.2", "203.0.113.2", 22).verdict, Verdict::Drop);
        assert_eq!(up("198.51.100.2", "203.0.113.9", 80).gate, Gate::NotPublic);
        assert_eq!(up("198.51.100.2", "10.16.0.2", 80).gate, Gate::NotPublic);
        assert_eq!(up("10.16.0.3", "203.0.113.2", 80).gate, Gate::SpoofedFromOutside);
        // Spoofing and strangers.
        let b = &m.machines["tapb"].port;
        let spoof_ip = From::Tap { tap: "tapb".into(), mac: b.mac, ip: ip("10.16.0.4") };
        assert_eq!(evaluate(&m, &pkt(spoof_ip, "10.16.0.2", L4::Tcp, 80)).gate, Gate::SpoofedIp);
        let spoof_mac = From::Tap { tap: "tapb".into(), mac: Mac([2, 0, 0, 0, 0, 1]), ip: b.ip };
        assert_eq!(evaluate(&m, &pkt(spoof_mac, "10.16.0.2", L4::Tcp, 80)).gate, Gate::SpoofedMac);
        let stranger = From::Tap { tap: "tapz".into(), mac: b.mac, ip: b.ip };
        assert_eq!(evaluate(&m, &pkt(stranger, "10.16.0.2", L4::Tcp, 80)).gate, Gate::UnknownPort);
        assert_eq!(evaluate(&m, &pkt(from_tap(&m, "tapb"), "10.16.0.77", L4::Tcp, 80)).gate, Gate::NoSuchMachine);
        // DHCP always passes, even with OUT rules; DNS to the gateway does not.
        let c = &m.machines["tapc"].port;
        let discover = From::Tap { tap: "tapc".into(), mac: c.mac, ip: Ipv4Addr::UNSPECIFIED };
        assert_eq!(evaluate(&m, &pkt(discover, "255.255.255.255", L4::Udp, 67)).gate, Gate::Dhcp);
        assert_eq!(evaluate(&m, &pkt(from_tap(&m, "tapc"), "10.16.0.1", L4::Udp, 67)).gate, Gate::Dhcp);
        assert_eq!(evaluate(&m, &pkt(from_tap(&m, "tapc"), "10.16.0.1", L4::Udp, 53)).verdict, Verdict::Drop);
        assert_eq!(evaluate(&m, &pkt(from_tap(&m, "tapb"), "10.16.0.1", L4::Udp, 53)).verdict, Verdict::Accept);
    }

    fn spanning(machines: &[(&str, &str, CompiledRules)], vni: u32, local: &str, peers: &[&str]) -> NetworkModel {
        let rows: Vec<_> = machines.iter().map(|(t, a, r)| (*t, *a, None, r.clone())).collect();
        let mut m = model(&rows);
        m.tunnel = Some(crate::model::TunnelModel {
            vni,
            local: ip(local),
            peers: peers.iter().map(|p| ip(p)).collect(),
            remotes: Default::default(),
        });
        m
    }

    #[test]
    fn across_hosts_each_host_applies_its_own_machines_chains() {
        let ssh = compile(&[fw("FW-ssh", false, vec![rule(1, "IN", "TCP", "22", "10.16.0.0/16")])]);
        let out = compile(&[fw("FW-out", false, vec![rule(1, "OUT", "TCP", "22", "0.0.0.0/0")])]);
        let h0 = spanning(
            &[("tapa", "10.16.0.2", out), ("tapc", "10.16.0.4", CompiledRules::open())],
            7,
            "192.0.2.1",
            &["192.0.2.2"],
        );
        let h1 = spanning(&[("tapb", "10.16.0.3", ssh)], 7, "192.0.2.2", &["192.0.2.1"]);
        // Another account on host 1, with a2's address, and another VNI.
        let other = spanning(&[("tapz", "10.16.0.5", CompiledRules::open())], 8, "192.0.2.2", &["192.0.2.1"]);
        let all = [&h0, &h1, &other];
        let go = |models: &[&NetworkModel], from: &str, to: &str, l4, port| {
            let m = models.iter().find(|m| m.machines.contains_key(from)).unwrap();
            evaluate_hosts(models, &pkt(from_tap(m, from), to, l4, port))
        };
        // Host 1 applies b's inbound chain, host 0 a's outbound chain.
        let d = go(&all, "tapc", "10.16.0.3", L4::Tcp, 22);
        assert_eq!(d.verdict, Verdict::Accept);
        assert_eq!(d.inbound.as_ref().unwrap().tap, "tapb");
        assert_eq!(go(&all, "tapc", "10.16.0.3", L4::Tcp, 80).verdict, Verdict::Drop);
        let d = go(&all, "tapa", "10.16.0.3", L4::Tcp, 80);
        assert_eq!((d.verdict, d.decided_by().unwrap().direction), (Verdict::Drop, Direction::Out));
        // Back from host 1: b's chains there, c's (no firewall) on host 0; a, with a firewall
        // attached, takes only what its IN rules allow (none).
        assert_eq!(go(&all, "tapb", "10.16.0.4", L4::Udp, 53).verdict, Verdict::Accept);
        let d = go(&all, "tapb", "10.16.0.2", L4::Udp, 53);
        assert_eq!((d.verdict, d.inbound.unwrap().tap.as_str()), (Verdict::Drop, "tapa"));
        // Another VNI is another network: nobody has the address.
        assert_eq!(go(&all, "tapc", "10.16.0.5", L4::Udp, 53).gate, Gate::NoSuchMachine);
        // No peer: nothing crosses; a one-way peering carries UDP only.
        let lonely = spanning(&[("tapc", "10.16.0.4", CompiledRules::open())], 7, "192.0.2.1", &[]);
        assert_eq!(go(&[&lonely, &h1], "tapc", "10.16.0.3", L4::Tcp, 22).verdict, Verdict::Drop);
        let deaf = spanning(&[("tapb", "10.16.0.3", CompiledRules::open())], 7, "192.0.2.2", &[]);
        assert_eq!(go(&[&h0, &deaf], "tapc", "10.16.0.3", L4::Udp, 9).verdict, Verdict::Accept);
        assert_eq!(go(&[&h0, &deaf], "tapc", "10.16.0.3", L4::Tcp, 9).verdict, Verdict::Drop);
        // From the tunnel: never the gateway, never DHCP, never an outside source.
        let tun = |src: &str, to: &str, port| evaluate(&h1, &pkt(From::Tunnel(ip(src)), to, L4::Udp, port));
        assert_eq!(tun("10.16.0.2", "10.16.0.1", 53).verdict, Verdict::Drop);
        assert_eq!(tun("10.16.0.2", "10.16.0.3", 67).verdict, Verdict::Drop);
        assert_eq!(tun("198.51.100.2", "10.16.0.3", 22).gate, Gate::SpoofedFromOutside);
        assert_eq!(
            evaluate(&model(&[]), &pkt(From::Tunnel(ip("10.16.0.2")), "10.16.0.3", L4::Udp, 1)).gate,
            Gate::UnknownPort
        );
    }
}
