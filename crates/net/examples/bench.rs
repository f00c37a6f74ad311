//! Figures for `docs/perf.md` (`scripts/bench net`), on the driver's path (no API, no QEMU), in
//! namespaces of its own (root, iproute2, nftables, dnsmasq, conntrack):
//!
//! 1. Firewall change → enforced: a network with two machines (real taps on the bridge), then N
//!    changes to one machine's rules through `Network::apply_firewall` (one nft transaction,
//!    the conntrack cut); when it returns the kernel enforces the new rules. p50 / p99 / max.
//!    Then a reconcile pass that finds no drift.
//! 2. Scale: the ruleset of 1,000 machines × 100 rules, applied with `nft -f` in a bare
//!    namespace: a full rebuild (`render_network`), one machine's change (`render_rules`), and
//!    the reconcile pass's check (the namespace's nftables generation), beside what reading the
//!    tables back would cost (`nft -j list ruleset`).
//!
//!     cargo run --release -p openwinv-net --example bench [changes] [machines] [rules]

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openwinv_net::compiler::{CompiledRules, FirewallSpec, Rule, compile};
use openwinv_net::{Host, Mac, Machine, Network, NetworkModel, NetworkSpec, Port, Subnet, generation, nft, tap_name};

fn arg(n: usize, default: usize) -> usize {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn sh(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 0.5)
}

fn rule(id: i64, port: u16, cidr: &str) -> Rule {
    Rule::parse(id, "IN", "TCP", &port.to_string(), cidr).expect("a valid rule")
}

/// A firewall of `n` inbound rules, each a port and a /32 of its own (nothing merges).
fn firewall(id: &str, n: usize, salt: usize) -> FirewallSpec {
    let rules = (0..n)
        .map(|j| {
            let k = j + salt;
            rule(
                j as i64 + 1,
                1000 + (k % 60000) as u16,
                &format!("10.{}.{}.{}/32", 16 + k / 65536 % 16, k / 256 % 256, k % 256),
            )
        })
        .collect();
    FirewallSpec { firewall_id: id.into(), icmp: true, rules }
}

fn port(i: usize) -> Port {
    let id = format!("INSTANCE-BENCH{i:06}");
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 16, 0, 2)) + i as u32);
    Port { tap: tap_name(&id), mac: Mac::for_instance(&id), ip, public_ip: None }
}

struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (changes, machines, rules) = (arg(1, 200), arg(2, 1000), arg(3, 100));
    let tag = format!("owb{:x}", std::process::id());
    let host_ns = format!("{tag}-h");
    let scale_ns = format!("{tag}-s");
    let mut cleanup = Netns(vec![host_ns.clone(), scale_ns.clone()]);
    sh(&["ip", "netns", "add", &host_ns], None);
    let run_dir = std::env::temp_dir().join(&tag);
    let host = Host { netns: Some(host_ns.clone()), prefix: format!("{tag}-"), uplink: None, run_dir: run_dir.clone() };
    host.prepare().await.expect("host");

    // 1. Change → enforced, on a network with two machines.
    let subnet = Subnet::new(Ipv4Addr::new(10, 16, 0, 0), 16).unwrap();
    let spec = NetworkSpec {
        account: "bench".into(),
        zone: "KR1-Z01".into(),
        index: 1,
        subnet,
        gateway: Ipv4Addr::new(10, 16, 0, 1),
        tunnel: None,
    };
    let net = Network::ensure(&host, spec, Vec::new()).await.expect("network");
    cleanup.0.push(net.netns().to_owned());
    for i in 0..2 {
        net.attach_port(port(i), CompiledRules::open()).await.expect("port");
    }
    let tap = port(1).tap;
    let mut took = Vec::with_capacity(changes);
    for i in 0..changes {
        // Alternately 10 and 11 rules, the 11th a new port each time: every change rewrites.
        let fw = firewall("FW-bench", 10 + i % 2, i);
        let t = Instant::now();
        net.apply_firewall(&tap, compile(&[fw])).await.expect("apply");
        took.push(t.elapsed());
    }
    took.sort();
    println!(
        "change → enforced ({changes} changes, driver path, 2 machines): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&took, 0.5)),
        ms(percentile(&took, 0.99)),
        ms(*took.last().unwrap())
    );
    let t = Instant::now();
    let r = net.reconcile().await.expect("reconcile");
    println!("reconcile pass, no drift (2 machines): {:?} in {:.1} ms", r, ms(t.elapsed()));
    net.destroy().await.expect("destroy");
    let _ = std::fs::remove_dir_all(&run_dir);

    // 2. Scale: nft alone, in a bare namespace (no devices needed: the maps key on names).
    sh(&["ip", "netns", "add", &scale_ns], None);
    let mut model = NetworkModel::new(subnet, Ipv4Addr::new(10, 16, 0, 1));
    for i in 0..machines {
        let m = Machine { port: port(i), rules: compile(&[firewall(&format!("FW-{i:04}"), rules, i)]) };
        model.machines.insert(m.port.tap.clone(), m);
    }
    let full = nft::render_network(&model);
    let nft_in = |text: &str| sh(&["ip", "netns", "exec", &scale_ns, "nft", "-f", "-"], Some(text));
    let mut rebuilds = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        nft_in(&full);
        rebuilds.push(t.elapsed());
    }
    let one = model.machines.values().nth(machines / 2).unwrap().clone();
    let mut changed = one.clone();
    changed.rules = compile(&[firewall("FW-changed", rules, 7)]);
    let mut single = Vec::new();
    for k in 0..10 {
        let m = if k % 2 == 0 { &changed } else { &one };
        let t = Instant::now();
        nft_in(&nft::render_rules(m));
        single.push(t.elapsed());
    }
    let mut checks = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        generation(Some(&scale_ns)).expect("generation");
        checks.push(t.elapsed());
    }
    // What comparing the tables themselves would cost: reading them back (once: it is slow).
    let t = Instant::now();
    let size = sh(&["ip", "netns", "exec", &scale_ns, "nft", "-j", "list", "ruleset"], None).len();
    let listing = t.elapsed();
    println!(
        "{machines} machines × {rules} rules ({} KiB of nft text): full rebuild {:.0} ms, one machine's change \
         {:.1} ms (medians); reconcile check (generation) {:.2} ms; reading the tables back \
         (nft -j list ruleset, {} KiB) {:.0} ms",
        full.len() / 1024,
        ms(median(rebuilds)),
        ms(median(single)),
        ms(median(checks)),
        size / 1024,
        ms(listing),
    );
}
