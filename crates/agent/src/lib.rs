//! `openwinv agent`: the hypervisor host's side of the agent protocol (`docs/hosts.md`).
//!
//! The agent registers its host with the control plane (address, vCPUs, memory and disk read
//! from the machine, driver, capabilities), then sends a heartbeat every 2 s. Every call is
//! outbound and carries the host token, so a host behind NAT can join. When the control plane
//! is away (connection refused, timeout, 5xx) the agent retries with backoff and carries on
//! where it was once it answers; a heartbeat answered "not registered" (the host was re-added,
//! or its row was reset) makes it register again. A refused token (401) or a refused
//! registration (wrong zone) ends the agent with the control plane's message, and a TLS certificate
//! that fails verification (no or the wrong `--ca-file`) ends it naming the CA file: retrying cannot
//! fix either.
//!
//! Once registered it pulls the host's work (a long poll of `/internal/v1/hosts/work`), runs each
//! item on its driver once per key and answers it ([`work`]), and reports its machines' states
//! with generations.
//!
//! A browser's console of a machine here is a `console` item: the agent dials back and splices
//! the control plane's socket to the machine's console ([`console`]).
//!
//! A QEMU host boots images by content: the work item names each boot file by SHA-256 and the
//! agent fetches, verifies and caches it ([`images`]). It also polls its driver every 2 s and
//! reports machines that changed on their own (a guest powered off, a QEMU process killed), and
//! moves a stopped machine's disk through the control plane when it is evacuated
//! (`PUT`/`GET /internal/v1/disks/{sha256}`).
//!
//! This crate links no store, engine or server; it speaks HTTP through `reqwest` with the wire
//! types of `openwinv-wire`, and runs machines with `openwinv-driver`'s simulator or
//! `openwinv-qemu` (user-mode networking, or real networks spanning hosts over VXLAN with
//! `--network namespaces`: the control plane's `set_peers` items say which hosts share each).

pub mod console;
pub mod images;
pub mod work;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use std::sync::Arc;

use openwinv_wire::hosts::{
    HEARTBEAT_INTERVAL_MS, HeartbeatAck, MachineReport, Registered, Registration, RuntimeAck, WorkAck, WorkItem,
};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long one call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest waits between attempts while the control plane is away.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

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

/// Why a call failed.
#[derive(Debug)]
enum CallError {
    /// 401: the token is not (or no longer) a host's.
    Refused(String),
    /// 404 on a heartbeat: the host must register (again).
    NotRegistered(String),
    /// Another 4xx: the request is wrong; retrying the same one cannot help.
    Rejected(String),
    /// No answer, or a 5xx: try again later.
    Away(String),
    /// The control plane's TLS certificate failed verification: retrying cannot help until the
    /// operator fixes `--ca-file` or the certificate.
    Untrusted(String),
}

/// The control plane as the agent calls it.
struct Control {
    http: reqwest::Client,
    base: String,
    token: String,
    ca_file: Option<PathBuf>,
}

