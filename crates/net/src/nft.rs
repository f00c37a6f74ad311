//! The nftables back end of the firewall compiler: [`NetworkModel`] → text for `nft -f`.
//!
//! Pure. Every network lives in its own namespace and gets two tables of its own, both named
//! `openwinv` (nothing else in the namespace is touched, and the host gets one more, see
//! [`render_host`]):
//!
//! - `bridge openwinv` sees frames on the bridge ports (the taps). `port_from`, a verdict map
//!   keyed by the tap name, sends every frame a machine sends to its `from-TAP` chain
//!   (anti-spoofing: its MAC, its address, ARP for its address, DHCP discovery; frames from a
//!   tap that is no port are dropped); `port_to` sends every frame delivered to a tap through
//!   `to-TAP` (only its address, ARP and DHCP replies reach it).
//! - `inet openwinv` filters IPv4 with connection tracking, which the bridge family cannot do
//!   without `nf_conntrack_bridge` (br_netfilter hands bridged IPv4 to the inet hooks). Once the
//!   bridge table has pinned every source address to its tap, `from_vm` (keyed by the machine's
//!   address) jumps to the sender's `out-TAP` chain, which returns or drops, and `to_vm` to the
//!   receiver's `in-TAP` chain, which accepts or drops. Both chains are the compiled rule set
//!   in the order the evaluator walks it: conntrack first, then ICMP, allow rules, the default.
//!   The same table holds the NAT: 1:1 public addresses (`dnat_pub`, `snat_pub`) and masquerade
//!   out of the transit link.
//!
//! A change touches one machine: its chains are flushed and refilled, its map elements added or
//! deleted, all in one `nft -f` transaction. [`render_network`] rebuilds both tables from the
//! model in one transaction (the repair path).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::compiler::{Chain, CompiledRules, Protocol, Verdict};
use crate::eval::Direction;
use crate::model::{Machine, NetworkModel, Port};
use crate::names::{BRIDGE, TRANSIT, VXLAN};

/// The name of every table openwinv owns.
pub const TABLE: &str = "openwinv";

fn chain_name(prefix: &str, tap: &str) -> String {
    format!("{prefix}-{tap}")
}

/// Comments carry firewall and rule ids; keep them to characters that need no quoting.
fn comment(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || " -_#.:/,".contains(*c)).collect()
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// The rules of a machine's `in-TAP` (`Direction::In`) or `out-TAP` chain, one per line.
/// Inbound, "allowed" is final (`accept`); outbound it `return`s so that the receiver's
/// inbound chain still runs.
pub fn machine_chain_rules(chain: &Chain, direction: Direction) -> Vec<String> {
    let (allow, peer) = match direction {
        Direction::In => ("accept", "saddr"),
        Direction::Out => ("return", "daddr"),
    };
    let mut rules = Vec::new();
    if chain.established {
        rules.push(format!("ct state established,related {allow}"));
        rules.push("ct state invalid drop".to_string());
    }
    if !chain.icmp_from.is_empty() {
        rules.push(format!("meta l4proto icmp {allow} comment \"icmp: Y in {}\"", comment(&chain.icmp_from.join(" "))));
    }
    for a in &chain.allow {
        let sources: Vec<String> = a.sources.iter().map(|s| format!("{}#{}", s.firewall_id, s.rule_id)).collect();
        rules.push(format!(
            "ip {peer} {}/{} {} dport {} {allow} comment \"{}\"",
            a.network,
            a.prefix,
            proto(a.protocol),
            a.ports,
            comment(&sources.join(" "))
        ));
    }
    rules.push(match chain.otherwise {
        Verdict::Drop => "drop comment \"default deny\"".to_string(),
        Verdict::Accept => format!("{allow} comment \"default allow\""),
    });
    rules
}

/// Anti-spoofing for frames a machine sends.
pub fn from_tap_rules(port: &Port) -> Vec<String> {
    let (mac, ip) = (port.mac, port.ip);
    vec![
        format!("ether saddr != {mac} drop comment \"not the machine's MAC\""),
        format!("ether type arp arp saddr ether {mac} arp saddr ip {{ 0.0.0.0, {ip} }} accept"),
        "ether type arp drop comment \"ARP for another address\"".to_string(),
        "udp sport 67 drop comment \"no DHCP server on a machine\"".to_string(),
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept comment \"DHCP discovery\""
            .to_string(),
        format!("ip saddr {ip} accept"),
        "drop comment \"another source address, IPv6 or another protocol\"".to_string(),
    ]
}

