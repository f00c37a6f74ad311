//! An account's private network across two QEMU hosts (issue 18, VXLAN): a control plane in
//! hosts mode and two `openwinv agent --driver qemu --network namespaces --underlay …`, each
//! playing its host in a network namespace this test creates (`OPENWINV_NETWORK_HOST_NETNS`),
//! the two host namespaces joined by an underlay bridge in a third (192.0.2.1 and .2 on
//! `ul0`). Nothing of the networks touches the machine's own network; the agents reach the
//! control plane on 127.0.0.1 as in `hosts_qemu.rs`.
//!
//! Two guests of one account, one per host, ping each other and talk TCP (`nc`) through the
//! tunnel: the control plane gave their network one VNI and told each host the other
//! (`set_peers` work items). A guest of another account on the same hosts reaches neither.
//! Deleting one of the two guests takes its host out of the other host's peers.
//!
//! Needs root, iproute2, nftables, dnsmasq, conntrack, QEMU and the test image
//! (`OPENWINV_TEST_IMAGE`); without them it fails saying which is missing. `.config/nextest.toml`
//! runs it with the other QEMU tests, one at a time; `scripts/test` only in its SQLite pass.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use openwinv_tests::guest::{BOOT, Console, accel, import_test_image, kill_qemus_in, serial_log};
use openwinv_tests::hosts::{
    ZONE, add_host, call, hosts_mode, operation_succeeded, remove_namespaces, remove_networks, require_network_tools,
    run, spawn_agent,
};
use openwinv_tests::{Resp, Server, binary};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::Child;

/// Where the agents keep dnsmasq's files (the default); each network's directory is named after
/// its namespace, which carries its agent's prefix.
const RUN_DIR: &str = "/run/openwinv/networks";
/// How long a connection that cannot be made is given.
const DROPPED: Duration = Duration::from_secs(3);

fn underlay(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 1 + i as u8)
}

/// One `openwinv agent --driver qemu --network namespaces`, its host played by namespace `host`.
struct Agent {
    name: String,
    prefix: String,
    dir: tempfile::TempDir,
    _child: Child,
}

impl Agent {
    async fn start(s: &Server, name: &str, host: &str, prefix: &str, underlay: Ipv4Addr) -> Agent {
        let token = add_host(s, name).await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let underlay = underlay.to_string();
        let mut cmd = tokio::process::Command::new(binary());
        cmd.args(["agent", "--control-plane", &s.endpoint, "--host-token", &token, "--zone", ZONE])
            .args(["--vcpus", "8", "--memory-mb", "8192", "--disk-gb", "400", "--driver", "qemu"])
            .args(["--accel", &accel(), "--network", "namespaces", "--underlay", &underlay, "--data-dir"])
            .arg(dir.path().join("data"))
            .env("OPENWINV_NETWORK_HOST_NETNS", host)
            .env("OPENWINV_NETWORK_PREFIX", prefix)
            .env("RUST_LOG", "info");
        let (child, _) = spawn_agent(cmd, name, &log, BOOT).await;
        Agent { name: name.into(), prefix: prefix.into(), dir, _child: child }
    }

    fn vm(&self, id: &str) -> PathBuf {
        self.dir.path().join("data").join("vms").join(id)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// The namespace of this host's copy of the network with `vni` (its `vx0` says).
    fn netns_of(&self, vni: i64) -> String {
        let list = run("ip", &["netns", "list"]);
        let want = format!("vxlan id {vni} ");
        list.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&self.prefix))
            .find(|n| {
                let out = Command::new("ip").args(["-d", "-n", n, "link", "show", "dev", "vx0"]).output();
                out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&want))
            })
            .unwrap_or_else(|| panic!("host {}: no network with VNI {vni} in {list}\n{}", self.name, self.log()))
            .to_owned()
    }

    /// The hosts this host floods the network's frames to (`bridge fdb` all-zero entries).
    fn peers(&self, vni: i64) -> Vec<String> {
        let fdb = run("bridge", &["-n", &self.netns_of(vni), "fdb", "show", "dev", "vx0"]);
        let mut out: Vec<String> = fdb
            .lines()
            .filter(|l| l.starts_with("00:00:00:00:00:00"))
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "dst").nth(1).map(str::to_owned))
            .collect();
        out.sort();
        out
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // QEMU runs detached from the agent by design: kill this agent's.
        kill_qemus_in(&self.dir.path().join("data").join("vms"));
        remove_networks(RUN_DIR, &self.prefix);
    }
}

