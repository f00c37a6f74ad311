//! Server configuration: a TOML file, the environment (`OPENWINV_*`) and flags. Flags override
//! the environment, which overrides the file (the CLI folds flags and environment into one
//! `Settings` with clap); unset values take the defaults below.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ipnet::IpNet;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./openwinv-data";
/// iwinv's limit: 60 requests per minute per access key.
pub const DEFAULT_RATE_LIMIT: u32 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Sim,
    Qemu,
}

/// How the simulated driver paces hypervisor work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimMode {
    /// Each hypervisor step takes `sim_delay` seconds of server-clock time.
    Timed,
    /// Each hypervisor step waits for `openwinv admin sim step <operation_id>`.
    Explicit,
}

impl std::str::FromStr for SimMode {
    type Err = String;
    fn from_str(s: &str) -> Result<SimMode, String> {
        match s {
            "timed" => Ok(SimMode::Timed),
            "explicit" => Ok(SimMode::Explicit),
            _ => Err(format!("unknown sim mode `{s}` (expected timed or explicit)")),
        }
    }
}

/// Connections served at once when `max_connections` is unset, if the open-file limit allows.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// File descriptors kept back from connections for everything else: database connections, image
/// files, QEMU's sockets, logs.
pub const RESERVED_FILE_DESCRIPTORS: u64 = 256;
/// The fewest connections a derived cap allows, however low the open-file limit.
const MIN_DERIVED_CONNECTIONS: usize = 16;
/// Seconds a connection has to deliver a request head (after opening, or after its previous answer)
/// when `header_read_timeout` is unset.
pub const DEFAULT_HEADER_READ_TIMEOUT: f64 = 20.0;

/// Seconds each simulated hypervisor step takes by default: enough to see `pending` and `work`.
pub const DEFAULT_SIM_DELAY: f64 = 3.0;

impl std::str::FromStr for Driver {
    type Err = String;
    fn from_str(s: &str) -> Result<Driver, String> {
        match s {
            "sim" => Ok(Driver::Sim),
            "qemu" => Ok(Driver::Qemu),
            _ => Err(format!("unknown driver `{s}` (expected sim or qemu)")),
        }
    }
}

/// Every setting, each optional: one layer of configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…`; default `<data_dir>/openwinv.db`.
    pub database: Option<String>,
    pub driver: Option<Driver>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// Requests per minute for new access keys; 0 = unlimited.
    pub default_rate_limit: Option<u32>,
    /// 64 hex characters; default: `<data_dir>/encryption-key`, made at first start.
    pub encryption_key: Option<String>,
    /// Bearer token of `/admin/v1`; default: `<data_dir>/admin-token`, made at first start.
    pub admin_token: Option<String>,
    /// A catalog TOML file to seed an empty store with instead of the built-in one.
    pub catalog: Option<PathBuf>,
    /// IANA zone for dates and months; default `Asia/Seoul`.
    pub billing_timezone: Option<String>,
    /// `text` (default) or `json`.
    pub log_format: Option<String>,
    /// Seconds per simulated hypervisor step (timed mode); 0 = immediate.
    pub sim_delay: Option<f64>,
    pub sim_mode: Option<SimMode>,
    /// QEMU accelerator: `auto` (probe KVM, fall back to TCG), `kvm` or `tcg`; default `auto`.
    pub accel: Option<String>,
    /// Operation workers in this process.
    pub workers: Option<usize>,
    /// Mark regular bills paid as they are issued (default false: they start `unpaid`).
    pub bills_paid_on_issue: Option<bool>,
    /// Connections served at once; more are answered 503 and closed. Default: 10,000, or fewer
    /// when the open-file limit is lower.
    pub max_connections: Option<usize>,
    /// Seconds a connection has to deliver a complete request head after opening or after its
    /// previous answer (so also the idle keep-alive timeout); default 20.
    pub header_read_timeout: Option<f64>,
    /// Serve HTTPS with the data directory's local CA (on `listen`, or on `tls_listen`).
    pub tls: Option<bool>,
    /// Serve HTTPS on this address beside plain HTTP on `listen`; implies `tls`.
    pub tls_listen: Option<String>,
    /// Names the server certificate covers besides localhost, 127.0.0.1, ::1 and api-kr.iwinv.kr.
    pub tls_names: Option<Vec<String>>,
    /// QEMU machines' networking: `user` (QEMU's user-mode network and an SSH forward; the
    /// default) or `namespaces` (real per-(account, zone) networks, firewalls enforced).
    pub network: Option<String>,
    /// With `network = "namespaces"`: the host interface egress is masqueraded out of.
    pub uplink: Option<String>,
    /// Where machines run: `embedded` (this process's driver; the default) or `hosts` (each
    /// new instance is placed on a host and its driver steps run on that host's agent).
    pub placement: Option<String>,
    /// The address agents reach this process at (an http(s) URL), handed to an agent with each
    /// console session so that its dial-back reaches the process holding the browser's socket.
    /// Default: derived from the bound listen address (`docs/hosts.md`, "Consoles").
    pub internal_url: Option<String>,
}

