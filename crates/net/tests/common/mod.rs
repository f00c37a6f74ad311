//! The packet tests' world: namespaces that play the host, the upstream and the machines, all
//! created with unique names and removed when the world is dropped (also when a test fails).
//! Nothing touches the test process's own network namespace.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openwinv_net::compiler::{CompiledRules, Verdict};
use openwinv_net::names::TUNNEL_MTU;
use openwinv_net::{Host, Mac, Network, NetworkSpec, Port, Subnet, Tunnel, tap_name};

/// How long a negative case waits before calling the packet dropped.
pub const WAIT: Duration = Duration::from_millis(1500);

pub const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// Runs `cmd`, panicking with its output when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (is it installed? scripts/test installs it)"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// These tests need root, network namespaces, nftables, dnsmasq, conntrack and busybox; when one
/// is missing they fail and say which.
pub fn require_environment() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the packet tests need root (network namespaces, nftables)");
    if let Err(e) = openwinv_net::check_tools() {
        panic!("the packet tests cannot run: {e}");
    }
    assert!(
        Command::new("busybox").arg("true").status().is_ok_and(|s| s.success()),
        "the packet tests need busybox (ping, udhcpc): apt-get install busybox-static"
    );
}

/// Runs `f` on a fresh thread that has entered namespace `ns`. Sockets made there stay in it.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on an open namespace file; only this thread changes namespace.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

static WORLDS: AtomicU32 = AtomicU32::new(0);

/// A machine: a namespace whose `eth0` is a veth plugged into its network's bridge as a tap.
#[derive(Debug, Clone)]
pub struct Vm {
    pub name: String,
    pub ns: String,
    pub net: usize,
    pub port: Port,
    /// The MAC the machine really sends from (differs from `port.mac` for a MAC spoofer).
    pub actual_mac: Mac,
}

pub struct World {
    pub prefix: String,
    pub host: Host,
    pub upstream_ns: String,
    pub nets: Vec<Network>,
    pub vms: HashMap<String, Vm>,
    pub rt: tokio::runtime::Runtime,
    _run_dir: tempfile::TempDir,
}

