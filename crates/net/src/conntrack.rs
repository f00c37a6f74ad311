//! Cutting connections a rule change no longer allows.
//!
//! Conntrack lets established packets pass before any rule is read, so removing an allow rule
//! would leave the connections it admitted open. After a change the network lists its tracked
//! connections (`conntrack -L`), asks the evaluator whether each one's first packet would still
//! pass, and deletes the entries that would not. Pure here: parsing and choosing.

use std::net::Ipv4Addr;

use crate::compiler::Verdict;
use crate::eval::{CtState, From, L4, Packet, evaluate};
use crate::model::NetworkModel;

/// One tracked connection: the original direction's tuple, and the reply's source (the real
/// destination after DNAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub protocol: L4,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Ports for TCP and UDP; for ICMP the echo id in `sport` and 0 in `dport`.
    pub sport: u16,
    pub dport: u16,
    pub reply_src: Ipv4Addr,
}

impl Entry {
    /// `conntrack -D` arguments that delete exactly this entry.
    pub fn delete_args(&self) -> Vec<String> {
        let mut a = vec!["-D".to_string(), "-p".to_string()];
        a.push(
            match self.protocol {
                L4::Tcp => "tcp",
                L4::Udp => "udp",
                L4::Icmp => "icmp",
            }
            .to_string(),
        );
        a.extend(["--orig-src".to_string(), self.src.to_string(), "--orig-dst".to_string(), self.dst.to_string()]);
        match self.protocol {
            L4::Tcp | L4::Udp => {
                a.extend(["--sport".to_string(), self.sport.to_string(), "--dport".to_string(), self.dport.to_string()])
            }
            L4::Icmp => a.extend(["--icmp-id".to_string(), self.sport.to_string()]),
        }
        a
    }
}

/// Reads `conntrack -L` output (the default format). Lines of other protocols are skipped.
pub fn parse_list(text: &str) -> Vec<Entry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut words = line.split_whitespace();
    let protocol = match words.next()? {
        "tcp" => L4::Tcp,
        "udp" => L4::Udp,
        "icmp" => L4::Icmp,
        _ => return None,
    };
    let (mut srcs, mut dsts, mut sports, mut dports, mut ids) = (vec![], vec![], vec![], vec![], vec![]);
    for w in words {
        let Some((k, v)) = w.split_once('=') else { continue };
        match k {
            "src" => srcs.push(v.parse::<Ipv4Addr>().ok()?),
            "dst" => dsts.push(v.parse::<Ipv4Addr>().ok()?),
            "sport" => sports.push(v.parse::<u16>().ok()?),
            "dport" => dports.push(v.parse::<u16>().ok()?),
            "id" => ids.push(v.parse::<u16>().ok()?),
            _ => {}
        }
    }
    let (sport, dport) = match protocol {
        L4::Icmp => (*ids.first()?, 0),
        _ => (*sports.first()?, *dports.first()?),
    };
    Some(Entry { protocol, src: *srcs.first()?, dst: *dsts.first()?, sport, dport, reply_src: *srcs.get(1)? })
}

