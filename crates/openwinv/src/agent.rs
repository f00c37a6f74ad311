//! `openwinv agent`: run a hypervisor host's agent against a control plane (`docs/hosts.md`).
//! The agent itself is `openwinv-agent`, which links no store.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use openwinv_agent::{Config, Driver, Network};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DriverArg {
    Qemu,
    Sim,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The control plane's URL, e.g. https://cp.example:8443 (trust its local CA with --ca-file)
    #[arg(long, env = "OPENWINV_CONTROL_PLANE", value_name = "URL")]
    control_plane: String,
    /// The host's token, as `openwinv admin hosts add` printed it
    #[arg(long, env = "OPENWINV_HOST_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    host_token: String,
    /// The driver this host runs machines with
    #[arg(long, value_enum)]
    driver: DriverArg,
    /// The zone the operator added this host to, e.g. KR1-Z01
    #[arg(long, value_name = "ZONE")]
    zone: String,
    /// The agent's directory (created 0700)
    #[arg(long, env = "OPENWINV_AGENT_DATA_DIR", value_name = "DIR", default_value = "./openwinv-agent")]
    data_dir: PathBuf,
    /// The address to announce instead of the one this machine reaches the control plane from
    #[arg(long, value_name = "ADDR")]
    address: Option<String>,
    /// vCPUs to announce instead of the machine's (simulated hosts)
    #[arg(long, value_name = "N")]
    vcpus: Option<i64>,
    /// Memory in MiB to announce instead of the machine's (simulated hosts)
    #[arg(long, value_name = "MIB")]
    memory_mb: Option<i64>,
    /// Disk in GiB to announce instead of the data directory's file system (simulated hosts)
    #[arg(long, value_name = "GIB")]
    disk_gb: Option<i64>,
    /// Seconds each machine call takes on a simulated host (--driver sim), so that work is seen
    /// in progress [default: 0]
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    sim_delay: f64,
    /// A simulated host (--driver sim) refuses the Nth run of CALL since the agent started, for
    /// good: a fault for testing what the control plane undoes (e.g. import_volume:2)
    #[arg(long, value_name = "CALL:N")]
    sim_refuse: Option<String>,
    /// QEMU's accelerator (--driver qemu): auto (KVM when it works, else TCG), kvm or tcg
    #[arg(long, value_name = "ACCEL", default_value = "auto")]
    accel: String,
    /// Cached image files (fetched by SHA-256) that no machine of this host uses are removed
    /// after this long unused: seconds, or a number with s, m, h or d (--driver qemu)
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    image_cache_ttl: String,
    /// This host's IPv4 address on the network between hosts, where other hosts send the VXLAN
    /// packets of the private networks it shares with them [default: the announced address]
    #[arg(long, env = "OPENWINV_UNDERLAY", value_name = "IP")]
    underlay: Option<std::net::Ipv4Addr>,
    /// QEMU machines' networking (--driver qemu): user (user-mode) or namespaces (real
    /// per-account networks spanning hosts over VXLAN; root) [default: user]
    #[arg(long, env = "OPENWINV_NETWORK", value_name = "MODE", value_parser = ["user", "namespaces"])]
    network: Option<String>,
    /// With --network namespaces: the host interface machines' egress is masqueraded out of
    #[arg(long, env = "OPENWINV_UPLINK", value_name = "IFACE")]
    uplink: Option<String>,
}

/// `90`, `90s`, `15m`, `2h`, `7d`: a positive duration of at most a year.
fn parse_ttl(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let (n, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = n.parse().ok()?;
    let secs = n.checked_mul(match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    })?;
    (1..=366 * 86_400).contains(&secs).then(|| std::time::Duration::from_secs(secs))
}

pub async fn run(args: AgentArgs, ca_file: Option<PathBuf>) -> anyhow::Result<()> {
    init_logging()?;
    let network = match args.network.as_deref() {
        None | Some("user") => Network::User,
        Some(_) => Network::Namespaces,
    };
    if network == Network::Namespaces && !matches!(args.driver, DriverArg::Qemu) {
        anyhow::bail!("--network namespaces is for --driver qemu");
    }
    if let Some(u) = &args.uplink {
        if network != Network::Namespaces {
            anyhow::bail!("--uplink is used with --network namespaces only");
        }
        if u.is_empty() || u.len() > 15 || !u.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            anyhow::bail!("--uplink must be an interface name (1 to 15 letters, digits, '-', '_', '.'), not `{u}`");
        }
    }
    let config = Config {
        control_plane: args.control_plane,
        host_token: args.host_token,
        driver: match args.driver {
            DriverArg::Qemu => Driver::Qemu,
            DriverArg::Sim => Driver::Sim,
        },
        zone: args.zone,
        data_dir: args.data_dir,
        ca_file,
        address: args.address,
        vcpus: args.vcpus,
        memory_mb: args.memory_mb,
        disk_gb: args.disk_gb,
        sim_delay: std::time::Duration::try_from_secs_f64(args.sim_delay)
            .ok()
            .filter(|d| *d <= std::time::Duration::from_secs(3600))
            .ok_or_else(|| anyhow::anyhow!("--sim-delay must be 0 to 3600 seconds, not {}", args.sim_delay))?,
        sim_refuse: match args.sim_refuse.as_deref() {
            None => None,
            Some(_) if !matches!(args.driver, DriverArg::Sim) => {
                anyhow::bail!("--sim-refuse is for simulated hosts (--driver sim)")
            }
            Some(v) => Some(
                v.split_once(':')
                    .and_then(|(call, n)| {
                        Some((call.to_owned(), n.parse::<u32>().ok().filter(|n| *n > 0)?))
                            .filter(|(call, _)| !call.is_empty())
                    })
                    .ok_or_else(|| {
                        anyhow::anyhow!("--sim-refuse must be CALL:N with N from 1 (e.g. import_volume:2), not `{v}`")
                    })?,
            ),
        },
        accel: args
            .accel
            .parse()
            .map_err(|_| anyhow::anyhow!("--accel must be auto, kvm or tcg, not `{}`", args.accel))?,
        image_cache_ttl: parse_ttl(&args.image_cache_ttl).ok_or_else(|| {
            anyhow::anyhow!(
                "--image-cache-ttl must be a duration from 1 s to 366 d (e.g. 90, 30m, 7d), not `{}`",
                args.image_cache_ttl
            )
        })?,
        underlay: args.underlay,
        network,
        uplink: args.uplink,
    };
    openwinv_agent::run(config, shutdown_signal()).await
}

/// Logs to stderr; `RUST_LOG` as for `serve`.
fn init_logging() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            tracing_subscriber::EnvFilter::try_new(&spec).map_err(|e| anyhow::anyhow!("RUST_LOG=`{spec}`: {e}"))?
        }
        _ => tracing_subscriber::EnvFilter::new("info"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn ttls() {
        assert_eq!(super::parse_ttl("90"), Some(Duration::from_secs(90)));
        assert_eq!(super::parse_ttl("3s"), Some(Duration::from_secs(3)));
        assert_eq!(super::parse_ttl("15m"), Some(Duration::from_secs(900)));
        assert_eq!(super::parse_ttl("7d"), Some(Duration::from_secs(7 * 86_400)));
        for bad in ["", "0", "d", "7w", "-1", "400d", "1.5h"] {
            assert_eq!(super::parse_ttl(bad), None, "{bad}");
        }
    }
}