impl Settings {
    pub fn from_file(path: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// `self` with unset values taken from `lower`.
    pub fn over(self, lower: Settings) -> Settings {
        Settings {
            listen: self.listen.or(lower.listen),
            data_dir: self.data_dir.or(lower.data_dir),
            database: self.database.or(lower.database),
            driver: self.driver.or(lower.driver),
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            default_rate_limit: self.default_rate_limit.or(lower.default_rate_limit),
            encryption_key: self.encryption_key.or(lower.encryption_key),
            admin_token: self.admin_token.or(lower.admin_token),
            catalog: self.catalog.or(lower.catalog),
            billing_timezone: self.billing_timezone.or(lower.billing_timezone),
            log_format: self.log_format.or(lower.log_format),
            sim_delay: self.sim_delay.or(lower.sim_delay),
            sim_mode: self.sim_mode.or(lower.sim_mode),
            accel: self.accel.or(lower.accel),
            workers: self.workers.or(lower.workers),
            bills_paid_on_issue: self.bills_paid_on_issue.or(lower.bills_paid_on_issue),
            max_connections: self.max_connections.or(lower.max_connections),
            header_read_timeout: self.header_read_timeout.or(lower.header_read_timeout),
            tls: self.tls.or(lower.tls),
            tls_listen: self.tls_listen.or(lower.tls_listen),
            tls_names: self.tls_names.or(lower.tls_names),
            network: self.network.or(lower.network),
            uplink: self.uplink.or(lower.uplink),
            placement: self.placement.or(lower.placement),
            internal_url: self.internal_url.or(lower.internal_url),
        }
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub driver: Driver,
    pub trusted_proxies: Vec<IpNet>,
    pub default_rate_limit: u32,
    /// The rate limit of the key made at first start: `default_rate_limit` when one was set,
    /// else unlimited with the simulated driver (a local playground) and iwinv's 60 with QEMU.
    pub bootstrap_rate_limit: u32,
    pub encryption_key: Option<String>,
    pub admin_token: Option<String>,
    pub catalog_file: Option<PathBuf>,
    pub billing_timezone: jiff::tz::TimeZone,
    pub log_json: bool,
    /// First access key, fixed by `OPENWINV_BOOTSTRAP_ACCESS_KEY` / `_SECRET_KEY`.
    pub bootstrap_key: Option<(String, String)>,
    pub sim_delay: std::time::Duration,
    pub sim_mode: SimMode,
    pub accel: openwinv_qemu::Accel,
    pub workers: usize,
    /// Test hook (`OPENWINV_SIM_REPEAT_STEPS=1`): every saga step runs twice.
    pub repeat_steps: bool,
    /// How long a worker's claim on an operation lasts without progress (`OPENWINV_LEASE_SECS`,
    /// default 30): after a crash, another process resumes after this; the restarted process
    /// (same data directory) takes its own leases back at once (`openwinv_engine::worker`).
    pub lease: std::time::Duration,
    /// New regular bills are issued already `paid`.
    pub bills_paid_on_issue: bool,
    /// Set explicitly; otherwise derived from the open-file limit (`max_connections`).
    pub max_connections: Option<usize>,
    pub header_read_timeout: std::time::Duration,
    /// HTTPS, when asked for.
    pub tls: Option<TlsConfig>,
    /// How QEMU machines are networked.
    pub network: NetworkMode,
    /// The uplink of real networks (`None`: egress out of any interface).
    pub uplink: Option<String>,
    /// Where machines run.
    pub placement: Placement,
    /// Where agents reach this process (no trailing `/`): set, or derived once the listeners
    /// are bound ([`Config::derive_internal_url`]); `None` when it cannot be derived (a
    /// wildcard listen address), and agents then dial back their own control-plane URL.
    pub internal_url: Option<String>,
}

/// Where machines run (`docs/hosts.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// This process's own driver (`driver`) runs every machine: one machine, as always.
    Embedded,
    /// Each new instance is placed on a hypervisor host (`openwinv agent`), and every driver
    /// step of its operations is a work item for that host's agent.
    Hosts,
}

/// How QEMU machines are networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// QEMU's user-mode network with the guest's port 22 forwarded from 127.0.0.1.
    User,
    /// Real networks: one namespace per (account, zone), taps, DHCP, NAT, nftables.
    Namespaces,
}

