//! Networks in namespaces: the thin layer that runs `ip`, `nft`, `dnsmasq` and `conntrack`.
//!
//! One (account, zone) network is a Linux network namespace holding a bridge with the gateway
//! address, dnsmasq serving DHCP (fixed MAC → address reservations written by us) and DNS on it,
//! the nftables tables of [`crate::nft`], and a veth transit link to the host. Machines' taps are
//! ports of the bridge. Every call is idempotent, every name derived ([`crate::names`]), and the
//! host is itself a parameter ([`Host::netns`]), so that tests run all of it inside a namespace
//! of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::Mutex;

use crate::compiler::CompiledRules;
use crate::conntrack::{self, Entry};
use crate::eval::{Decision, Packet, evaluate};
use crate::model::{Machine, NetworkModel, Port, Subnet, TunnelModel};
use crate::names::Mac;
use crate::names::{
    BRIDGE, IFNAME_MAX, MAX_VNI, NetworkNames, TRANSIT, TRANSIT_BASE, TUNNEL_MTU, VXLAN, VXLAN_PORT, transit_addrs,
};
use crate::nft;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A program this crate runs is not installed.
    #[error("{program} is missing: install the Debian package {package}")]
    Missing { program: &'static str, package: &'static str },
    /// A command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },
    /// A request this network cannot satisfy (named field and why).
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

type Result<T> = std::result::Result<T, NetError>;

/// The programs the networks need, with their Debian packages.
pub const TOOLS: [(&str, &str); 5] = [
    ("ip", "iproute2"),
    ("bridge", "iproute2"),
    ("nft", "nftables"),
    ("dnsmasq", "dnsmasq-base"),
    ("conntrack", "conntrack"),
];

fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Fails, naming the package, when a program the networks run is missing.
pub fn check_tools() -> Result<()> {
    for (program, package) in TOOLS {
        if find_program(program).is_none() {
            return Err(NetError::Missing { program, package });
        }
    }
    Ok(())
}

async fn run(program: &str, args: &[String], stdin: Option<&str>) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| NetError::Io { context: format!("starting `{command}`"), source: e })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| NetError::Io { context: format!("writing to `{command}`"), source: e })?;
    }
    let out = child.wait_with_output().await.map_err(|e| NetError::Io { context: command.clone(), source: e })?;
    if !out.status.success() {
        return Err(NetError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `ip` in namespace `ns` (`None`: this process's own).
async fn ip_in(ns: Option<&str>, args: &[&str]) -> Result<String> {
    let mut a = match ns {
        Some(ns) => strings(&["-n", ns]),
        None => Vec::new(),
    };
    a.extend(strings(args));
    run("ip", &a, None).await
}

/// Another program in namespace `ns`.
async fn exec_in(ns: Option<&str>, program: &str, args: &[String], stdin: Option<&str>) -> Result<String> {
    match ns {
        Some(ns) => {
            let mut a = strings(&["netns", "exec", ns, program]);
            a.extend(args.iter().cloned());
            run("ip", &a, stdin).await
        }
        None => run(program, args, stdin).await,
    }
}

/// `bridge` (iproute2) in namespace `ns`.
async fn bridge_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut a = strings(&["-n", ns]);
    a.extend(strings(args));
    run("bridge", &a, None).await
}

async fn nft_apply(ns: Option<&str>, text: &str) -> Result<()> {
    exec_in(ns, "nft", &strings(&["-f", "-"]), Some(text)).await.map(|_| ())
}

async fn link_exists(ns: Option<&str>, dev: &str) -> bool {
    ip_in(ns, &["link", "show", "dev", dev]).await.is_ok()
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let context = context.into();
    move |source| NetError::Io { context, source }
}

/// The namespace that plays the host, and the host-wide settings.
#[derive(Debug, Clone)]
pub struct Host {
    /// `None`: this process's own namespace (production). Tests name a namespace they created.
    pub netns: Option<String>,
    /// Prefix of the networks' namespace names (`owv-` in production; unique per test run).
    pub prefix: String,
    /// The host's interface toward the outside: networks' egress from their transit addresses
    /// is masqueraded out of it. `None`: out of any interface but the transit links.
    pub uplink: Option<String>,
    /// dnsmasq's files, one directory per network.
    pub run_dir: PathBuf,
}

impl Host {
    /// Checks the tools, turns on forwarding and writes the host's `ip openwinv` table.
    pub async fn prepare(&self) -> Result<()> {
        check_tools()?;
        let ns = self.netns.as_deref();
        set_sysctls(ns, &[("net/ipv4/ip_forward", "1")])?;
        let transit = format!("{TRANSIT_BASE}/10");
        nft_apply(ns, &nft::render_host(self.uplink.as_deref(), &transit)).await
    }

    /// Removes the host's table (the networks are destroyed one by one).
    pub async fn teardown(&self) -> Result<()> {
        let text = format!("add table ip {t}\ndelete table ip {t}\n", t = nft::TABLE);
        nft_apply(self.netns.as_deref(), &text).await
    }
}

/// What the control plane says a network is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub account: String,
    pub zone: String,
    /// A number unique among the host's networks, 1 ≤ index < 2^20: picks the transit /30.
    pub index: u32,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// `Some` when the network may span hosts (agents): its vxlan port. `None`: one host only.
    pub tunnel: Option<Tunnel>,
}

/// How a network spans hosts: a VXLAN segment between the hosts' copies of its bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// The network's VXLAN network identifier (1 ≤ vni < 2^24), the same on every host and
    /// unique per (account, zone) network cloud-wide: the control plane's number for the network.
    pub vni: u32,
    /// This host's underlay address (its own, in the host's namespace): the tunnel's packets
    /// leave from it, and peers send to it.
    pub local: Ipv4Addr,
}

