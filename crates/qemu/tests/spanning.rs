//! The QEMU driver's networks on a host of several: a machine whose network names a VNI gets a
//! network that spans hosts (a vxlan port from the host's underlay address), and the peers the
//! control plane names reach the kernel, also when they were named before the network existed.
//! Runs inside namespaces of its own (root, iproute2, nftables, dnsmasq, conntrack); fails
//! saying why without them. Packets across hosts are `openwinv-net`'s `across_hosts` test.

use std::net::Ipv4Addr;
use std::process::Command;

use openwinv_driver::MachineNetwork;
use openwinv_net::Host;
use openwinv_qemu::Networks;

fn sh(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2) runs");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes the test's namespaces, also when it fails.
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

fn net(account: &str, ip: &str, vni: Option<u32>) -> MachineNetwork {
    MachineNetwork {
        account_id: account.into(),
        zone_id: "KR1-Z01".into(),
        ip: ip.parse().unwrap(),
        prefix: 16,
        gateway: Ipv4Addr::new(10, 16, 0, 1),
        public_ip: None,
        vni,
    }
}

#[tokio::test]
async fn a_network_with_a_vni_spans_hosts_and_learns_its_peers() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root (network namespaces)");
    openwinv_net::check_tools().unwrap_or_else(|e| panic!("this test cannot run: {e}"));
    let prefix = format!("owtest-{}-qsp-", std::process::id());
    let _cleanup = Cleanup(prefix.clone());
    let host_ns = format!("{prefix}host");
    sh(&["netns", "add", &host_ns]);
    sh(&["-n", &host_ns, "link", "add", "ul0", "type", "veth", "peer", "name", "ul1"]);
    sh(&["-n", &host_ns, "addr", "add", "192.0.2.1/24", "dev", "ul0"]);
    sh(&["-n", &host_ns, "link", "set", "ul0", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let host = Host { netns: Some(host_ns), prefix: prefix.clone(), uplink: None, run_dir: dir.path().join("run") };
    let nets = Networks::new(host, dir.path().join("networks.json")).with_underlay(Ipv4Addr::new(192, 0, 2, 1));
    let peer = |n: u8| Ipv4Addr::new(192, 0, 2, n);

    // Peers named before the network exists are applied when it is ensured.
    nets.set_peers("acct-a", "KR1-Z01", &[peer(2), peer(3)]).await.unwrap();
    let a = nets.network(&net("acct-a", "10.16.0.2", Some(4097)), Vec::new).await.expect("ensure");
    let vx = sh(&["-d", "-n", a.netns(), "link", "show", "dev", "vx0"]);
    assert!(vx.contains("vxlan id 4097 local 192.0.2.1"), "{vx}");
    assert_eq!(a.live_peers().await.unwrap(), vec![peer(2), peer(3)]);
    // Named again while it lives: the kernel converges to the new list.
    nets.set_peers("acct-a", "KR1-Z01", &[peer(3), peer(4)]).await.unwrap();
    assert_eq!(a.live_peers().await.unwrap(), vec![peer(3), peer(4)]);
    assert_eq!(a.model().await.tunnel.unwrap().peers.into_iter().collect::<Vec<_>>(), vec![peer(3), peer(4)]);

    // Without a VNI the network stays on this host, and peers are only remembered.
    let b = nets.network(&net("acct-b", "10.16.0.2", None), Vec::new).await.expect("ensure");
    assert!(b.spec().tunnel.is_none());
    let link = Command::new("ip").args(["-n", b.netns(), "link", "show", "dev", "vx0"]).output().unwrap();
    assert!(!link.status.success(), "no vxlan port without a VNI");
    nets.set_peers("acct-b", "KR1-Z01", &[peer(2)]).await.expect("nothing to apply");
    drop(nets);
    for n in [a, b] {
        let n = std::sync::Arc::into_inner(n).expect("the only handle left after the map");
        let _ = n.destroy().await;
    }
}
