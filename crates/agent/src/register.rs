//! Registration and liveness: the agent registers its host (its [`Facts`], the driver, the
//! underlay address), then sends a heartbeat at the control plane's interval. While the control
//! plane is away it retries with backoff; a heartbeat answered "not registered" makes it register
//! again; a refused token, a refused registration or an untrusted certificate ends the agent.
//! After every registration it reports its machines in full and (re)starts the work pull.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use openwinv_wire::hosts::{HEARTBEAT_INTERVAL_MS, HeartbeatAck, Registered, Registration};

use crate::control::{Backoff, CallError, Control};
use crate::pull::{ConsoleParts, pull_work};
use crate::reports::report_full;
use crate::{Config, Facts, work};

/// Registers, then beats until `stop` completes or the control plane refuses the host for good
/// (or the work pull ends with such a refusal).
pub(crate) async fn register_and_beat(
    config: &Config,
    control: Arc<Control>,
    facts: &Facts,
    underlay: Option<std::net::Ipv4Addr>,
    runner: Arc<work::Runner>,
    consoles: ConsoleParts,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
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
