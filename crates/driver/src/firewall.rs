//! The firewall compiler: the firewalls attached to one instance → the rule set a host enforces.
//!
//! Pure: no store, no clock, no I/O. The output is a typed structure (what a driver applies) and
//! a deterministic nftables-like text rendering (what the console shows and golden files pin).
//!
//! Semantics (spec §9, [ours]):
//! - no firewall attached: all traffic passes, both ways;
//! - with one or more: inbound is denied unless an `IN` rule of any attached firewall allows it;
//!   ICMP inbound passes when any attached firewall has `icmp: Y`;
//! - outbound passes unless some attached firewall has an `OUT` rule; then only `OUT` rules pass;
//! - replies to allowed connections (conntrack established/related) always pass.
//!
//! An `IN` rule's `ip` is the source network and `port` the destination port on the instance; an
//! `OUT` rule's `ip` is the destination network and `port` the destination port. The `ip` text is
//! kept verbatim by the API (host bits allowed); the compiler matches on its network
//! (`10.1.2.3/8` matches as `10.0.0.0/8`). Identical matches from several rules or firewalls
//! are merged into one compiled rule that lists every source. The result does not depend on the
//! order in which firewalls or rules are given.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Bound {
    In,
    Out,
}

impl Bound {
    /// The wire spelling is exact upper case.
    pub fn parse(s: &str) -> Option<Bound> {
        match s {
            "IN" => Some(Bound::In),
            "OUT" => Some(Bound::Out),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The wire spelling is exact upper case.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }

    fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// An inclusive destination port range, 1 ≤ first ≤ last ≤ 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// `"N"` or `"A-B"`: decimal digits without sign, blanks or leading zeros.
    pub fn parse(s: &str) -> Option<PortRange> {
        fn one(p: &str) -> Option<u16> {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) || p.starts_with('0') {
                return None;
            }
            p.parse::<u16>().ok().filter(|n| *n >= 1)
        }
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (one(a)?, one(b)?),
            None => {
                let n = one(s)?;
                (n, n)
            }
        };
        (first <= last).then_some(PortRange { first, last })
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last { write!(f, "{}", self.first) } else { write!(f, "{}-{}", self.first, self.last) }
    }
}

/// An IPv4 network. `addr` keeps the address as written (host bits allowed);
/// [`Cidr::network`] is what matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// Why an `ip` text is not an accepted network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidrError {
    /// An IPv6 address or network (iwinv answers `IPV6_NOT_SUPPORTED`).
    Ipv6,
    /// An IPv4 address without a prefix length.
    BareAddress,
    /// Anything else.
    Invalid,
}

impl Cidr {
    /// `a.b.c.d/n` with 0 ≤ n ≤ 32 (decimal, no leading zeros in the prefix length).
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let Some((addr, prefix)) = s.split_once('/') else {
            if s.parse::<Ipv4Addr>().is_ok() {
                return Err(CidrError::BareAddress);
            }
            if s.parse::<Ipv6Addr>().is_ok() {
                return Err(CidrError::Ipv6);
            }
            return Err(CidrError::Invalid);
        };
        if addr.parse::<Ipv6Addr>().is_ok() {
            return Err(CidrError::Ipv6);
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| CidrError::Invalid)?;
        let ok_prefix = !prefix.is_empty()
            && prefix.len() <= 2
            && prefix.bytes().all(|b| b.is_ascii_digit())
            && (prefix == "0" || !prefix.starts_with('0'));
        let prefix: u8 = if ok_prefix {
            prefix.parse().map_err(|_| CidrError::Invalid)?
        } else {
            return Err(CidrError::Invalid);
        };
        if prefix > 32 {
            return Err(CidrError::Invalid);
        }
        Ok(Cidr { addr, prefix })
    }

    /// The network this matches: the address with its host bits cleared.
    pub fn network(self) -> Ipv4Addr {
        let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
        Ipv4Addr::from(u32::from(self.addr) & mask)
    }
}

/// One rule of a firewall, already validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub rule_id: i64,
    pub bound: Bound,
    pub protocol: Protocol,
    pub ports: PortRange,
    pub ip: Cidr,
}

/// Why stored rule text could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    Bound,
    Protocol,
    Port,
    Ip(CidrError),
}

impl Rule {
    /// Reads a rule from its wire text (the same checks the API applies).
    pub fn parse(rule_id: i64, bound: &str, protocol: &str, port: &str, ip: &str) -> Result<Rule, RuleError> {
        Ok(Rule {
            rule_id,
            bound: Bound::parse(bound).ok_or(RuleError::Bound)?,
            protocol: Protocol::parse(protocol).ok_or(RuleError::Protocol)?,
            ports: PortRange::parse(port).ok_or(RuleError::Port)?,
            ip: Cidr::parse(ip).map_err(RuleError::Ip)?,
        })
    }
}

