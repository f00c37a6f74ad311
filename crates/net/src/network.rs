//! Networks in namespaces: the thin layer that runs `ip`, `nft`, `dnsmasq` and `conntrack`.
//!
//! One (account, zone) network is a Linux network namespace holding a bridge with the gateway
//! address, dnsmasq serving DHCP (fixed MAC → address reservations written by us) and DNS on it,
//! the nftables tables of [`crate::nft`], and a veth transit link to the host. Machines' taps are
//! ports of the bridge. Every call is idempotent, every name derived ([`crate::names`]), and the
//! host is itself a parameter ([`Host::netns`]), so that tests run all of it inside a namespace
//! of their own.
//!
//! Here: the network's life (ensure, ports, firewalls, public addresses, reconcile, destroy).
//! `command.rs` runs the programs, `kernel.rs` asks the kernel directly (namespaces, sysctls, the
//! nftables generation, taps), `tunnel.rs` keeps the vxlan tunnel of a network that spans hosts.

mod command;
mod kernel;
mod tunnel;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

use crate::compiler::CompiledRules;
use crate::conntrack::{self, Entry};
use crate::eval::{Decision, Packet, evaluate};
use crate::model::{Machine, NetworkModel, Port, Subnet, TunnelModel};
use crate::names::{
    BRIDGE, IFNAME_MAX, MAX_VNI, NetworkNames, TRANSIT, TRANSIT_BASE, TUNNEL_MTU, VXLAN, transit_addrs,
};
use crate::nft;

pub use self::command::{TOOLS, check_tools};
use self::command::{dnsmasq_pid, exec_in, io, ip_in, link_exists, nft_apply, stop_dnsmasq, strings};
pub use self::kernel::generation;
use self::kernel::{open_tap_in, set_sysctls};
use self::tunnel::valid_underlay;

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
