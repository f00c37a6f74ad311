//! `openwinv agent`: run a hypervisor host's agent against a control plane (`docs/hosts.md`).
//! The agent itself is `openwinv-agent`, which links no store.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use openwinv_agent::{Config, Driver};

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
}

pub async fn run(args: AgentArgs, ca_file: Option<PathBuf>) -> anyhow::Result<()> {
    init_logging()?;
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
