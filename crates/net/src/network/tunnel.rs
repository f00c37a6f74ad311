//! The tunnel of a network that spans hosts: its vxlan port, the peers its floods go to and
//! the remote machines' MAC → host entries, read, set and repaired.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::command::{bridge_in, ip_in, link_exists};
use super::{NetError, Network, Result, Tunnel};
use crate::model::TunnelModel;
use crate::names::{BRIDGE, Mac, TUNNEL_MTU, VXLAN, VXLAN_PORT};

impl Network {
    /// The vxlan port: made in the host's namespace (so its UDP socket on the underlay stays
    /// there), then moved into the network's namespace and onto the bridge. A port of another
    /// VNI or underlay address is replaced.
    pub(super) async fn create_vxlan(&self, t: Tunnel) -> Result<()> {
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
    pub(super) async fn repair_tunnel(&self, t: Tunnel, tm: &TunnelModel) -> Result<bool> {
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

pub(super) fn valid_underlay(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback())
}