/// The entries touching the machine at `ip` whose first packet `model` would now drop.
pub fn to_cut(model: &NetworkModel, ip: Ipv4Addr, entries: &[Entry]) -> Vec<Entry> {
    entries
        .iter()
        .filter(|e| e.src == ip || e.reply_src == ip)
        .filter(|e| {
            let from = match model.by_ip(e.src) {
                Some(m) => From::Tap { tap: m.port.tap.clone(), mac: m.port.mac, ip: e.src },
                // A machine of the network on another host.
                None if model.tunnel.is_some() && model.subnet.contains(e.src) => From::Tunnel(e.src),
                None => From::Uplink(e.src),
            };
            let pkt = Packet { from, to: e.dst, protocol: e.protocol, port: e.dport, state: CtState::New };
            evaluate(model, &pkt).verdict == Verdict::Drop
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::{CompiledRules, FirewallSpec, Rule, compile};
    use crate::model::{Machine, Port, Subnet};
    use crate::names::Mac;

    const LIST: &str = "\
tcp      6 431999 ESTABLISHED src=10.16.0.2 dst=10.16.0.3 sport=50348 dport=80 src=10.16.0.3 dst=10.16.0.2 sport=80 dport=50348 [ASSURED] mark=0 use=1
udp      17 29 src=198.51.100.2 dst=203.0.113.3 sport=4000 dport=53 [UNREPLIED] src=10.16.0.3 dst=198.51.100.2 sport=53 dport=4000 mark=0 use=1
icmp     1 29 src=10.16.0.2 dst=10.16.0.3 type=8 code=0 id=1234 src=10.16.0.3 dst=10.16.0.2 type=0 code=0 id=1234 mark=0 use=1
unknown  2 598 src=10.16.0.1 dst=224.0.0.22 [UNREPLIED] src=224.0.0.22 dst=10.16.0.1 mark=0 use=1
tcp      6 10 SYN_SENT src=10.16.0.4 dst=1.1.1.1 sport=1 dport=443 [UNREPLIED] src=1.1.1.1 dst=100.64.0.6 sport=443 dport=1 mark=0 use=1
";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_default_format() {
        let e = parse_list(LIST);
        assert_eq!(e.len(), 4);
        assert_eq!(
            e[0],
            Entry {
                protocol: L4::Tcp,
                src: ip("10.16.0.2"),
                dst: ip("10.16.0.3"),
                sport: 50348,
                dport: 80,
                reply_src: ip("10.16.0.3")
            }
        );
        assert_eq!((e[1].dst, e[1].reply_src), (ip("203.0.113.3"), ip("10.16.0.3")));
        assert_eq!((e[2].protocol, e[2].sport), (L4::Icmp, 1234));
        assert_eq!(e[2].delete_args().join(" "), "-D -p icmp --orig-src 10.16.0.2 --orig-dst 10.16.0.3 --icmp-id 1234");
        assert_eq!(
            e[0].delete_args().join(" "),
            "-D -p tcp --orig-src 10.16.0.2 --orig-dst 10.16.0.3 --sport 50348 --dport 80"
        );
    }

    #[test]
    fn cuts_only_what_the_new_rules_refuse() {
        let mut model = NetworkModel::new(Subnet::new(ip("10.16.0.0"), 16).unwrap(), ip("10.16.0.1"));
        let web = FirewallSpec {
            firewall_id: "FW-web".into(),
            icmp: false,
            rules: vec![Rule::parse(1, "IN", "UDP", "53", "198.51.100.0/24").unwrap()],
        };
        for (n, rules) in [(2, CompiledRules::open()), (3, compile(&[web])), (4, CompiledRules::open())] {
            let id = format!("INS-{n}");
            let port = Port {
                tap: format!("tap{n}"),
                mac: Mac::for_instance(&id),
                ip: Ipv4Addr::new(10, 16, 0, n),
                public_ip: (n == 3).then(|| ip("203.0.113.3")),
            };
            model.machines.insert(port.tap.clone(), Machine { port, rules });
        }
        let cut = to_cut(&model, ip("10.16.0.3"), &parse_list(LIST));
        // TCP 80 and ICMP to .3 are no longer allowed; UDP 53 from outside through the public
        // address still is; the last entry is not .3's.
        assert_eq!(cut.iter().map(|e| e.protocol).collect::<Vec<_>>(), vec![L4::Tcp, L4::Icmp]);
    }

    #[test]
    fn a_machine_on_another_host_is_judged_as_itself() {
        let mut model = NetworkModel::new(Subnet::new(ip("10.16.0.0"), 16).unwrap(), ip("10.16.0.1"));
        let ssh = FirewallSpec {
            firewall_id: "FW-ssh".into(),
            icmp: false,
            rules: vec![Rule::parse(1, "IN", "TCP", "22", "10.16.0.0/16").unwrap()],
        };
        let port = Port { tap: "tap3".into(), mac: Mac::for_instance("INS-3"), ip: ip("10.16.0.3"), public_ip: None };
        model.machines.insert(port.tap.clone(), Machine { port, rules: compile(&[ssh]) });
        // .9 is a machine of the network on another host.
        let list = "\
tcp      6 431999 ESTABLISHED src=10.16.0.9 dst=10.16.0.3 sport=50000 dport=22 src=10.16.0.3 dst=10.16.0.9 sport=22 dport=50000 [ASSURED] mark=0 use=1
tcp      6 431999 ESTABLISHED src=10.16.0.9 dst=10.16.0.3 sport=50001 dport=80 src=10.16.0.3 dst=10.16.0.9 sport=80 dport=50001 [ASSURED] mark=0 use=1
";
        // Without a tunnel an address of the subnet from elsewhere is a spoofer: both go.
        assert_eq!(to_cut(&model, ip("10.16.0.3"), &parse_list(list)).len(), 2);
        model.tunnel = Some(crate::model::TunnelModel {
            vni: 1,
            local: ip("192.0.2.1"),
            peers: Default::default(),
            remotes: Default::default(),
        });
        let cut = to_cut(&model, ip("10.16.0.3"), &parse_list(list));
        assert_eq!(cut.iter().map(|e| e.dport).collect::<Vec<_>>(), vec![80], "the rule still allows 22 from .9");
    }
}
