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
//! The jobs, a module each: [`config`] (what the agent was given, the host's facts), `control`
//! (the HTTP client of the control plane, its errors and the backoff), `register` (registration
//! and heartbeats), `pull` (the work pull), [`work`] (running items once per key), `reports`
//! (machine states told to the control plane, and the QEMU host's poll), `networks` (real
//! networks), [`images`] (boot files by content) and [`console`] (console sessions).
//!
//! This crate links no store, engine or server; it speaks HTTP through `reqwest` with the wire
//! types of `openwinv-wire`, and runs machines with `openwinv-driver`'s simulator or
//! `openwinv-qemu` (user-mode networking, or real networks spanning hosts over VXLAN with
//! `--network namespaces`: the control plane's `set_peers` items say which hosts share each).

pub mod config;
pub mod console;
mod control;
mod files;
pub mod images;
mod networks;
mod pull;
mod register;
mod reports;
pub mod work;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

pub use config::{Config, Driver, Facts, IMAGE_CACHE_TTL, Network, facts};
use control::Control;

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
                    let nets = Arc::new(networks::real_networks(&config, underlay).await?);
                    nets.clone().spawn_reconcile();
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
    let consoles = (broker, Arc::new(openwinv_driver::SerialHub::default()));
    let mut runner = work::Runner::open(driver, &config.data_dir, config.sim_delay)?;
    if let Some(nets) = networks {
        runner = runner.with_networks(nets);
    }
    if let Some((call, nth)) = config.sim_refuse.clone() {
        runner = runner.with_refusal(call, nth);
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
        tokio::spawn(reports::poll_machines(control.clone(), runner.clone()));
    }
    register::register_and_beat(&config, control, &facts, underlay, runner, consoles, stop).await
}