/// What may be delivered to a machine.
pub fn to_tap_rules(port: &Port) -> Vec<String> {
    vec![
        "ether type arp accept".to_string(),
        format!("ip daddr {} accept", port.ip),
        "ip daddr 255.255.255.255 udp sport 67 udp dport 68 accept comment \"DHCP reply\"".to_string(),
        "drop comment \"not addressed to the machine\"".to_string(),
    ]
}

fn write_chain(out: &mut String, name: &str, head: Option<&str>, rules: &[String]) {
    let _ = writeln!(out, "\tchain {name} {{");
    if let Some(h) = head {
        let _ = writeln!(out, "\t\t{h}");
    }
    for r in rules {
        let _ = writeln!(out, "\t\t{r}");
    }
    let _ = writeln!(out, "\t}}");
}

fn write_map(out: &mut String, name: &str, ty: &str, elements: &[String]) {
    let _ = writeln!(out, "\tmap {name} {{");
    let _ = writeln!(out, "\t\ttype {ty}");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    let _ = writeln!(out, "\t}}");
}

struct Elements {
    port_from: String,
    port_to: String,
    from_vm: String,
    to_vm: String,
    nat: Option<(String, String)>,
}

fn elements(port: &Port) -> Elements {
    let tap = &port.tap;
    Elements {
        port_from: format!("\"{tap}\" : jump {}", chain_name("from", tap)),
        port_to: format!("\"{tap}\" : jump {}", chain_name("to", tap)),
        from_vm: format!("{} : jump {}", port.ip, chain_name("out", tap)),
        to_vm: format!("{} : jump {}", port.ip, chain_name("in", tap)),
        nat: port.public_ip.map(|p| (format!("{p} : {}", port.ip), format!("{} : {p}", port.ip))),
    }
}

/// What crosses the tunnel, both ways: the machines' ARP and IPv4 within the subnet, but
/// nothing to or from the gateway and no DHCP. Every host's copy of the network has the same
/// gateway address and its own dnsmasq; each answers only its own host's machines.
pub fn tunnel_rules(model: &NetworkModel) -> Vec<String> {
    let gw = model.gateway;
    vec![
        format!("arp saddr ip {gw} drop comment \"each host's gateway answers for itself\""),
        format!("arp daddr ip {gw} drop comment \"and is asked only by its own machines\""),
        "ether type arp accept".to_string(),
        "udp dport { 67, 68 } drop comment \"DHCP stays on each host\"".to_string(),
        format!("ip saddr {gw} drop"),
        format!("ip daddr {gw} drop"),
        format!("ip saddr {} accept", model.subnet),
        "drop comment \"another source, IPv6 or another protocol\"".to_string(),
    ]
}

fn bridge_base(out: &mut String, model: &NetworkModel, machines: &[&Machine]) {
    let els: Vec<Elements> = machines.iter().map(|m| elements(&m.port)).collect();
    write_map(out, "port_from", "ifname : verdict", &els.iter().map(|e| e.port_from.clone()).collect::<Vec<_>>());
    write_map(out, "port_to", "ifname : verdict", &els.iter().map(|e| e.port_to.clone()).collect::<Vec<_>>());
    let tunnel = model.tunnel.is_some();
    let mut pre = Vec::new();
    if tunnel {
        pre.push(format!("iifname \"{VXLAN}\" jump tunnel comment \"from the network's other hosts\""));
    }
    pre.push("iifname vmap @port_from".to_string());
    write_chain(out, "prerouting", Some("type filter hook prerouting priority -300; policy drop;"), &pre);
    for hook in ["forward", "output"] {
        let mut rules = Vec::new();
        if tunnel && hook == "forward" {
            rules.push(format!("oifname \"{VXLAN}\" jump tunnel comment \"to the network's other hosts\""));
        }
        if tunnel && hook == "output" {
            rules.push(format!("oifname \"{VXLAN}\" drop comment \"the gateway serves this host's machines only\""));
        }
        rules.push("oifname vmap @port_to".to_string());
        write_chain(out, hook, Some(&format!("type filter hook {hook} priority -300; policy accept;")), &rules);
    }
    if tunnel {
        write_chain(out, "tunnel", None, &tunnel_rules(model));
    }
}