/// One attached firewall as the compiler needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallSpec {
    pub firewall_id: String,
    /// `icmp: Y`.
    pub icmp: bool,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Drop,
}

/// Where a compiled rule came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Source {
    pub firewall_id: String,
    pub rule_id: i64,
}

/// An allow rule of one direction: protocol, destination ports and the peer network (the source
/// for inbound, the destination for outbound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allow {
    pub protocol: Protocol,
    pub ports: PortRange,
    pub network: Ipv4Addr,
    pub prefix: u8,
    /// Every rule that asked for exactly this, ordered by firewall id then rule id.
    pub sources: Vec<Source>,
}

/// One direction of traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// Replies to allowed connections pass (conntrack established/related).
    pub established: bool,
    /// Inbound only: ICMP passes; lists the firewalls with `icmp: Y`.
    pub icmp_from: Vec<String>,
    /// Allowed traffic, in a canonical order (protocol, ports, network).
    pub allow: Vec<Allow>,
    /// What happens to traffic nothing above allowed.
    pub otherwise: Verdict,
}

/// The effective rule set of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledRules {
    /// The attached firewalls, ordered by id. Empty: nothing is filtered.
    pub firewalls: Vec<String>,
    pub inbound: Chain,
    pub outbound: Chain,
}

impl CompiledRules {
    /// Nothing attached: everything passes.
    pub fn open() -> CompiledRules {
        compile(&[])
    }

    pub fn is_filtered(&self) -> bool {
        !self.firewalls.is_empty()
    }
}

type Key = (Protocol, PortRange, u32, u8);

fn allows(firewalls: &[&FirewallSpec], bound: Bound) -> Vec<Allow> {
    let mut merged: BTreeMap<Key, Vec<Source>> = BTreeMap::new();
    for fw in firewalls {
        for r in fw.rules.iter().filter(|r| r.bound == bound) {
            let net = r.ip.network();
            merged
                .entry((r.protocol, r.ports, u32::from(net), r.ip.prefix))
                .or_default()
                .push(Source { firewall_id: fw.firewall_id.clone(), rule_id: r.rule_id });
        }
    }
    merged
        .into_iter()
        .map(|((protocol, ports, net, prefix), mut sources)| {
            sources.sort();
            sources.dedup();
            Allow { protocol, ports, network: Ipv4Addr::from(net), prefix, sources }
        })
        .collect()
}

/// Compiles the firewalls attached to one instance into its effective rule set.
pub fn compile(firewalls: &[FirewallSpec]) -> CompiledRules {
    let mut attached: Vec<&FirewallSpec> = firewalls.iter().collect();
    attached.sort_by(|a, b| a.firewall_id.cmp(&b.firewall_id));
    attached.dedup_by(|a, b| a.firewall_id == b.firewall_id);
    if attached.is_empty() {
        let open = Chain { established: false, icmp_from: Vec::new(), allow: Vec::new(), otherwise: Verdict::Accept };
        return CompiledRules { firewalls: Vec::new(), inbound: open.clone(), outbound: open };
    }
    let inbound = Chain {
        established: true,
        icmp_from: attached.iter().filter(|f| f.icmp).map(|f| f.firewall_id.clone()).collect(),
        allow: allows(&attached, Bound::In),
        otherwise: Verdict::Drop,
    };
    let out = allows(&attached, Bound::Out);
    // Without an OUT rule nothing outbound is filtered, not even invalid packets.
    let outbound = Chain {
        established: !out.is_empty(),
        icmp_from: Vec::new(),
        otherwise: if out.is_empty() { Verdict::Accept } else { Verdict::Drop },
        allow: out,
    };
    CompiledRules { firewalls: attached.iter().map(|f| f.firewall_id.clone()).collect(), inbound, outbound }
}

fn sources_comment(sources: &[Source]) -> String {
    sources.iter().map(|s| format!("{}#{}", s.firewall_id, s.rule_id)).collect::<Vec<_>>().join(" ")
}

fn render_chain(out: &mut String, name: &str, hook: &str, peer: &str, chain: &Chain, note: &str) {
    let _ = writeln!(out, "\tchain {name} {{");
    let _ = writeln!(out, "\t\t# {note}");
    if chain.established {
        let _ = writeln!(out, "\t\tct state established,related accept");
        let _ = writeln!(out, "\t\tct state invalid drop");
    }
    if !chain.icmp_from.is_empty() {
        let _ = writeln!(out, "\t\tmeta l4proto icmp accept comment \"icmp: Y in {}\"", chain.icmp_from.join(" "));
    }
    for a in &chain.allow {
        let _ = writeln!(
            out,
            "\t\tip {peer} {}/{} {} dport {} accept comment \"{}\"",
            a.network,
            a.prefix,
            a.protocol.nft(),
            a.ports,
            sources_comment(&a.sources)
        );
    }
    let verdict = match chain.otherwise {
        Verdict::Accept => "accept",
        Verdict::Drop => "drop",
    };
    let _ = writeln!(out, "\t\t{verdict} comment \"{hook}\"");
    let _ = writeln!(out, "\t}}");
}