/// What a firewall change did besides rewriting the chains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Tracked connections the new rules no longer allow, deleted.
    pub cut: Vec<Entry>,
}

/// One (account, zone) network, live. Changes are serialised by an internal lock.
#[derive(Debug)]
pub struct Network {
    host: Host,
    spec: NetworkSpec,
    names: NetworkNames,
    /// (host end, namespace end) of the transit link.
    transit: (Ipv4Addr, Ipv4Addr),
    dir: PathBuf,
    model: Mutex<NetworkModel>,
    /// The namespace's nftables generation right after our last transaction: the kernel bumps it
    /// on every committed transaction, so while it is unchanged nobody else has written a rule.
    /// `None`: not known (another transaction ran between ours, or ours failed), so the next
    /// reconcile pass rewrites.
    applied: std::sync::Mutex<Option<u32>>,
}

/// What [`Network::reconcile`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// The live tables equal the last ones applied: nothing written.
    Unchanged,
    /// They differed (or were unknown): the whole ruleset was rewritten.
    Repaired,
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && ![BRIDGE, TRANSIT, VXLAN, "lo"].contains(&name)
}

impl Network {
    /// Creates what is missing (namespace, bridge, transit link, routes, dnsmasq) and writes the
    /// whole ruleset for `machines` in one transaction. Calling it again converges; after a
    /// restart the caller passes every machine it knows, so no port is ever briefly open.
    pub async fn ensure(host: &Host, spec: NetworkSpec, machines: Vec<Machine>) -> Result<Network> {
        let transit = transit_addrs(spec.index)
            .ok_or_else(|| NetError::Invalid(format!("index {} is outside 1..2^20", spec.index)))?;
        if !spec.subnet.contains(spec.gateway) || spec.subnet.prefix > 30 {
            return Err(NetError::Invalid(format!("gateway {} is not a host of {}", spec.gateway, spec.subnet)));
        }
        if let Some(t) = spec.tunnel {
            if t.vni == 0 || t.vni > MAX_VNI {
                return Err(NetError::Invalid(format!("vni {} is outside 1..2^24", t.vni)));
            }
            if !valid_underlay(t.local) {
                return Err(NetError::Invalid(format!("underlay address {} is not a unicast address", t.local)));
            }
        }
        let names = NetworkNames::new(&host.prefix, &spec.account, &spec.zone);
        let dir = host.run_dir.join(&names.netns);
        let mut model = NetworkModel::new(spec.subnet, spec.gateway);
        model.tunnel = spec.tunnel.map(|t| TunnelModel {
            vni: t.vni,
            local: t.local,
            peers: BTreeSet::new(),
            remotes: BTreeMap::new(),
        });
        for m in machines {
            check_port(&model, &m.port)?;
            model.machines.insert(m.port.tap.clone(), m);
        }
        let net = Network {
            host: host.clone(),
            spec,
            names,
            transit,
            dir,
            model: Mutex::new(model),
            applied: std::sync::Mutex::new(None),
        };
        net.create().await?;
        Ok(net)
    }