impl Control {
    fn new(config: &Config) -> anyhow::Result<Control> {
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).connect_timeout(REQUEST_TIMEOUT);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).with_context(|| format!("cannot read the CA file {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("the CA file {} is not PEM", path.display()))?;
            if certs.is_empty() {
                bail!("the CA file {} holds no certificate", path.display());
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let base = config.control_plane.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).with_context(|| format!("--control-plane `{base}` is not a URL"))?;
        Ok(Control {
            http: builder.build()?,
            base,
            token: config.host_token.trim().to_owned(),
            ca_file: config.ca_file.clone(),
        })
    }

    /// A failed request as a [`CallError`]: a certificate that failed verification is
    /// [`CallError::Untrusted`], with what to do about it; anything else is the control plane
    /// away.
    fn send_error(&self, e: &reqwest::Error) -> CallError {
        let chain = error_chain(e);
        let Some(why) = certificate_error(e) else { return CallError::Away(chain) };
        let trust = match &self.ca_file {
            None => "the agent trusts only the system's CAs without --ca-file: pass --ca-file with the \
                     control plane's CA (`openwinv tls ca` on the control plane prints it)"
                .to_owned(),
            Some(path) => format!(
                "the CA file {} does not vouch for it: check that it is the control plane's CA (`openwinv tls ca` \
                 prints it) and that --control-plane names a host its certificate covers (`serve --tls-name`)",
                path.display()
            ),
        };
        CallError::Untrusted(format!("the control plane's TLS certificate failed verification ({why}); {trust}"))
    }

    /// POSTs to `/internal/v1/hosts/{what}` and returns the first row of the answer.
    async fn call<T: DeserializeOwned>(&self, what: &str, body: Option<&Value>) -> Result<T, CallError> {
        let mut rows = self.call_rows(what, body, REQUEST_TIMEOUT).await?;
        if rows.is_empty() {
            return Err(CallError::Away(format!("no row in the answer to {what}")));
        }
        Ok(rows.swap_remove(0))
    }

    /// POSTs to `/internal/v1/hosts/{what}` and returns the rows of the answer.
    async fn call_rows<T: DeserializeOwned>(
        &self,
        what: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Vec<T>, CallError> {
        let mut req =
            self.http.post(format!("{}/internal/v1/hosts/{what}", self.base)).bearer_auth(&self.token).timeout(timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.send_error(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| CallError::Away(error_chain(&e)))?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = || {
            let m = json["message"].as_str().unwrap_or(text.trim());
            format!("{} {}: {m}", status.as_u16(), json["error_code"].as_str().unwrap_or(""))
        };
        match status.as_u16() {
            200 => {
                let rows = json["result"].clone();
                serde_json::from_value(rows).map_err(|e| CallError::Away(format!("unexpected answer ({e}): {text}")))
            }
            401 => Err(CallError::Refused(message())),
            404 => Err(CallError::NotRegistered(message())),
            400..=499 => Err(CallError::Rejected(message())),
            _ => Err(CallError::Away(message())),
        }
    }
}

impl Control {
    /// `GET /internal/v1/{kind}/{sha256}` (`images`: a boot file; `disks`: a machine disk in
    /// transit): the response, its body not read yet.
    async fn get_file(
        &self,
        kind: &str,
        sha256: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, openwinv_driver::DriverError> {
        let resp = self
            .http
            .get(format!("{}/internal/v1/{kind}/{sha256}", self.base))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                openwinv_driver::DriverError::Transient(format!("cannot fetch {kind} {sha256}: {}", error_chain(&e)))
            })?;
        file_answer(kind, sha256, resp).await
    }

    /// `PUT /internal/v1/disks/{sha256}`: streams the file at `path` (whose SHA-256 it is).
    async fn put_disk(&self, sha256: &str, path: &Path, timeout: Duration) -> Result<(), openwinv_driver::DriverError> {
        use openwinv_driver::DriverError::Transient;
        let file = tokio::fs::File::open(path).await.map_err(|e| Transient(format!("{}: {e}", path.display())))?;
        let stream = futures_util::stream::unfold((file, vec![0u8; 256 * 1024]), |(mut f, mut buf)| async move {
            use tokio::io::AsyncReadExt;
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => Some((Ok::<_, std::io::Error>(buf[..n].to_vec()), (f, buf))),
                Err(e) => Some((Err(e), (f, buf))),
            }
        });
        let resp = self
            .http
            .put(format!("{}/internal/v1/disks/{sha256}", self.base))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| Transient(format!("cannot hand disk {sha256} to the control plane: {}", error_chain(&e))))?;
        file_answer("disks", sha256, resp).await.map(|_| ())
    }
}

/// A file route's answer: the response on success, else its error, permanent for a 4xx.
async fn file_answer(
    kind: &str,
    sha256: &str,
    resp: reqwest::Response,
) -> Result<reqwest::Response, openwinv_driver::DriverError> {
    use openwinv_driver::DriverError::{Permanent, Transient};
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let m = format!("{kind} {sha256}: {} {}", status.as_u16(), json["message"].as_str().unwrap_or(text.trim()));
    match status.as_u16() {
        400..=499 => Err(Permanent(m)),
        _ => Err(Transient(m)),
    }
}

/// The certificate verification error inside a failed request, if that is why it failed. rustls
/// reports it as `rustls::Error` inside `io::Error`s (two, nested, under reqwest 0.12), and
/// `io::Error::source` skips its inner error, so the walk opens each `io::Error` itself.
fn certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use tokio_rustls::rustls::Error as Tls;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(t @ (Tls::InvalidCertificate(_) | Tls::NoCertificatesPresented)) = err.downcast_ref::<Tls>() {
            return Some(t.to_string());
        }
        next = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Doubling waits with ±20 % jitter, from [`BACKOFF_FIRST`] up to [`BACKOFF_MAX`].
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_FIRST }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }

    fn wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        base.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
    }
}

