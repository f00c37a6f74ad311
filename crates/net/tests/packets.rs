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

/// A cross-host case: from machine `src` to `dst` (an address), where machine `listen` (maybe on
/// another account's network) listens.
#[derive(Debug, Clone, Copy)]
struct Across {
    name: &'static str,
    src: &'static str,
    dst: &'static str,
    listen: &'static str,
    proto: Proto,
    port: u16,
    expect: Verdict,
}

const fn across(
    name: &'static str,
    src: &'static str,
    dst: &'static str,
    listen: &'static str,
    proto: Proto,
    port: u16,
    expect: Verdict,
) -> Across {
    Across { name, src, dst, listen, proto, port, expect }
}

/// Runs cross-host cases in parallel: the kernels' verdict, the evaluator's over every host's
/// copy of every network ([`openwinv_net::evaluate_hosts`]) and the expected one agree.
fn run_across(c: &common::Cluster, phase: &str, cases: &[Across]) {
    let models: Vec<_> = c.nets.iter().map(|n| c.rt.block_on(n.model())).collect();
    let refs: Vec<&openwinv_net::NetworkModel> = models.iter().collect();
    let locks = Locks::default();
    let results: Vec<(Across, Verdict, Verdict)> = thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|k| {
                let (from, to) = (c.vm(k.src), c.vm(k.listen));
                let p = Probe {
                    src: from.ns.clone(),
                    bind: None,
                    dst: ip(k.dst),
                    listen: Some(to.ns.clone()),
                    proto: k.proto,
                    port: k.port,
                };
                let pkt = Packet {
                    from: From::Tap { tap: from.port.tap.clone(), mac: from.port.mac, ip: from.port.ip },
                    to: ip(k.dst),
                    protocol: l4(k.proto),
                    port: k.port,
                    state: CtState::New,
                };
                let eval = openwinv_net::evaluate_hosts(&refs, &pkt).verdict;
                let locks = locks.clone();
                s.spawn(move || (*k, kernel_verdict(&p, &locks), eval))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wrong: Vec<String> = results
        .iter()
        .filter(|(k, kv, e)| *kv != k.expect || *e != k.expect)
        .map(|(k, kv, e)| format!("  {}: expected {:?}, kernel {kv:?}, evaluator {e:?}", k.name, k.expect))
        .collect();
    assert!(wrong.is_empty(), "{phase}: {} of {} cases disagree:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

// Host 0: a1 (10.16.0.2), a3 (10.16.0.4) of account a; b1 (10.16.0.5) of account b.
// Host 1: a2 (10.16.0.3) of account a; b2 (10.16.0.2, a1's address) of account b.
const ACROSS_OPEN: &[Across] = &[
    across("across: tcp", "a1", "10.16.0.3", "a2", Tcp, 8080, A),
    across("across: udp", "a1", "10.16.0.3", "a2", Udp, 9000, A),
    across("across: ping", "a1", "10.16.0.3", "a2", Icmp, 0, A),
    across("across: tcp back", "a2", "10.16.0.2", "a1", Tcp, 22, A),
    across("across: to the other machine of host 0", "a2", "10.16.0.4", "a3", Tcp, 8080, A),
    across("same host still works", "a1", "10.16.0.4", "a3", Tcp, 8081, A),
    across("other account across: its own machine, not a1", "b1", "10.16.0.2", "b2", Tcp, 8082, A),
    across("other account across: ping", "b2", "10.16.0.5", "b1", Icmp, 0, A),
    across("other account: a2's address across hosts", "b1", "10.16.0.3", "a2", Tcp, 8083, D),
    across("other account: a2's address, same host", "b2", "10.16.0.3", "a2", Udp, 9003, D),
    across("a2 to b1's address across hosts", "a2", "10.16.0.5", "b1", Udp, 9004, D),
];

fn fw_ssh_private() -> FirewallSpec {
    FirewallSpec { firewall_id: "FW-x".into(), icmp: false, rules: vec![rule(1, "IN", "TCP", "22", "10.16.0.0/16")] }
}

fn fw_ssh_and_8080_from_a1() -> FirewallSpec {
    let mut fw = fw_ssh_private();
    fw.rules.push(rule(2, "IN", "TCP", "8080", "10.16.0.2/32"));
    fw
}

const ACROSS_FIREWALL: &[Across] = &[
    across("destination's firewall: port closed", "a1", "10.16.0.3", "a2", Tcp, 8080, D),
    across("destination's firewall: icmp N", "a1", "10.16.0.3", "a2", Icmp, 0, D),
    across("destination's firewall: udp closed", "a1", "10.16.0.3", "a2", Udp, 9000, D),
    across("destination's firewall: IN 22 from the subnet", "a1", "10.16.0.3", "a2", Tcp, 22, A),
    across("destination's firewall: its outbound stays open", "a2", "10.16.0.2", "a1", Tcp, 8080, A),
    across("destination's firewall: the other account unaffected", "b1", "10.16.0.2", "b2", Tcp, 8080, A),
];

const ACROSS_RULE: &[Across] = &[
    across("rule opens the port across hosts", "a1", "10.16.0.3", "a2", Tcp, 8080, A),
    across("rule's /32: another machine of host 0", "a3", "10.16.0.3", "a2", Tcp, 8080, D),
    across("rule's /32: still no ping", "a1", "10.16.0.3", "a2", Icmp, 0, D),
];

const ACROSS_OUT: &[Across] = &[
    across("sender's OUT rules on its own host", "a1", "10.16.0.3", "a2", Tcp, 8080, D),
    across("sender's OUT rule allows 22", "a1", "10.16.0.3", "a2", Tcp, 22, A),
];

const PEER_REMOVED: &[Across] = &[
    across("host 1 is no peer of host 0: tcp", "a1", "10.16.0.3", "a2", Tcp, 22, D),
    across("host 1 is no peer of host 0: ping", "a3", "10.16.0.3", "a2", Icmp, 0, D),
    across("host 1 is no peer of host 0: no way back", "a2", "10.16.0.2", "a1", Tcp, 8080, D),
    across("host 0's own machines still meet", "a1", "10.16.0.4", "a3", Tcp, 8080, A),
    across("the other account keeps its peers", "b1", "10.16.0.2", "b2", Tcp, 8080, A),
];

/// One account's network on two hosts over VXLAN, and a second account's on the same two hosts
/// with the same subnet (another VNI): machines reach each other across hosts by private
/// address and never the other account's; the firewall of the receiving machine is enforced by
/// its own host; a removed rule cuts its connection across hosts; removing a peer cuts the
/// path and putting it back restores it; full-size frames fit the tunnel; DHCP and the gateway
/// stay on each host.
#[test]
fn across_hosts() {
    let mut c = common::Cluster::new("xh", 2);
    let (a0, a1n) = (c.add_network(0, "acct-a", 4097), c.add_network(1, "acct-a", 4097));
    let (b0, b1n) = (c.add_network(0, "acct-b", 4098), c.add_network(1, "acct-b", 4098));
    c.add_vm("a1", a0, ip("10.16.0.2"));
    c.add_vm("a3", a0, ip("10.16.0.4"));
    c.add_vm("a2", a1n, ip("10.16.0.3"));
    c.add_vm("b1", b0, ip("10.16.0.5"));
    c.add_vm("b2", b1n, ip("10.16.0.2"));
    for (net, other) in [(a0, 1), (a1n, 0), (b0, 1), (b1n, 0)] {
        c.set_peers(net, &[other]);
    }
    let peers = |net: usize| c.rt.block_on(c.nets[net].live_peers()).unwrap();
    assert_eq!(peers(a0), vec![common::underlay_ip(1)], "one flood entry for host 1");
    // Converges: the same list again, or with this host's own address, changes nothing.
    c.rt.block_on(c.nets[a0].set_peers(&[common::underlay_ip(1), common::underlay_ip(0)])).unwrap();
    assert_eq!(peers(a0), vec![common::underlay_ip(1)], "the host's own address is no peer");
    let bad = c.rt.block_on(c.nets[a0].set_peers(&[ip("224.0.0.1")])).unwrap_err().to_string();
    assert!(bad.starts_with("peer 224.0.0.1"), "{bad}");

    // Ensuring a network again (a restarted agent) keeps its vxlan port and finds its peers.
    let model = c.rt.block_on(c.nets[a0].model());
    let spec = c.nets[a0].spec().clone();
    let again = c
        .rt
        .block_on(openwinv_net::Network::ensure(&c.hosts[0], spec.clone(), model.machines.values().cloned().collect()))
        .expect("ensure again");
    assert_eq!(c.rt.block_on(again.model()), model, "same machines, same tunnel, same peers");
    let vx = common::sh("ip", &["-d", "-n", again.netns(), "link", "show", "dev", "vx0"]);
    for want in ["mtu 1450", "master br0", "vxlan id 4097 local 192.0.2.1", "dstport 4789", "nolearning"] {
        assert!(vx.contains(want), "vx0 has {want}: {vx}");
    }
    let br = common::sh("ip", &["-n", again.netns(), "link", "show", "dev", "br0"]);
    assert!(br.contains("mtu 1450"), "the bridge fits the tunnel: {br}");
    // A tunnel from an address the host does not have, or with a VNI out of range, is refused.
    let refused = |tunnel: openwinv_net::Tunnel| {
        let spec =
            openwinv_net::NetworkSpec { tunnel: Some(tunnel), account: "acct-z".into(), index: 9, ..spec.clone() };
        c.rt.block_on(openwinv_net::Network::ensure(&c.hosts[0], spec, Vec::new())).unwrap_err().to_string()
    };
    let e = refused(openwinv_net::Tunnel { vni: 7, local: ip("192.0.2.9") });
    assert!(e.starts_with("underlay address 192.0.2.9 is not an address of this host"), "{e}");
    let e = refused(openwinv_net::Tunnel { vni: 1 << 24, local: common::underlay_ip(0) });
    assert!(e.starts_with("vni 16777216"), "{e}");

    run_across(&c, "across hosts, no firewall", ACROSS_OPEN);

    // A full-size frame of the guests' MTU crosses: 256 KiB over TCP.
    let (a2_ns, a1_ns) = (c.vm("a2").ns.clone(), c.vm("a1").ns.clone());
    let l = common::in_ns(&a2_ns, || std::net::TcpListener::bind(("0.0.0.0", 7000)).unwrap());
    let sender = thread::spawn(move || {
        use std::io::Write;
        let to = std::net::SocketAddr::from((ip("10.16.0.3"), 7000));
        let mut s = common::in_ns(&a1_ns, move || TcpStream::connect_timeout(&to, common::WAIT)).expect("connect");
        s.write_all(&vec![7u8; 256 * 1024]).expect("send 256 KiB");
    });
    let mut server = common::accept_within(&l, common::WAIT).expect("accept");
    server.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut server, &mut got).expect("read 256 KiB");
    sender.join().unwrap();
    assert_eq!(got.len(), 256 * 1024, "full-size segments fit the tunnel");
    drop((l, server));

    // The receiving machine's host enforces its firewall.
    let a2_tap = c.vm("a2").port.tap.clone();
    c.rt.block_on(c.nets[a1n].apply_firewall(&a2_tap, compile(&[fw_ssh_private()]))).unwrap();
    run_across(&c, "the destination's firewall", ACROSS_FIREWALL);
    c.rt.block_on(c.nets[a1n].apply_firewall(&a2_tap, compile(&[fw_ssh_and_8080_from_a1()]))).unwrap();
    run_across(&c, "a rule opens a port across hosts", ACROSS_RULE);

    // A connection across hosts through that rule; removing the rule cuts it on a2's host.
    let l = common::in_ns(&a2_ns, || std::net::TcpListener::bind(("0.0.0.0", 8080)).unwrap());
    let to = std::net::SocketAddr::from((ip("10.16.0.3"), 8080));
    let mut conn =
        common::in_ns(&c.vm("a1").ns, move || TcpStream::connect_timeout(&to, common::WAIT)).expect("connect");
    let mut server = common::accept_within(&l, common::WAIT).expect("accept");
    assert_eq!(crosses(&mut conn, &mut server), A, "the connection works before the change");
    let cut = c.rt.block_on(c.nets[a1n].apply_firewall(&a2_tap, compile(&[fw_ssh_private()]))).unwrap().cut;
    assert!(
        cut.iter().any(|e| e.src == ip("10.16.0.2") && e.dport == 8080),
        "a2's host cut the connection from a1 on the other host: {cut:?}"
    );
    assert_eq!(crosses(&mut conn, &mut server), D, "the cut connection carries nothing");
    for s in [&conn, &server] {
        common::abort(s);
    }
    drop((l, conn, server));

    // The sender's OUT rules are enforced by the sender's host.
    c.rt.block_on(c.nets[a1n].apply_firewall(&a2_tap, compile(&[fw_ssh_and_8080_from_a1()]))).unwrap();
    let a1_tap = c.vm("a1").port.tap.clone();
    let out22 = FirewallSpec {
        firewall_id: "FW-out".into(),
        icmp: false,
        rules: vec![rule(1, "OUT", "TCP", "22", "10.16.0.0/16")],
    };
    c.rt.block_on(c.nets[a0].apply_firewall(&a1_tap, compile(&[out22]))).unwrap();
    run_across(&c, "the sender's OUT rules", ACROSS_OUT);
    c.rt.block_on(c.nets[a0].apply_firewall(&a1_tap, CompiledRules::open())).unwrap();
    c.rt.block_on(c.nets[a1n].apply_firewall(&a2_tap, CompiledRules::open())).unwrap();

    // Host 0 forgets host 1 for account a: the path is cut both ways; back, it works again.
    c.set_peers(a0, &[]);
    assert_eq!(peers(a0), Vec::<Ipv4Addr>::new(), "no flood entry left");
    run_across(&c, "a peer removed", PEER_REMOVED);
    c.set_peers(a0, &[1]);
    run_across(&c, "the peer back", &ACROSS_OPEN[..4]);

    // Drift on the tunnel: a flood entry deleted by hand, then the vxlan port itself; the next
    // reconcile pass puts each back, and one more finds nothing to do.
    use openwinv_net::Reconciled::{Repaired, Unchanged};
    let reconcile = || c.rt.block_on(c.nets[a0].reconcile()).unwrap();
    assert_eq!(reconcile(), Unchanged, "nothing drifted yet");
    let a0_netns = c.nets[a0].netns().to_string();
    common::sh("bridge", &["-n", &a0_netns, "fdb", "del", "00:00:00:00:00:00", "dev", "vx0", "dst", "192.0.2.2"]);
    assert_eq!(peers(a0), Vec::<Ipv4Addr>::new());
    assert_eq!(reconcile(), Repaired, "a flood entry deleted by hand");
    assert_eq!(peers(a0), vec![common::underlay_ip(1)]);
    assert_eq!(reconcile(), Unchanged);
    common::sh("ip", &["-n", &a0_netns, "link", "del", "vx0"]);
    assert_eq!(reconcile(), Repaired, "the vxlan port deleted by hand");
    assert_eq!(reconcile(), Unchanged);
    run_across(&c, "the tunnel repaired", &ACROSS_OPEN[..4]);

    // DHCP on a network that spans hosts: the machine's own host answers, with the MTU that
    // fits the tunnel.
    c.add_dhcp_vm("d", a1n, ip("10.16.0.42"));
    let d_ns = c.vm("d").ns.clone();
    let script = c.run_dir().join("udhcpc.sh");
    std::fs::write(&script, "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip $mtu $router\" > \"$0.lease\"\nexit 0\n")
        .unwrap();
    common::sh("chmod", &["+x", script.to_str().unwrap()]);
    let out = Command::new("ip")
        .args(["netns", "exec", &d_ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "1"])
        .args(["-O", "mtu", "-s", script.to_str().unwrap()])
        .output()
        .unwrap();
    let lease = std::fs::read_to_string(format!("{}.lease", script.display())).unwrap_or_default();
    assert_eq!(
        lease.trim(),
        "10.16.0.42 1450 10.16.0.1",
        "udhcpc: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Each host's gateway answers its own machines only: with host 0's gateway address gone,
    // a1 cannot reach host 1's (same address) through the tunnel.
    let a0_ns = c.nets[a0].netns().to_string();
    let ping_gw = || {
        Command::new("ip")
            .args(["netns", "exec", &c.vm("a1").ns, "busybox", "ping", "-c", "1", "-W", "1", "10.16.0.1"])
            .status()
            .unwrap()
            .success()
    };
    assert!(ping_gw(), "a1 reaches its host's gateway");
    common::sh("ip", &["-n", &a0_ns, "addr", "del", "10.16.0.1/16", "dev", "br0"]);
    common::sh("ip", &["-n", &c.vm("a1").ns, "neigh", "flush", "dev", "eth0"]);
    assert!(!ping_gw(), "host 1's gateway does not answer a1 across the tunnel");
}

/// Bytes host `host`'s underlay interface has received (bytes, not packets: segmentation
/// offload carries many segments in one).
fn underlay_rx(c: &common::Cluster, host: usize) -> u64 {
    let ns = c.hosts[host].netns.as_deref().unwrap();
    let n = common::sh("ip", &["netns", "exec", ns, "cat", "/sys/class/net/ul0/statistics/rx_bytes"]);
    n.trim().parse().unwrap()
}

/// Sends 256 KiB over TCP from machine `from` to `to_ip`, where machine `to` listens.
fn transfer(c: &common::Cluster, from: &str, to: &str, to_ip: &str, port: u16) {
    let (src, dst) = (c.vm(from).ns.clone(), c.vm(to).ns.clone());
    let l = common::in_ns(&dst, move || std::net::TcpListener::bind(("0.0.0.0", port)).unwrap());
    let addr = std::net::SocketAddr::from((ip(to_ip), port));
    let sender = thread::spawn(move || {
        use std::io::Write;
        let mut s = common::in_ns(&src, move || TcpStream::connect_timeout(&addr, common::WAIT)).expect("connect");
        s.write_all(&vec![1u8; 256 * 1024]).expect("send");
    });
    let mut server = common::accept_within(&l, common::WAIT).expect("accept");
    server.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut server, &mut got).expect("read");
    sender.join().unwrap();
    assert_eq!(got.len(), 256 * 1024);
}

/// With flood entries alone, every peer host gets a copy of unicast across hosts; once the
/// network knows which host each remote machine is on (per-MAC entries), only the receiver's
/// host does. The entries converge, and reconcile puts back one deleted by hand.
#[test]
fn unicast_across_hosts_goes_to_the_receivers_host() {
    let mut c = common::Cluster::new("uc", 3);
    let nets: Vec<usize> = (0..3).map(|h| c.add_network(h, "acct-u", 5000)).collect();
    for (h, (name, addr)) in [("u0", "10.16.0.2"), ("u1", "10.16.0.3"), ("u2", "10.16.0.4")].into_iter().enumerate() {
        c.add_vm(name, nets[h], ip(addr));
    }
    for (h, net) in nets.iter().enumerate() {
        let others: Vec<usize> = (0..3).filter(|o| *o != h).collect();
        c.set_peers(*net, &others);
    }
    // Flooding: host 2 sees as much of u0 → u1 as host 1 does.
    let (h1, h2) = (underlay_rx(&c, 1), underlay_rx(&c, 2));
    transfer(&c, "u0", "u1", "10.16.0.3", 7001);
    let (d1, d2) = (underlay_rx(&c, 1) - h1, underlay_rx(&c, 2) - h2);
    assert!(d1 > 256 * 1024 && d2 >= d1 / 2, "flood entries only: host 1 got {d1} bytes, host 2 {d2}");

    // Per-MAC entries: host 2 gets (almost) nothing of it.
    let remotes = [(c.vm("u1").port.mac, common::underlay_ip(1)), (c.vm("u2").port.mac, common::underlay_ip(2))];
    c.rt.block_on(c.nets[nets[0]].set_remotes(&remotes)).unwrap();
    let live = c.rt.block_on(c.nets[nets[0]].live_remotes()).unwrap();
    assert_eq!(live, remotes.iter().copied().collect(), "one entry per remote machine");
    let (h1, h2) = (underlay_rx(&c, 1), underlay_rx(&c, 2));
    transfer(&c, "u0", "u1", "10.16.0.3", 7002);
    let (d1, d2) = (underlay_rx(&c, 1) - h1, underlay_rx(&c, 2) - h2);
    assert!(d1 > 256 * 1024 && d2 * 10 < d1, "per-MAC entries: host 1 got {d1} bytes, host 2 {d2}");
    // u2 is still reached (through its own entry).
    transfer(&c, "u0", "u2", "10.16.0.4", 7003);

    // Converges: u2's entry moved to host 1 (say, after a migration), u1's gone.
    let moved = [(c.vm("u2").port.mac, common::underlay_ip(1))];
    c.rt.block_on(c.nets[nets[0]].set_remotes(&moved)).unwrap();
    assert_eq!(c.rt.block_on(c.nets[nets[0]].live_remotes()).unwrap(), moved.iter().copied().collect());
    c.rt.block_on(c.nets[nets[0]].set_remotes(&remotes)).unwrap();
    // Drift: an entry deleted by hand comes back with the next reconcile pass.
    use openwinv_net::Reconciled::{Repaired, Unchanged};
    let ns = c.nets[nets[0]].netns().to_string();
    let mac = c.vm("u1").port.mac.to_string();
    common::sh("bridge", &["-n", &ns, "fdb", "del", &mac, "dev", "vx0", "dst", "192.0.2.2", "self"]);
    assert_eq!(c.rt.block_on(c.nets[nets[0]].reconcile()).unwrap(), Repaired);
    assert_eq!(c.rt.block_on(c.nets[nets[0]].live_remotes()).unwrap(), remotes.iter().copied().collect());
    assert_eq!(c.rt.block_on(c.nets[nets[0]].reconcile()).unwrap(), Unchanged);
}