fn inet_base(out: &mut String, model: &NetworkModel, machines: &[&Machine]) {
    let els: Vec<Elements> = machines.iter().map(|m| elements(&m.port)).collect();
    let pick = |f: fn(&Elements) -> Option<String>| els.iter().filter_map(f).collect::<Vec<_>>();
    write_map(out, "from_vm", "ipv4_addr : verdict", &pick(|e| Some(e.from_vm.clone())));
    write_map(out, "to_vm", "ipv4_addr : verdict", &pick(|e| Some(e.to_vm.clone())));
    write_map(out, "dnat_pub", "ipv4_addr : ipv4_addr", &pick(|e| e.nat.as_ref().map(|n| n.0.clone())));
    write_map(out, "snat_pub", "ipv4_addr : ipv4_addr", &pick(|e| e.nat.as_ref().map(|n| n.1.clone())));
    write_chain(
        out,
        "forward",
        Some("type filter hook forward priority filter; policy accept;"),
        &[
            "meta nfproto ipv6 drop".to_string(),
            format!("iifname \"{TRANSIT}\" ip saddr {} drop comment \"a private source from outside\"", model.subnet),
            "ip saddr vmap @from_vm".to_string(),
            "ip daddr vmap @to_vm".to_string(),
        ],
    );
    write_chain(
        out,
        "input",
        Some("type filter hook input priority filter; policy accept;"),
        &[
            "meta nfproto ipv6 drop".to_string(),
            format!("iifname \"{BRIDGE}\" udp dport 67 accept comment \"DHCP\""),
            format!("iifname \"{BRIDGE}\" ip saddr vmap @from_vm"),
            format!("iifname \"{TRANSIT}\" ct state established,related accept"),
            format!("iifname \"{TRANSIT}\" drop"),
        ],
    );
    write_chain(
        out,
        "prerouting",
        Some("type nat hook prerouting priority dstnat; policy accept;"),
        &[format!("iifname \"{TRANSIT}\" dnat ip to ip daddr map @dnat_pub")],
    );
    write_chain(
        out,
        "postrouting",
        Some("type nat hook postrouting priority srcnat; policy accept;"),
        &[
            format!("oifname \"{TRANSIT}\" snat ip to ip saddr map @snat_pub"),
            format!("oifname \"{TRANSIT}\" masquerade"),
        ],
    );
}

fn bridge_machine_chains(out: &mut String, port: &Port) {
    write_chain(out, &chain_name("from", &port.tap), None, &from_tap_rules(port));
    write_chain(out, &chain_name("to", &port.tap), None, &to_tap_rules(port));
}

fn inet_machine_chains(out: &mut String, m: &Machine) {
    let note = |d: &str| format!("# {d} {}: {}", m.port.ip, fw_list(&m.rules));
    let mut in_rules = vec![note("to")];
    in_rules.extend(machine_chain_rules(&m.rules.inbound, Direction::In));
    let mut out_rules = vec![note("from")];
    out_rules.extend(machine_chain_rules(&m.rules.outbound, Direction::Out));
    write_chain(out, &chain_name("in", &m.port.tap), None, &in_rules);
    write_chain(out, &chain_name("out", &m.port.tap), None, &out_rules);
}

fn fw_list(rules: &CompiledRules) -> String {
    if rules.firewalls.is_empty() { "no firewall".to_string() } else { comment(&rules.firewalls.join(" ")) }
}

/// Both tables of a network namespace, from scratch, as one transaction: the tables are created
/// if missing, deleted, and written again.
pub fn render_network(model: &NetworkModel) -> String {
    let machines: Vec<&Machine> = model.machines.values().collect();
    let mut out = String::new();
    let _ = writeln!(out, "# openwinv network {} (gateway {}): full rebuild", model.subnet, model.gateway);
    if let Some(t) = &model.tunnel {
        let _ = writeln!(out, "# spans hosts: vni {} from {} over {VXLAN}", t.vni, t.local);
    }
    for family in ["bridge", "inet"] {
        let _ = writeln!(out, "add table {family} {TABLE}");
        let _ = writeln!(out, "delete table {family} {TABLE}");
    }
    let _ = writeln!(out, "table bridge {TABLE} {{");
    bridge_base(&mut out, model, &machines);
    for m in &machines {
        bridge_machine_chains(&mut out, &m.port);
    }
    let _ = writeln!(out, "}}");
    let _ = writeln!(out, "table inet {TABLE} {{");
    inet_base(&mut out, model, &machines);
    for m in &machines {
        inet_machine_chains(&mut out, m);
    }
    let _ = writeln!(out, "}}");
    out
}

fn refill(out: &mut String, family: &str, chains: &[String]) {
    for c in chains {
        let _ = writeln!(out, "add chain {family} {TABLE} {c}");
        let _ = writeln!(out, "flush chain {family} {TABLE} {c}");
    }
}