/// Runs the agent until `stop` completes or the control plane refuses it for good.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700));
    }
    let control = Arc::new(Control::new(&config)?);
    let facts = facts(&config).await?;
    let underlay = config.underlay_of(&facts.address);
    let mut networks: Option<Arc<openwinv_qemu::Networks>> = None;
    let mut qemu_driver = None;
    let (driver, broker): (Arc<dyn openwinv_driver::ComputeDriver>, Arc<dyn openwinv_driver::ConsoleBroker>) =
        match config.driver {
            Driver::Sim => {
                let sim = Arc::new(openwinv_driver::SimDriver::new(openwinv_driver::Pacing::Immediate));
                (sim.clone(), sim)
            }
            Driver::Qemu => {
                // Machines live under the agent's directory (`vms/`, `volumes/`), like `serve`'s.
                let mut qemu = openwinv_qemu::QemuDriver::new(
                    &config.data_dir,
                    config.accel,
                    std::env::var("OPENWINV_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into()),
                    std::env::var("OPENWINV_QEMU_IMG").unwrap_or_else(|_| "qemu-img".into()),
                );
                if config.network == Network::Namespaces {
                    let nets = Arc::new(real_networks(&config, underlay).await?);
                    spawn_network_reconcile(nets.clone());
                    networks = Some(nets.clone());
                    qemu = qemu.with_networks(nets);
                }
                let accel = qemu.preflight().await.map_err(|e| anyhow::anyhow!("the QEMU driver cannot start: {e}"))?;
                tracing::info!(?accel, "QEMU driver ready");
                let qemu = Arc::new(qemu);
                qemu_driver = Some(qemu.clone());
                (qemu.clone(), qemu)
            }
        };
    let consoles = (broker, Arc::new(console::Consoles::default()));
    let mut runner = work::Runner::open(driver, &config.data_dir, config.sim_delay)?;
    if let Some(nets) = networks {
        runner = runner.with_networks(nets);
    }
    if config.driver == Driver::Qemu {
        let cache = Arc::new(images::ImageCache::open(&config.data_dir, control.clone(), config.image_cache_ttl)?);
        runner = runner.with_images(cache.clone());
        if let Some(q) = qemu_driver {
            runner = runner.with_qemu(q);
        }
        let every = images::sweep_interval(config.image_cache_ttl);
        tokio::spawn(async move {
            loop {
                cache.sweep().await;
                tokio::time::sleep(every).await;
            }
        });
    }
    let runner = Arc::new(runner);
    if config.driver == Driver::Qemu {
        tokio::spawn(poll_machines(control.clone(), runner.clone()));
    }
    let mut pulling: Option<tokio::task::JoinHandle<anyhow::Result<()>>> = None;
    let registration = Registration {
        zone: config.zone.clone(),
        address: facts.address.clone(),
        vcpus: facts.vcpus,
        memory_mb: facts.memory_mb,
        disk_gb: facts.disk_gb,
        driver: config.driver.as_str().into(),
        capabilities: facts.capabilities.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        underlay: underlay.map(|u| u.to_string()),
    };
    let registration = serde_json::to_value(&registration)?;
    tracing::info!(control_plane = %control.base, address = %facts.address, underlay = ?underlay, vcpus = facts.vcpus,
        memory_mb = facts.memory_mb, disk_gb = facts.disk_gb, driver = config.driver.as_str(), "agent starting");

    // The control plane's interval once registered; the protocol's default until then.
    let mut interval = Duration::from_millis(HEARTBEAT_INTERVAL_MS);
    let mut backoff = Backoff::new();
    let mut registered: Option<Registered> = None;
    let mut away_since: Option<std::time::Instant> = None;
    tokio::pin!(stop);
    loop {
        let started = std::time::Instant::now();
        let wait = match &registered {
            None => match control.call::<Registered>("register", Some(&registration)).await {
                Ok(r) => {
                    println!(
                        "openwinv agent {}: host {} ({}) registered with {} in zone {}",
                        env!("CARGO_PKG_VERSION"),
                        r.name,
                        r.host_id,
                        control.base,
                        r.zone
                    );
                    let record = serde_json::to_string_pretty(&serde_json::json!({
                        "host_id": r.host_id, "name": r.name, "zone": r.zone, "control_plane": control.base,
                    }))?;
                    std::fs::write(config.data_dir.join("host.json"), record)
                        .with_context(|| format!("cannot write {}", config.data_dir.join("host.json").display()))?;
                    if r.heartbeat_interval_ms > 0 {
                        interval = Duration::from_millis(r.heartbeat_interval_ms);
                    }
                    registered = Some(r);
                    away_since = None;
                    // In full after every registration: the control plane keeps the newest.
                    let (c, (machines, as_of)) = (control.clone(), runner.full_report().await);
                    tokio::spawn(async move { report_full(&c, machines, as_of).await });
                    if pulling.as_ref().is_none_or(|h| h.is_finished()) {
                        pulling = Some(tokio::spawn(pull_work(control.clone(), runner.clone(), consoles.clone())));
                    }
                    backoff.reset();
                    interval
                }
                Err(CallError::Refused(m)) => bail!("the control plane refused the host token: {m}"),
                Err(CallError::Untrusted(m)) => bail!("{m}"),
                Err(CallError::Rejected(m) | CallError::NotRegistered(m)) => {
                    bail!("the control plane refused the registration: {m}")
                }
                Err(CallError::Away(m)) => {
                    let wait = backoff.wait();
                    tracing::warn!(error = %m, retry_in = ?wait, "control plane unreachable; registration retried");
                    wait
                }
            },
            Some(r) => match control.call::<HeartbeatAck>("heartbeat", None).await {
                Ok(_) => {
                    if let Some(since) = away_since.take() {
                        tracing::info!(away = ?since.elapsed(), "control plane reachable again");
                    }
                    backoff.reset();
                    interval.saturating_sub(started.elapsed())
                }
                Err(CallError::NotRegistered(m)) => {
                    tracing::warn!(host = %r.name, error = %m, "the control plane lost the registration; registering again");
                    registered = None;
                    Duration::ZERO
                }
                Err(CallError::Refused(m)) => bail!("the control plane refused the host token: {m}"),
                Err(CallError::Untrusted(m)) => bail!("{m}"),
                Err(CallError::Rejected(m) | CallError::Away(m)) => {
                    away_since.get_or_insert_with(std::time::Instant::now);
                    let wait = backoff.wait();
                    tracing::warn!(error = %m, retry_in = ?wait, "heartbeat failed");
                    wait
                }
            },
        };
        tokio::select! {
            _ = &mut stop => {
                tracing::info!("agent stopping");
                return Ok(());
            }
            _ = tokio::time::sleep(wait) => {}
        }
        if let Some(h) = pulling.take_if(|h| h.is_finished()) {
            match h.await {
                Ok(Err(e)) => return Err(e),
                Ok(Ok(())) => {}
                Err(e) => bail!("the work loop failed: {e}"),
            }
        }
    }
}

