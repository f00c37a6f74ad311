//! The QEMU driver on real networks (`serve --driver qemu --network namespaces`), through the real
//! binary: a machine's port on its (account, zone) network, firewall changes reaching the
//! kernel's ruleset, `admin network show`, the metrics, and the reconcile loop repairing a rule
//! deleted by hand. Everything lives in namespaces this test creates: the server plays the host
//! in one of its own (`OPENWINV_NETWORK_HOST_NETNS`), nothing touches the host's network.
//!
//! Needs root, iproute2, nftables, dnsmasq, conntrack, QEMU and the test image
//! (`OPENWINV_TEST_IMAGE`); without them it fails saying which is missing.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use openwinv_tests::{Body, Server};
use reqwest::Method;
use serde_json::{Value, json};

/// Where the server keeps dnsmasq's files (the default, `/run/openwinv/networks`); each
/// network's directory is named after its namespace, which carries this test's prefix.
const RUN_DIR: &str = "/run/openwinv/networks";

fn image_dir() -> PathBuf {
    match std::env::var_os("OPENWINV_TEST_IMAGE") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "OPENWINV_TEST_IMAGE is not set: build the test guest with `scripts/build-test-image target/test-image` \
             and run with OPENWINV_TEST_IMAGE=$PWD/target/test-image (scripts/test does both)"
        ),
    }
}