/// Adds a machine (or brings it in line with `m`): its four chains are (re)written and its map
/// elements added. `old` is the port as it was if it was attached before (its elements are
/// deleted first, so an address change cannot leave a stale element).
pub fn render_attach(m: &Machine, old: Option<&Port>) -> String {
    let tap = &m.port.tap;
    let mut out = String::new();
    let _ = writeln!(out, "# attach {tap} ({} {}): {}", m.port.mac, m.port.ip, fw_list(&m.rules));
    if let Some(old) = old.filter(|o| **o != m.port) {
        delete_elements(&mut out, old);
    }
    refill(&mut out, "bridge", &[chain_name("from", tap), chain_name("to", tap)]);
    let _ = writeln!(out, "table bridge {TABLE} {{");
    bridge_machine_chains(&mut out, &m.port);
    let _ = writeln!(out, "}}");
    refill(&mut out, "inet", &[chain_name("in", tap), chain_name("out", tap)]);
    let _ = writeln!(out, "table inet {TABLE} {{");
    inet_machine_chains(&mut out, m);
    let _ = writeln!(out, "}}");
    let e = elements(&m.port);
    let _ = writeln!(out, "add element bridge {TABLE} port_from {{ {} }}", e.port_from);
    let _ = writeln!(out, "add element bridge {TABLE} port_to {{ {} }}", e.port_to);
    let _ = writeln!(out, "add element inet {TABLE} from_vm {{ {} }}", e.from_vm);
    let _ = writeln!(out, "add element inet {TABLE} to_vm {{ {} }}", e.to_vm);
    if let Some((dnat, snat)) = e.nat {
        let _ = writeln!(out, "add element inet {TABLE} dnat_pub {{ {dnat} }}");
        let _ = writeln!(out, "add element inet {TABLE} snat_pub {{ {snat} }}");
    }
    out
}

fn delete_elements(out: &mut String, port: &Port) {
    let _ = writeln!(out, "delete element bridge {TABLE} port_from {{ \"{}\" }}", port.tap);
    let _ = writeln!(out, "delete element bridge {TABLE} port_to {{ \"{}\" }}", port.tap);
    let _ = writeln!(out, "delete element inet {TABLE} from_vm {{ {} }}", port.ip);
    let _ = writeln!(out, "delete element inet {TABLE} to_vm {{ {} }}", port.ip);
    if let Some(p) = port.public_ip {
        let _ = writeln!(out, "delete element inet {TABLE} dnat_pub {{ {p} }}");
        let _ = writeln!(out, "delete element inet {TABLE} snat_pub {{ {} }}", port.ip);
    }
}

/// Removes a machine: its map elements, then its chains. After this its tap passes nothing.
pub fn render_detach(port: &Port) -> String {
    let tap = &port.tap;
    let mut out = String::new();
    let _ = writeln!(out, "# detach {tap} ({})", port.ip);
    delete_elements(&mut out, port);
    for (family, c) in [("bridge", "from"), ("bridge", "to"), ("inet", "in"), ("inet", "out")] {
        let _ = writeln!(out, "delete chain {family} {TABLE} {}", chain_name(c, tap));
    }
    out
}

/// A new rule set for one machine: its two filter chains flushed and refilled.
pub fn render_rules(m: &Machine) -> String {
    let tap = &m.port.tap;
    let mut out = String::new();
    let _ = writeln!(out, "# rules of {tap} ({}): {}", m.port.ip, fw_list(&m.rules));
    refill(&mut out, "inet", &[chain_name("in", tap), chain_name("out", tap)]);
    let _ = writeln!(out, "table inet {TABLE} {{");
    inet_machine_chains(&mut out, m);
    let _ = writeln!(out, "}}");
    out
}

/// The host's table: masquerade what the networks send out of the uplink from their transit
/// addresses (public addresses leave as they are), rebuilt as one transaction.
pub fn render_host(uplink: Option<&str>, transit: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "add table ip {TABLE}");
    let _ = writeln!(out, "delete table ip {TABLE}");
    let _ = writeln!(out, "table ip {TABLE} {{");
    let out_if = match uplink {
        Some(u) => format!("oifname \"{u}\""),
        None => "oifname != \"owv*\"".to_string(),
    };
    write_chain(
        &mut out,
        "postrouting",
        Some("type nat hook postrouting priority srcnat; policy accept;"),
        &[format!("ip saddr {transit} {out_if} masquerade comment \"networks' egress\"")],
    );
    let _ = writeln!(out, "}}");
    out
}