/// The QEMU host's real networks (`--network namespaces`), as `serve --network namespaces`
/// makes them, with the underlay address: a network whose machines name a VNI spans hosts.
/// Tests play the host in a namespace of their own (`OPENWINV_NETWORK_HOST_NETNS`,
/// `OPENWINV_NETWORK_PREFIX`, `OPENWINV_NETWORK_RUN_DIR`, as for `serve`).
async fn real_networks(
    config: &Config,
    underlay: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<openwinv_qemu::Networks> {
    let Some(underlay) = underlay else {
        bail!(
            "--network namespaces needs the host's IPv4 address on the underlay between hosts: \
             pass --underlay (the announced address is not an IPv4 address)"
        )
    };
    let host = openwinv_net::Host {
        netns: std::env::var("OPENWINV_NETWORK_HOST_NETNS").ok().filter(|n| !n.is_empty()),
        prefix: std::env::var("OPENWINV_NETWORK_PREFIX").unwrap_or_else(|_| "owv-".into()),
        uplink: config.uplink.clone(),
        run_dir: std::env::var_os("OPENWINV_NETWORK_RUN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/run/openwinv/networks".into()),
    };
    let nets = openwinv_qemu::Networks::new(host, config.data_dir.join("networks.json")).with_underlay(underlay);
    nets.prepare().await.map_err(|e| anyhow::anyhow!("--network namespaces cannot start: {e}"))?;
    Ok(nets)
}

/// Rewrites the networks that drifted, every `OPENWINV_NETWORK_RECONCILE_SECS` (default 30).
fn spawn_network_reconcile(nets: Arc<openwinv_qemu::Networks>) {
    let secs = std::env::var("OPENWINV_NETWORK_RECONCILE_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(30.0);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(secs));
        tick.tick().await;
        loop {
            tick.tick().await;
            nets.reconcile().await;
        }
    });
}

/// How often a QEMU host's machines are compared with what the agent last reported.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Reports machines that changed on their own (a guest powered off from inside, a QEMU process
/// killed), as the embedded control plane's reconcile notices them: the control plane moves the
/// instance at rest (`active` + stopped → `off`, `off` + running → `active`, gone → `error`).
async fn poll_machines(control: Arc<Control>, runner: Arc<work::Runner>) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        report(&control, runner.poll().await).await;
    }
}