/// The test's namespaces (the underlay bridge and the two hosts), and every network namespace
/// of its agents, removed when it ends.
struct Namespaces(String);

impl Drop for Namespaces {
    fn drop(&mut self) {
        remove_namespaces(|name| name.starts_with(&self.0));
    }
}

/// The underlay: a bridge in `<tag>ul`, and host namespaces `<tag>h0`, `<tag>h1` with `ul0` on
/// it (192.0.2.1/24, 192.0.2.2/24).
fn underlay_net(tag: &str) -> Vec<String> {
    let ul = format!("{tag}ul");
    run("ip", &["netns", "add", &ul]);
    run("ip", &["-n", &ul, "link", "add", "ulbr", "type", "bridge"]);
    run("ip", &["-n", &ul, "link", "set", "ulbr", "up"]);
    let mut hosts = Vec::new();
    for i in 0..2 {
        let host = format!("{tag}h{i}");
        run("ip", &["netns", "add", &host]);
        run("ip", &["-n", &host, "link", "set", "lo", "up"]);
        let port = format!("p{i}");
        run("ip", &["-n", &ul, "link", "add", &port, "type", "veth", "peer", "name", "ul0", "netns", &host]);
        run("ip", &["-n", &ul, "link", "set", &port, "master", "ulbr", "up"]);
        run("ip", &["-n", &host, "addr", "add", &format!("{}/24", underlay(i)), "dev", "ul0"]);
        run("ip", &["-n", &host, "link", "set", "ul0", "up"]);
        hosts.push(host);
    }
    hosts
}

/// Waits for the operation an answer names, as the account that started it; it must succeed.
async fn done(s: &Server, who: Option<&(String, String)>, r: Resp) -> Value {
    assert_eq!(r.status, 202, "{}", r.text);
    operation_succeeded(s, who, &r, BOOT).await
}

struct Guest {
    name: &'static str,
    id: String,
    ip: Ipv4Addr,
    host: usize,
    console: Console,
}

impl Guest {
    async fn ping(&mut self, ip: Ipv4Addr) -> bool {
        let secs = DROPPED.as_secs();
        self.console.sh(&format!("ping -c 1 -W {secs} {ip} >/dev/null")).await.status == 0
    }

    async fn tcp(&mut self, ip: Ipv4Addr, port: u16) -> Option<String> {
        let secs = DROPPED.as_secs();
        let r = self.console.sh(&format!("nc -w {secs} {ip} {port} </dev/null")).await;
        (r.status == 0).then(|| r.output.trim().to_owned())
    }
}

