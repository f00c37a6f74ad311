//! Names and addresses derived deterministically from the control plane's ids.
//!
//! Every name a kernel sees is derived, never stored: the same instance id always gives the same
//! tap and MAC, the same (account, zone) the same namespace and transit link, so a restarted
//! process finds what it made. Interface names fit IFNAMSIZ (15 bytes and a NUL).

use std::fmt;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

/// The longest interface name Linux accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// The bridge inside every network namespace (names inside a namespace cannot collide).
pub const BRIDGE: &str = "br0";
/// The namespace's end of its transit link to the host.
pub const TRANSIT: &str = "t0";
/// The vxlan port of a network that spans hosts (inside the namespace, on the bridge).
pub const VXLAN: &str = "vx0";
/// The IANA port of VXLAN, on the hosts' underlay.
pub const VXLAN_PORT: u16 = 4789;
/// VNIs are 24 bits; 0 is not used.
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// What VXLAN over IPv4 adds to a frame: outer IPv4 (20), UDP (8), VXLAN (8) and the inner
/// Ethernet header (14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// The MTU of a network that spans hosts (bridge, taps, vxlan port, and the guests' through
/// DHCP): what fits in a 1500-byte underlay.
pub const TUNNEL_MTU: u32 = 1500 - VXLAN_OVERHEAD;
/// Transit links are /30s carved from this shared address space (RFC 6598), one per network.
pub const TRANSIT_BASE: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
/// `TRANSIT_BASE/10` holds 2^20 /30s.
pub const MAX_NETWORK_INDEX: u32 = (1 << 20) - 1;

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// The tap device of an instance: `owt` and 10 hex digits of a hash of its id (13 bytes).
pub fn tap_name(instance_id: &str) -> String {
    format!("owt{}", &hex::encode(digest(&["tap", instance_id]))[..10])
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The MAC of an instance: locally administered, unicast, from a hash of its id.
    pub fn for_instance(instance_id: &str) -> Mac {
        let d = digest(&["mac", instance_id]);
        Mac([0x02, d[0], d[1], d[2], d[3], d[4]])
    }

    pub fn parse(s: &str) -> Option<Mac> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next()?;
            if p.len() != 2 {
                return None;
            }
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// The names of one (account, zone) network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkNames {
    /// The network namespace: the host's prefix, `n-` and 10 hex digits.
    pub netns: String,
    /// The host's end of the transit link: `owv` and 10 hex digits (13 bytes).
    pub host_veth: String,
    /// The vxlan device's name in the host's namespace, where it is made (its socket stays
    /// there) before it moves into the network's namespace as [`VXLAN`]: `owx` and the same
    /// 10 hex digits.
    pub host_vxlan: String,
}

impl NetworkNames {
    pub fn new(prefix: &str, account: &str, zone: &str) -> NetworkNames {
        let key = &hex::encode(digest(&["network", account, zone]))[..10];
        NetworkNames {
            netns: format!("{prefix}n-{key}"),
            host_veth: format!("owv{key}"),
            host_vxlan: format!("owx{key}"),
        }
    }
}

/// The transit /30 of network `index` (1 ≤ index ≤ [`MAX_NETWORK_INDEX`]): the host's address
/// and the namespace's.
pub fn transit_addrs(index: u32) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if index == 0 || index > MAX_NETWORK_INDEX {
        return None;
    }
    let base = u32::from(TRANSIT_BASE) + index * 4;
    Some((Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_short() {
        let t = tap_name("INS-1234");
        assert_eq!(t, tap_name("INS-1234"));
        assert_ne!(t, tap_name("INS-1235"));
        assert!(t.len() <= IFNAME_MAX);
        let n = NetworkNames::new("owv-", "acme", "KR1-Z01");
        assert!(n.host_veth.len() <= IFNAME_MAX && n.host_vxlan.len() <= IFNAME_MAX);
        assert_ne!(n, NetworkNames::new("owv-", "acme", "KR1-Z02"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(NetworkNames::new("", "ab", "c"), NetworkNames::new("", "a", "bc"));
    }

    #[test]
    fn macs_are_local_unicast_and_round_trip() {
        for id in ["INS-1", "INS-2", "x"] {
            let m = Mac::for_instance(id);
            assert_eq!(m.0[0] & 0x03, 0x02, "locally administered, unicast: {m}");
            assert_eq!(Mac::parse(&m.to_string()), Some(m));
        }
        assert_eq!(Mac::parse("02:00:00:00:00"), None);
        assert_eq!(Mac::parse("02:00:00:00:00:00:00"), None);
        assert_eq!(Mac::parse("02:00:00:00:00:zz"), None);
    }

    #[test]
    fn transit_links_do_not_overlap() {
        assert_eq!(transit_addrs(0), None);
        assert_eq!(transit_addrs(1), Some((Ipv4Addr::new(100, 64, 0, 5), Ipv4Addr::new(100, 64, 0, 6))));
        let (h, n) = transit_addrs(MAX_NETWORK_INDEX).unwrap();
        assert_eq!((h, n), (Ipv4Addr::new(100, 127, 255, 253), Ipv4Addr::new(100, 127, 255, 254)));
        assert_eq!(transit_addrs(MAX_NETWORK_INDEX + 1), None);
    }
}