/// Where and for which names HTTPS is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `None`: HTTPS replaces HTTP on `listen`; `Some`: HTTPS on this address beside it.
    pub listen: Option<SocketAddr>,
    /// Extra names of the server certificate (`--tls-name`).
    pub names: Vec<String>,
}

impl Config {
    pub fn resolve(s: Settings) -> anyhow::Result<Config> {
        let listen: SocketAddr = s
            .listen
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN)
            .parse()
            .context("listen must be an address such as 127.0.0.1:8080")?;
        let data_dir = s.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = match s.database {
            Some(url) => url,
            None => format!("sqlite://{}?mode=rwc", data_dir.join("openwinv.db").display()),
        };
        let trusted_proxies = s
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|p| parse_cidr(p).with_context(|| format!("trusted_proxies: `{p}` is not an address or CIDR")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tz_name = s.billing_timezone.as_deref().unwrap_or("Asia/Seoul");
        let billing_timezone = jiff::tz::TimeZone::get(tz_name)
            .with_context(|| format!("billing_timezone: unknown time zone `{tz_name}`"))?;
        let log_json = match s.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => bail!("log_format must be text or json, not `{other}`"),
        };
        let bootstrap_key = match (
            std::env::var("OPENWINV_BOOTSTRAP_ACCESS_KEY").ok(),
            std::env::var("OPENWINV_BOOTSTRAP_SECRET_KEY").ok(),
        ) {
            (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Some((a, s)),
            (None, None) => None,
            _ => bail!("set both OPENWINV_BOOTSTRAP_ACCESS_KEY and OPENWINV_BOOTSTRAP_SECRET_KEY, or neither"),
        };
        let sim_delay = s.sim_delay.unwrap_or(DEFAULT_SIM_DELAY);
        if !(0.0..=86_400.0).contains(&sim_delay) {
            bail!("sim_delay must be 0 to 86400 seconds, not {sim_delay}");
        }
        let workers = s.workers.unwrap_or(4);
        if !(1..=256).contains(&workers) {
            bail!("workers must be 1 to 256, not {workers}");
        }
        let accel = match s.accel.as_deref() {
            None => openwinv_qemu::Accel::Auto,
            Some(a) => a.parse().map_err(|_| anyhow::anyhow!("accel must be auto, kvm or tcg, not `{a}`"))?,
        };
        let driver = s.driver.unwrap_or(Driver::Sim);
        if let Some(n) = s.max_connections
            && !(1..=10_000_000).contains(&n)
        {
            bail!("max_connections must be 1 to 10000000, not {n}");
        }
        let header_read_timeout = s.header_read_timeout.unwrap_or(DEFAULT_HEADER_READ_TIMEOUT);
        if !(0.1..=3_600.0).contains(&header_read_timeout) {
            bail!("header_read_timeout must be 0.1 to 3600 seconds, not {header_read_timeout}");
        }
        let tls = resolve_tls(s.tls, s.tls_listen.as_deref(), s.tls_names.unwrap_or_default())?;
        if let Some(TlsConfig { listen: Some(https), .. }) = &tls
            && https == &listen
            && https.port() != 0
        {
            bail!("tls_listen must differ from listen ({listen}); use tls alone for HTTPS on the listen address");
        }
        let network = match s.network.as_deref() {
            None | Some("user") => NetworkMode::User,
            Some("namespaces") => NetworkMode::Namespaces,
            Some(other) => bail!("network must be user or namespaces, not `{other}`"),
        };
        if network == NetworkMode::Namespaces && driver != Driver::Qemu {
            bail!("network = namespaces is for the QEMU driver (--driver qemu); the simulated driver has no packets");
        }
        if let Some(u) = &s.uplink {
            if network != NetworkMode::Namespaces {
                bail!("uplink is used with network = namespaces only");
            }
            if u.is_empty() || u.len() > 15 || !u.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b)) {
                bail!("uplink must be an interface name (1 to 15 letters, digits, '-', '_', '.'), not `{u}`");
            }
        }
        let placement = match s.placement.as_deref() {
            None | Some("embedded") => Placement::Embedded,
            Some("hosts") => Placement::Hosts,
            Some(other) => bail!("placement must be embedded or hosts, not `{other}`"),
        };
        if placement == Placement::Hosts && network == NetworkMode::Namespaces {
            bail!(
                "network = namespaces is for the embedded QEMU driver; with placement = hosts the agents run machines"
            );
        }
        let bootstrap_rate_limit = match (s.default_rate_limit, driver) {
            (Some(limit), _) => limit,
            (None, Driver::Sim) => 0,
            (None, Driver::Qemu) => DEFAULT_RATE_LIMIT,
        };
        let internal_url = s.internal_url.as_deref().map(resolve_internal_url).transpose()?;
        Ok(Config {
            internal_url,
            max_connections: s.max_connections,
            header_read_timeout: std::time::Duration::from_secs_f64(header_read_timeout),
            tls,
            network,
            uplink: s.uplink,
            placement,
            bootstrap_rate_limit,
            accel,
            sim_delay: std::time::Duration::from_secs_f64(sim_delay),
            sim_mode: s.sim_mode.unwrap_or(SimMode::Timed),
            workers,
            repeat_steps: std::env::var("OPENWINV_SIM_REPEAT_STEPS").is_ok_and(|v| v == "1"),
            lease: std::time::Duration::from_secs(
                std::env::var("OPENWINV_LEASE_SECS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(30),
            ),
            listen,
            data_dir,
            database_url,
            driver,
            trusted_proxies,
            default_rate_limit: s.default_rate_limit.unwrap_or(DEFAULT_RATE_LIMIT),
            encryption_key: s.encryption_key,
            admin_token: s.admin_token,
            catalog_file: s.catalog,
            billing_timezone,
            log_json,
            bootstrap_key,
            bills_paid_on_issue: s.bills_paid_on_issue.unwrap_or(false),
        })
    }
}