    async fn create(&self) -> Result<()> {
        check_tools()?;
        let n = Some(self.netns());
        let h = self.host.netns.as_deref();
        if let Some(t) = self.spec.tunnel {
            // The kernel would send from an address the host does not have without a word.
            let local = format!("{}/32", t.local);
            if ip_in(h, &["-o", "addr", "show", "to", &local]).await?.trim().is_empty() {
                return Err(NetError::Invalid(format!(
                    "underlay address {} is not an address of this host (ip addr)",
                    t.local
                )));
            }
        }
        if !Path::new("/run/netns").join(self.netns()).exists() {
            ip_in(None, &["netns", "add", self.netns()]).await?;
        }
        ip_in(n, &["link", "set", "lo", "up"]).await?;
        set_sysctls(
            n,
            &[
                ("net/ipv4/ip_forward", "1"),
                ("net/bridge/bridge-nf-call-iptables", "1"),
                ("net/bridge/bridge-nf-call-ip6tables", "0"),
                ("net/bridge/bridge-nf-call-arptables", "0"),
            ],
        )
        .map_err(|e| match e {
            NetError::Io { context, source } if context.contains("bridge") => NetError::Invalid(format!(
                "the kernel's br_netfilter is not loaded (modprobe br_netfilter): {context}: {source}"
            )),
            e => e,
        })?;
        // The ruleset before any port exists, so that no port is ever unfiltered.
        self.rebuild().await?;
        if !link_exists(n, BRIDGE).await {
            ip_in(n, &["link", "add", BRIDGE, "type", "bridge"]).await?;
        }
        let gw = format!("{}/{}", self.spec.gateway, self.spec.subnet.prefix);
        ip_in(n, &["addr", "replace", &gw, "dev", BRIDGE]).await?;
        if let Some(t) = self.spec.tunnel {
            ip_in(n, &["link", "set", BRIDGE, "mtu", &TUNNEL_MTU.to_string()]).await?;
            self.create_vxlan(t).await?;
        }
        ip_in(n, &["link", "set", BRIDGE, "up"]).await?;
        let hv = self.names.host_veth.as_str();
        if !link_exists(n, TRANSIT).await {
            if link_exists(h, hv).await {
                ip_in(h, &["link", "del", hv]).await?;
            }
            ip_in(h, &["link", "add", hv, "type", "veth", "peer", "name", TRANSIT, "netns", self.netns()]).await?;
        }
        let (host_addr, ns_addr) = self.transit;
        ip_in(h, &["addr", "replace", &format!("{host_addr}/30"), "dev", hv]).await?;
        ip_in(h, &["link", "set", hv, "up"]).await?;
        ip_in(n, &["addr", "replace", &format!("{ns_addr}/30"), "dev", TRANSIT]).await?;
        ip_in(n, &["link", "set", TRANSIT, "up"]).await?;
        ip_in(n, &["route", "replace", "default", "via", &host_addr.to_string()]).await?;
        let model = {
            let mut model = self.model.lock().await;
            if self.spec.tunnel.is_some() {
                // After a restart the kernel still has the peers it was last given.
                let live = self.live_peers().await?;
                if let Some(t) = model.tunnel.as_mut() {
                    t.peers = live.into_iter().collect();
                    t.remotes = self.live_remotes().await?;
                }
            }
            model.clone()
        };
        for m in model.machines.values() {
            self.plug(&m.port).await?;
            if let Some(p) = m.port.public_ip {
                self.route_public(p, true).await?;
            }
        }
        self.dnsmasq(&model).await
    }

    /// The vxlan port: made in the host's namespace (so its UDP socket on the underlay stays
    /// there), then moved into the network's namespace and onto the bridge. A port of another
    /// VNI or underlay address is replaced.
    async fn create_vxlan(&self, t: Tunnel) -> Result<()> {
        let n = Some(self.netns());
        let h = self.host.netns.as_deref();
        if link_exists(n, VXLAN).await {
            let details = ip_in(n, &["-d", "link", "show", "dev", VXLAN]).await?;
            if vxlan_is(&details, t) {
                return self.vxlan_up().await;
            }
            ip_in(n, &["link", "del", VXLAN]).await?;
        }
        let hx = self.names.host_vxlan.as_str();
        if link_exists(h, hx).await {
            ip_in(h, &["link", "del", hx]).await?;
        }
        let (vni, local, port) = (t.vni.to_string(), t.local.to_string(), VXLAN_PORT.to_string());
        ip_in(h, &["link", "add", hx, "type", "vxlan", "id", &vni, "local", &local, "dstport", &port, "nolearning"])
            .await?;
        ip_in(h, &["link", "set", hx, "netns", self.netns()]).await?;
        ip_in(n, &["link", "set", hx, "name", VXLAN]).await?;
        self.vxlan_up().await
    }

    async fn vxlan_up(&self) -> Result<()> {
        let n = Some(self.netns());
        ip_in(n, &["link", "set", VXLAN, "mtu", &TUNNEL_MTU.to_string(), "master", BRIDGE]).await?;
        ip_in(n, &["link", "set", VXLAN, "up"]).await?;
        Ok(())
    }

    /// The peers the kernel floods to: the vxlan port's all-zero FDB entries.
    pub async fn live_peers(&self) -> Result<Vec<Ipv4Addr>> {
        if self.spec.tunnel.is_none() {
            return Ok(Vec::new());
        }
        let fdb = bridge_in(self.netns(), &["fdb", "show", "dev", VXLAN]).await?;
        let mut peers: Vec<Ipv4Addr> = fdb
            .lines()
            .filter_map(|l| l.strip_prefix("00:00:00:00:00:00 dst "))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect();
        peers.sort();
        peers.dedup();
        Ok(peers)
    }

