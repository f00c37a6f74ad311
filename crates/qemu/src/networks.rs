//! The QEMU driver's real networks (`serve --driver qemu --network namespaces`): one
//! [`openwinv_net::Network`] per (account, zone), ensured on first use with every machine the
//! driver knows on it, so a restarted server rewrites the same ruleset and no port is ever
//! briefly open. Each network's transit index is kept in `networks.json` under the data
//! directory, so it stays the same across restarts.
//!
//! On a host of several (an agent with an underlay address), a machine whose network names a
//! VNI gets a network that spans hosts (`docs/network.md`, "Across hosts"); the other hosts of
//! the network are told with [`Networks::set_peers`].

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use openwinv_driver::firewall::CompiledRules;
use openwinv_driver::{DriverError, MachineNetwork};
use openwinv_net::{Host, Mac, Machine, Network, NetworkSpec, Port, Reconciled, Subnet, Tunnel, tap_name};
use openwinv_wire::admin::{NetworkInfo, NetworkPort};
use tokio::sync::{Mutex, OnceCell};

/// Told of every rule apply and reconcile pass (the server's metrics).
pub trait NetObserver: Send + Sync {
    fn rule_apply(&self, ok: bool, seconds: f64);
    /// One reconcile pass: the networks it compared, and those it found drifted and rewrote.
    fn reconcile(&self, compared: usize, repaired: usize);
}

/// Counters a metrics exporter reads: rule applies and their total latency.
#[derive(Debug, Default)]
pub struct ApplyStats {
    pub applies: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
    /// Sum of the applies' durations, in microseconds.
    pub micros: std::sync::atomic::AtomicU64,
    /// Networks a reconcile pass found drifted and rewrote.
    pub repairs: std::sync::atomic::AtomicU64,
}

pub struct Networks {
    host: Host,
    /// This host's underlay address, when it is one of several: networks with a VNI span hosts.
    underlay: Option<Ipv4Addr>,
    prepared: OnceCell<()>,
    live: Mutex<HashMap<(String, String), Arc<Network>>>,
    /// The peers the control plane last named for each (account, zone) network, applied
    /// when the network is (next) ensured.
    peers: std::sync::Mutex<HashMap<(String, String), Vec<Ipv4Addr>>>,
    state_file: PathBuf,
    pub stats: ApplyStats,
    observer: Option<Arc<dyn NetObserver>>,
}

fn net_err(e: openwinv_net::NetError) -> DriverError {
    DriverError::Transient(format!("network: {e}"))
}

impl Networks {
    pub fn new(host: Host, state_file: PathBuf) -> Networks {
        Networks {
            host,
            underlay: None,
            prepared: OnceCell::new(),
            live: Mutex::new(HashMap::new()),
            peers: std::sync::Mutex::new(HashMap::new()),
            state_file,
            stats: ApplyStats::default(),
            observer: None,
        }
    }

    /// This host's address on the underlay between hosts: networks whose machines name a VNI
    /// get a vxlan port sending from it.
    pub fn with_underlay(mut self, underlay: Ipv4Addr) -> Networks {
        self.underlay = Some(underlay);
        self
    }

    pub fn with_observer(mut self, observer: Arc<dyn NetObserver>) -> Networks {
        self.observer = Some(observer);
        self
    }

    /// Checks the tools and writes the host's table (once).
    pub async fn prepare(&self) -> Result<(), DriverError> {
        self.prepared
            .get_or_try_init(|| async { self.host.prepare().await.map_err(|e| DriverError::Permanent(e.to_string())) })
            .await
            .map(|_| ())
    }

