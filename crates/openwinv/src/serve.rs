//! `openwinv serve`: settings from flags and environment over an optional file, logging to stderr
//! (stdout carries the listening address and first-start credentials), then the server.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use openwinv_server::Settings;
use openwinv_server::config::{Config, DEFAULT_DATA_DIR, Driver, SimMode};
use openwinv_server::tls::LocalCa;
use tracing_subscriber::EnvFilter;

/// Name prefix of `--ephemeral` data directories (in `$TMPDIR`).
const EPHEMERAL_PREFIX: &str = "openwinv-ephemeral-";

/// The log filter when `RUST_LOG` is unset.
const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Settings file (TOML); flags and environment override it
    #[arg(long, env = "OPENWINV_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "OPENWINV_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Data directory: database, keys, credentials [default: ./openwinv-data]
    #[arg(long, env = "OPENWINV_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite://… or postgres://… [default: sqlite in the data directory]
    #[arg(long, env = "OPENWINV_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database: Option<String>,
    /// Compute backend [default: sim]
    #[arg(
        long,
        env = "OPENWINV_DRIVER",
        value_name = "DRIVER",
        value_parser = PossibleValuesParser::new(["sim", "qemu"])
            .try_map(|s| s.parse::<Driver>()),
    )]
    driver: Option<Driver>,
    /// Requests per minute for new access keys, 0 for unlimited [default: 60]
    #[arg(long, env = "OPENWINV_DEFAULT_RATE_LIMIT", value_name = "N")]
    default_rate_limit: Option<u32>,
    /// A proxy whose X-Forwarded-For is believed (repeat; comma-separated in the environment)
    #[arg(long = "trusted-proxy", env = "OPENWINV_TRUSTED_PROXIES", value_name = "CIDR", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// IANA time zone of dates and billing months [default: Asia/Seoul]
    #[arg(long, env = "OPENWINV_BILLING_TIMEZONE", value_name = "TZ")]
    billing_timezone: Option<String>,
    /// Log format on stderr [default: text]
    #[arg(
        long,
        env = "OPENWINV_LOG_FORMAT",
        value_name = "FORMAT",
        value_parser = ["text", "json"],
    )]
    log_format: Option<String>,
    /// 64 hex characters sealing secrets at rest [default: <data-dir>/encryption-key]
    #[arg(long, env = "OPENWINV_ENCRYPTION_KEY", value_name = "HEX", hide_env_values = true)]
    encryption_key: Option<String>,
    /// Bearer token of /admin/v1 [default: <data-dir>/admin-token]
    #[arg(long, env = "OPENWINV_SERVER_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Catalog TOML to seed an empty store with [default: the built-in one]
    #[arg(long, env = "OPENWINV_CATALOG", value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Seconds each simulated hypervisor step takes (timed mode), 0 for immediate [default: 3]
    #[arg(long, env = "OPENWINV_SIM_DELAY", value_name = "SECS")]
    sim_delay: Option<f64>,
    /// How simulated hypervisor steps advance: timed, or explicit (`admin sim step`) [default: timed]
    #[arg(
        long,
        env = "OPENWINV_SIM_MODE",
        value_name = "MODE",
        value_parser = PossibleValuesParser::new(["timed", "explicit"])
            .try_map(|s| s.parse::<SimMode>()),
    )]
    sim_mode: Option<SimMode>,
    /// QEMU accelerator: auto probes KVM and falls back to TCG [default: auto]
    #[arg(
        long,
        env = "OPENWINV_ACCEL",
        value_name = "ACCEL",
        value_parser = ["auto", "kvm", "tcg"],
    )]
    accel: Option<String>,
    /// QEMU machines' networking: user (user-mode, SSH forwarded from 127.0.0.1) or namespaces
    /// (real per-account networks with DHCP, NAT, public addresses and enforced firewalls; root) [default: user]
    #[arg(long, env = "OPENWINV_NETWORK", value_name = "MODE", value_parser = ["user", "namespaces"])]
    network: Option<String>,
    /// With --network namespaces: the host interface machines' egress is masqueraded out of
    #[arg(long, env = "OPENWINV_UPLINK", value_name = "IFACE")]
    uplink: Option<String>,
    /// Where machines run: embedded (this process's driver) or hosts (placed on hypervisor hosts,
    /// run by their `openwinv agent`; see docs/hosts.md) [default: embedded]
    #[arg(long, env = "OPENWINV_PLACEMENT", value_name = "MODE", value_parser = ["embedded", "hosts"])]
    placement: Option<String>,
    /// The address agents reach this process at, for their console dial-backs when several
    /// processes share a database (http:// or https://) [default: derived from the listen
    /// address, https when HTTPS is served (on --tls-listen when given); none for a wildcard
    /// address such as 0.0.0.0, and agents then dial their own --control-plane]
    #[arg(long, env = "OPENWINV_INTERNAL_URL", value_name = "URL")]
    internal_url: Option<String>,
    /// Operation workers in this process [default: 4]
    #[arg(long, env = "OPENWINV_WORKERS", value_name = "N")]
    workers: Option<usize>,
    /// Issue regular bills already paid (otherwise they start unpaid)
    #[arg(long, env = "OPENWINV_BILLS_PAID_ON_ISSUE")]
    bills_paid_on_issue: bool,
    /// Connections served at once; more are answered 503 [default: 10000, less if the open-file limit is lower]
    #[arg(long, env = "OPENWINV_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Seconds a connection has to send a request head after opening or after its last answer [default: 20]
    #[arg(long, env = "OPENWINV_HEADER_READ_TIMEOUT", value_name = "SECS")]
    header_read_timeout: Option<f64>,
    /// Serve HTTPS on the listen address, with a local CA made in the data directory on first use
    /// (`openwinv tls ca` prints it for clients to trust)
    #[arg(long, env = "OPENWINV_TLS", help_heading = "HTTPS")]
    tls: bool,
    /// Serve HTTPS on this address beside plain HTTP on the listen address
    #[arg(long, env = "OPENWINV_TLS_LISTEN", value_name = "ADDR", help_heading = "HTTPS")]
    tls_listen: Option<String>,
    /// Another name (host or IP address) for the server certificate, besides localhost,
    /// 127.0.0.1, ::1 and api-kr.iwinv.kr (repeat; comma-separated in the environment)
    #[arg(
        long = "tls-name",
        env = "OPENWINV_TLS_NAMES",
        value_name = "NAME",
        value_delimiter = ',',
        help_heading = "HTTPS"
    )]
    tls_names: Vec<String>,
    /// Keep everything in a temporary data directory, removed when the server stops (SIGINT or
    /// SIGTERM), for one-shot CI jobs
    #[arg(long, env = "OPENWINV_EPHEMERAL", conflicts_with = "data_dir")]
    ephemeral: bool,
}

