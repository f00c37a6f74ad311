//! `heartbeats`: what 1,000 hosts heartbeating every 2 s cost the control plane. Adds `--hosts`
//! hosts through the operator API, registers each with its token, then sends each host's
//! heartbeat on its own 2-second schedule (staggered over one interval, open loop: latency counts
//! from the scheduled time) for `--seconds`. Each accepted heartbeat is one `UPDATE` of one
//! `hosts` row, one write transaction; with `--database postgres://…` the database's own
//! counters (`pg_stat_database`: commits, rows updated) are read before and after as well.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub async fn run(
    endpoint: &str,
    admin_token: &str,
    hosts: usize,
    seconds: u64,
    database: Option<&str>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let prefix = format!("bench{}", rand_suffix());
    // Add and register the hosts, 32 at a time.
    let mut tokens = Vec::with_capacity(hosts);
    let mut i = 0;
    while i < hosts {
        let batch: Vec<usize> = (i..(i + 32).min(hosts)).collect();
        let mut set = tokio::task::JoinSet::new();
        for n in batch {
            let (client, endpoint, admin, prefix) =
                (client.clone(), endpoint.to_owned(), admin_token.to_owned(), prefix.clone());
            set.spawn(async move {
                let add = client
                    .post(format!("{endpoint}/admin/v1/hosts"))
                    .bearer_auth(&admin)
                    .json(&json!({"name": format!("{prefix}-{n}"), "zone": "KR1-Z01"}))
                    .send()
                    .await?
                    .json::<Value>()
                    .await?;
                let token = add["result"][0]["token"].as_str().with_context(|| format!("add host: {add}"))?.to_owned();
                let reg = client
                    .post(format!("{endpoint}/internal/v1/hosts/register"))
                    .bearer_auth(&token)
                    .json(&json!({"zone": "KR1-Z01", "address": "192.0.2.1", "vcpus": 64, "memory_mb": 262144,
                                  "disk_gb": 4000, "driver": "sim", "capabilities": ["sim"], "agent_version": "bench"}))
                    .send()
                    .await?;
                if !reg.status().is_success() {
                    bail!("register: {}", reg.text().await?);
                }
                anyhow::Ok(token)
            });
        }
        while let Some(t) = set.join_next().await {
            tokens.push(t??);
        }
        i += 32;
    }
    let before = pg_counters(database).await?;
    let interval = Duration::from_secs(2);
    let total = Duration::from_secs(seconds);
    let started = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut set = tokio::task::JoinSet::new();
    for (n, token) in tokens.into_iter().enumerate() {
        let (client, url) = (client.clone(), format!("{endpoint}/internal/v1/hosts/heartbeat"));
        let first = started + interval.mul_f64(n as f64 / hosts as f64);
        set.spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            let mut due = first;
            while due < started + total {
                tokio::time::sleep_until(due).await;
                match client.post(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.ok();
                    }
                    _ => errors += 1,
                }
                lat.push(due.elapsed());
                due += interval;
            }
            (lat, errors)
        });
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    while let Some(r) = set.join_next().await {
        let (l, e) = r?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    let sent = lat.len();
    let ok = sent as u64 - errors;
    println!(
        "heartbeats: {hosts} hosts every 2 s for {seconds} s: {sent} sent, {errors} failed, {:.0} accepted/s \
         (= hosts-row UPDATEs/s); latency from schedule p50={} p99={} max={}",
        ok as f64 / elapsed,
        crate::ms(crate::percentile(&lat, 0.5)),
        crate::ms(crate::percentile(&lat, 0.99)),
        crate::ms(lat.last().copied().unwrap_or_default()),
    );
    if let (Some(b), Some(url)) = (before, database) {
        // The statistics reach pg_stat_database within a second of each transaction.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let a = pg_counters(Some(url)).await?.expect("postgres");
        println!(
            "postgres over the run: {:.0} commits/s, {:.0} rows updated/s, {:.0} rows inserted/s (every backend, \
             the run's {elapsed:.1} s plus the final 1.5 s wait)",
            (a.0 - b.0) as f64 / elapsed,
            (a.1 - b.1) as f64 / elapsed,
            (a.2 - b.2) as f64 / elapsed,
        );
    }
    Ok(())
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() % 100_000)
}

/// (commits, rows updated, rows inserted) of the database, when it is PostgreSQL.
async fn pg_counters(database: Option<&str>) -> anyhow::Result<Option<(i64, i64, i64)>> {
    let Some(url) = database.filter(|u| u.starts_with("postgres")) else { return Ok(None) };
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await?;
    let row: (i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(xact_commit AS BIGINT), CAST(tup_updated AS BIGINT), CAST(tup_inserted AS BIGINT) \
         FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(Some(row))
}
