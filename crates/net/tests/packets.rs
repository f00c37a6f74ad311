//! Packet tests without QEMU: veth "machines" in namespaces of their own, plugged into real
//! networks (namespace, bridge, nftables, NAT) as taps would be, sending real TCP, UDP and ICMP.
//! For every case the kernel's verdict, the evaluator's verdict and the expected one agree.
//! Needs root, nft, dnsmasq, ip, conntrack and busybox; fails (never skips) without them.

mod common;

use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::thread;

use common::{Locks, Probe, Proto, UPSTREAM_IP, World, kernel_verdict, normalized_ruleset};
use openwinv_net::compiler::{CompiledRules, FirewallSpec, Rule, Verdict, compile};
use openwinv_net::names::transit_addrs;
use openwinv_net::{CtState, From, L4, Mac, Packet, evaluate};

use Verdict::{Accept as A, Drop as D};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Who sends.
#[derive(Debug, Clone, Copy)]
enum Src {
    /// A machine, from its own address.
    Vm(&'static str),
    /// A machine, from an address that is not its own.
    Spoof(&'static str, &'static str),
    /// The upstream namespace (the Internet).
    Up,
}

/// Where to.
#[derive(Debug, Clone, Copy)]
enum Dst {
    /// A machine's private address.
    Vm(&'static str),
    /// A machine's public address.
    Pub(&'static str),
    /// A private address of the sender's network, where the named machine (maybe of another
    /// network) listens.
    Ip(&'static str, &'static str),
    /// An address with nothing behind it.
    Nowhere(&'static str),
    /// The upstream namespace.
    Up,
    /// An address of the first network's own namespace (the gateway, the transit end), with the
    /// listener there.
    NetNs(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    src: Src,
    dst: Dst,
    proto: Proto,
    port: u16,
    expect: Verdict,
}

const fn case(name: &'static str, src: Src, dst: Dst, proto: Proto, port: u16, expect: Verdict) -> Case {
    Case { name, src, dst, proto, port, expect }
}

fn l4(p: Proto) -> L4 {
    match p {
        Proto::Tcp => L4::Tcp,
        Proto::Udp => L4::Udp,
        Proto::Icmp => L4::Icmp,
    }
}

fn probe(w: &World, c: &Case) -> Probe {
    let (src, bind) = match c.src {
        Src::Vm(v) => (w.vm(v).ns.clone(), None),
        Src::Spoof(v, addr) => (w.vm(v).ns.clone(), Some(ip(addr))),
        Src::Up => (w.upstream_ns.clone(), None),
    };
    let (dst, listen) = match c.dst {
        Dst::Vm(v) => (w.vm(v).port.ip, Some(w.vm(v).ns.clone())),
        Dst::Pub(v) => (w.vm(v).port.public_ip.expect("a public address"), Some(w.vm(v).ns.clone())),
        Dst::Ip(addr, v) => (ip(addr), Some(w.vm(v).ns.clone())),
        Dst::Nowhere(addr) => (ip(addr), None),
        Dst::Up => (UPSTREAM_IP, Some(w.upstream_ns.clone())),
        Dst::NetNs(addr) => (ip(addr), Some(w.nets[0].netns().to_string())),
    };
    Probe { src, bind, dst, listen, proto: c.proto, port: c.port }
}

/// The evaluator's verdict: the sender's network, then (through a public address) the
/// receiver's, as the packet would cross them.
fn evaluator_verdict(w: &World, c: &Case, state: CtState) -> Verdict {
    let p = probe(w, c);
    let models: Vec<_> = w.nets.iter().map(|n| w.rt.block_on(n.model())).collect();
    let (proto, port) = (l4(c.proto), c.port);
    let owner_of_public = |to: Ipv4Addr| models.iter().position(|m| m.by_public_ip(to).is_some());
    match c.src {
        Src::Up => {
            let net = owner_of_public(p.dst).unwrap_or(0);
            let pkt = Packet { from: From::Uplink(UPSTREAM_IP), to: p.dst, protocol: proto, port, state };
            evaluate(&models[net], &pkt).verdict
        }
        Src::Vm(v) | Src::Spoof(v, _) => {
            let vm = w.vm(v);
            let from = From::Tap { tap: vm.port.tap.clone(), mac: vm.actual_mac, ip: p.bind.unwrap_or(vm.port.ip) };
            let pkt = Packet { from, to: p.dst, protocol: proto, port, state };
            let first = evaluate(&models[vm.net], &pkt).verdict;
            match owner_of_public(p.dst) {
                Some(other) if first == A && other != vm.net => {
                    // Out through the sender's NAT: the receiver's network sees the sender's
                    // transit address.
                    let (_, transit) = transit_addrs(vm.net as u32 + 1).unwrap();
                    let pkt = Packet { from: From::Uplink(transit), to: p.dst, protocol: proto, port, state };
                    evaluate(&models[other], &pkt).verdict
                }
                _ => first,
            }
        }
    }
}

/// Runs the cases in parallel; every case's three verdicts must agree.
fn run_cases(w: &World, phase: &str, cases: &[Case]) {
    let started = std::time::Instant::now();
    let locks = Locks::default();
    let results: Vec<(Case, Verdict, Verdict)> = thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| {
                let (p, locks) = (probe(w, c), locks.clone());
                let eval = evaluator_verdict(w, c, CtState::New);
                s.spawn(move || (*c, kernel_verdict(&p, &locks), eval))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wrong: Vec<String> = results
        .iter()
        .filter(|(c, k, e)| *k != c.expect || *e != c.expect)
        .map(|(c, k, e)| format!("  {}: expected {:?}, kernel {k:?}, evaluator {e:?}", c.name, c.expect))
        .collect();
    eprintln!("{phase}: {} cases in {:?}", cases.len(), started.elapsed());
    assert!(wrong.is_empty(), "{phase}: {} of {} cases disagree:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

fn rule(id: i64, bound: &str, protocol: &str, port: &str, ip: &str) -> Rule {
    Rule::parse(id, bound, protocol, port, ip).unwrap()
}

fn fw_ssh() -> FirewallSpec {
    FirewallSpec {
        firewall_id: "FW-ssh".into(),
        icmp: true,
        rules: vec![rule(1, "IN", "TCP", "22", "10.16.0.3/32"), rule(2, "IN", "TCP", "22", "198.51.100.0/24")],
    }
}

fn fw_web(with_80: bool) -> FirewallSpec {
    let mut rules =
        vec![rule(2, "IN", "TCP", "8000-8100", "10.16.0.0/16"), rule(3, "IN", "UDP", "5353", "10.16.0.4/32")];
    if with_80 {
        rules.insert(0, rule(1, "IN", "TCP", "80", "0.0.0.0/0"));
    }
    FirewallSpec { firewall_id: "FW-web".into(), icmp: false, rules }
}

fn fw_egress() -> FirewallSpec {
    FirewallSpec {
        firewall_id: "FW-egress".into(),
        icmp: false,
        rules: vec![rule(1, "OUT", "TCP", "443", "198.51.100.2/32"), rule(2, "OUT", "UDP", "53", "0.0.0.0/0")],
    }
}

use Dst::{Ip, Nowhere, Pub, Up as ToUp};
use Proto::{Icmp, Tcp, Udp};
use Src::{Spoof, Up, Vm};

const NO_FIREWALL: &[Case] = &[
    case("open: tcp between machines", Vm("a1"), Dst::Vm("a2"), Tcp, 80, A),
    case("open: udp between machines", Vm("a1"), Dst::Vm("a2"), Udp, 9000, A),
    case("open: ping between machines", Vm("a1"), Dst::Vm("a2"), Icmp, 0, A),
    case("open: tcp back", Vm("a2"), Dst::Vm("a1"), Tcp, 22, A),
    case("open: any port", Vm("a3"), Dst::Vm("a1"), Tcp, 23, A),
    case("open: egress tcp through NAT", Vm("a1"), ToUp, Tcp, 443, A),
    case("open: egress udp through NAT", Vm("a3"), ToUp, Udp, 53, A),
    case("open: public address tcp", Up, Pub("a1"), Tcp, 22, A),
    case("open: public address, other machine", Up, Pub("a2"), Tcp, 80, A),
    case("open: public address ping", Up, Pub("a1"), Icmp, 0, A),
    case("unassigned public address", Up, Nowhere("203.0.113.99"), Tcp, 80, D),
    case("private address from outside", Up, Nowhere("10.16.0.2"), Tcp, 22, D),
    case("spoofer's own address passes", Vm("s"), Dst::Vm("a2"), Udp, 9001, A),
    case("spoofed unknown source address", Spoof("s", "10.16.0.99"), Dst::Vm("a2"), Udp, 9001, D),
    case("spoofed neighbour's address", Spoof("s", "10.16.0.4"), Dst::Vm("a2"), Udp, 9001, D),
    case("spoofed MAC, udp", Vm("x"), Dst::Vm("a2"), Udp, 9002, D),
    case("spoofed MAC, ping", Vm("x"), Dst::Vm("a2"), Icmp, 0, D),
    case("other account: tcp inside", Vm("b1"), Dst::Vm("b2"), Tcp, 80, A),
    case("other account: udp inside", Vm("b2"), Dst::Vm("b1"), Udp, 9000, A),
    case("other account cannot reach a private address", Vm("b1"), Ip("10.16.0.4", "a3"), Udp, 9003, D),
    case("same address, other account: own network", Vm("b1"), Ip("10.16.0.3", "b2"), Tcp, 81, A),
    case("same address, this account: own network", Vm("a2"), Ip("10.16.0.2", "a1"), Tcp, 81, A),
    case("other account: egress", Vm("b1"), ToUp, Tcp, 443, A),
    case("open: to the gateway", Vm("a1"), Dst::NetNs("10.16.0.1"), Tcp, 9100, A),
    case("outside to the network's transit address", Up, Dst::NetNs("100.64.0.6"), Tcp, 9100, D),
];

const FIREWALLS: &[Case] = &[
    case("IN tcp 80 from anywhere", Vm("a1"), Dst::Vm("a2"), Tcp, 80, A),
    case("IN: other port", Vm("a1"), Dst::Vm("a2"), Tcp, 81, D),
    case("IN range: first port", Vm("a1"), Dst::Vm("a2"), Tcp, 8000, A),
    case("IN range: last port", Vm("a1"), Dst::Vm("a2"), Tcp, 8100, A),
    case("IN range: one above", Vm("a1"), Dst::Vm("a2"), Tcp, 8101, D),
    case("IN range: one below", Vm("a1"), Dst::Vm("a2"), Tcp, 7999, D),
    case("IN /32: other source", Vm("a1"), Dst::Vm("a2"), Udp, 5353, D),
    case("IN udp: sender's OUT rules refuse", Vm("a3"), Dst::Vm("a2"), Udp, 5353, D),
    case("IN: protocol mismatch", Vm("a1"), Dst::Vm("a2"), Udp, 80, D),
    case("icmp N", Vm("a1"), Dst::Vm("a2"), Icmp, 0, D),
    case("IN /32 source allowed", Vm("a2"), Dst::Vm("a1"), Tcp, 22, A),
    case("IN /32: another source", Vm("s"), Dst::Vm("a1"), Tcp, 22, D),
    case("icmp Y", Vm("a2"), Dst::Vm("a1"), Icmp, 0, A),
    case("no rule for the port", Vm("a2"), Dst::Vm("a1"), Tcp, 80, D),
    case("no rule for udp", Vm("a2"), Dst::Vm("a1"), Udp, 22, D),
    case("public: IN /24 allows upstream", Up, Pub("a1"), Tcp, 22, A),
    case("public: other port", Up, Pub("a1"), Tcp, 23, D),
    case("public: IN from anywhere", Up, Pub("a2"), Tcp, 80, A),
    case("public: private-only rule", Up, Pub("a2"), Tcp, 8000, D),
    case("public: icmp N", Up, Pub("a2"), Icmp, 0, D),
    case("public: icmp Y", Up, Pub("a1"), Icmp, 0, A),
    case("OUT tcp 443 allowed", Vm("a3"), ToUp, Tcp, 443, A),
    case("OUT: other port", Vm("a3"), ToUp, Tcp, 80, D),
    case("OUT udp 53 anywhere", Vm("a3"), ToUp, Udp, 53, A),
    case("OUT refuses what the receiver allows", Vm("a3"), Dst::Vm("a2"), Tcp, 80, D),
    case("OUT refuses ping", Vm("a3"), Dst::Vm("a1"), Icmp, 0, D),
    case("union: /32 source is not this one", Vm("a1"), Dst::Vm("a3"), Tcp, 22, D),
    case("union: first firewall", Vm("a2"), Dst::Vm("a3"), Tcp, 22, A),
    case("union: second firewall, reply through OUT rules", Vm("a2"), Dst::Vm("a3"), Tcp, 80, A),
    case("union: icmp Y of one, reply through OUT rules", Vm("a2"), Dst::Vm("a3"), Icmp, 0, A),
    case("no OUT rule: egress open", Vm("a1"), ToUp, Tcp, 80, A),
    case("no OUT rule: egress udp", Vm("a2"), ToUp, Udp, 9000, A),
    case("spoofing the allowed /32", Spoof("s", "10.16.0.4"), Dst::Vm("a2"), Udp, 5353, D),
    case("own address, not allowed", Vm("s"), Dst::Vm("a2"), Udp, 5353, D),
    case("other account via public: not in the rule", Vm("b1"), Pub("a1"), Tcp, 22, D),
    case("other account via public: rule from anywhere", Vm("b1"), Pub("a2"), Tcp, 80, A),
    case("other account unaffected", Vm("b2"), Dst::Vm("b1"), Tcp, 22, A),
    case("OUT rules apply to the gateway too", Vm("a3"), Dst::NetNs("10.16.0.1"), Udp, 9100, D),
    case("no OUT rule: gateway open", Vm("a2"), Dst::NetNs("10.16.0.1"), Tcp, 9100, A),
];

const AFTER_CHANGES: &[Case] = &[
    case("detached: public any port", Up, Pub("a1"), Tcp, 23, A),
    case("detached: any source", Vm("s"), Dst::Vm("a1"), Tcp, 22, A),
    case("detached: udp", Vm("a2"), Dst::Vm("a1"), Udp, 22, A),
    case("removed rule", Vm("a1"), Dst::Vm("a2"), Tcp, 80, D),
    case("removed rule, public", Up, Pub("a2"), Tcp, 80, D),
    case("removed rule, second machine", Vm("a2"), Dst::Vm("a3"), Tcp, 80, D),
    case("remaining rule", Vm("a1"), Dst::Vm("a2"), Tcp, 8050, A),
    case("still icmp N", Vm("a1"), Dst::Vm("a2"), Icmp, 0, D),
];

/// The whole table on one world: no firewall, firewalls attached, then changed (a detach and a
/// removed rule, which cuts the connection it allowed), then rebuilt from scratch.
#[test]
fn packet_table() {
    let mut w = World::new("pk", &["acct-a", "acct-b"]);
    w.add_vm("a1", 0, ip("10.16.0.2"), Some(ip("203.0.113.11")), None);
    w.add_vm("a2", 0, ip("10.16.0.3"), Some(ip("203.0.113.12")), None);
    w.add_vm("a3", 0, ip("10.16.0.4"), None, None);
    w.add_vm("s", 0, ip("10.16.0.6"), None, None);
    w.add_vm("x", 0, ip("10.16.0.7"), None, Some(Mac([0x02, 0, 0, 0, 0, 0x99])));
    w.add_vm("b1", 1, ip("10.16.0.2"), None, None);
    w.add_vm("b2", 1, ip("10.16.0.3"), None, None);
    // The spoofers send straight to a2 (their ARP would be refused anyway: it would carry the
    // lie too), and s owns the addresses it forges.
    let a2_mac = w.vm("a2").port.mac.to_string();
    for v in ["s", "x"] {
        let ns = w.vm(v).ns.clone();
        common::sh("ip", &["-n", &ns, "neigh", "replace", "10.16.0.3", "lladdr", &a2_mac, "dev", "eth0"]);
    }
    let s_ns = w.vm("s").ns.clone();
    for forged in ["10.16.0.99/32", "10.16.0.4/32"] {
        common::sh("ip", &["-n", &s_ns, "addr", "add", forged, "dev", "eth0"]);
    }

    run_cases(&w, "no firewall", NO_FIREWALL);

    let net = &w.nets[0];
    let apply = |tap: &str, fws: &[FirewallSpec]| {
        let started = std::time::Instant::now();
        let applied = w.rt.block_on(net.apply_firewall(tap, compile(fws))).unwrap();
        // A figure for the log, not an assertion (docs/perf.md gets measured ones).
        eprintln!("apply_firewall {tap}: {:?} (nft, conntrack -L, {} cut)", started.elapsed(), applied.cut.len());
        applied
    };
    let tap = |v: &str| w.vm(v).port.tap.clone();
    apply(&tap("a1"), &[fw_ssh()]);
    apply(&tap("a2"), &[fw_web(true)]);
    apply(&tap("a3"), &[fw_web(true), fw_ssh(), fw_egress()]);
    run_cases(&w, "firewalls", FIREWALLS);

    // Two open connections to a2: one through the rule about to go, one through a rule that stays.
    let a2_ns = w.vm("a2").ns.clone();
    let listen =
        |port: u16| common::in_ns(&a2_ns, move || std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind"));
    let (l80, l8000) = (listen(80), listen(8000));
    let connect = |port: u16| {
        let to = std::net::SocketAddr::from((ip("10.16.0.3"), port));
        common::in_ns(&w.vm("a1").ns, move || TcpStream::connect_timeout(&to, common::WAIT).expect("connect"))
    };
    let (mut c80, mut c8000) = (connect(80), connect(8000));
    let mut s80 = common::accept_within(&l80, common::WAIT).expect("accept 80");
    let mut s8000 = common::accept_within(&l8000, common::WAIT).expect("accept 8000");
    assert_eq!(crosses(&mut c80, &mut s80), A, "the connection on port 80 works before the change");
    assert_eq!(crosses(&mut c8000, &mut s8000), A, "the connection on port 8000 works before the change");

    apply(&tap("a1"), &[]);
    let cut = apply(&tap("a2"), &[fw_web(false)]).cut;
    apply(&tap("a3"), &[fw_web(false), fw_ssh(), fw_egress()]);
    assert!(
        cut.iter().any(|e| e.dport == 80 && e.src == ip("10.16.0.2") && e.reply_src == ip("10.16.0.3")),
        "removing the rule cut the connection it allowed: {cut:?}"
    );
    assert!(cut.iter().all(|e| e.dport != 8000), "the connection through the remaining rule is kept: {cut:?}");
    let cut_case = case("removed rule cuts its connection", Vm("a1"), Dst::Vm("a2"), Tcp, 80, D);
    let kept_case = case("remaining rule keeps its connection", Vm("a1"), Dst::Vm("a2"), Tcp, 8000, A);
    // After the cut the next segment is a new connection to the kernel; the kept one is established.
    assert_eq!(crosses(&mut c80, &mut s80), D, "kernel: the cut connection carries nothing");
    assert_eq!(evaluator_verdict(&w, &cut_case, CtState::New), D, "evaluator: the cut connection");
    assert_eq!(crosses(&mut c8000, &mut s8000), A, "kernel: the kept connection still works");
    assert_eq!(evaluator_verdict(&w, &kept_case, CtState::Established), A, "evaluator: the kept connection");
    // Close with a reset: the cut connection could not finish a FIN handshake and would hold
    // port 80 for the cases below.
    for sock in [&c80, &s80, &c8000, &s8000] {
        common::abort(sock);
    }
    drop((l80, l8000, c80, s80, c8000, s8000));
    run_cases(&w, "after a detach and a rule removal", AFTER_CHANGES);

    // The incremental changes left exactly what a rebuild from the model writes.
    let ns = w.nets[0].netns().to_string();
    let before = [normalized_ruleset(&ns, "inet"), normalized_ruleset(&ns, "bridge")];
    w.rt.block_on(w.nets[0].rebuild()).unwrap();
    let after = [normalized_ruleset(&ns, "inet"), normalized_ruleset(&ns, "bridge")];
    assert_eq!(before, after, "incremental changes and a full rebuild give the same ruleset");
    run_cases(&w, "after a full rebuild", AFTER_CHANGES);
    let total = NO_FIREWALL.len() + FIREWALLS.len() + 2 + AFTER_CHANGES.len();
    assert!(total >= 60, "the table has {total} packet cases");
}

/// Sends a byte from `c` and says whether `s` got it in time.
fn crosses(c: &mut TcpStream, s: &mut TcpStream) -> Verdict {
    use std::io::{Read, Write};
    c.write_all(b"y").unwrap();
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    let mut b = [0u8; 1];
    if s.read_exact(&mut b).is_ok() { A } else { D }
}

/// dnsmasq hands a machine its reserved address (and nothing else), the firewall never blocks
/// DHCP, and a detached port passes nothing.
#[test]
fn dhcp_reservation_and_detach() {
    let mut w = World::new("dh", &["acct-d"]);
    w.add_dhcp_vm("d", 0, ip("10.16.0.42"));
    let vm = w.vm("d").clone();
    let port = vm.port.clone();
    // A firewall with OUT rules does not stop DHCP.
    w.rt.block_on(w.nets[0].apply_firewall(&port.tap, compile(&[fw_egress()]))).unwrap();
    let script = w.run_dir().join("udhcpc.sh");
    std::fs::write(&script, "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip\" > \"$0.lease\"\nexit 0\n").unwrap();
    common::sh("chmod", &["+x", script.to_str().unwrap()]);
    let out = Command::new("ip")
        .args(["netns", "exec", &vm.ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "1"])
        .args(["-s", script.to_str().unwrap()])
        .output()
        .unwrap();
    let lease = std::fs::read_to_string(format!("{}.lease", script.display())).unwrap_or_default();
    assert_eq!(
        lease.trim(),
        "10.16.0.42",
        "udhcpc got the reserved address: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let eval = |pkt: Packet| evaluate(&w.rt.block_on(w.nets[0].model()), &pkt).verdict;
    let discover = Packet {
        from: From::Tap { tap: port.tap.clone(), mac: port.mac, ip: Ipv4Addr::UNSPECIFIED },
        to: Ipv4Addr::BROADCAST,
        protocol: L4::Udp,
        port: 67,
        state: CtState::New,
    };
    assert_eq!(eval(discover), A, "evaluator: DHCP passes despite OUT rules");

    // Detach: the tap is gone from the network and its rules with it.
    w.rt.block_on(w.nets[0].detach_port(&port.tap)).unwrap();
    let ns = w.nets[0].netns().to_string();
    let rules = common::sh("ip", &["netns", "exec", &ns, "nft", "list", "ruleset"]);
    assert!(!rules.contains(&port.tap), "no rule mentions the detached tap:\n{rules}");
    let link = Command::new("ip").args(["-n", &ns, "link", "show", "dev", &port.tap]).output().unwrap();
    assert!(!link.status.success(), "the detached tap's device is deleted");
    let hosts = std::fs::read_to_string(w.run_dir().join(&ns).join("hosts")).unwrap();
    assert!(!hosts.contains("10.16.0.42"), "the reservation is gone: {hosts}");
}

/// Creating a network twice converges, and a port that is not a valid interface name or address
/// is refused with a sentence naming the field.
#[test]
fn ensure_is_idempotent_and_ports_are_checked() {
    let mut w = World::new("id", &["acct-i"]);
    w.add_vm("i1", 0, ip("10.16.0.2"), Some(ip("203.0.113.5")), None);
    let spec = w.nets[0].spec().clone();
    let model = w.rt.block_on(w.nets[0].model());
    let again =
        w.rt.block_on(openwinv_net::Network::ensure(&w.host, spec, model.machines.values().cloned().collect()))
            .expect("ensure again");
    assert_eq!(again.netns(), w.nets[0].netns());
    let ns = w.nets[0].netns().to_string();
    let before = normalized_ruleset(&ns, "inet");
    assert!(before.iter().any(|b| b.contains("203.0.113.5")), "the public address survives a second ensure");
    let net = &w.nets[0];
    let bad = |tap: &str, addr: &str| {
        let port = openwinv_net::Port { tap: tap.into(), mac: Mac([2, 0, 0, 0, 0, 1]), ip: ip(addr), public_ip: None };
        w.rt.block_on(net.attach_port(port, CompiledRules::open())).unwrap_err().to_string()
    };
    assert!(bad("a-name-longer-than-15", "10.16.0.9").starts_with("tap "));
    assert!(bad("br0", "10.16.0.9").starts_with("tap "));
    assert!(bad("ok0", "10.17.0.9").starts_with("ip 10.17.0.9"));
    assert!(bad("ok0", "10.16.0.1").starts_with("ip 10.16.0.1"));
    assert!(bad("ok0", "10.16.0.2").contains("already the address"));
    assert_eq!(normalized_ruleset(&ns, "inet"), before, "refused ports change nothing");

    // Drift: someone deletes the table. The next change cannot apply incrementally, so the
    // network rewrites everything from its model.
    common::sh("ip", &["netns", "exec", &ns, "nft", "delete", "table", "inet", "openwinv"]);
    let tap = w.vm("i1").port.tap.clone();
    let ssh = compile(&[fw_ssh()]);
    w.rt.block_on(net.apply_firewall(&tap, ssh)).expect("a change on a drifted ruleset repairs it");
    let repaired = normalized_ruleset(&ns, "inet");
    assert!(repaired.iter().any(|b| b.contains("FW-ssh#2")), "the new rules are there: {repaired:?}");
    assert!(repaired.iter().any(|b| b.contains("203.0.113.5")), "and everything else: {repaired:?}");
    w.rt.block_on(net.rebuild()).unwrap();
    assert_eq!(normalized_ruleset(&ns, "inet"), repaired, "the repair is a full rebuild");
}

/// Reconcile: our own changes are not drift (the generation each one made is recorded, so a
/// pass writes nothing); a rule deleted by hand, or another table's commit in the namespace,
/// is, and one pass rewrites the ruleset.
#[test]
fn reconcile_repairs_drift_only() {
    use openwinv_net::{Reconciled, generation};
    let mut w = World::new("rc", &["acct-r"]);
    w.add_vm("r1", 0, ip("10.16.0.2"), Some(ip("203.0.113.7")), None);
    let net = &w.nets[0];
    let ns = net.netns().to_string();
    let tap = w.vm("r1").port.tap.clone();
    w.rt.block_on(net.apply_firewall(&tap, compile(&[fw_ssh()]))).unwrap();
    let listing = || common::sh("ip", &["netns", "exec", &ns, "nft", "-a", "list", "ruleset"]);
    let before = listing();
    let gen_before = generation(Some(&ns)).unwrap();
    for _ in 0..3 {
        assert_eq!(w.rt.block_on(net.reconcile()).unwrap(), Reconciled::Unchanged);
    }
    assert_eq!(generation(Some(&ns)).unwrap(), gen_before, "no transaction ran");
    assert_eq!(listing(), before, "same rules, same handles: nothing rewritten");

    // A rule deleted by hand: the first pass puts it back, the next finds nothing to do.
    let chain = format!("in-{tap}");
    let rule = before
        .lines()
        .skip_while(|l| !l.trim().starts_with(&format!("chain {chain} ")))
        .find(|l| l.contains("FW-ssh#2"))
        .unwrap_or_else(|| panic!("no FW-ssh#2 rule in {chain}:\n{before}"));
    let handle = rule.rsplit("# handle ").next().unwrap().trim();
    common::sh("ip", &["netns", "exec", &ns, "nft", "delete", "rule", "inet", "openwinv", &chain, "handle", handle]);
    assert!(!listing().contains("FW-ssh#2"));
    assert_eq!(w.rt.block_on(net.reconcile()).unwrap(), Reconciled::Repaired);
    assert!(listing().contains("FW-ssh#2"), "the rule is back:\n{}", listing());
    assert_eq!(w.rt.block_on(net.reconcile()).unwrap(), Reconciled::Unchanged);

    // Any other commit in the namespace counts as drift too.
    common::sh("ip", &["netns", "exec", &ns, "nft", "add", "table", "ip", "someone_else"]);
    assert_eq!(w.rt.block_on(net.reconcile()).unwrap(), Reconciled::Repaired);
    assert_eq!(w.rt.block_on(net.reconcile()).unwrap(), Reconciled::Unchanged);
}

/// A port without a device gets a tap on the bridge; opening it (as QEMU will get it) raises
/// its carrier, closing it drops the carrier again.
#[test]
fn a_tap_for_qemu() {
    let w = World::new("tp", &["acct-t"]);
    let net = &w.nets[0];
    let id = format!("INS-{}q", w.prefix);
    let port = openwinv_net::Port {
        tap: openwinv_net::tap_name(&id),
        mac: Mac::for_instance(&id),
        ip: ip("10.16.0.9"),
        public_ip: None,
    };
    w.rt.block_on(net.attach_port(port.clone(), CompiledRules::open())).unwrap();
    let show = || common::sh("ip", &["-n", net.netns(), "link", "show", "dev", &port.tap]);
    let before = show();
    assert!(before.contains("master br0") && before.contains("NO-CARRIER"), "a bridged tap, no reader yet: {before}");
    let fd = net.open_tap(&port.tap).expect("open the tap");
    let open = show();
    assert!(open.contains("LOWER_UP") && !open.contains("NO-CARRIER"), "carrier with a reader: {open}");
    drop(fd);
    assert!(show().contains("NO-CARRIER"), "no carrier once closed");
    assert!(net.open_tap("no-such-tap").is_err(), "a tap that does not exist cannot be opened");
}

/// A public address moves to another address, then goes: the host's route and the NAT follow,
/// and packets from upstream reach the machine only through the current one.
#[test]
fn public_address_moves_and_goes() {
    let mut w = World::new("pb", &["acct-p"]);
    w.add_vm("p1", 0, ip("10.16.0.2"), Some(ip("203.0.113.20")), None);
    let (tap, ns) = (w.vm("p1").port.tap.clone(), w.vm("p1").ns.clone());
    let locks = Locks::default();
    let from_up = |to: &str| {
        let p = Probe {
            src: w.upstream_ns.clone(),
            bind: None,
            dst: ip(to),
            listen: Some(ns.clone()),
            proto: Tcp,
            port: 22,
        };
        kernel_verdict(&p, &locks)
    };
    let host_routes = || common::sh("ip", &["-n", w.host.netns.as_deref().unwrap(), "route", "show"]);
    assert_eq!(from_up("203.0.113.20"), A, "the first public address reaches the machine");
    w.rt.block_on(w.nets[0].set_public_ip(&tap, Some(ip("203.0.113.21")))).unwrap();
    assert_eq!(from_up("203.0.113.21"), A, "the new public address reaches the machine");
    assert_eq!(from_up("203.0.113.20"), D, "the old public address no longer does");
    let routes = host_routes();
    assert!(routes.contains("203.0.113.21") && !routes.contains("203.0.113.20"), "host routes follow: {routes}");
    w.rt.block_on(w.nets[0].set_public_ip(&tap, None)).unwrap();
    assert_eq!(from_up("203.0.113.21"), D, "no public address, no way in");
    assert!(!host_routes().contains("203.0.113."), "no public route left");
    let model = w.rt.block_on(w.nets[0].model());
    let pkt = Packet {
        from: From::Uplink(UPSTREAM_IP),
        to: ip("203.0.113.21"),
        protocol: L4::Tcp,
        port: 22,
        state: CtState::New,
    };
    assert_eq!(evaluate(&model, &pkt).verdict, D, "evaluator agrees");
}

/// Every golden text is valid kernel input: each incremental transaction applies on top of the
/// two-machine network it was rendered against, in a namespace of its own.
#[test]
fn golden_texts_load_into_the_kernel() {
    common::require_environment();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/nft");
    let base = dir.join("network-two-machines.nft");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert!(names.len() >= 15, "golden files: {names:?}");
    let prefix = format!("owtest-{}-gl-", std::process::id());
    let cleanup = Cleanup(prefix.clone());
    for (i, file) in names.iter().enumerate() {
        let ns = format!("{prefix}{i}");
        common::sh("ip", &["netns", "add", &ns]);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("network-") && !name.starts_with("host-") {
            common::sh("ip", &["netns", "exec", &ns, "nft", "-f", base.to_str().unwrap()]);
        }
        let out =
            Command::new("ip").args(["netns", "exec", &ns, "nft", "-f", file.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{name} does not load: {}", String::from_utf8_lossy(&out.stderr));
        common::sh("ip", &["netns", "del", &ns]);
    }
    drop(cleanup);
}

/// Deletes the namespaces with this prefix, also when the test fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for e in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&self.0) {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
            }
        }
    }
}