fn require_tools() {
    // SAFETY: getuid(2) has no preconditions.
    assert_eq!(unsafe { libc::getuid() }, 0, "real networks need root (namespaces, nftables, taps)");
    for (tool, arg, package) in [
        ("ip", "-V", "iproute2"),
        ("nft", "--version", "nftables"),
        ("dnsmasq", "--version", "dnsmasq-base"),
        ("conntrack", "--version", "conntrack"),
        ("qemu-system-x86_64", "--version", "qemu-system-x86"),
        ("qemu-img", "--version", "qemu-utils"),
    ] {
        let ok = Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success());
        assert!(ok, "{tool} is missing: apt-get install -y {package}");
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The namespaces of one test (the host's stand-in and every network's), removed when it ends,
/// with the QEMUs of its data directory.
struct Net {
    s: Server,
    host: String,
    prefix: String,
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Ok(vms) = std::fs::read_dir(self.s.data_path("vms")) {
            for vm in vms.flatten() {
                if let Ok(pid) = std::fs::read_to_string(vm.path().join("qemu.pid")) {
                    let pid: i32 = pid.trim().parse().unwrap_or(0);
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if pid > 0 && String::from_utf8_lossy(&cmdline).contains(&*vm.path().to_string_lossy()) {
                        // SAFETY: kill(2) on a QEMU of this test's data directory.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        // dnsmasq runs in the networks' namespaces; its pid files are under the data directory.
        if let Ok(dirs) = std::fs::read_dir(RUN_DIR) {
            for d in dirs.flatten().filter(|d| d.file_name().to_string_lossy().starts_with(&self.prefix)) {
                if let Ok(pid) = std::fs::read_to_string(d.path().join("dnsmasq.pid")) {
                    let pid: i32 = pid.trim().parse().unwrap_or(0);
                    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    if pid > 0 && comm.trim() == "dnsmasq" {
                        // SAFETY: kill(2) on the dnsmasq of this test's network.
                        unsafe { libc::kill(pid, libc::SIGTERM) };
                    }
                }
                let _ = std::fs::remove_dir_all(d.path());
            }
        }
        let list = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
        for line in String::from_utf8_lossy(&list).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(&self.prefix) || name == self.host {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
}

async fn start() -> Net {
    require_tools();
    let dir = image_dir();
    let tag = format!("{:x}", std::process::id());
    let host = format!("owtest-h{tag}");
    let prefix = format!("owt{tag}-");
    run("ip", &["netns", "add", &host]);
    run("ip", &["netns", "exec", &host, "ip", "link", "set", "lo", "up"]);
    let envs = [
        ("OPENWINV_NETWORK_HOST_NETNS", host.as_str()),
        ("OPENWINV_NETWORK_PREFIX", prefix.as_str()),
        ("OPENWINV_NETWORK_RECONCILE_SECS", "0.5"),
    ];
    let accel = std::env::var("OPENWINV_TEST_ACCEL").unwrap_or_else(|_| "tcg".into());
    let args = ["--driver", "qemu", "--accel", &accel, "--network", "namespaces", "--default-rate-limit", "0"];
    let s = Server::start_with(&args, &envs).await;
    let net = Net { s, host, prefix };
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).expect("cmdline");
    let path = |f: &str| dir.join(f).to_str().expect("UTF-8 path").to_owned();
    let (code, out, err) = net
        .s
        .cli(&[
            "admin",
            "images",
            "import",
            "IMG-ubuntu-2404",
            "--kernel",
            &path("vmlinuz"),
            "--initrd",
            &path("initrd.img"),
            "--cmdline",
            cmdline.trim(),
            "--root-disk",
            &path("root.raw"),
        ])
        .await;
    assert_eq!(code, 0, "admin images import: {out}{err}");
    net
}

async fn networks(s: &Server) -> Vec<Value> {
    let r = s.admin(Method::GET, "/admin/v1/networks", None).await;
    r.ok_rows().clone()
}

fn nft_ruleset(netns: &str) -> String {
    run("ip", &["netns", "exec", netns, "nft", "list", "ruleset"])
}

/// Polls `f` every 100 ms for at most `within`; the last value when it never held.
async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_machine_on_a_real_network_with_an_enforced_firewall() {
    let net = start().await;
    let s = &net.s;
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1",
        "name": "net1", "attach_public_ip": false});
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let inst = s.get(&format!("/v1/instances/{id}?fields=256")).await.ok_rows()[0].clone();
    let ip = inst["ip"][0]["private"]["address"].as_str().unwrap().to_owned();

    // The network exists, in its own namespace, with the machine's tap and address.
    let nets = networks(s).await;
    assert_eq!(nets.len(), 1, "{nets:?}");
    let netns = nets[0]["netns"].as_str().unwrap().to_owned();
    assert!(netns.starts_with(&net.prefix), "{netns}");
    let ports = nets[0]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "{nets:?}");
    assert_eq!(ports[0]["ip"].as_str(), Some(ip.as_str()));
    let tap = ports[0]["tap"].as_str().unwrap().to_owned();
    let links = run("ip", &["netns", "exec", &netns, "ip", "-o", "link", "show", "dev", &tap]);
    assert!(links.contains("master"), "the tap is on the bridge: {links}");
    // DHCP reservation: dnsmasq's hosts file maps the machine's MAC to its address.
    let hosts = std::fs::read_to_string(std::path::Path::new(RUN_DIR).join(&netns).join("hosts")).expect("hosts file");
    assert!(hosts.contains(&format!("{},{ip}", ports[0]["mac"].as_str().unwrap())), "{hosts}");
    // The guest asks DHCP for its address and gets the control plane's (TCG boot: bounded wait).
    let serial = s.data_path("vms").join(&id).join("serial.log");
    let want = format!("openwinv-guest: dhcp {ip}");
    let dhcp_line =
        |log: &str| log.lines().map(str::trim).find(|l| l.starts_with("openwinv-guest: dhcp ")).map(str::to_owned);
    let seen = eventually(Duration::from_secs(180), || {
        dhcp_line(&std::fs::read_to_string(&serial).unwrap_or_default()).is_some()
    })
    .await;
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    let leased = seen && dhcp_line(&log).as_deref() == Some(want.as_str());
    let dnsmasq =
        std::fs::read_to_string(std::path::Path::new(RUN_DIR).join(&netns).join("dnsmasq.log")).unwrap_or_default();
    assert!(
        leased,
        "no DHCP lease {ip} in the serial log:\n{log}\ndnsmasq:\n{dnsmasq}\nruleset:\n{}",
        nft_ruleset(&netns)
    );
    // The seed carries the same static address.
    let seed = std::fs::read(s.data_path("vms").join(&id).join("seed.iso")).expect("seed");
    assert!(seed.windows(ip.len() + 3).any(|w| w == format!("{ip}/16").as_bytes()), "network-config in the seed");

    // A firewall attach reaches the kernel: the machine's inbound chain allows TCP 2222.
    let r = s
        .call(
            Method::POST,
            "/v1/firewall",
            Some(Body::Json(json!({"title": "ssh-only", "content": "c", "icmp": "N",
                "rules": [{"bound": "IN", "protocol": "TCP", "port": "2222", "ip": "0.0.0.0/0", "title": "ssh"}]}))),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let fw = r.result()[0]["firewall_id"].as_str().unwrap().to_owned();
    s.wait_operation(r.header("x-operation-id").unwrap()).await;
    let r =
        s.call(Method::POST, &format!("/v1/firewall/{fw}/attach"), Some(Body::Json(json!({"instance_id": id})))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(s.wait_operation(r.header("x-operation-id").unwrap()).await["status"], "succeeded");
    assert!(nft_ruleset(&netns).contains("tcp dport 2222"), "{}", nft_ruleset(&netns));
    let port = networks(s).await[0]["ports"][0].clone();
    assert_eq!((port["firewalls"].clone(), port["inbound_rules"].as_u64()), (json!([fw]), Some(1)));

    // A rule change is one more apply: port 8080 opens.
    let r = s
        .call(
            Method::POST,
            &format!("/v1/security-groups/{fw}/rules"),
            Some(Body::Json(
                json!({"bound": "IN", "protocol": "TCP", "port": "8080", "ip": "10.16.0.0/16", "title": "web"}),
            )),
        )
        .await;
    s.wait_operation(r.header("x-operation-id").expect("a sync operation")).await;
    assert!(nft_ruleset(&netns).contains("tcp dport 8080"), "{}", nft_ruleset(&netns));
    let metrics = s.get("/metrics").await.text;
    assert!(metrics.contains("openwinv_firewall_rule_applies_total{outcome=\"ok\"}"), "{metrics}");

    // Drift: the machine's chains are deleted by hand; the reconcile loop puts them back.
    run("ip", &["netns", "exec", &netns, "nft", "delete", "table", "inet", "openwinv"]);
    assert!(!nft_ruleset(&netns).contains("tcp dport 2222"));
    let repaired = eventually(Duration::from_secs(20), || nft_ruleset(&netns).contains("tcp dport 2222")).await;
    assert!(repaired, "the reconcile loop did not restore the rules:\n{}", nft_ruleset(&netns));

    // Deleting the machine unplugs it: no port, no reservation.
    let r = s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(networks(s).await[0]["ports"], json!([]));
    let links = Command::new("ip").args(["netns", "exec", &netns, "ip", "link", "show", "dev", &tap]).output().unwrap();
    assert!(!links.status.success(), "the tap is gone");
}