    /// Tells the network which other hosts have machines on it (their underlay addresses):
    /// one flood entry per peer on the vxlan port (broadcast, unknown unicast and ARP go to
    /// each), entries of hosts no longer listed removed. Converges from whatever the kernel
    /// has. This host's own address is ignored; a network that does not span hosts refuses.
    pub async fn set_peers(&self, peers: &[Ipv4Addr]) -> Result<()> {
        let Some(t) = self.spec.tunnel else {
            return Err(NetError::Invalid(format!("network {} does not span hosts (no vni)", self.netns())));
        };
        if let Some(bad) = peers.iter().find(|p| !valid_underlay(**p)) {
            return Err(NetError::Invalid(format!("peer {bad} is not a unicast address")));
        }
        let mut model = self.model.lock().await;
        let wanted: BTreeSet<Ipv4Addr> = peers.iter().copied().filter(|p| *p != t.local).collect();
        self.converge_peers(&wanted).await?;
        if let Some(t) = model.tunnel.as_mut() {
            t.peers = wanted;
        }
        Ok(())
    }

    /// The machines on other hosts the vxlan port sends to one host: its FDB entries with a MAC
    /// and a destination (entries the bridge learned have no destination).
    pub async fn live_remotes(&self) -> Result<BTreeMap<Mac, Ipv4Addr>> {
        if self.spec.tunnel.is_none() {
            return Ok(BTreeMap::new());
        }
        let fdb = bridge_in(self.netns(), &["fdb", "show", "dev", VXLAN]).await?;
        Ok(fdb
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let mac = Mac::parse(w.next()?).filter(|m| m.0 != [0; 6])?;
                (w.next()? == "dst").then_some(())?;
                Some((mac, w.next()?.parse().ok()?))
            })
            .collect())
    }

    /// Tells the network on which host each machine of it on another host is (by MAC, from
    /// the control plane's placements): the vxlan port sends their frames to that host alone
    /// (`bridge fdb replace MAC dev vx0 dst HOST`), not to every peer. Entries not listed are
    /// removed; machines not listed are still reached by flooding to every peer. Converges.
    pub async fn set_remotes(&self, remotes: &[(Mac, Ipv4Addr)]) -> Result<()> {
        if self.spec.tunnel.is_none() {
            return Err(NetError::Invalid(format!("network {} does not span hosts (no vni)", self.netns())));
        }
        if let Some((mac, bad)) = remotes.iter().find(|(_, h)| !valid_underlay(*h)) {
            return Err(NetError::Invalid(format!("host {bad} of {mac} is not a unicast address")));
        }
        let mut model = self.model.lock().await;
        let wanted: BTreeMap<Mac, Ipv4Addr> = remotes.iter().copied().collect();
        self.converge_remotes(&wanted).await?;
        if let Some(t) = model.tunnel.as_mut() {
            t.remotes = wanted;
        }
        Ok(())
    }

    /// Brings the per-MAC entries in line with `wanted`; whether anything changed.
    async fn converge_remotes(&self, wanted: &BTreeMap<Mac, Ipv4Addr>) -> Result<bool> {
        let live = self.live_remotes().await?;
        for (mac, host) in live.iter().filter(|(m, h)| wanted.get(m) != Some(h)) {
            let (mac, host) = (mac.to_string(), host.to_string());
            bridge_in(self.netns(), &["fdb", "del", &mac, "dev", VXLAN, "dst", &host, "self"]).await?;
        }
        for (mac, host) in wanted.iter().filter(|(m, h)| live.get(m) != Some(h)) {
            let (mac, host) = (mac.to_string(), host.to_string());
            bridge_in(self.netns(), &["fdb", "replace", &mac, "dev", VXLAN, "dst", &host, "self", "permanent"]).await?;
        }
        Ok(live != *wanted)
    }

    /// Brings the flood entries in line with `wanted`; whether anything changed.
    async fn converge_peers(&self, wanted: &BTreeSet<Ipv4Addr>) -> Result<bool> {
        let live: BTreeSet<Ipv4Addr> = self.live_peers().await?.into_iter().collect();
        let zero = "00:00:00:00:00:00";
        for p in live.difference(wanted) {
            bridge_in(self.netns(), &["fdb", "del", zero, "dev", VXLAN, "dst", &p.to_string()]).await?;
        }
        for p in wanted.difference(&live) {
            bridge_in(self.netns(), &["fdb", "append", zero, "dev", VXLAN, "dst", &p.to_string()]).await?;
        }
        Ok(live != *wanted)
    }

    /// Puts back a vxlan port that is gone, down, off the bridge or of another VNI, and the
    /// flood entries the model names; whether anything was repaired.
    async fn repair_tunnel(&self, t: Tunnel, tm: &TunnelModel) -> Result<bool> {
        let intact = match ip_in(Some(self.netns()), &["-d", "link", "show", "dev", VXLAN]).await {
            Ok(d) => vxlan_is(&d, t) && d.contains(&format!(" master {BRIDGE} ")) && link_flags_up(&d),
            Err(_) => false,
        };
        if !intact {
            self.create_vxlan(t).await?;
        }
        let peers = self.converge_peers(&tm.peers).await?;
        let remotes = self.converge_remotes(&tm.remotes).await?;
        Ok(peers || remotes || !intact)
    }

    /// The network's namespace.
    pub fn netns(&self) -> &str {
        &self.names.netns
    }

    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    /// The host's end of the transit link.
    pub fn host_veth(&self) -> &str {
        &self.names.host_veth
    }

    /// A copy of what the network enforces now.
    pub async fn model(&self) -> NetworkModel {
        self.model.lock().await.clone()
    }

    /// Opens a machine's tap for QEMU (`-netdev tap,fd=N,vnet_hdr=on`). The tap lives in the
    /// network's namespace, so the open happens there (on a short-lived thread); the descriptor
    /// then works from any namespace, and QEMU itself stays in the host's. Blocking (a thread
    /// spawn and two syscalls).
    pub fn open_tap(&self, tap: &str) -> Result<OwnedFd> {
        open_tap_in(self.netns(), tap)
    }

    /// Would this packet pass? (The evaluator over the network's current model.)
    pub async fn evaluate(&self, pkt: &Packet) -> Decision {
        evaluate(&*self.model.lock().await, pkt)
    }

    /// Plugs a machine in: its rules and anti-spoofing first, then its tap on the bridge (a tap
    /// is created if no device of that name exists, e.g. for QEMU to open), its DHCP reservation
    /// and its public address. Attaching the same port again converges.
    pub async fn attach_port(&self, port: Port, rules: CompiledRules) -> Result<()> {
        let mut model = self.model.lock().await;
        let mut others = model.clone();
        let old = others.machines.remove(&port.tap).map(|m| m.port);
        check_port(&others, &port)?;
        let machine = Machine { port: port.clone(), rules };
        let mut next = others;
        next.machines.insert(port.tap.clone(), machine.clone());
        self.commit(&mut model, next, &nft::render_attach(&machine, old.as_ref())).await?;
        self.plug(&port).await?;
        if let Some(p) = old.as_ref().and_then(|o| o.public_ip).filter(|p| Some(*p) != port.public_ip) {
            self.route_public(p, false).await?;
        }
        if let Some(p) = port.public_ip {
            self.route_public(p, true).await?;
        }
        self.dnsmasq(&model).await?;
        if let Some(old) = old.filter(|o| o.ip != port.ip) {
            self.cut_all(old.ip).await?;
        }
        Ok(())
    }

    /// Unplugs a machine: its rules go, its device is deleted, its reservation and public
    /// address removed, and its tracked connections forgotten (its address may be reused).
    pub async fn detach_port(&self, tap: &str) -> Result<()> {
        let mut model = self.model.lock().await;
        let mut next = model.clone();
        let Some(m) = next.machines.remove(tap) else { return Ok(()) };
        self.commit(&mut model, next, &nft::render_detach(&m.port)).await?;
        let n = Some(self.netns());
        if link_exists(n, tap).await {
            ip_in(n, &["link", "del", tap]).await?;
        }
        if let Some(p) = m.port.public_ip {
            self.route_public(p, false).await?;
        }
        self.dnsmasq(&model).await?;
        self.cut_all(m.port.ip).await
    }

    /// Enforces a machine's new rule set (attach, detach, any rule change, family B's replace:
    /// the caller compiles what is attached now). One transaction rewrites the machine's two
    /// chains; then the tracked connections the new rules would refuse are deleted.
    pub async fn apply_firewall(&self, tap: &str, rules: CompiledRules) -> Result<Applied> {
        let mut model = self.model.lock().await;
        let mut next = model.clone();
        let Some(m) = next.machines.get_mut(tap) else {
            return Err(NetError::Invalid(format!("tap {tap:?} is not a port of network {}", self.netns())));
        };
        m.rules = rules;
        let (machine, ip) = (m.clone(), m.port.ip);
        self.commit(&mut model, next, &nft::render_rules(&machine)).await?;
        let entries = conntrack::parse_list(&exec_in(Some(self.netns()), "conntrack", &strings(&["-L"]), None).await?);
        let cut = conntrack::to_cut(&model, ip, &entries);
        for e in &cut {
            self.conntrack_delete(e).await?;
        }
        Ok(Applied { cut })
    }

    /// Gives a machine a public address (1:1 NAT), changes or removes it.
    pub async fn set_public_ip(&self, tap: &str, public_ip: Option<Ipv4Addr>) -> Result<()> {
        let mut model = self.model.lock().await;
        let mut others = model.clone();
        let Some(mut m) = others.machines.remove(tap) else {
            return Err(NetError::Invalid(format!("tap {tap:?} is not a port of network {}", self.netns())));
        };
        let old = m.port.public_ip;
        m.port.public_ip = public_ip;
        check_port(&others, &m.port)?;
        let text = nft::render_public_ip(m.port.ip, old, public_ip);
        let mut next = others;
        next.machines.insert(tap.to_string(), m);
        self.commit(&mut model, next, &text).await?;
        if let Some(p) = old {
            self.route_public(p, false).await?;
        }
        if let Some(p) = public_ip {
            self.route_public(p, true).await?;
        }
        Ok(())
    }

    /// Rewrites both tables from the model in one transaction (repairs any drift).
    pub async fn rebuild(&self) -> Result<()> {
        let model = self.model.lock().await;
        self.write_all(&model).await
    }

    /// Asks the kernel whether the namespace's ruleset changed since our last transaction (its
    /// nftables generation, one netlink round trip) and rewrites the whole ruleset only then: a
    /// rule edited, added or deleted by hand comes back; an unchanged ruleset is not written.
    /// The namespace holds nothing but our tables, so any other transaction is drift. Runs
    /// under the network's lock, so it never races one of our own changes. (Reading the tables
    /// back instead, `nft -j list ruleset`, takes seconds at 1,000 machines: docs/perf.md.)
    ///
    /// A network that spans hosts also checks its vxlan port and flood entries (two more
    /// commands) and puts back what is missing or changed.
    pub async fn reconcile(&self) -> Result<Reconciled> {
        let model = self.model.lock().await;
        let mut repaired = false;
        if let (Some(t), Some(tm)) = (self.spec.tunnel, model.tunnel.as_ref()) {
            repaired = self.repair_tunnel(t, tm).await?;
        }
        let live = generation(Some(self.netns()))?;
        if *self.applied.lock().expect("applied lock") == Some(live) {
            return Ok(if repaired { Reconciled::Repaired } else { Reconciled::Unchanged });
        }
        self.write_all(&model).await?;
        Ok(Reconciled::Repaired)
    }

    /// Writes the whole ruleset of `model` in one transaction.
    async fn write_all(&self, model: &NetworkModel) -> Result<()> {
        self.transaction(&nft::render_network(model)).await
    }

    /// Applies one nft transaction and records the generation it made, if no other transaction
    /// ran meanwhile (the generation moved by exactly one).
    async fn transaction(&self, text: &str) -> Result<()> {
        *self.applied.lock().expect("applied lock") = None;
        let before = generation(Some(self.netns()))?;
        nft_apply(Some(self.netns()), text).await?;
        let after = generation(Some(self.netns()))?;
        if after == before.wrapping_add(1) {
            *self.applied.lock().expect("applied lock") = Some(after);
        }
        Ok(())
    }

    /// Stops dnsmasq and removes the transit link and the namespace (with everything in it).
    pub async fn destroy(self) -> Result<()> {
        stop_dnsmasq(&self.dir);
        let h = self.host.netns.as_deref();
        if link_exists(h, &self.names.host_veth).await {
            ip_in(h, &["link", "del", &self.names.host_veth]).await?;
        }
        if Path::new("/run/netns").join(self.netns()).exists() {
            ip_in(None, &["netns", "del", self.netns()]).await?;
        }
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(format!("removing {:?}", self.dir))(e)),
            _ => Ok(()),
        }
    }

    /// Applies `text`, the incremental transaction from `model` to `next`; if the kernel refuses
    /// it (a ruleset that drifted from the model), the whole ruleset is rewritten from `next`
    /// instead. `model` becomes `next` only when the kernel has it.
    async fn commit(&self, model: &mut NetworkModel, next: NetworkModel, text: &str) -> Result<()> {
        if let Err(e) = self.transaction(text).await {
            tracing::warn!(netns = self.netns(), error = %e, "incremental nft change refused; rebuilding");
            self.write_all(&next).await?;
        }
        *model = next;
        Ok(())
    }

    async fn plug(&self, port: &Port) -> Result<()> {
        let n = Some(self.netns());
        if !link_exists(n, &port.tap).await {
            ip_in(n, &["tuntap", "add", "dev", &port.tap, "mode", "tap"]).await?;
        }
        if self.spec.tunnel.is_some() {
            ip_in(n, &["link", "set", &port.tap, "mtu", &TUNNEL_MTU.to_string()]).await?;
        }
        ip_in(n, &["link", "set", &port.tap, "master", BRIDGE]).await?;
        ip_in(n, &["link", "set", &port.tap, "up"]).await?;
        Ok(())
    }

    async fn route_public(&self, public: Ipv4Addr, add: bool) -> Result<()> {
        let h = self.host.netns.as_deref();
        let dst = format!("{public}/32");
        if add {
            let via = self.transit.1.to_string();
            ip_in(h, &["route", "replace", &dst, "via", &via, "dev", &self.names.host_veth]).await?;
        } else if ip_in(h, &["route", "show", &dst]).await.is_ok_and(|r| !r.trim().is_empty()) {
            ip_in(h, &["route", "del", &dst]).await?;
        }
        Ok(())
    }

    async fn conntrack_delete(&self, e: &Entry) -> Result<()> {
        match exec_in(Some(self.netns()), "conntrack", &e.delete_args(), None).await {
            // Already gone (it timed out or closed meanwhile).
            Err(NetError::Command { stderr, .. }) if stderr.contains("0 flow entries") => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Forgets every tracked connection of an address.
    async fn cut_all(&self, ip: Ipv4Addr) -> Result<()> {
        let entries = conntrack::parse_list(&exec_in(Some(self.netns()), "conntrack", &strings(&["-L"]), None).await?);
        for e in entries.iter().filter(|e| e.src == ip || e.reply_src == ip) {
            self.conntrack_delete(e).await?;
        }
        Ok(())
    }

    /// Writes the reservations and (re)starts or reloads dnsmasq.
    async fn dnsmasq(&self, model: &NetworkModel) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(io(format!("creating {:?}", self.dir)))?;
        let hosts: String = model.machines.values().map(|m| format!("{},{}\n", m.port.mac, m.port.ip)).collect();
        let hosts_path = self.dir.join("hosts");
        let tmp = self.dir.join("hosts.new");
        std::fs::write(&tmp, hosts).map_err(io(format!("writing {tmp:?}")))?;
        std::fs::rename(&tmp, &hosts_path).map_err(io(format!("writing {hosts_path:?}")))?;
        if let Some(pid) = dnsmasq_pid(&self.dir) {
            // dnsmasq rereads --dhcp-hostsfile on SIGHUP.
            // SAFETY: kill(2) on a pid we checked is our dnsmasq.
            unsafe { libc::kill(pid, libc::SIGHUP) };
            return Ok(());
        }
        let d = |f: &str| self.dir.join(f).display().to_string();
        let s = self.spec.subnet;
        let mut args = vec![
            "--conf-file=/dev/null".to_string(),
            format!("--pid-file={}", d("dnsmasq.pid")),
            format!("--log-facility={}", d("dnsmasq.log")),
            format!("--interface={BRIDGE}"),
            "--bind-interfaces".to_string(),
            format!("--dhcp-range={},static,{},1h", s.network, s.netmask()),
            format!("--dhcp-hostsfile={hosts_path}", hosts_path = hosts_path.display()),
            // The control plane is the only allocator: leases live in memory, never in a file.
            "--leasefile-ro".to_string(),
            "--dhcp-authoritative".to_string(),
            format!("--dhcp-option=option:router,{}", self.spec.gateway),
            format!("--dhcp-option=option:dns-server,{}", self.spec.gateway),
            "--no-hosts".to_string(),
            "--user=nobody".to_string(),
            "--group=nogroup".to_string(),
        ];
        if self.spec.tunnel.is_some() {
            // Guests' frames must fit the tunnel (DHCP option 26).
            args.push(format!("--dhcp-option=option:mtu,{TUNNEL_MTU}"));
        }
        exec_in(Some(self.netns()), "dnsmasq", &args, None).await?;
        Ok(())
    }
}