impl CompiledRules {
    /// A deterministic nftables-like text: one table, an inbound and an outbound chain.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.firewalls.is_empty() {
            let _ = writeln!(out, "# no firewall attached: all traffic passes");
        } else {
            let _ = writeln!(out, "# firewalls: {}", self.firewalls.join(" "));
        }
        let _ = writeln!(out, "table inet openwinv {{");
        let in_note = if self.firewalls.is_empty() {
            "to the instance: no firewall, everything passes"
        } else {
            "to the instance: only IN rules (and ICMP with icmp: Y) pass"
        };
        let out_note = match (self.firewalls.is_empty(), self.outbound.otherwise) {
            (true, _) => "from the instance: no firewall, everything passes",
            (false, Verdict::Accept) => "from the instance: no OUT rule, everything passes",
            (false, Verdict::Drop) => "from the instance: only OUT rules pass",
        };
        let in_end = if self.inbound.otherwise == Verdict::Drop { "default deny" } else { "default allow" };
        let out_end = if self.outbound.otherwise == Verdict::Drop { "default deny" } else { "default allow" };
        render_chain(&mut out, "inbound", in_end, "saddr", &self.inbound, in_note);
        render_chain(&mut out, "outbound", out_end, "daddr", &self.outbound, out_note);
        let _ = writeln!(out, "}}");
        out
    }
}

/// The compiler's reference shapes: a name and the firewalls attached to one machine. The
/// compiler's golden files and every back end's (the nftables text of `openwinv-net`) pin these
/// same cases, so a shape added here is checked everywhere. `OPENWINV_UPDATE_GOLDEN=1` rewrites
/// the files.
pub fn reference_shapes() -> Vec<(&'static str, Vec<FirewallSpec>)> {
    vec![
        ("01-no-firewall", vec![]),
        ("02-empty-icmp-off", vec![fw("FIREWALL-a", false, vec![])]),
        ("03-empty-icmp-on", vec![fw("FIREWALL-a", true, vec![])]),
        ("04-ssh-from-anywhere", vec![fw("FIREWALL-a", true, vec![rule(1, "IN", "TCP", "22", "0.0.0.0/0")])]),
        (
            "05-web-server",
            vec![fw(
                "FIREWALL-web",
                true,
                vec![
                    rule(1, "IN", "TCP", "80", "0.0.0.0/0"),
                    rule(2, "IN", "TCP", "443", "0.0.0.0/0"),
                    rule(3, "IN", "UDP", "443", "0.0.0.0/0"),
                    rule(4, "IN", "TCP", "22", "203.0.113.7/32"),
                ],
            )],
        ),
        (
            "06-host-bits-and-ranges",
            vec![fw(
                "FIREWALL-a",
                false,
                vec![
                    rule(1, "IN", "TCP", "8000-8999", "10.1.2.3/8"),
                    rule(2, "IN", "TCP", "8000-8999", "10.0.0.0/8"),
                    rule(3, "IN", "UDP", "1-65535", "192.168.7.9/24"),
                ],
            )],
        ),
        (
            "07-outbound-only",
            vec![fw(
                "FIREWALL-egress",
                false,
                vec![rule(1, "OUT", "UDP", "53", "1.1.1.1/32"), rule(2, "OUT", "TCP", "443", "0.0.0.0/0")],
            )],
        ),
        (
            "08-in-and-out",
            vec![fw(
                "FIREWALL-db",
                true,
                vec![
                    rule(1, "IN", "TCP", "5432", "10.16.0.0/16"),
                    rule(2, "OUT", "TCP", "443", "0.0.0.0/0"),
                    rule(3, "OUT", "UDP", "123", "0.0.0.0/0"),
                ],
            )],
        ),
        (
            "09-two-firewalls-union",
            vec![
                fw("FIREWALL-b", false, vec![rule(1, "IN", "TCP", "443", "0.0.0.0/0")]),
                fw("FIREWALL-a", true, vec![rule(7, "IN", "TCP", "22", "198.51.100.0/24")]),
            ],
        ),
        (
            "10-duplicates-across-firewalls",
            vec![
                fw(
                    "FIREWALL-a",
                    true,
                    vec![rule(1, "IN", "TCP", "22", "0.0.0.0/0"), rule(2, "OUT", "TCP", "25", "0.0.0.0/0")],
                ),
                fw("FIREWALL-b", true, vec![rule(3, "IN", "TCP", "22", "0.0.0.0/0")]),
                fw("FIREWALL-c", false, vec![rule(1, "IN", "TCP", "22", "0.0.0.0/1")]),
            ],
        ),
        (
            "11-out-rule-in-one-firewall-restricts-all",
            vec![
                fw("FIREWALL-a", false, vec![rule(1, "IN", "UDP", "51820", "0.0.0.0/0")]),
                fw("FIREWALL-b", false, vec![rule(1, "OUT", "TCP", "80", "93.184.216.0/24")]),
            ],
        ),
        (
            "12-five-firewalls",
            (1..=5)
                .map(|i| {
                    fw(
                        &format!("FIREWALL-{i}"),
                        i % 2 == 0,
                        vec![rule(
                            i,
                            "IN",
                            if i % 2 == 0 { "UDP" } else { "TCP" },
                            &format!("{}", 1000 * i),
                            "172.16.0.0/12",
                        )],
                    )
                })
                .collect(),
        ),
    ]
}