impl Config {
    /// Connections to serve at once: the configured number, or the default capped so that
    /// connections leave `RESERVED_FILE_DESCRIPTORS` of the open-file limit for the rest.
    pub fn max_connections(&self, open_file_limit: Option<u64>) -> usize {
        if let Some(n) = self.max_connections {
            return n;
        }
        let room = open_file_limit
            .map(|l| usize::try_from(l.saturating_sub(RESERVED_FILE_DESCRIPTORS)).unwrap_or(usize::MAX))
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        DEFAULT_MAX_CONNECTIONS.min(room).max(MIN_DERIVED_CONNECTIONS)
    }
}

/// Checks `internal_url`: an absolute http(s) URL with a host, kept without a trailing `/`.
fn resolve_internal_url(u: &str) -> anyhow::Result<String> {
    let trimmed = u.trim().trim_end_matches('/');
    let parsed: axum::http::Uri =
        trimmed.parse().with_context(|| format!("internal_url: `{u}` is not a URL such as http://10.0.0.5:8080"))?;
    let authority = parsed.authority().map_or("", |a| a.as_str());
    if !matches!(parsed.scheme_str(), Some("http" | "https"))
        || parsed.host().is_none_or(str::is_empty)
        || authority.contains('@')
    {
        bail!("internal_url must be an http:// or https:// URL with a host, not `{u}`");
    }
    if parsed.query().is_some() {
        bail!("internal_url must have no query, not `{u}`");
    }
    Ok(trimmed.to_owned())
}