/// Whether `ip -d link show` text is a vxlan device of `t`'s VNI, underlay address and port.
fn vxlan_is(details: &str, t: Tunnel) -> bool {
    [format!("vxlan id {} ", t.vni), format!("local {} ", t.local), format!("dstport {VXLAN_PORT} ")]
        .iter()
        .all(|w| details.contains(w.as_str()))
}

/// Whether `ip link show` text has the UP flag (`<BROADCAST,MULTICAST,UP,LOWER_UP>`).
fn link_flags_up(details: &str) -> bool {
    let flags = details.split_once('<').and_then(|(_, r)| r.split_once('>')).map_or("", |(f, _)| f);
    flags.split(',').any(|f| f == "UP")
}

fn valid_underlay(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback())
}

fn check_port(model: &NetworkModel, port: &Port) -> Result<()> {
    if !valid_ifname(&port.tap) {
        return Err(NetError::Invalid(format!(
            "tap {:?}: an interface name of 1 to {IFNAME_MAX} letters, digits, '-' or '_' (not {BRIDGE}, {TRANSIT}, {VXLAN}, lo)",
            port.tap
        )));
    }
    let s = model.subnet;
    let broadcast = Ipv4Addr::from(u32::from(s.network) | !u32::from(s.netmask()));
    if !s.contains(port.ip) || port.ip == s.network || port.ip == broadcast || port.ip == model.gateway {
        return Err(NetError::Invalid(format!("ip {} is not a free host address of {s}", port.ip)));
    }
    if let Some(other) = model.by_ip(port.ip) {
        return Err(NetError::Invalid(format!("ip {} is already the address of {}", port.ip, other.port.tap)));
    }
    if let Some(p) = port.public_ip
        && let Some(other) = model.by_public_ip(p)
    {
        return Err(NetError::Invalid(format!("public_ip {p} is already the address of {}", other.port.tap)));
    }
    Ok(())
}

