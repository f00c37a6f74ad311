//! The QEMU driver on real networks (`serve --driver qemu --network namespaces --uplink up0`),
//! through the real binary and real TCG guests: packets between the test guests, typed on their
//! serial consoles (busybox `ping` and `nc`), and from an "upstream" namespace playing the
//! Internet. Everything lives in namespaces this test creates: the server plays the host in one
//! of its own (`OPENWINV_NETWORK_HOST_NETNS`), upstream is another, joined to it by a veth pair
//! (`up0` ↔ `eth0`, 198.51.100.1 ↔ .2); nothing touches the host's own network.
//!
//! One test function boots three guests once and runs every case on them (TCG is slow and CI has
//! two cores): two machines of one account, one of another account with the same private
//! address, a firewall that blocks a port and a rule that opens it, egress through NAT, a public
//! address reached from upstream only where a rule allows, the reconcile loop leaving an
//! unchanged ruleset alone and repairing a rule deleted by hand.
//!
//! Needs root, iproute2, nftables, dnsmasq, conntrack, QEMU and the test image
//! (`OPENWINV_TEST_IMAGE`); without them it fails saying which is missing.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use openwinv_tests::guest::{BOOT, Console, accel, import_test_image, kill_qemus, serial_log, tcp_from, tcp_server_in};
use openwinv_tests::hosts::{
    call, operation_succeeded, remove_namespaces, remove_networks, require_network_tools, run,
};
use openwinv_tests::{Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};

/// Where the server keeps dnsmasq's files (the default, `/run/openwinv/networks`); each
/// network's directory is named after its namespace, which carries this test's prefix.
const RUN_DIR: &str = "/run/openwinv/networks";
/// The upstream's address and the host's on the uplink.
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const HOST_UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// KR1-Z01's public pool in the default catalog: upstream routes it to the host.
const POOL: &str = "198.18.0.0/16";
/// How long a connection the firewall drops is given before it counts as refused.
const DROPPED: Duration = Duration::from_secs(3);

/// The namespaces of one test (the host's stand-in, upstream and every network's), removed when
/// it ends, with the QEMUs of its data directory and the networks' dnsmasqs.
struct Net {
    s: Server,
    host: String,
    up: String,
    prefix: String,
}

impl Drop for Net {
    fn drop(&mut self) {
        kill_qemus(&self.s);
        remove_networks(RUN_DIR, &self.prefix);
        remove_namespaces(|name| name.starts_with(&self.prefix) || name == self.host || name == self.up);
    }
}