/// The public address `ip` of a machine changes from `old` to `new` (either may be absent).
pub fn render_public_ip(ip: Ipv4Addr, old: Option<Ipv4Addr>, new: Option<Ipv4Addr>) -> String {
    let mut out = String::new();
    if let Some(p) = old {
        let _ = writeln!(out, "delete element inet {TABLE} dnat_pub {{ {p} }}");
        let _ = writeln!(out, "delete element inet {TABLE} snat_pub {{ {ip} }}");
    }
    if let Some(p) = new {
        let _ = writeln!(out, "add element inet {TABLE} dnat_pub {{ {p} : {ip} }}");
        let _ = writeln!(out, "add element inet {TABLE} snat_pub {{ {ip} : {p} }}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::{FirewallSpec, Rule, compile};
    use crate::model::Subnet;
    use crate::names::Mac;

    fn rule(id: i64, bound: &str, protocol: &str, port: &str, ip: &str) -> Rule {
        Rule::parse(id, bound, protocol, port, ip).unwrap()
    }

    fn fw(id: &str, icmp: bool, rules: Vec<Rule>) -> FirewallSpec {
        FirewallSpec { firewall_id: id.into(), icmp, rules }
    }

    fn machine(n: u8, public: bool, firewalls: &[FirewallSpec]) -> Machine {
        let id = format!("INS-{n}");
        Machine {
            port: Port {
                tap: crate::names::tap_name(&id),
                mac: Mac::for_instance(&id),
                ip: Ipv4Addr::new(10, 16, 0, n),
                public_ip: public.then_some(Ipv4Addr::new(203, 0, 113, n)),
            },
            rules: compile(firewalls),
        }
    }

    /// The compiler's shapes (the engine's golden cases), each as the chains of one machine,
    /// then whole networks and the incremental transactions.
    fn golden_cases() -> Vec<(String, String)> {
        let shapes = crate::compiler::reference_shapes();
        let mut cases: Vec<(String, String)> = shapes
            .into_iter()
            .map(|(name, fws)| (format!("rules-{name}"), render_rules(&machine(2, false, &fws))))
            .collect();
        let web = fw("FIREWALL-web", true, vec![rule(1, "IN", "TCP", "80", "0.0.0.0/0")]);
        let mut model =
            NetworkModel::new(Subnet::new(Ipv4Addr::new(10, 16, 0, 0), 16).unwrap(), Ipv4Addr::new(10, 16, 0, 1));
        cases.push(("network-empty".into(), render_network(&model)));
        for m in [machine(2, true, std::slice::from_ref(&web)), machine(3, false, &[])] {
            model.machines.insert(m.port.tap.clone(), m);
        }
        cases.push(("network-two-machines".into(), render_network(&model)));
        let mut spanning = model.clone();
        spanning.tunnel = Some(crate::model::TunnelModel {
            vni: 4097,
            local: Ipv4Addr::new(192, 0, 2, 1),
            peers: [Ipv4Addr::new(192, 0, 2, 2)].into(),
            remotes: Default::default(),
        });
        cases.push(("network-across-hosts".into(), render_network(&spanning)));
        let m2 = machine(2, true, &[web]);
        cases.push(("attach-with-public-ip".into(), render_attach(&m2, None)));
        let mut moved = m2.clone();
        moved.port.ip = Ipv4Addr::new(10, 16, 0, 9);
        moved.port.public_ip = None;
        cases.push(("attach-changed-address".into(), render_attach(&moved, Some(&m2.port))));
        cases.push(("detach".into(), render_detach(&m2.port)));
        cases.push((
            "public-ip-change".into(),
            render_public_ip(m2.port.ip, Some(Ipv4Addr::new(203, 0, 113, 2)), Some(Ipv4Addr::new(203, 0, 113, 7))),
        ));
        cases.push(("host-with-uplink".into(), render_host(Some("eth0"), "100.64.0.0/10")));
        cases.push(("host-without-uplink".into(), render_host(None, "100.64.0.0/10")));
        cases
    }

    #[test]
    fn golden() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/nft");
        let update = std::env::var_os("OPENWINV_UPDATE_GOLDEN").is_some();
        if update {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let mut stale = Vec::new();
        for (name, text) in golden_cases() {
            let path = dir.join(format!("{name}.nft"));
            if update {
                std::fs::write(&path, &text).unwrap();
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_default();
            if expected != text {
                stale.push(format!("{name}:\n--- expected\n{expected}--- got\n{text}"));
            }
        }
        assert!(
            stale.is_empty(),
            "golden files differ; run `OPENWINV_UPDATE_GOLDEN=1 cargo test -p openwinv-net golden` after checking:\n{}",
            stale.join("\n")
        );
    }

    #[test]
    fn comments_cannot_break_out_of_quotes() {
        assert_eq!(comment("FW-\"a\"; flush ruleset\n#1"), "FW-a flush ruleset#1");
    }
}