/// `_IOW('T', 202, int)`: attach this /dev/net/tun descriptor to an interface.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Runs `f` in network namespace `ns` (`None`: this process's own) on a short-lived thread:
/// a descriptor opened there, or a `/proc/sys/net` file written there, belongs to that namespace.
fn in_netns<T: Send + 'static>(
    ns: Option<&str>,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let ns_path = ns.map(|n| Path::new("/run/netns").join(n));
    std::thread::spawn(move || {
        if let Some(path) = ns_path {
            let ns = std::fs::File::open(&path)?;
            // SAFETY: setns on an open namespace file; only this short-lived thread changes namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the thread panicked")))
}

/// Writes `/proc/sys/<key>` in namespace `ns` (no dependency on procps' `sysctl`).
fn set_sysctls(ns: Option<&str>, values: &[(&'static str, &'static str)]) -> Result<()> {
    for &(key, value) in values {
        let path = format!("/proc/sys/{key}");
        in_netns(ns, {
            let path = path.clone();
            move || std::fs::write(&path, value)
        })
        .map_err(io(format!("writing {value} to {path} in {}", ns.unwrap_or("the host namespace"))))?;
    }
    Ok(())
}

/// The nftables generation of namespace `ns` (`None`: this process's own): a number the kernel
/// bumps on every committed transaction, read with one `NFT_MSG_GETGEN` netlink request.
pub fn generation(ns: Option<&str>) -> Result<u32> {
    in_netns(ns, get_generation).map_err(io(format!("reading the nftables generation in {}", ns.unwrap_or("the host"))))
}

fn get_generation() -> std::io::Result<u32> {
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_GETGEN: u16 = 16;
    const NFTA_GEN_ID: u16 = 1;
    // SAFETY: socket(2) with constant arguments; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_NETFILTER) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor socket(2) just returned, owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // nlmsghdr (16 bytes) + nfgenmsg (family AF_UNSPEC, version 0, resource id 0).
    let mut req = [0u8; 20];
    req[0..4].copy_from_slice(&20u32.to_ne_bytes());
    req[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: sends `req`, a valid buffer of its length, to the kernel (the default address).
    if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = [0u8; 512];
    // SAFETY: receives into `buf`, a valid buffer of its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let msg = &buf[..n as usize];
    let bad = || std::io::Error::other("a malformed NFT_MSG_GETGEN answer");
    let len = u32::from_ne_bytes(msg.get(0..4).ok_or_else(bad)?.try_into().unwrap()) as usize;
    let kind = u16::from_ne_bytes(msg.get(4..6).ok_or_else(bad)?.try_into().unwrap());
    if kind == libc::NLMSG_ERROR as u16 {
        let code = i32::from_ne_bytes(msg.get(16..20).ok_or_else(bad)?.try_into().unwrap());
        return Err(std::io::Error::from_raw_os_error(-code));
    }
    let mut at = 20; // nlmsghdr + nfgenmsg
    let end = len.min(msg.len());
    while at + 4 <= end {
        let alen = u16::from_ne_bytes(msg[at..at + 2].try_into().unwrap()) as usize;
        let atype = u16::from_ne_bytes(msg[at + 2..at + 4].try_into().unwrap()) & 0x3fff;
        if alen < 4 || at + alen > end {
            break;
        }
        if atype == NFTA_GEN_ID && alen >= 8 {
            return Ok(u32::from_be_bytes(msg[at + 4..at + 8].try_into().unwrap()));
        }
        at += (alen + 3) & !3;
    }
    Err(bad())
}

fn open_tap_in(netns: &str, tap: &str) -> Result<OwnedFd> {
    if !valid_ifname(tap) {
        return Err(NetError::Invalid(format!("tap {tap:?} is not an interface name")));
    }
    let name = tap.to_string();
    let context = format!("opening tap {tap} in {netns}");
    let opened = in_netns(Some(netns), move || -> std::io::Result<OwnedFd> {
        // TUNSETIFF would create a new, unbridged tap under a name that does not exist.
        let cname = std::ffi::CString::new(name.clone()).map_err(std::io::Error::other)?;
        // SAFETY: a NUL-terminated name.
        if unsafe { libc::if_nametoindex(cname.as_ptr()) } == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such interface"));
        }
        let tun = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
        // SAFETY: an all-zero ifreq is valid; the name fits (checked above) and stays NUL-terminated.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes an ifreq, which `ifr` is.
        if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &mut ifr) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from(tun))
    });
    opened.map_err(io(context))
}

fn dnsmasq_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("dnsmasq.pid")).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dnsmasq").then_some(pid)
}

fn stop_dnsmasq(dir: &Path) {
    if let Some(pid) = dnsmasq_pid(dir) {
        // SAFETY: kill(2) on a pid we checked is our dnsmasq.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}