/// `openwinv tls …`: the local certificate authority of `serve --tls`.
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Print the CA certificate (PEM), making the CA if the data directory has none, for
    /// `curl --cacert`, `SSL_CERT_FILE`, `IWINV_CA_FILE` or a system trust store
    Ca {
        /// Data directory of the server [default: ./openwinv-data]
        #[arg(long, env = "OPENWINV_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

pub fn tls(command: TlsCommand) -> anyhow::Result<()> {
    match command {
        TlsCommand::Ca { data_dir } => {
            let dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            let ca = LocalCa::open(&dir)?;
            print!("{}", ca.cert_pem());
            Ok(())
        }
    }
}

impl ServeArgs {
    /// The flag-and-environment layer over the file layer.
    fn settings(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        let flags = Settings {
            listen: self.listen,
            data_dir: self.data_dir,
            database: self.database,
            driver: self.driver,
            trusted_proxies: (!self.trusted_proxies.is_empty()).then_some(self.trusted_proxies),
            default_rate_limit: self.default_rate_limit,
            encryption_key: self.encryption_key,
            admin_token: self.admin_token,
            catalog: self.catalog,
            billing_timezone: self.billing_timezone,
            log_format: self.log_format,
            sim_delay: self.sim_delay,
            sim_mode: self.sim_mode,
            accel: self.accel,
            workers: self.workers,
            bills_paid_on_issue: self.bills_paid_on_issue.then_some(true),
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            tls: self.tls.then_some(true),
            tls_listen: self.tls_listen,
            tls_names: (!self.tls_names.is_empty()).then_some(self.tls_names),
            network: self.network,
            uplink: self.uplink,
            placement: self.placement,
            internal_url: self.internal_url,
        };
        Ok(flags.over(file))
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let ephemeral = args.ephemeral;
    let mut settings = args.settings()?;
    if ephemeral && settings.data_dir.is_some() {
        bail!("--ephemeral makes its own data directory; drop data_dir from the settings file");
    }
    // Removed when this function returns: after a clean stop, and after a failed start too.
    let temporary = if ephemeral {
        let dir = tempfile::Builder::new().prefix(EPHEMERAL_PREFIX).tempdir();
        Some(dir.context("cannot make a temporary data directory")?)
    } else {
        None
    };
    if let Some(dir) = &temporary {
        settings.data_dir = Some(dir.path().to_owned());
        println!("Ephemeral data directory {} (removed when the server stops)", dir.path().display());
    }
    let config = Config::resolve(settings)?;
    init_logging(config.log_json)?;
    let served = openwinv_server::serve(config).await;
    if let Some(dir) = temporary {
        let path = dir.path().to_owned();
        if let Err(e) = dir.close() {
            eprintln!("warning: could not remove the ephemeral data directory {}: {e}", path.display());
        }
    }
    served
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info,sqlx=warn`).
fn init_logging(json: bool) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(&spec).with_context(|| format!("RUST_LOG=`{spec}`"))?
        }
        _ => EnvFilter::new(DEFAULT_LOG_FILTER),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = if json { builder.json().try_init() } else { builder.try_init() };
    installed.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("openwinv-serve-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("openwinv.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\ndefault_rate_limit = 5\n").unwrap();
        let w = Wrapper::try_parse_from([
            "x",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:2",
            "--driver",
            "sim",
            "--trusted-proxy",
            "10.0.0.0/8,192.168.0.1",
        ])
        .unwrap();
        let s = w.serve.settings().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(s.listen.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(s.default_rate_limit, Some(5));
        assert_eq!(s.driver, Some(Driver::Sim));
        assert_eq!(s.trusted_proxies, Some(vec!["10.0.0.0/8".into(), "192.168.0.1".into()]));
    }

    #[test]
    fn tls_flags_reach_the_settings() {
        let w = Wrapper::try_parse_from([
            "x",
            "--tls-listen",
            "127.0.0.1:8443",
            "--tls-name",
            "a.test",
            "--tls-name",
            "10.0.0.1",
        ])
        .unwrap();
        let s = w.serve.settings().unwrap();
        assert_eq!(s.tls, None);
        assert_eq!(s.tls_listen.as_deref(), Some("127.0.0.1:8443"));
        assert_eq!(s.tls_names, Some(vec!["a.test".into(), "10.0.0.1".into()]));
        assert!(Wrapper::try_parse_from(["x", "--ephemeral", "--data-dir", "d"]).is_err());
    }

    #[test]
    fn unknown_driver_and_log_format_are_usage_errors() {
        assert!(Wrapper::try_parse_from(["x", "--driver", "kvm"]).is_err());
        assert!(Wrapper::try_parse_from(["x", "--log-format", "xml"]).is_err());
    }
}