impl World {
    /// A host namespace, an upstream namespace on its uplink, and `networks` networks, each of
    /// the given account in zone `KR1-Z01` on 10.16.0.0/16.
    pub fn new(tag: &str, accounts: &[&str]) -> World {
        require_environment();
        let n = WORLDS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("owtest-{}-{tag}{n}-", std::process::id());
        let run_dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let host_ns = format!("{prefix}host");
        let upstream_ns = format!("{prefix}up");
        let host = Host {
            netns: Some(host_ns.clone()),
            prefix: prefix.clone(),
            uplink: Some("up0".into()),
            run_dir: run_dir.path().to_path_buf(),
        };
        let mut world =
            World { prefix, host, upstream_ns, nets: Vec::new(), vms: HashMap::new(), rt, _run_dir: run_dir };
        for ns in [&host_ns, &world.upstream_ns] {
            sh("ip", &["netns", "add", ns]);
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        let up = world.upstream_ns.clone();
        sh("ip", &["-n", &host_ns, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", &up]);
        sh("ip", &["-n", &host_ns, "addr", "add", &format!("{UPLINK_IP}/24"), "dev", "up0"]);
        sh("ip", &["-n", &host_ns, "link", "set", "up0", "up"]);
        sh("ip", &["-n", &up, "addr", "add", &format!("{UPSTREAM_IP}/24"), "dev", "eth0"]);
        sh("ip", &["-n", &up, "link", "set", "eth0", "up"]);
        sh("ip", &["-n", &up, "route", "add", "default", "via", &UPLINK_IP.to_string()]);
        world.rt.block_on(world.host.prepare()).expect("host prepare");
        for (i, account) in accounts.iter().enumerate() {
            let spec = NetworkSpec {
                account: account.to_string(),
                zone: "KR1-Z01".into(),
                index: i as u32 + 1,
                subnet: Subnet::new(Ipv4Addr::new(10, 16, 0, 0), 16).unwrap(),
                gateway: Ipv4Addr::new(10, 16, 0, 1),
                tunnel: None,
            };
            let net = world.rt.block_on(Network::ensure(&world.host, spec, Vec::new())).expect("network ensure");
            world.nets.push(net);
        }
        world
    }

    /// Plugs in a machine `name` on network `net` with address `ip`; `actual_mac` overrides the
    /// MAC it really sends from.
    pub fn add_vm(
        &mut self,
        name: &str,
        net: usize,
        ip: Ipv4Addr,
        public_ip: Option<Ipv4Addr>,
        actual_mac: Option<Mac>,
    ) {
        self.plug_vm(name, net, ip, public_ip, actual_mac, true)
    }

    /// Like [`World::add_vm`], but the machine's interface has no address: it asks DHCP.
    pub fn add_dhcp_vm(&mut self, name: &str, net: usize, ip: Ipv4Addr) {
        self.plug_vm(name, net, ip, None, None, false)
    }

    fn plug_vm(
        &mut self,
        name: &str,
        net: usize,
        ip: Ipv4Addr,
        public_ip: Option<Ipv4Addr>,
        actual_mac: Option<Mac>,
        static_address: bool,
    ) {
        let how = Plug { public_ip, actual_mac, static_address, mtu: None };
        let vm = plug(&self.prefix, &self.rt, &self.nets[net], net, name, ip, how);
        self.vms.insert(name.to_string(), vm);
    }

    pub fn run_dir(&self) -> &std::path::Path {
        self._run_dir.path()
    }

    pub fn vm(&self, name: &str) -> &Vm {
        self.vms.get(name).unwrap_or_else(|| panic!("no machine {name}"))
    }

    /// Removes every namespace of this world (networks included) and stops their dnsmasq.
    fn cleanup(&mut self) {
        for net in self.nets.drain(..) {
            let _ = self.rt.block_on(net.destroy());
        }
        delete_namespaces(&self.prefix);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// How a machine is plugged in.
pub struct Plug {
    pub public_ip: Option<Ipv4Addr>,
    /// The MAC it really sends from (`None`: its port's).
    pub actual_mac: Option<Mac>,
    /// Its address configured on `eth0` with a default route (`false`: it asks DHCP).
    pub static_address: bool,
    /// Its interface's MTU (`None`: the kernel's default, 1500).
    pub mtu: Option<u32>,
}

/// Makes machine `name`'s namespace, plugs its `eth0` into `net` as its tap would be, and
/// attaches the port with no firewall.
pub fn plug(
    prefix: &str,
    rt: &tokio::runtime::Runtime,
    net: &Network,
    net_index: usize,
    name: &str,
    ip: Ipv4Addr,
    how: Plug,
) -> Vm {
    let id = format!("INS-{prefix}{name}");
    let port = Port { tap: tap_name(&id), mac: Mac::for_instance(&id), ip, public_ip: how.public_ip };
    let actual_mac = how.actual_mac.unwrap_or(port.mac);
    let ns = format!("{prefix}vm-{name}");
    let net_ns = net.netns().to_string();
    sh("ip", &["netns", "add", &ns]);
    sh("ip", &["-n", &ns, "link", "set", "lo", "up"]);
    sh("ip", &["-n", &net_ns, "link", "add", &port.tap, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
    sh("ip", &["-n", &ns, "link", "set", "eth0", "address", &actual_mac.to_string()]);
    if let Some(mtu) = how.mtu {
        sh("ip", &["-n", &ns, "link", "set", "eth0", "mtu", &mtu.to_string()]);
    }
    if how.static_address {
        sh("ip", &["-n", &ns, "addr", "add", &format!("{ip}/16"), "dev", "eth0"]);
    }
    sh("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
    if how.static_address {
        sh("ip", &["-n", &ns, "route", "add", "default", "via", "10.16.0.1"]);
    }
    rt.block_on(net.attach_port(port.clone(), CompiledRules::open())).expect("attach_port");
    Vm { name: name.to_string(), ns, net: net_index, port, actual_mac }
}

/// Deletes every namespace whose name starts with `prefix`.
fn delete_namespaces(prefix: &str) {
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
            }
        }
    }
}

/// The underlay address of host `i` of a [`Cluster`].
pub fn underlay_ip(host: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, host as u8 + 1)
}

/// Several hosts joined by an underlay (a namespace with a bridge, `ul0`, and a veth to each
/// host's namespace, 192.0.2.0/24), each holding copies of networks that span hosts over
/// VXLAN, and machines on them. Everything goes when it is dropped.
pub struct Cluster {
    pub prefix: String,
    pub hosts: Vec<Host>,
    pub nets: Vec<Network>,
    /// The host of each network.
    pub net_host: Vec<usize>,
    pub vms: HashMap<String, Vm>,
    pub rt: tokio::runtime::Runtime,
    run_dir: tempfile::TempDir,
}

impl Cluster {
    pub fn new(tag: &str, hosts: usize) -> Cluster {
        require_environment();
        let n = WORLDS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("owtest-{}-{tag}{n}-", std::process::id());
        let run_dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let mut cluster = Cluster {
            prefix,
            hosts: Vec::new(),
            nets: Vec::new(),
            net_host: Vec::new(),
            vms: HashMap::new(),
            rt,
            run_dir,
        };
        let ul = format!("{}ul", cluster.prefix);
        sh("ip", &["netns", "add", &ul]);
        sh("ip", &["-n", &ul, "link", "add", "ul0", "type", "bridge"]);
        sh("ip", &["-n", &ul, "link", "set", "ul0", "up"]);
        for i in 0..hosts {
            let host_ns = format!("{}host{i}", cluster.prefix);
            sh("ip", &["netns", "add", &host_ns]);
            sh("ip", &["-n", &host_ns, "link", "set", "lo", "up"]);
            let port = format!("h{i}");
            sh("ip", &["-n", &ul, "link", "add", &port, "type", "veth", "peer", "name", "ul0", "netns", &host_ns]);
            sh("ip", &["-n", &ul, "link", "set", &port, "master", "ul0", "up"]);
            sh("ip", &["-n", &host_ns, "addr", "add", &format!("{}/24", underlay_ip(i)), "dev", "ul0"]);
            sh("ip", &["-n", &host_ns, "link", "set", "ul0", "up"]);
            let dir = cluster.run_dir.path().join(format!("host{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let host = Host {
                netns: Some(host_ns),
                // Each host's networks have namespaces of their own names (one machine plays
                // every host).
                prefix: format!("{}h{i}-", cluster.prefix),
                uplink: None,
                run_dir: dir,
            };
            cluster.rt.block_on(host.prepare()).expect("host prepare");
            cluster.hosts.push(host);
        }
        cluster
    }

    /// Host `host`'s copy of `account`'s network (10.16.0.0/16), with VNI `vni`.
    pub fn add_network(&mut self, host: usize, account: &str, vni: u32) -> usize {
        let spec = NetworkSpec {
            account: account.to_string(),
            zone: "KR1-Z01".into(),
            index: self.nets.iter().zip(&self.net_host).filter(|(_, h)| **h == host).count() as u32 + 1,
            subnet: Subnet::new(Ipv4Addr::new(10, 16, 0, 0), 16).unwrap(),
            gateway: Ipv4Addr::new(10, 16, 0, 1),
            tunnel: Some(Tunnel { vni, local: underlay_ip(host) }),
        };
        let net = self.rt.block_on(Network::ensure(&self.hosts[host], spec, Vec::new())).expect("network ensure");
        self.nets.push(net);
        self.net_host.push(host);
        self.nets.len() - 1
    }

    /// A machine on network `net` with a static address and the tunnel's MTU (as DHCP gives it).
    pub fn add_vm(&mut self, name: &str, net: usize, ip: Ipv4Addr) {
        let how = Plug { public_ip: None, actual_mac: None, static_address: true, mtu: Some(TUNNEL_MTU) };
        let vm = plug(&self.prefix, &self.rt, &self.nets[net], net, name, ip, how);
        self.vms.insert(name.to_string(), vm);
    }

    /// A machine on network `net` whose interface asks DHCP for its address `ip`.
    pub fn add_dhcp_vm(&mut self, name: &str, net: usize, ip: Ipv4Addr) {
        let how = Plug { public_ip: None, actual_mac: None, static_address: false, mtu: None };
        let vm = plug(&self.prefix, &self.rt, &self.nets[net], net, name, ip, how);
        self.vms.insert(name.to_string(), vm);
    }

    /// Network `net`'s peers: the underlay addresses of `hosts`.
    pub fn set_peers(&self, net: usize, hosts: &[usize]) {
        let peers: Vec<Ipv4Addr> = hosts.iter().map(|h| underlay_ip(*h)).collect();
        self.rt.block_on(self.nets[net].set_peers(&peers)).expect("set_peers");
    }

    pub fn vm(&self, name: &str) -> &Vm {
        self.vms.get(name).unwrap_or_else(|| panic!("no machine {name}"))
    }

    pub fn run_dir(&self) -> &std::path::Path {
        self.run_dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for net in self.nets.drain(..) {
            let _ = self.rt.block_on(net.destroy());
        }
        delete_namespaces(&self.prefix);
    }
}

/// What a case sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

/// One kernel probe: from namespace `src` (optionally from address `bind`) to `dst`, with the
/// listener in namespace `listen` (none: nothing should get there).
#[derive(Debug, Clone)]
pub struct Probe {
    pub src: String,
    pub bind: Option<Ipv4Addr>,
    pub dst: Ipv4Addr,
    pub listen: Option<String>,
    pub proto: Proto,
    pub port: u16,
}

/// What probes running at the same time share: a lock per TCP listening (namespace, port), so
/// that an accepted connection is the probe's own, and one UDP socket per (namespace, port)
/// that every probe to it reads (each looks for its own payload).
#[derive(Default, Clone)]
pub struct Locks {
    tcp: Arc<Mutex<HashMap<ListenKey, Arc<Mutex<()>>>>>,
    udp: Arc<Mutex<HashMap<ListenKey, Arc<UdpSink>>>>,
}

/// (namespace, port).
type ListenKey = (String, u16);

pub struct UdpSink {
    socket: UdpSocket,
    seen: Mutex<std::collections::HashSet<Vec<u8>>>,
    reading: Mutex<()>,
}

impl UdpSink {
    /// Whether `payload` arrives before the wait is over.
    fn wait_for(&self, payload: &[u8]) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 512];
        loop {
            if self.seen.lock().unwrap().contains(payload) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let _r = self.reading.lock().unwrap();
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                self.seen.lock().unwrap().insert(buf[..n].to_vec());
            }
        }
    }
}

impl Locks {
    fn tcp(&self, key: ListenKey) -> Arc<Mutex<()>> {
        self.tcp.lock().unwrap().entry(key).or_default().clone()
    }

    fn udp(&self, key: ListenKey, what: String) -> Arc<UdpSink> {
        let mut sinks = self.udp.lock().unwrap();
        sinks
            .entry(key.clone())
            .or_insert_with(|| {
                let (ns, port) = key;
                let socket = in_ns(&ns, move || bind_retrying(&what, || UdpSocket::bind(("0.0.0.0", port))));
                socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                Arc::new(UdpSink { socket, seen: Mutex::default(), reading: Mutex::default() })
            })
            .clone()
    }
}

static PAYLOADS: AtomicU32 = AtomicU32::new(0);

/// Sends the probe's packet for real; `Accept` when it arrived (TCP: the handshake completed
/// and a byte crossed; UDP: the datagram arrived; ICMP: the echo was answered).
pub fn kernel_verdict(p: &Probe, locks: &Locks) -> Verdict {
    match p.proto {
        Proto::Icmp => {
            let ok = Command::new("ip")
                .args(["netns", "exec", &p.src, "busybox", "ping", "-c", "1", "-W", "1", &p.dst.to_string()])
                .output()
                .expect("busybox ping")
                .status
                .success();
            if ok { Verdict::Accept } else { Verdict::Drop }
        }
        Proto::Tcp => {
            let lock = p.listen.as_ref().map(|l| locks.tcp((l.clone(), p.port)));
            let _g = lock.as_ref().map(|l| l.lock().unwrap());
            let port = p.port;
            let what = format!("{p:?}");
            let listener = p
                .listen
                .clone()
                .map(|l| in_ns(&l, move || bind_retrying(&what, || TcpListener::bind(("0.0.0.0", port)))));
            let (dst, bind) = (p.dst, p.bind);
            assert!(bind.is_none(), "TCP probes send from the machine's own address");
            let stream = in_ns(&p.src, move || TcpStream::connect_timeout(&SocketAddr::from((dst, port)), WAIT));
            match stream {
                Ok(mut s) => {
                    let l = listener.unwrap_or_else(|| panic!("{p:?}: connected where nothing should listen"));
                    let mut server = accept_within(&l, WAIT).expect("connected but not accepted");
                    s.write_all(b"x").unwrap();
                    server.set_read_timeout(Some(WAIT)).unwrap();
                    let mut b = [0u8; 1];
                    server.read_exact(&mut b).expect("a byte crosses the accepted connection");
                    // No closing handshake left behind for a later rule change to strand, which
                    // would keep the port busy for the next case.
                    abort(&s);
                    abort(&server);
                    Verdict::Accept
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    panic!("{p:?}: refused: the packet reached a machine with no listener (a leak)")
                }
                Err(_) => Verdict::Drop,
            }
        }
        Proto::Udp => {
            let sink = p.listen.clone().map(|l| locks.udp((l, p.port), format!("{p:?}")));
            let (dst, bind, port) = (p.dst, p.bind.unwrap_or(Ipv4Addr::UNSPECIFIED), p.port);
            let payload = format!("probe {} from {}", PAYLOADS.fetch_add(1, Ordering::SeqCst), p.src);
            let sent = payload.clone();
            in_ns(&p.src, move || {
                let s = UdpSocket::bind((bind, 0)).expect("bind the UDP sender");
                // Unreachable networks fail here: nothing was sent.
                let _ = s.send_to(sent.as_bytes(), (dst, port));
            });
            match sink {
                Some(sink) if sink.wait_for(payload.as_bytes()) => Verdict::Accept,
                _ => Verdict::Drop,
            }
        }
    }
}

/// Closes with RST (SO_LINGER 0) when dropped.
pub fn abort(s: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on an open socket with a correctly sized option.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// Binds a listener. A port can stay busy for a moment after its last case closed it: a child
/// process forked meanwhile (ping, ip) holds a copy of the descriptor until it execs.
fn bind_retrying<T>(what: &str, bind: impl Fn() -> std::io::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match bind() {
            Ok(s) => return s,
            Err(e) if e.kind() == ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{what}: bind the listener: {e}"),
        }
    }
}

pub fn accept_within(l: &TcpListener, wait: Duration) -> Option<TcpStream> {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + wait;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return Some(s);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => return None,
        }
    }
}

/// A table of a namespace's ruleset, normalised for comparison: each chain's and map's lines,
/// map elements sorted (their order in a listing depends on history, not meaning).
pub fn normalized_ruleset(ns: &str, family: &str) -> Vec<String> {
    let text = sh("ip", &["netns", "exec", ns, "nft", "list", "table", family, "openwinv"]);
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        let t = line.trim();
        if line.starts_with("\tchain ") || line.starts_with("\tmap ") {
            current = Some((t.to_string(), Vec::new()));
        } else if line == "\t}" {
            if let Some((head, body)) = current.take() {
                let mut body = body.join(" ");
                if let Some(i) = body.find("elements = {") {
                    let inner = body[i + "elements = {".len()..].trim_end_matches('}').to_string();
                    let mut els: Vec<String> = inner.split(',').map(|e| e.trim().to_string()).collect();
                    els.sort();
                    body = format!("{} elements = {}", &body[..i], els.join(", "));
                }
                blocks.push(format!("{head} {body}"));
            }
        } else if let Some((_, body)) = current.as_mut()
            && !t.is_empty()
        {
            body.push(t.to_string());
        }
    }
    blocks.sort();
    blocks
}