async fn start() -> Net {
    require_network_tools(&[]);
    let tag = format!("{:x}", std::process::id());
    let (host, up, prefix) = (format!("owtest-h{tag}"), format!("owtest-u{tag}"), format!("owt{tag}-"));
    for ns in [&host, &up] {
        run("ip", &["netns", "add", ns]);
        run("ip", &["-n", ns, "link", "set", "lo", "up"]);
    }
    // The uplink: up0 in the host, eth0 upstream; upstream routes the public pool to the host.
    run("ip", &["-n", &host, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", &up]);
    run("ip", &["-n", &host, "addr", "add", &format!("{HOST_UPLINK}/24"), "dev", "up0"]);
    run("ip", &["-n", &host, "link", "set", "up0", "up"]);
    run("ip", &["-n", &up, "addr", "add", &format!("{UPSTREAM}/24"), "dev", "eth0"]);
    run("ip", &["-n", &up, "link", "set", "eth0", "up"]);
    run("ip", &["-n", &up, "route", "add", POOL, "via", &HOST_UPLINK.to_string()]);
    let envs = [
        ("OPENWINV_NETWORK_HOST_NETNS", host.as_str()),
        ("OPENWINV_NETWORK_PREFIX", prefix.as_str()),
        ("OPENWINV_NETWORK_RECONCILE_SECS", "0.5"),
    ];
    let accel = accel();
    let args = [
        "--driver",
        "qemu",
        "--accel",
        &accel,
        "--network",
        "namespaces",
        "--uplink",
        "up0",
        "--default-rate-limit",
        "0",
    ];
    let mut s = Server::start_with(&args, &envs).await;
    s.set_wait_timeout(BOOT);
    let net = Net { s, host, up, prefix };
    import_test_image(&net.s, &["IMG-ubuntu-2404"]).await;
    net
}

/// Waits for the operation an answer names (202, or 200 for the synchronous rule changes), as the
/// account that started it.
async fn done(s: &Server, who: Option<&(String, String)>, r: Resp) -> Value {
    assert!(r.status == 202 || r.status == 200, "{}", r.text);
    operation_succeeded(s, who, &r, BOOT).await
}

async fn metric(s: &Server, name: &str) -> f64 {
    let text = s.get("/metrics").await.text;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The lines of chain `name` in a listing of `nft list table`.
fn chain_lines<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    let head = format!("chain {name} {{");
    table.lines().skip_while(|l| !l.trim().starts_with(&head)).take_while(|l| l.trim() != "}").collect()
}

fn nft_table(netns: &str) -> String {
    run("ip", &["netns", "exec", netns, "nft", "-a", "list", "table", "inet", "openwinv"])
}

/// One booted test guest, with a shell on its console.
struct Guest {
    name: &'static str,
    id: String,
    ip: Ipv4Addr,
    public_ip: Option<Ipv4Addr>,
    console: Console,
}

impl Guest {
    /// Can this guest open a TCP connection to `ip`:`port`? The listener's greeting, if so.
    async fn tcp(&mut self, ip: Ipv4Addr, port: u16) -> Option<String> {
        let secs = DROPPED.as_secs();
        let r = self.console.sh(&format!("nc -w {secs} {ip} {port} </dev/null")).await;
        (r.status == 0).then(|| r.output.trim().to_owned())
    }

    async fn ping(&mut self, ip: Ipv4Addr) -> bool {
        let secs = DROPPED.as_secs();
        self.console.sh(&format!("ping -c 1 -W {secs} {ip} >/dev/null")).await.status == 0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_on_real_networks() {
    let net = start().await;
    let s = &net.s;
    let started = Instant::now();
    let b = s.new_account("netb", json!({"rate_limit": 0})).await;

    // Three machines: a1 (with a public address) and a2 of the bootstrap account, b1 of another.
    let mut pending = Vec::new();
    for (name, who, public) in [("a1", None, true), ("a2", None, false), ("b1", Some(&b), false)] {
        let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1",
            "name": name, "attach_public_ip": public});
        let t = Instant::now();
        let r = call(s, who, Method::POST, "/v1/instances", Some(body)).await;
        let id = r.result()[0]["instance_id"].as_str().expect("instance_id").to_owned();
        done(s, who, r).await;
        pending.push((name, who, id, t, 0));
    }
    // The allocator draws each account's private addresses at random in its /16. For a certain
    // collision, b1 is moved to a1's address, as if it had drawn it (its rows in the store); a
    // rebuild hands the driver b1's spec afresh, which replugs its port with that address, and
    // the rebuilt guest's DHCP client gets it.
    let private_of = async |who, id: &str| -> Ipv4Addr {
        let row = call(s, who, Method::GET, &format!("/v1/instances/{id}?fields=256"), None).await.ok_rows()[0].clone();
        row["ip"][0]["private"]["address"].as_str().expect("private address").parse().unwrap()
    };
    let a1_ip = private_of(None, &pending[0].2).await;
    let b1 = &mut pending[2];
    // b1's first boot first, so that its log is read from the rebuild on.
    let b1_log = s.data_path("vms").join(&b1.2).join("serial.log");
    serial_log(b1_log.clone()).wait("openwinv-guest: ready").await;
    let db = s.db().await;
    for sql in [
        format!(
            "UPDATE instances SET private_ip = '{a1_ip}', private_ip_num = {} WHERE instance_id = '{}'",
            u32::from(a1_ip),
            b1.2
        ),
        format!("UPDATE ip_addresses SET address = '{a1_ip}' WHERE instance_id = '{}' AND kind = 'private'", b1.2),
    ] {
        let res = sqlx::query(&sql).execute(&db).await.expect("moving b1's address");
        assert_eq!(res.rows_affected(), 1, "{sql}");
    }
    b1.4 = std::fs::metadata(&b1_log).map_or(0, |m| m.len() as usize);
    b1.3 = Instant::now();
    let body = json!({"image_id": "IMG-ubuntu-2404"});
    let r = call(s, b1.1, Method::POST, &format!("/v1/instances/{}/rebuild", b1.2), Some(body)).await;
    done(s, b1.1, r).await;
    let mut guests = Vec::new();
    for (name, who, id, t, skip) in pending {
        let row = call(s, who, Method::GET, &format!("/v1/instances/{id}?fields=256"), None).await.ok_rows()[0].clone();
        let ip: Ipv4Addr = row["ip"][0]["private"]["address"].as_str().expect("private address").parse().unwrap();
        let public_ip = row["ip"][0]["public"]["address"].as_str().and_then(|p| p.parse().ok());
        let vm = s.data_path("vms").join(&id);
        let mut log = serial_log(vm.join("serial.log"));
        log.seen = skip;
        log.wait("openwinv-guest: boot").await;
        let first_line = t.elapsed();
        // The guest's own DHCP client gets the control plane's address.
        assert_eq!(log.value("dhcp").await, ip.to_string(), "{name}: the DHCP lease is the control plane's address");
        eprintln!(
            "{name}: {} → first serial line {:.1} s, → DHCP lease {:.1} s",
            if skip == 0 { "create" } else { "rebuild" },
            first_line.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        let mut console = Console::open(name, &vm, log).await;
        // A listener that says who answers.
        console.ok(&format!("(nc -ll -p 8080 -e echo who-{name} </dev/null >/dev/null 2>&1 &)")).await;
        guests.push(Guest { name, id, ip, public_ip, console });
    }
    eprintln!("three guests ready, listening: {:.1} s", started.elapsed().as_secs_f64());
    let [mut a1, mut a2, mut b1]: [Guest; 3] = guests.try_into().ok().expect("three guests");
    assert!(a1.public_ip.is_some() && a2.public_ip.is_none() && b1.public_ip.is_none());

    // The networks: one per account, each in its own namespace, taps on the bridge, reservations.
    let nets = s.admin(Method::GET, "/admin/v1/networks", None).await.ok_rows().clone();
    assert_eq!(nets.len(), 2, "{nets:?}");
    let by_ports = |n: usize| nets.iter().find(|x| x["ports"].as_array().map(Vec::len) == Some(n)).expect("network");
    let (net_a, net_b) = (by_ports(2).clone(), by_ports(1).clone());
    let ns_a = net_a["netns"].as_str().unwrap().to_owned();
    let ns_b = net_b["netns"].as_str().unwrap().to_owned();
    assert!(ns_a.starts_with(&net.prefix) && ns_b.starts_with(&net.prefix), "{ns_a} {ns_b}");
    for port in net_a["ports"].as_array().unwrap().iter().chain(net_b["ports"].as_array().unwrap()) {
        let ns = if net_b["ports"][0] == *port { &ns_b } else { &ns_a };
        let tap = port["tap"].as_str().unwrap();
        assert!(run("ip", &["-n", ns, "-o", "link", "show", "dev", tap]).contains("master br0"), "{tap}");
        let hosts = std::fs::read_to_string(std::path::Path::new(RUN_DIR).join(ns).join("hosts")).expect("hosts");
        let (mac, ip) = (port["mac"].as_str().unwrap(), port["ip"].as_str().unwrap());
        assert!(hosts.contains(&format!("{mac},{ip}")), "{hosts}");
    }
    // The seed carries the same address as a static network-config.
    let seed = std::fs::read(s.data_path("vms").join(&a1.id).join("seed.iso")).expect("seed");
    let cidr = format!("{}/16", a1.ip);
    assert!(seed.windows(cidr.len()).any(|w| w == cidr.as_bytes()), "network-config in the seed");

    // One account: a1 and a2 reach each other by private address, ICMP and TCP.
    assert!(a1.ping(a2.ip).await, "a1 pings a2");
    assert!(a2.ping(a1.ip).await, "a2 pings a1");
    assert_eq!(a1.tcp(a2.ip, 8080).await.as_deref(), Some("who-a2"));
    assert_eq!(a2.tcp(a1.ip, 8080).await.as_deref(), Some("who-a1"));

    // Another account has the same private address as one of them, and reaches neither.
    let (same_name, same_ip) = if b1.ip == a1.ip { (a1.name, a1.ip) } else { (a2.name, a2.ip) };
    assert_eq!(b1.ip, same_ip, "both accounts' first machines get the same private address");
    let other = if b1.ip == a1.ip { &mut a2 } else { &mut a1 };
    let other_ip = other.ip;
    let want = format!("who-{same_name}");
    assert_eq!(other.tcp(b1.ip, 8080).await, Some(want), "{}: the address is its sibling's, not b1's", other.name);
    assert!(!b1.ping(other_ip).await, "b1 does not reach account a's other machine");
    assert_eq!(b1.tcp(other_ip, 8080).await, None, "b1 does not reach account a's other machine");

    // Egress through NAT: upstream sees a1's public address, and the host's uplink address for
    // machines without one (masqueraded twice: in the network, then on the host).
    let seen = tcp_server_in(&net.up, SocketAddr::from((UPSTREAM, 9000)), "upstream\n");
    let a1_public = a1.public_ip.expect("a1's public address");
    for (g, from) in [(&mut a1, a1_public), (&mut a2, HOST_UPLINK), (&mut b1, HOST_UPLINK)] {
        assert!(g.ping(UPSTREAM).await, "{} pings upstream", g.name);
        assert_eq!(g.tcp(UPSTREAM, 9000).await.as_deref(), Some("upstream"), "{} reaches upstream", g.name);
        let peer = seen.recv_timeout(DROPPED).expect("upstream saw the connection");
        assert_eq!(peer.ip(), from, "{}'s egress is NATed", g.name);
    }

    // The public address from upstream: no firewall, everything passes.
    let public = SocketAddr::from((a1_public, 8080));
    assert_eq!(tcp_from(&net.up, public, DROPPED).await.unwrap_or_default(), "who-a1\n");

    // A firewall with SSH only, attached to a1 and a2: 8080 and ICMP are blocked, from the
    // sibling and from upstream; outbound stays open (replies pass).
    let rules = json!([{"bound": "IN", "protocol": "TCP", "port": "22", "ip": "0.0.0.0/0", "title": "ssh"}]);
    let r = call(
        s,
        None,
        Method::POST,
        "/v1/firewall",
        Some(json!({"title": "ssh-only", "content": "c", "icmp": "N", "rules": rules})),
    )
    .await;
    let fw = r.result()[0]["firewall_id"].as_str().expect("firewall_id").to_owned();
    done(s, None, r).await;
    for g in [&a1, &a2] {
        let r =
            call(s, None, Method::POST, &format!("/v1/firewall/{fw}/attach"), Some(json!({"instance_id": g.id}))).await;
        done(s, None, r).await;
    }
    assert_eq!(a1.tcp(a2.ip, 8080).await, None, "the firewall blocks 8080");
    assert!(!a1.ping(a2.ip).await, "icmp: N blocks ping");
    assert!(tcp_from(&net.up, public, DROPPED).await.is_err(), "the firewall blocks 8080 from upstream");
    assert_eq!(a1.tcp(UPSTREAM, 9000).await.as_deref(), Some("upstream"), "outbound is open");
    seen.recv_timeout(DROPPED).expect("upstream saw a1");

    // A rule opens 8080 to the private network: a1 reaches a2; upstream still does not reach a1.
    let add_rule = async |cidr: &str| {
        let t = Instant::now();
        let rule = json!({"bound": "IN", "protocol": "TCP", "port": "8080", "ip": cidr, "title": "web"});
        let r = call(s, None, Method::POST, &format!("/v1/security-groups/{fw}/rules"), Some(rule)).await;
        done(s, None, r).await;
        eprintln!("rule {cidr}: accepted → applied (operation done) {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    };
    add_rule("10.16.0.0/16").await;
    assert_eq!(a1.tcp(a2.ip, 8080).await.as_deref(), Some("who-a2"), "the rule opens 8080");
    assert!(tcp_from(&net.up, public, DROPPED).await.is_err(), "the rule is for 10.16.0.0/16 only");
    assert_eq!(b1.tcp(same_ip, 8080).await.as_deref(), Some("who-b1"), "b1 is untouched: its own address");
    // A second rule opens it to upstream.
    add_rule("198.51.100.0/24").await;
    assert_eq!(tcp_from(&net.up, public, DROPPED).await.unwrap_or_default(), "who-a1\n");

    let ports = s.admin(Method::GET, "/admin/v1/networks", None).await.ok_rows().clone();
    let port_a = ports.iter().find(|n| n["netns"] == ns_a.as_str()).unwrap()["ports"][0].clone();
    assert_eq!((port_a["firewalls"].clone(), port_a["inbound_rules"].as_u64()), (json!([fw]), Some(3)), "{port_a}");
    assert!(metric(s, "openwinv_firewall_rule_applies_total{outcome=\"ok\"}").await >= 6.0);

    // Reconcile: an unchanged ruleset is compared, not rewritten (same rule handles, no repair).
    let before = nft_table(&ns_a);
    let passes = metric(s, "openwinv_network_reconciles_total").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut compared = false;
    while !compared && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        compared = metric(s, "openwinv_network_reconciles_total").await >= passes + 6.0;
    }
    assert!(compared, "three reconcile passes over two networks");
    assert_eq!(metric(s, "openwinv_network_drift_repairs_total").await, 0.0, "our own changes are not drift");
    assert_eq!(nft_table(&ns_a), before, "an unchanged table is not rewritten");

    // A rule deleted by hand (a2's 8080 from the private network) is drift: repaired.
    let a2_tap =
        net_a["ports"].as_array().unwrap().iter().find(|p| p["ip"] == a2.ip.to_string().as_str()).unwrap()["tap"]
            .as_str()
            .unwrap()
            .to_owned();
    let chain = format!("in-{a2_tap}");
    let web_rule = |table: &str| {
        chain_lines(table, &chain)
            .into_iter()
            .find(|l| l.contains("tcp dport 8080") && l.contains("10.16.0.0/16"))
            .map(|l| l.rsplit("# handle ").next().unwrap().trim().to_owned())
    };
    let handle = web_rule(&before).unwrap_or_else(|| panic!("no 8080 rule in {chain}:\n{before}"));
    run("ip", &["netns", "exec", &ns_a, "nft", "delete", "rule", "inet", "openwinv", &chain, "handle", &handle]);
    assert_eq!(web_rule(&nft_table(&ns_a)), None, "deleted by hand");
    let deadline = Instant::now() + Duration::from_secs(20);
    while (web_rule(&nft_table(&ns_a)).is_none() || metric(s, "openwinv_network_drift_repairs_total").await < 1.0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        web_rule(&nft_table(&ns_a)).is_some(),
        "the reconcile loop did not restore the rule:\n{}",
        nft_table(&ns_a)
    );
    assert_eq!(metric(s, "openwinv_network_drift_repairs_total").await, 1.0, "one repair counted");
    assert_eq!(a1.tcp(a2.ip, 8080).await.as_deref(), Some("who-a2"), "the repaired rule is enforced");

    // Deleting a machine unplugs it: no port, no device.
    let b1_tap = net_b["ports"][0]["tap"].as_str().unwrap().to_owned();
    let r = call(s, Some(&b), Method::DELETE, &format!("/v1/instances/{}", b1.id), None).await;
    done(s, Some(&b), r).await;
    let nets = s.admin(Method::GET, "/admin/v1/networks", None).await.ok_rows().clone();
    assert_eq!(nets.iter().find(|n| n["netns"] == ns_b.as_str()).unwrap()["ports"], json!([]));
    let link = Command::new("ip").args(["-n", &ns_b, "link", "show", "dev", &b1_tap]).output().unwrap();
    assert!(!link.status.success(), "the tap is gone");
    eprintln!("guests_on_real_networks: {:.1} s", started.elapsed().as_secs_f64());
}