/// The VNI of the network of an instance's account and zone (the control plane's row).
async fn vni_of(s: &Server, instance_id: &str) -> i64 {
    let db = s.db().await;
    let (vni,): (i64,) = sqlx::query_as(
        "SELECT n.vni FROM networks n JOIN instances i ON i.account_id = n.account_id AND i.zone_id = n.zone_id \
         WHERE i.instance_id = $1",
    )
    .bind(instance_id)
    .fetch_one(&db)
    .await
    .expect("the network's VNI");
    vni
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_of_one_account_on_two_hosts_share_their_network() {
    require_network_tools(&[("bridge", "-V", "iproute2")]);
    let tag = format!("owtest-{:x}-hn", std::process::id());
    let _namespaces = Namespaces(tag.clone());
    let hosts = underlay_net(&tag);
    let mut s = hosts_mode(&["--default-rate-limit", "0"]).await;
    s.set_wait_timeout(BOOT);
    import_test_image(&s, &["IMG-ubuntu-2404"]).await;
    let mut agents = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let prefix = format!("{tag}{i}-");
        agents.push(Agent::start(&s, &format!("hn{i}"), host, &prefix, underlay(i)).await);
    }
    // The host carries the underlay its agent registered, beside the address it reaches the
    // control plane from.
    let shown = s.cli_run(&["admin", "hosts", "show", "hn1", "-o", "json"]).await.ok().row();
    assert_eq!(
        (shown["address"].as_str(), shown["underlay"].as_str()),
        (Some("127.0.0.1"), Some("192.0.2.2")),
        "{shown}"
    );
    s.cli_run(&["admin", "hosts", "show", "hn1"]).await.ok().stdout_has("UNDERLAY").stdout_has("192.0.2.2");

    let b = s.new_account("netb", json!({"rate_limit": 0})).await;
    // a1 and a2 of the bootstrap account (equal hosts: one each), b1 of another account.
    let mut pending = Vec::new();
    for (name, who) in [("a1", None), ("a2", None), ("b1", Some(&b))] {
        let body = json!({"zone_id": ZONE, "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1",
            "name": name, "attach_public_ip": false});
        let r = call(&s, who, Method::POST, "/v1/instances", Some(body)).await;
        let id = r.result()[0]["instance_id"].as_str().expect("instance_id").to_owned();
        done(&s, who, r).await;
        let placed = s.admin(Method::GET, &format!("/admin/v1/placements/{id}"), None).await.ok_rows()[0].clone();
        let host = agents.iter().position(|a| placed["host"] == a.name.as_str()).expect("placed on an agent");
        pending.push((name, who, id, host));
    }
    assert_ne!(pending[0].3, pending[1].3, "a1 and a2 are on different hosts");
    let mut guests = Vec::new();
    for (name, who, id, host) in pending {
        let row =
            call(&s, who, Method::GET, &format!("/v1/instances/{id}?fields=256"), None).await.ok_rows()[0].clone();
        let ip: Ipv4Addr = row["ip"][0]["private"]["address"].as_str().expect("private address").parse().unwrap();
        let vm = agents[host].vm(&id);
        let mut log = serial_log(vm.join("serial.log"));
        log.wait("openwinv-guest: boot").await;
        assert_eq!(
            log.value("dhcp").await,
            ip.to_string(),
            "{name}: its host's DHCP gives the control plane's address"
        );
        let mut console = Console::open(name, &vm, log).await;
        console.ok(&format!("(nc -ll -p 8080 -e echo who-{name} </dev/null >/dev/null 2>&1 &)")).await;
        guests.push(Guest { name, id, ip, host, console });
    }
    let [mut a1, mut a2, mut b1]: [Guest; 3] = guests.try_into().ok().expect("three guests");

    // One VNI for account a's network, the same vxlan port on both hosts, each flooding to the other.
    let (vni_a, vni_b) = (vni_of(&s, &a1.id).await, vni_of(&s, &b1.id).await);
    assert_ne!(vni_a, vni_b, "two accounts, two segments");
    for (i, agent) in agents.iter().enumerate() {
        let other = underlay(1 - i).to_string();
        assert_eq!(agent.peers(vni_a), vec![other], "host {i} floods account a's frames to the other host");
    }
    let on_b = &agents[b1.host];
    assert_eq!(on_b.peers(vni_b), Vec::<String>::new(), "account b has one machine: no peer");

    // Across hosts: ICMP and TCP both ways.
    assert!(a1.ping(a2.ip).await, "a1 pings a2 on the other host");
    assert!(a2.ping(a1.ip).await, "a2 pings a1 on the other host");
    assert_eq!(a1.tcp(a2.ip, 8080).await.as_deref(), Some("who-a2"));
    assert_eq!(a2.tcp(a1.ip, 8080).await.as_deref(), Some("who-a1"));
    // Another account on the same hosts reaches neither.
    for ip in [a1.ip, a2.ip] {
        assert!(!b1.ping(ip).await, "b1 reaches no machine of account a ({ip})");
        assert_eq!(b1.tcp(ip, 8080).await, None, "b1 reaches no machine of account a ({ip})");
    }
    eprintln!("{} ({}) ↔ {} ({}) across hosts; {} isolated", a1.name, a1.ip, a2.name, a2.ip, b1.name);

    // a2 deleted: its host leaves the network's peers on a1's host.
    let r = call(&s, None, Method::DELETE, &format!("/v1/instances/{}", a2.id), None).await;
    done(&s, None, r).await;
    assert_eq!(agents[a1.host].peers(vni_a), Vec::<String>::new(), "a2's host is no peer of a1's any more");
    assert!(!a1.ping(a2.ip).await, "a2 is gone");
}
