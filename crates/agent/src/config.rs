//! What `openwinv agent` was given ([`Config`]) and what it tells the control plane about its
//! host ([`Facts`]: address, vCPUs, memory and disk read from the machine unless overridden).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

/// The driver the host runs machines with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Qemu,
    Sim,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Qemu => "qemu",
            Driver::Sim => "sim",
        }
    }
}

/// What `openwinv agent` was given.
#[derive(Debug, Clone)]
pub struct Config {
    /// The control plane's base URL, e.g. `https://cp.example:8443`.
    pub control_plane: String,
    pub host_token: String,
    pub driver: Driver,
    pub zone: String,
    pub data_dir: PathBuf,
    /// A CA certificate (PEM) to trust besides the system's: the control plane's local CA.
    pub ca_file: Option<PathBuf>,
    /// The address to announce instead of the one the agent reaches the control plane from.
    pub address: Option<String>,
    /// Capacity to announce instead of the machine's (simulated hosts).
    pub vcpus: Option<i64>,
    pub memory_mb: Option<i64>,
    pub disk_gb: Option<i64>,
    /// How long each machine call takes on a simulated host.
    pub sim_delay: Duration,
    /// A simulated host refuses the Nth run of this call (`--sim-refuse CALL:N`).
    pub sim_refuse: Option<(String, u32)>,
    /// QEMU's accelerator (`--driver qemu`).
    pub accel: openwinv_qemu::Accel,
    /// Cached image files no machine uses are removed after this long unused.
    pub image_cache_ttl: Duration,
    /// The host's address on the underlay between hosts (`--underlay`); `None`: the announced
    /// address, when it is an IPv4 address.
    pub underlay: Option<std::net::Ipv4Addr>,
    /// How QEMU machines are networked (`--network`).
    pub network: Network,
    /// With real networks: the interface machines' egress is masqueraded out of (`--uplink`).
    pub uplink: Option<String>,
}

/// How a QEMU host networks its machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// QEMU's user-mode network (one machine alone, SSH forwarded from 127.0.0.1).
    #[default]
    User,
    /// Real networks: one namespace per (account, zone), bridged across hosts over VXLAN from
    /// the underlay address (`docs/network.md`).
    Namespaces,
}

impl Config {
    /// The underlay address: `--underlay`, else the announced address if it is IPv4.
    pub fn underlay_of(&self, announced: &str) -> Option<std::net::Ipv4Addr> {
        self.underlay.or_else(|| announced.parse().ok())
    }
}

/// `--image-cache-ttl`'s default: a week.
pub const IMAGE_CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the agent tells the control plane about its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub address: String,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    pub capabilities: Vec<String>,
}

/// Reads the host's facts; `Config` overrides win.
pub async fn facts(config: &Config) -> anyhow::Result<Facts> {
    let address = match &config.address {
        Some(a) => a.clone(),
        None => local_address(&config.control_plane).await?,
    };
    let vcpus = match config.vcpus {
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get() as i64),
    };
    let memory_mb = match config.memory_mb {
        Some(n) => n,
        None => memory_mb().context("cannot read MemTotal from /proc/meminfo")?,
    };
    let disk_gb = match config.disk_gb {
        Some(n) => n,
        None => disk_gb(&config.data_dir)?,
    };
    let mut capabilities = vec![config.driver.as_str().to_owned()];
    if config.driver == Driver::Qemu && Path::new("/dev/kvm").exists() {
        capabilities.push("kvm".into());
    }
    Ok(Facts { address, vcpus, memory_mb, disk_gb, capabilities })
}

/// The local address this machine uses toward the control plane: a UDP socket "connected" to
/// it (nothing is sent) reports the source address routing picked.
async fn local_address(control_plane: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(control_plane).with_context(|| format!("--control-plane `{control_plane}`"))?;
    let host = url.host_str().context("--control-plane has no host")?.trim_matches(['[', ']']).to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.connect(target).await.with_context(|| format!("no route to {target}"))?;
    Ok(socket.local_addr()?.ip().to_string())
}

fn memory_mb() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// Size of the file system holding the data directory, in GiB.
fn disk_gb(dir: &Path) -> anyhow::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).context("data directory path")?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a valid out-parameter.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        bail!("cannot statvfs {}: {}", dir.display(), std::io::Error::last_os_error());
    }
    Ok((st.f_blocks as u128 * st.f_frsize as u128 / (1 << 30)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_has_memory_and_a_disk() {
        assert!(memory_mb().is_some_and(|m| m > 0));
        assert!(disk_gb(Path::new("/")).is_ok());
    }
}