    /// The transit index of (account, zone), allocated on first use and kept.
    fn index(&self, account: &str, zone: &str) -> Result<u32, DriverError> {
        let key = format!("{account} {zone}");
        let mut map: BTreeMap<String, u32> = match std::fs::read(&self.state_file) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| DriverError::Permanent(format!("{} is damaged: {e}", self.state_file.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(DriverError::Transient(format!("cannot read {}: {e}", self.state_file.display()))),
        };
        if let Some(i) = map.get(&key) {
            return Ok(*i);
        }
        let next = map.values().max().map_or(1, |m| m + 1);
        map.insert(key, next);
        let bytes = serde_json::to_vec_pretty(&map).map_err(|e| DriverError::Permanent(e.to_string()))?;
        let tmp = self.state_file.with_extension("json.new");
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &self.state_file))
            .map_err(|e| DriverError::Transient(format!("cannot write {}: {e}", self.state_file.display())))?;
        Ok(next)
    }

    /// The live network of `n`'s (account, zone), ensured with `known` (every machine the driver
    /// has on it) when first used.
    pub async fn network(
        &self,
        n: &MachineNetwork,
        known: impl FnOnce() -> Vec<Machine>,
    ) -> Result<Arc<Network>, DriverError> {
        self.prepare().await?;
        let key = (n.account_id.clone(), n.zone_id.clone());
        let mut live = self.live.lock().await;
        if let Some(net) = live.get(&key) {
            return Ok(net.clone());
        }
        let subnet = Subnet::new(n.gateway, n.prefix)
            .ok_or_else(|| DriverError::Permanent(format!("prefix /{} is not an IPv4 prefix", n.prefix)))?;
        let spec = NetworkSpec {
            account: n.account_id.clone(),
            zone: n.zone_id.clone(),
            index: self.index(&n.account_id, &n.zone_id)?,
            subnet,
            gateway: n.gateway,
            tunnel: match (self.underlay, n.vni) {
                (Some(local), Some(vni)) => Some(Tunnel { vni, local }),
                _ => None,
            },
        };
        let spans = spec.tunnel.is_some();
        let net = Arc::new(Network::ensure(&self.host, spec, known()).await.map_err(net_err)?);
        let told = self.peers.lock().expect("peers lock").get(&key).cloned();
        if let (true, Some(peers)) = (spans, told) {
            net.set_peers(&peers).await.map_err(net_err)?;
        }
        live.insert(key, net.clone());
        Ok(net)
    }

    /// Tells the (account, zone) network which other hosts have machines on it (their underlay
    /// addresses; the control plane computes them from placements). Applied now if the network
    /// is live and spans hosts, and kept for when it is next ensured (a network not live yet,
    /// or live again after a restart). Idempotent: the same list again changes nothing.
    pub async fn set_peers(&self, account: &str, zone: &str, peers: &[Ipv4Addr]) -> Result<(), DriverError> {
        let key = (account.to_owned(), zone.to_owned());
        self.peers.lock().expect("peers lock").insert(key, peers.to_vec());
        match self.get(account, zone).await {
            Some(net) if net.spec().tunnel.is_some() => net.set_peers(peers).await.map_err(net_err),
            _ => Ok(()),
        }
    }

    /// The live network of (account, zone), if it was used since the server started.
    pub async fn get(&self, account: &str, zone: &str) -> Option<Arc<Network>> {
        self.live.lock().await.get(&(account.to_owned(), zone.to_owned())).cloned()
    }

    /// Enforces `rules` on the machine's port (one nft transaction), counting it.
    pub async fn apply(&self, net: &Network, tap: &str, rules: CompiledRules) -> Result<(), DriverError> {
        let t = Instant::now();
        let r = net.apply_firewall(tap, rules).await;
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.applies.fetch_add(1, Relaxed);
        self.stats.micros.fetch_add(t.elapsed().as_micros() as u64, Relaxed);
        if let Some(o) = &self.observer {
            o.rule_apply(r.is_ok(), t.elapsed().as_secs_f64());
        }
        match r {
            Ok(applied) => {
                if !applied.cut.is_empty() {
                    tracing::info!(tap, cut = applied.cut.len(), "connections the new rules refuse were cut");
                }
                Ok(())
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Relaxed);
                Err(net_err(e))
            }
        }
    }

    /// Rewrites the networks that drifted ([`Networks::reconcile`]) every
    /// `OPENWINV_NETWORK_RECONCILE_SECS` seconds (default 30), for as long as the process runs:
    /// a rule removed or changed by hand comes back. Each rewrite is one atomic nft transaction,
    /// so traffic sees the old or the new ruleset, never a gap.
    pub fn spawn_reconcile(self: Arc<Self>) {
        let secs = std::env::var("OPENWINV_NETWORK_RECONCILE_SECS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .unwrap_or(30.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs_f64(secs));
            tick.tick().await;
            loop {
                tick.tick().await;
                self.reconcile().await;
            }
        });
    }

    /// Compares every live network's tables with what was last applied and rewrites those
    /// that drifted (a rule deleted or edited by hand comes back; an unchanged table is not
    /// written). Returns how many were repaired.
    pub async fn reconcile(&self) -> usize {
        let nets: Vec<Arc<Network>> = self.live.lock().await.values().cloned().collect();
        let mut repaired = 0;
        for net in &nets {
            match net.reconcile().await {
                Ok(Reconciled::Unchanged) => {}
                Ok(Reconciled::Repaired) => {
                    tracing::warn!(netns = net.netns(), "reconcile: the ruleset had drifted; rewritten");
                    repaired += 1;
                }
                Err(e) => tracing::warn!(netns = net.netns(), error = %e, "reconcile failed"),
            }
        }
        self.stats.repairs.fetch_add(repaired as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(o) = &self.observer {
            o.reconcile(nets.len(), repaired);
        }
        repaired
    }

    /// Every live network with its ports.
    pub async fn views(&self) -> Vec<NetworkInfo> {
        let nets: Vec<Arc<Network>> = self.live.lock().await.values().cloned().collect();
        let mut out = Vec::new();
        for net in nets {
            let model = net.model().await;
            let spec = net.spec();
            out.push(NetworkInfo {
                account_id: spec.account.clone(),
                zone_id: spec.zone.clone(),
                netns: net.netns().to_owned(),
                subnet: spec.subnet.to_string(),
                gateway: spec.gateway.to_string(),
                ports: model
                    .machines
                    .values()
                    .map(|m| NetworkPort {
                        tap: m.port.tap.clone(),
                        mac: m.port.mac.to_string(),
                        ip: m.port.ip.to_string(),
                        public_ip: m.port.public_ip.map(|p| p.to_string()),
                        firewalls: m.rules.firewalls.clone(),
                        inbound_rules: m.rules.inbound.allow.len(),
                        outbound_rules: m.rules.outbound.allow.len(),
                    })
                    .collect(),
            });
        }
        out.sort_by(|a, b| (&a.account_id, &a.zone_id).cmp(&(&b.account_id, &b.zone_id)));
        out
    }
}

/// A machine's port on its network.
pub fn port_of(instance_id: &str, n: &MachineNetwork) -> Port {
    Port { tap: tap_name(instance_id), mac: Mac::for_instance(instance_id), ip: n.ip, public_ip: n.public_ip }
}