fn rule(id: i64, bound: &str, protocol: &str, port: &str, ip: &str) -> Rule {
    Rule::parse(id, bound, protocol, port, ip).expect("a reference rule parses")
}

fn fw(id: &str, icmp: bool, rules: Vec<Rule>) -> FirewallSpec {
    FirewallSpec { firewall_id: id.into(), icmp, rules }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(PortRange::parse("22"), Some(PortRange { first: 22, last: 22 }));
        assert_eq!(PortRange::parse("1-65535"), Some(PortRange { first: 1, last: 65535 }));
        assert_eq!(PortRange::parse("80-80"), Some(PortRange { first: 80, last: 80 }));
        for bad in
            ["", "0", "65536", "-1", "+1", " 1", "1 ", "022", "2-1", "1-", "-", "1-2-3", "a", "1.5", "0-10", "99999"]
        {
            assert_eq!(PortRange::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().network(), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().network(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(Cidr::parse("1.2.3.4/32").unwrap().network(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(Cidr::parse("1.2.3.4"), Err(CidrError::BareAddress));
        for v6 in ["::/0", "2001:db8::/32", "::1", "fe80::1/64", "::ffff:1.2.3.4/128"] {
            assert_eq!(Cidr::parse(v6), Err(CidrError::Ipv6), "{v6}");
        }
        for bad in [
            "",
            "/8",
            "1.2.3/8",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/08",
            "1.2.3.4/-1",
            "256.0.0.0/8",
            "a.b.c.d/8",
            "1.2.3.4/8/8",
            " 1.2.3.4/8",
        ] {
            assert_eq!(Cidr::parse(bad), Err(CidrError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn no_firewall_lets_everything_pass() {
        let c = compile(&[]);
        assert!(!c.is_filtered());
        assert_eq!((c.inbound.otherwise, c.outbound.otherwise), (Verdict::Accept, Verdict::Accept));
    }

    #[test]
    fn order_of_firewalls_and_rules_does_not_matter() {
        let a = fw(
            "FIREWALL-a",
            true,
            vec![rule(1, "IN", "TCP", "22", "0.0.0.0/0"), rule(2, "OUT", "UDP", "53", "8.8.8.8/32")],
        );
        let b = fw(
            "FIREWALL-b",
            false,
            vec![rule(5, "IN", "TCP", "80", "10.0.0.0/8"), rule(6, "IN", "TCP", "22", "0.0.0.0/0")],
        );
        let mut b_rev = b.clone();
        b_rev.rules.reverse();
        assert_eq!(compile(&[a.clone(), b.clone()]), compile(&[b_rev, a.clone()]));
        assert_eq!(compile(&[a.clone(), a.clone()]), compile(&[a]));
    }

    #[test]
    fn golden() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/firewall");
        let update = std::env::var_os("OPENWINV_UPDATE_GOLDEN").is_some();
        if update {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let mut stale = Vec::new();
        for (name, firewalls) in reference_shapes() {
            let compiled = compile(&firewalls);
            let text = compiled.render();
            let path = dir.join(format!("{name}.txt"));
            if update {
                std::fs::write(&path, &text).unwrap();
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_default();
            if expected != text {
                stale.push(format!("{name}:\n--- expected\n{expected}--- got\n{text}"));
            }
            // The typed form round-trips through JSON (drivers may persist it).
            let json = serde_json::to_string(&compiled).unwrap();
            assert_eq!(serde_json::from_str::<CompiledRules>(&json).unwrap(), compiled);
        }
        assert!(
            stale.is_empty(),
            "golden files differ; run `OPENWINV_UPDATE_GOLDEN=1 cargo test -p openwinv-driver firewall` after checking:\n{}",
            stale.join("\n")
        );
    }
}