/// How long the control plane may hold a work pull open.
const PULL_WAIT_MS: u64 = 20_000;

/// Pulls the host's work (long poll) and runs each item in a task of its own (a `console` item
/// opens a console session), until the control plane refuses the token.
async fn pull_work(
    control: Arc<Control>,
    runner: Arc<work::Runner>,
    (broker, consoles): (Arc<dyn openwinv_driver::ConsoleBroker>, Arc<console::Consoles>),
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    let body = serde_json::json!({ "wait_ms": PULL_WAIT_MS });
    let timeout = Duration::from_millis(PULL_WAIT_MS) + REQUEST_TIMEOUT;
    loop {
        match control.call_rows::<WorkItem>("work", Some(&body), timeout).await {
            Ok(items) => {
                backoff.reset();
                for item in items {
                    // A console session is no machine call: no record, no runtime report.
                    if item.call == "console" {
                        tokio::spawn(console::serve(control.clone(), broker.clone(), consoles.clone(), item));
                        continue;
                    }
                    let (control, runner) = (control.clone(), runner.clone());
                    tokio::spawn(async move { handle(&control, &runner, item).await });
                }
            }
            Err(CallError::Refused(m)) => bail!("the control plane refused the host token: {m}"),
            Err(CallError::Untrusted(m)) => bail!("{m}"),
            Err(CallError::Rejected(m) | CallError::NotRegistered(m) | CallError::Away(m)) => {
                let wait = backoff.wait();
                tracing::warn!(error = %m, retry_in = ?wait, "work pull failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Runs one item (or answers it from the record), reports the machine's change, then answers
/// the item: the report first, so that the control plane never sees the answer before the state.
async fn handle(control: &Control, runner: &work::Runner, item: WorkItem) {
    let (result, change) = runner.process(&item).await;
    if let Some(m) = change {
        report(control, vec![m]).await;
    }
    let body = serde_json::to_value(&result).expect("a result serializes");
    let mut backoff = Backoff::new();
    loop {
        match control.call::<WorkAck>("work/result", Some(&body)).await {
            Ok(ack) => {
                if !ack.recorded {
                    tracing::info!(key = %item.key, "the control plane had this answer already");
                }
                return;
            }
            Err(CallError::Refused(m) | CallError::Rejected(m) | CallError::Untrusted(m)) => {
                tracing::warn!(key = %item.key, error = %m, "the control plane refused an answer");
                return;
            }
            Err(CallError::Away(m) | CallError::NotRegistered(m)) => {
                let wait = backoff.wait();
                tracing::warn!(key = %item.key, error = %m, retry_in = ?wait, "could not answer a work item");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Reports machine states; a report that cannot be delivered now is sent again in full at the
/// next registration.
async fn report(control: &Control, machines: Vec<MachineReport>) {
    if machines.is_empty() {
        return;
    }
    send_report(control, serde_json::json!({ "machines": machines })).await
}

/// Every machine of the host (even none): the control plane reconciles its placements with it.
async fn report_full(control: &Control, machines: Vec<MachineReport>, as_of: i64) {
    send_report(control, serde_json::json!({ "machines": machines, "full": true, "as_of": as_of })).await
}

async fn send_report(control: &Control, body: Value) {
    let mut backoff = Backoff::new();
    for _ in 0..5 {
        match control.call_rows::<RuntimeAck>("runtime", Some(&body), REQUEST_TIMEOUT).await {
            Ok(_) => return,
            Err(CallError::Refused(m) | CallError::Rejected(m) | CallError::Untrusted(m)) => {
                tracing::warn!(error = %m, "the control plane refused a runtime report");
                return;
            }
            Err(CallError::Away(m) | CallError::NotRegistered(m)) => {
                tracing::warn!(error = %m, "could not report machine states; retrying");
                tokio::time::sleep(backoff.wait()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..8).map(|_| b.wait()).collect();
        assert!(waits[0] <= BACKOFF_FIRST.mul_f64(1.2) && waits[0] >= BACKOFF_FIRST.mul_f64(0.8));
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX.mul_f64(1.2)));
        assert!(waits[7] >= BACKOFF_MAX.mul_f64(0.8), "{waits:?}");
        b.reset();
        assert!(b.wait() <= BACKOFF_FIRST.mul_f64(1.2));
    }

    #[test]
    fn the_machine_has_memory_and_a_disk() {
        assert!(memory_mb().is_some_and(|m| m > 0));
        assert!(disk_gb(Path::new("/")).is_ok());
    }
}