impl Config {
    /// Fills in `internal_url` from the bound addresses when it was not set: HTTPS on
    /// `tls_listen` when it is served beside HTTP, else the listen address with the scheme it
    /// serves. A wildcard address (0.0.0.0, ::) names no reachable host: left unset.
    pub fn derive_internal_url(&mut self, listen: SocketAddr, tls_beside: Option<SocketAddr>) {
        if self.internal_url.is_some() {
            return;
        }
        let (scheme, addr) = match (&self.tls, tls_beside) {
            (Some(_), Some(beside)) => ("https", beside),
            (Some(_), None) => ("https", listen),
            (None, _) => ("http", listen),
        };
        if !addr.ip().is_unspecified() {
            self.internal_url = Some(format!("{scheme}://{addr}"));
        }
    }
}

fn resolve_tls(on: Option<bool>, listen: Option<&str>, names: Vec<String>) -> anyhow::Result<Option<TlsConfig>> {
    let listen = listen
        .map(|a| {
            a.parse::<SocketAddr>()
                .with_context(|| format!("tls_listen: `{a}` is not an address such as 127.0.0.1:8443"))
        })
        .transpose()?;
    for name in &names {
        crate::tls::check_name(name)?;
    }
    if on != Some(true) && listen.is_none() {
        if !names.is_empty() {
            bail!("tls_names needs tls or tls_listen");
        }
        return Ok(None);
    }
    Ok(Some(TlsConfig { listen, names }))
}

