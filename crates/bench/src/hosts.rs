//! `hosts-create`: create throughput of a control plane in hosts mode (`serve --placement
//! hosts`) with N simulated hosts, and the time it takes to see one of them dead. Adds `--hosts`
//! hosts through the operator API and runs an agent for each in this process (the real
//! `openwinv-agent` code, sim driver, its own temporary data directory), then runs the `create`
//! load (every instance placed, each of its driver steps a work item pulled and answered by its
//! host's agent). Then it stops one agent and times how long the control plane takes to report
//! its host `offline` (the rule: 20 s without a heartbeat, heartbeats every 2 s), starts it again
//! on the same data directory and times how long until the host is `alive` with its full report
//! reconciled (the report is sent right after the registration and reconciled in that request:
//! the time until the control plane has taken it).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

pub struct Args<'a> {
    pub endpoint: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub admin_token: &'a str,
    pub hosts: usize,
    pub total: usize,
    pub concurrency: usize,
}

pub async fn run(a: Args<'_>) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let prefix = format!("bh{}", std::process::id());
    let dirs = tempfile::tempdir()?;
    let mut stops = Vec::with_capacity(a.hosts);
    let mut configs = Vec::with_capacity(a.hosts);
    let mut names = Vec::with_capacity(a.hosts);
    let added = Instant::now();
    for n in 0..a.hosts {
        let name = format!("{prefix}-{n}");
        let add: Value = client
            .post(format!("{}/admin/v1/hosts", a.endpoint))
            .bearer_auth(a.admin_token)
            .json(&json!({"name": name, "zone": "KR1-Z01"}))
            .send()
            .await?
            .json()
            .await?;
        let token = add["result"][0]["token"].as_str().with_context(|| format!("add host: {add}"))?.to_owned();
        let config = openwinv_agent::Config {
            control_plane: a.endpoint.to_owned(),
            host_token: token,
            driver: openwinv_agent::Driver::Sim,
            zone: "KR1-Z01".into(),
            data_dir: dirs.path().join(&name),
            ca_file: None,
            address: Some("192.0.2.1".into()),
            vcpus: Some(64),
            memory_mb: Some(262_144),
            disk_gb: Some(4000),
            sim_delay: Duration::ZERO,
            sim_refuse: None,
            accel: Default::default(),
            image_cache_ttl: Duration::from_secs(7 * 86_400),
            underlay: None,
            network: Default::default(),
            uplink: None,
        };
        configs.push(config.clone());
        stops.push(spawn_agent(config));
        names.push(name);
    }
    // Every host registered and alive.
    loop {
        let rows: Value = client
            .get(format!("{}/admin/v1/hosts", a.endpoint))
            .bearer_auth(a.admin_token)
            .send()
            .await?
            .json()
            .await?;
        let alive = rows["result"].as_array().map_or(0, |r| {
            r.iter()
                .filter(|h| h["name"].as_str().is_some_and(|n| n.starts_with(&prefix)) && h["status"] == "alive")
                .count()
        });
        if alive == a.hosts {
            break;
        }
        anyhow::ensure!(added.elapsed() < Duration::from_secs(120), "{alive} of {} hosts alive after 120 s", a.hosts);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "hosts-create: {} simulated hosts (in-process agents) registered in {:.1} s",
        a.hosts,
        added.elapsed().as_secs_f64()
    );
    crate::create(a.endpoint, a.access_key, a.secret_key, a.total, a.concurrency).await?;

    // Time to detect a dead host: stop one agent, poll its status.
    let victim = names[0].clone();
    let stopped = Instant::now();
    let _ = stops.remove(0).send(());
    loop {
        let row: Value = client
            .get(format!("{}/admin/v1/hosts/{victim}", a.endpoint))
            .bearer_auth(a.admin_token)
            .send()
            .await?
            .json()
            .await?;
        if row["result"][0]["status"] == "offline" {
            break;
        }
        anyhow::ensure!(stopped.elapsed() < Duration::from_secs(60), "host {victim} still {row} after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "hosts-create: a stopped agent's host is offline after {:.1} s (rule: 20 s without a heartbeat, server clock)",
        stopped.elapsed().as_secs_f64()
    );

    // Time to reconcile after an agent restart: the same agent again, on its data directory, until
    // its registration is in (the host's generation moved) and it is alive. Its full report is the
    // agent's next request, reconciled within that request.
    let before = host_row(&client, &a, &victim).await?;
    let restarted = Instant::now();
    stops.insert(0, spawn_agent(configs[0].clone()));
    loop {
        let row = host_row(&client, &a, &victim).await?;
        if row["status"] == "alive" && row["generation"].as_i64() > before["generation"].as_i64() {
            break;
        }
        anyhow::ensure!(restarted.elapsed() < Duration::from_secs(60), "host {victim} still {row} after 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "hosts-create: a restarted agent's host ({} instances) is alive and reconciled after {:.2} s",
        before["instances"],
        restarted.elapsed().as_secs_f64()
    );
    for s in stops {
        let _ = s.send(());
    }
    Ok(())
}

fn spawn_agent(config: openwinv_agent::Config) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        if let Err(e) = openwinv_agent::run(config, async move { rx.await.unwrap_or(()) }).await {
            eprintln!("agent stopped: {e:#}");
        }
    });
    tx
}

async fn host_row(client: &reqwest::Client, a: &Args<'_>, name: &str) -> anyhow::Result<Value> {
    let row: Value = client
        .get(format!("{}/admin/v1/hosts/{name}", a.endpoint))
        .bearer_auth(a.admin_token)
        .send()
        .await?
        .json()
        .await?;
    Ok(row["result"][0].clone())
}