/// An IPv4/IPv6 network, or a bare address taken as a single-host network.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_layers_win() {
        let file = Settings { listen: Some("127.0.0.1:1".into()), default_rate_limit: Some(5), ..Default::default() };
        let flags = Settings { listen: Some("127.0.0.1:2".into()), ..Default::default() };
        let c = Config::resolve(flags.over(file)).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.default_rate_limit, 5);
        assert_eq!(c.driver, Driver::Sim);
        assert!(c.database_url.starts_with("sqlite://"));
    }

    #[test]
    fn bad_values_are_named() {
        let e =
            Config::resolve(Settings { billing_timezone: Some("Mars/Base".into()), ..Default::default() }).unwrap_err();
        assert!(format!("{e:#}").contains("billing_timezone"));
        let e =
            Config::resolve(Settings { trusted_proxies: Some(vec!["nope".into()]), ..Default::default() }).unwrap_err();
        assert!(format!("{e:#}").contains("trusted_proxies"));
        let e = Config::resolve(Settings { max_connections: Some(0), ..Default::default() }).unwrap_err();
        assert!(format!("{e:#}").contains("max_connections"));
        let e = Config::resolve(Settings { header_read_timeout: Some(0.0), ..Default::default() }).unwrap_err();
        assert!(format!("{e:#}").contains("header_read_timeout"));
        let e = Config::resolve(Settings { tls_listen: Some("nope".into()), ..Default::default() }).unwrap_err();
        assert!(format!("{e:#}").contains("tls_listen"));
        let e = Config::resolve(Settings { tls_names: Some(vec!["a.test".into()]), ..Default::default() }).unwrap_err();
        assert!(format!("{e:#}").contains("tls_names needs tls"), "{e:#}");
        let e = Config::resolve(Settings {
            tls: Some(true),
            tls_names: Some(vec!["bad name".into()]),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("tls_names"));
    }

    #[test]
    fn the_connection_cap_leaves_file_descriptors_for_the_rest() {
        let c = Config::resolve(Settings::default()).unwrap();
        assert_eq!(c.max_connections(Some(1_048_576)), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(c.max_connections(Some(1024)), 1024 - RESERVED_FILE_DESCRIPTORS as usize);
        assert_eq!(c.max_connections(Some(100)), MIN_DERIVED_CONNECTIONS);
        assert_eq!(c.max_connections(None), DEFAULT_MAX_CONNECTIONS);
        let c = Config::resolve(Settings { max_connections: Some(50), ..Default::default() }).unwrap();
        assert_eq!(c.max_connections(Some(1024)), 50);
    }

    #[test]
    fn tls_on_the_listen_address_or_beside_it() {
        assert_eq!(Config::resolve(Settings::default()).unwrap().tls, None);
        let on = Config::resolve(Settings { tls: Some(true), ..Default::default() }).unwrap();
        assert_eq!(on.tls, Some(TlsConfig { listen: None, names: vec![] }));
        let beside = Config::resolve(Settings {
            tls_listen: Some("127.0.0.1:8443".into()),
            tls_names: Some(vec!["dev.test".into()]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            beside.tls,
            Some(TlsConfig { listen: Some("127.0.0.1:8443".parse().unwrap()), names: vec!["dev.test".into()] })
        );
    }

    #[test]
    fn the_first_key_is_unlimited_only_in_the_simulator_by_default() {
        let sim = Config::resolve(Settings::default()).unwrap();
        assert_eq!((sim.bootstrap_rate_limit, sim.default_rate_limit), (0, DEFAULT_RATE_LIMIT));
        let qemu = Config::resolve(Settings { driver: Some(Driver::Qemu), ..Default::default() }).unwrap();
        assert_eq!(qemu.bootstrap_rate_limit, DEFAULT_RATE_LIMIT);
        let set = Config::resolve(Settings { default_rate_limit: Some(7), ..Default::default() }).unwrap();
        assert_eq!((set.bootstrap_rate_limit, set.default_rate_limit), (7, 7));
    }

    #[test]
    fn the_internal_url_is_checked_or_derived_from_what_is_served() {
        let set = |u: &str| Config::resolve(Settings { internal_url: Some(u.into()), ..Default::default() });
        assert_eq!(
            set("https://cp-2.internal:8443/").unwrap().internal_url.as_deref(),
            Some("https://cp-2.internal:8443")
        );
        for bad in ["ftp://cp-2:21", "cp-2:8080", "http://cp-2:8080/?a=1", "file:///etc/passwd"] {
            let e = set(bad).unwrap_err().to_string();
            assert!(e.contains("internal_url"), "{bad}: {e}");
        }
        let listen: SocketAddr = "10.0.0.5:8080".parse().unwrap();
        let mut plain = Config::resolve(Settings::default()).unwrap();
        plain.derive_internal_url(listen, None);
        assert_eq!(plain.internal_url.as_deref(), Some("http://10.0.0.5:8080"));
        let mut tls = Config::resolve(Settings { tls: Some(true), ..Default::default() }).unwrap();
        tls.derive_internal_url(listen, None);
        assert_eq!(tls.internal_url.as_deref(), Some("https://10.0.0.5:8080"));
        let mut beside =
            Config::resolve(Settings { tls_listen: Some("10.0.0.5:8443".into()), ..Default::default() }).unwrap();
        beside.derive_internal_url(listen, Some("10.0.0.5:8443".parse().unwrap()));
        assert_eq!(beside.internal_url.as_deref(), Some("https://10.0.0.5:8443"));
        let mut wildcard = Config::resolve(Settings::default()).unwrap();
        wildcard.derive_internal_url("0.0.0.0:8080".parse().unwrap(), None);
        assert_eq!(wildcard.internal_url, None);
        let mut kept = set("http://cp-2:9000").unwrap();
        kept.derive_internal_url(listen, None);
        assert_eq!(kept.internal_url.as_deref(), Some("http://cp-2:9000"));
    }
}
