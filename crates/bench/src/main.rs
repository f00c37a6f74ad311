//! `openwinv-bench`: the load generator and seeding tool behind `scripts/bench`.
//!
//! - `create`: concurrent signed `POST /v1/instances` on loopback; reports create-request latency
//!   and how many instances per second reach `active`.
//! - `latency`: repeated signed GETs of one path; reports p50/p99/max.
//! - `seed`: bulk-inserts instances straight into the store (for list benchmarks at 100,000 rows,
//!   where creating them through the API would only measure creation again).
//! - `seed-usage`: bulk-inserts usage intervals (a month of servers, some resized or deleted, and
//!   volumes) for one account or for many new accounts, for the billing benchmarks.
//! - `close-month`: runs the month close of the server on a store directly and times it.
//! - `rate-limit`: the rate-limit check alone, side by side: the store's per-key bucket (one
//!   statement, shared by every process) against the in-memory bucket the server used before
//!   (governor, per process), sequentially and with concurrent callers.
//! - `mixed`: grows one account through the API (100 → 1,000 → 10,000 instances by default) and,
//!   at each size, runs a mixed signed load (reads of every list and detail, creates, actions,
//!   deletes, the live bill) for a fixed time; reports throughput, p50/p99 and the live bill's
//!   p50/p99 per size.
//! - `heartbeats`: N hypervisor hosts heartbeating every 2 s against a control plane; reports the
//!   heartbeat writes per second it absorbs and their latency (`heartbeats.rs`).
//! - `hosts-create`: the `create` load against a control plane in hosts mode with N in-process
//!   simulated agents, then the time until a stopped agent's host is seen offline (`hosts.rs`).

mod heartbeats;
mod hosts;
mod standin;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use openwinv_billing::Month;
use openwinv_wire::signing;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Create {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        access_key: String,
        #[arg(long)]
        secret_key: String,
        /// Instances to create (one per request).
        #[arg(long, default_value_t = 2000)]
        total: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    Latency {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        access_key: String,
        #[arg(long)]
        secret_key: String,
        /// Path and query, e.g. `/v1/instances?page_size=10`.
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 2000)]
        requests: usize,
    },
    /// Open-loop load at a fixed rate: each connection sends on a schedule and latency counts
    /// from the scheduled time, so a slow answer is not hidden by the sender waiting for it.
    Load {
        #[arg(long)]
        endpoint: String,
        /// Sign the requests with this key (omit for unauthenticated paths such as /healthz).
        #[arg(long)]
        access_key: Option<String>,
        #[arg(long)]
        secret_key: Option<String>,
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Requests per second over all connections.
        #[arg(long)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    Seed {
        #[arg(long)]
        database: String,
        #[arg(long, default_value = "dev")]
        account: String,
        #[arg(long, default_value_t = 100_000)]
        count: usize,
    },
    SeedUsage {
        #[arg(long)]
        database: String,
        /// The account that gets the resources (with `--accounts 0`).
        #[arg(long, default_value = "dev")]
        account: String,
        /// Make this many new accounts (`bench-N`) instead, each with `--resources` resources.
        #[arg(long, default_value_t = 0)]
        accounts: usize,
        /// Resources per account: four servers (every fourth resized, every tenth deleted) for
        /// each volume.
        #[arg(long, default_value_t = 10_000)]
        resources: usize,
        /// `YYYY-MM` [default: the current month]; intervals start within it, before now.
        #[arg(long)]
        month: Option<String>,
        #[arg(long, default_value = "Asia/Seoul")]
        timezone: String,
    },
    CloseMonth {
        #[arg(long)]
        database: String,
        /// `YYYY-MM`.
        #[arg(long)]
        month: String,
        #[arg(long, default_value = "Asia/Seoul")]
        timezone: String,
    },
    RateLimit {
        /// A server's database (stopped or running), which holds `--access-key`.
        #[arg(long)]
        database: String,
        #[arg(long)]
        access_key: String,
        /// Checks per measurement.
        #[arg(long, default_value_t = 20_000)]
        checks: u32,
        /// Concurrent callers in the concurrent measurement.
        #[arg(long, default_value_t = 32)]
        concurrency: u32,
    },
    Mixed {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        access_key: String,
        #[arg(long)]
        secret_key: String,
        /// Account sizes (instances) at which the load is measured, ascending.
        #[arg(long, value_delimiter = ',', default_values_t = [100usize, 1000, 10_000])]
        sizes: Vec<usize>,
        /// Seconds of mixed load at each size.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent clients (closed loop: each sends its next request when the last answered).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Simulated hypervisor hosts heartbeating every 2 s (docs/hosts.md).
    Heartbeats {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        admin_token: String,
        #[arg(long, default_value_t = 1000)]
        hosts: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// The control plane's database; PostgreSQL's own write counters are read when given.
        #[arg(long)]
        database: Option<String>,
    },
    /// The stand-in's controls on a seeded test database: reset, snapshot restore and save, seed.
    Standin {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        admin_token: String,
        #[arg(long, default_value_t = 200)]
        instances: u32,
        #[arg(long, default_value_t = 60)]
        firewalls: u32,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
    },
    HostsCreate {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        access_key: String,
        #[arg(long)]
        secret_key: String,
        #[arg(long)]
        admin_token: String,
        #[arg(long, default_value_t = 100)]
        hosts: usize,
        #[arg(long, default_value_t = 1000)]
        total: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn signed(
    client: &reqwest::Client,
    method: reqwest::Method,
    endpoint: &str,
    pq: &str,
    key: &str,
    secret: &str,
) -> reqwest::RequestBuilder {
    let ts = now_s().to_string();
    let sig = signing::sign(secret, &ts, signing::signed_path(pq));
    client
        .request(method, format!("{endpoint}{pq}"))
        .header("X-iwinv-Timestamp", ts)
        .header("X-iwinv-Credential", key)
        .header("X-iwinv-Signature", sig)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Create { endpoint, access_key, secret_key, total, concurrency } => {
            create(&endpoint, &access_key, &secret_key, total, concurrency).await
        }
        Command::Latency { endpoint, access_key, secret_key, path, requests } => {
            let client = reqwest::Client::new();
            let mut lat = Vec::with_capacity(requests);
            for _ in 0..requests {
                let t = Instant::now();
                let r =
                    signed(&client, reqwest::Method::GET, &endpoint, &path, &access_key, &secret_key).send().await?;
                if !r.status().is_success() {
                    bail!("{path} answered {}", r.status());
                }
                r.bytes().await?;
                lat.push(t.elapsed());
            }
            lat.sort();
            println!(
                "latency {path}: n={requests} p50={} p99={} max={}",
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(*lat.last().unwrap())
            );
            Ok(())
        }
        Command::Load { endpoint, access_key, secret_key, path, connections, rate, seconds } => {
            let key = access_key.zip(secret_key);
            load(&endpoint, key, &path, connections, rate, seconds).await
        }
        Command::Seed { database, account, count } => seed(&database, &account, count).await,
        Command::SeedUsage { database, account, accounts, resources, month, timezone } => {
            seed_usage(&database, &account, accounts, resources, month.as_deref(), &timezone).await
        }
        Command::CloseMonth { database, month, timezone } => close_month(&database, &month, &timezone).await,
        Command::RateLimit { database, access_key, checks, concurrency } => {
            rate_limit(&database, &access_key, checks, concurrency).await
        }
        Command::Mixed { endpoint, access_key, secret_key, sizes, seconds, concurrency } => {
            let m = Mixed {
                client: reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?,
                endpoint,
                key: access_key,
                secret: secret_key,
            };
            mixed(Arc::new(m), &sizes, seconds, concurrency).await
        }
        Command::Heartbeats { endpoint, admin_token, hosts, seconds, database } => {
            heartbeats::run(&endpoint, &admin_token, hosts, seconds, database.as_deref()).await
        }
        Command::Standin { endpoint, admin_token, instances, firewalls, rounds } => {
            standin::run(standin::Args { endpoint, admin_token, instances, firewalls, rounds }).await
        }
        Command::HostsCreate { endpoint, access_key, secret_key, admin_token, hosts, total, concurrency } => {
            let args = hosts::Args {
                endpoint: &endpoint,
                access_key: &access_key,
                secret_key: &secret_key,
                admin_token: &admin_token,
                hosts,
                total,
                concurrency,
            };
            hosts::run(args).await
        }
    }
}

async fn load(
    endpoint: &str,
    key: Option<(String, String)>,
    path: &str,
    connections: usize,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<()> {
    if rate == 0 || connections == 0 {
        bail!("--rate and --connections must be positive");
    }
    let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
    // Each connection sends every `interval`; their schedules are staggered over one interval.
    let interval = Duration::from_secs_f64(connections as f64 / rate as f64);
    let total = Duration::from_secs(seconds);
    let started = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (client, key) = (client.clone(), key.clone());
        let url = format!("{endpoint}{path}");
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut due = started + interval.mul_f64(c as f64 / connections as f64);
            while due < started + total {
                tokio::time::sleep_until(due).await;
                let mut req = client.get(&url);
                if let Some((k, s)) = &key {
                    let ts = now_s().to_string();
                    let sig = signing::sign(s, &ts, signing::signed_path(&path));
                    req = req
                        .header("X-iwinv-Timestamp", ts)
                        .header("X-iwinv-Credential", k)
                        .header("X-iwinv-Signature", sig);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await?;
                    }
                    _ => errors += 1,
                }
                lat.push(due.elapsed());
                due += interval;
            }
            anyhow::Ok((lat, errors))
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await??;
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "load {path}: offered {rate}/s over {connections} connections for {seconds} s: sent {} ({:.0}/s), errors {errors}, \
         p50={} p99={} p99.9={} max={}",
        lat.len(),
        lat.len() as f64 / elapsed,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(percentile(&lat, 0.999)),
        ms(lat.last().copied().unwrap_or_default())
    );
    Ok(())
}

async fn create(endpoint: &str, key: &str, secret: &str, total: usize, concurrency: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next) = (client.clone(), next.clone());
        let (endpoint, key, secret) = (endpoint.to_owned(), key.to_owned(), secret.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let body = serde_json::json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "attach_public_ip": false});
                let t = Instant::now();
                let r = signed(&client, reqwest::Method::POST, &endpoint, "/v1/instances", &key, &secret).json(&body).send().await?;
                let status = r.status();
                let text = r.text().await?;
                if status != 202 {
                    bail!("create answered {status}: {text}");
                }
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let accepted_in = started.elapsed();
    // Wait until every instance is active.
    loop {
        let r = signed(
            &client,
            reqwest::Method::GET,
            endpoint,
            "/v1/instances?status=pending,work,error&page_size=1&fields=1",
            key,
            secret,
        )
        .send()
        .await?;
        let v: serde_json::Value = r.json().await?;
        if v["total"].as_u64() == Some(0) {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("instances still not active after 600 s: {v}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let active_in = started.elapsed();
    lat.sort();
    println!(
        "create: {total} instances, concurrency {concurrency}: accepted in {:.2} s, all active in {:.2} s → {:.0} instances/s; create request p50={} p99={}",
        accepted_in.as_secs_f64(),
        active_in.as_secs_f64(),
        total as f64 / active_in.as_secs_f64(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
    );
    Ok(())
}

/// Inserts `count` active instances for `account`, in batches, as the server would have.
async fn seed(database: &str, account: &str, count: usize) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database).await.context("connect")?;
    let (account_id,): (String,) = sqlx::query_as("SELECT account_id FROM accounts WHERE name = $1")
        .bind(account)
        .fetch_one(&pool)
        .await
        .context("account")?;
    let (sealed,): (String,) = sqlx::query_as("SELECT secret_sealed FROM access_keys LIMIT 1").fetch_one(&pool).await?;
    let base = now_s() - count as i64;
    let mut done = 0;
    while done < count {
        let n = (count - done).min(500);
        let mut tx = pool.begin().await?;
        for i in done..done + n {
            // Time-ordered ids like the server's: zero-padded sequence after a fixed prefix.
            let id = format!("INSTANCE-0{:021}", i);
            let private = format!("10.16.{}.{}", (i / 250) % 256, i % 250 + 2);
            sqlx::query(
                "INSERT INTO instances (instance_id, account_id, name, description, status, power, zone_id, flavor_id, image_id, \
                 username, password_sealed, user_script_id, ssh_keys, attach_public_ip, public_ip, private_ip, public_ip_num, \
                 private_ip_num, operation_id, error_reason, generation, created_at, stop_date, vcpu) \
                 VALUES ($1, $2, $3, NULL, 'active', 'on', 'KR1-Z01', 'ss1.c1m1', 'IMG-ubuntu-2404', 'root', $4, NULL, '[]', 0, \
                 NULL, $5, NULL, $6, NULL, NULL, 1, $7, NULL, 1)",
            )
            .bind(&id)
            .bind(&account_id)
            .bind(format!("seed-{i}"))
            .bind(&sealed)
            .bind(&private)
            .bind(167_772_160_i64 + 1_048_576 + i as i64)
            .bind(base + i as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        done += n;
    }
    sqlx::query("UPDATE accounts SET quota_instances = $1, quota_vcpu = $1 WHERE account_id = $2")
        .bind((count as i64) * 2)
        .bind(&account_id)
        .execute(&pool)
        .await?;
    println!("seeded {count} instances for {account}");
    Ok(())
}

fn parse_month(month: Option<&str>, tz: &jiff::tz::TimeZone) -> anyhow::Result<Month> {
    match month {
        None => Ok(Month::containing(now_s(), tz)),
        Some(m) => Month::parse_key(m).with_context(|| format!("--month must be YYYY-MM, not {m}")),
    }
}

/// Inserts usage intervals as the server would have written them: servers at 14 won/hour (cap
/// 9900), every fourth resized to 45 won/hour (cap 31900) three days in, every tenth deleted five
/// days in; every fifth resource a 20 GB ssd volume (3000 won/month). Starts are spread over the
/// month up to now.
async fn seed_usage(
    database: &str,
    account: &str,
    accounts: usize,
    resources: usize,
    month: Option<&str>,
    timezone: &str,
) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let tz = jiff::tz::TimeZone::get(timezone).context("--timezone")?;
    let period = parse_month(month, &tz)?.period(&tz);
    let until = period.end.min(now_s());
    let span = (until - period.start).max(1);
    let pool = sqlx::AnyPool::connect(database).await.context("connect")?;
    let mut owners = Vec::new();
    if accounts == 0 {
        let (id,): (String,) = sqlx::query_as("SELECT account_id FROM accounts WHERE name = $1")
            .bind(account)
            .fetch_one(&pool)
            .await
            .context("account")?;
        owners.push(id);
    } else {
        for chunk in (0..accounts).collect::<Vec<_>>().chunks(500) {
            let mut tx = pool.begin().await?;
            for &a in chunk {
                let id = format!("ACCOUNT-bench{a:017}");
                sqlx::query("INSERT INTO accounts (account_id, name, enabled, created_at) VALUES ($1, $2, 1, $3)")
                    .bind(&id)
                    .bind(format!("bench-{a}"))
                    .bind(period.start)
                    .execute(&mut *tx)
                    .await?;
                owners.push(id);
            }
            tx.commit().await?;
        }
    }
    // (account, resource, kind, name, product, size, hourly, monthly, start, end)
    type Row = (String, String, &'static str, String, &'static str, i64, i64, i64, i64, Option<i64>);
    let mut rows: Vec<Row> = Vec::new();
    let mut total = 0usize;
    let flush = |rows: &mut Vec<Row>| {
        let batch = std::mem::take(rows);
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await?;
            for chunk in batch.chunks(100) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let p: Vec<String> = (1..=11).map(|c| format!("${}", i * 11 + c)).collect();
                        format!("({})", p.join(", "))
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO usage_intervals (interval_id, account_id, resource_id, kind, name, product, size, \
                     hourly, monthly, start_at, end_at) VALUES {}",
                    values.join(", ")
                );
                let mut q = sqlx::query(&sql);
                for (a, r, kind, name, product, size, hourly, monthly, start, end) in chunk {
                    q = q
                        .bind(format!("USAGE-{r}-{start}"))
                        .bind(a)
                        .bind(r)
                        .bind(*kind)
                        .bind(name)
                        .bind(*product)
                        .bind(*size)
                        .bind(*hourly)
                        .bind(*monthly)
                        .bind(*start)
                        .bind(*end);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            anyhow::Ok(())
        }
    };
    for (n, owner) in owners.iter().enumerate() {
        for i in 0..resources {
            let start = period.start + ((i * 7919 + n * 104_729) as i64 % span);
            let name = format!("r-{i}");
            if i % 5 == 4 {
                let id = format!("BS-b{n:07}r{i:07}");
                rows.push((owner.clone(), id, "volume", name, "ssd", 20, 0, 3000, start, None));
                total += 1;
                continue;
            }
            let id = format!("INSTANCE-b{n:07}r{i:07}");
            let server = |product, hourly, monthly, start, end| -> Row {
                (owner.clone(), id.clone(), "server", name.clone(), product, 0, hourly, monthly, start, end)
            };
            let resize = start + 3 * 86_400;
            let delete = start + 5 * 86_400;
            let end = (i % 10 == 7 && delete < until).then_some(delete);
            if i % 4 == 1 && resize < until {
                rows.push(server("ss1.c1m1", 14, 9900, start, Some(resize)));
                rows.push(server("ss1.c2m4", 45, 31_900, resize, end));
                total += 2;
            } else {
                rows.push(server("ss1.c1m1", 14, 9900, start, end));
                total += 1;
            }
            if rows.len() >= 2000 {
                flush(&mut rows).await?;
            }
        }
    }
    flush(&mut rows).await?;
    println!(
        "seeded {total} usage intervals: {} account(s) × {resources} resources, {}",
        owners.len(),
        month.map_or_else(|| "this month".to_owned(), str::to_owned)
    );
    Ok(())
}

/// The server's month close, run directly on a store, timed.
async fn close_month(database: &str, month: &str, timezone: &str) -> anyhow::Result<()> {
    let tz = jiff::tz::TimeZone::get(timezone).context("--timezone")?;
    let m = parse_month(Some(month), &tz)?;
    let store = openwinv_store::Store::open(database).await?;
    let started = Instant::now();
    let r = openwinv_server::billing::close::close_month(&store, m, &tz, false, now_s()).await?;
    let took = started.elapsed();
    println!(
        "close-month {month}: {} accounts with usage, {} bills issued in {:.2} s ({:.0} accounts/s)",
        r.accounts,
        r.issued,
        took.as_secs_f64(),
        r.accounts as f64 / took.as_secs_f64()
    );
    store.close().await;
    Ok(())
}

/// Times `checks` rate-limit checks of one key, in memory (governor, as the server did before the
/// bucket moved to the store) and in the store, one caller at a time and `concurrency` at once.
/// The limit is high enough that every check is granted: this measures the check, not refusals.
async fn rate_limit(database: &str, access_key: &str, checks: u32, concurrency: u32) -> anyhow::Result<()> {
    use governor::{Quota, RateLimiter};
    // The highest limit a key can have (the operator API allows 0 to 1,000,000 per minute).
    const PER_MINUTE: u32 = 1_000_000;
    let interval_us = (60_000_000 / i64::from(PER_MINUTE)).max(1);
    let burst_us = interval_us * i64::from(PER_MINUTE);
    let now_us = || {
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros()).unwrap()
    };

    let memory = RateLimiter::direct(Quota::per_minute(std::num::NonZeroU32::new(PER_MINUTE).unwrap()));
    let t = Instant::now();
    for _ in 0..checks {
        if memory.check().is_err() {
            bail!("the in-memory bucket refused a check");
        }
    }
    let memory_each = t.elapsed() / checks;

    let store = Arc::new(openwinv_store::Store::open(database).await?);
    let t = Instant::now();
    for _ in 0..checks {
        let d = store.take_rate_token(access_key, now_us(), interval_us, burst_us).await?;
        if !d.granted {
            bail!("the store bucket refused a check");
        }
    }
    let store_each = t.elapsed() / checks;

    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let store = store.clone();
        let key = access_key.to_owned();
        tasks.spawn(async move {
            for _ in 0..checks / concurrency {
                store.take_rate_token(&key, now_us(), interval_us, burst_us).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let concurrent_rate = f64::from(checks / concurrency * concurrency) / t.elapsed().as_secs_f64();
    store.close().await;
    println!(
        "in-memory bucket {:.0} ns/check; store bucket {:.1} µs/check one at a time ({:.0}x), {:.0} checks/s with {concurrency} concurrent callers",
        memory_each.as_secs_f64() * 1e9,
        store_each.as_secs_f64() * 1e6,
        store_each.as_secs_f64() / memory_each.as_secs_f64().max(1e-9),
        concurrent_rate
    );
    Ok(())
}

/// A signed client of one endpoint, for the mixed load.
struct Mixed {
    client: reqwest::Client,
    endpoint: String,
    key: String,
    secret: String,
}

/// What one request of the mixed load did.
struct Outcome {
    status: u16,
    body: serde_json::Value,
}

impl Mixed {
    async fn call(
        &self,
        method: reqwest::Method,
        pq: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<Outcome> {
        let mut req = signed(&self.client, method, &self.endpoint, pq, &self.key, &self.secret);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(Outcome { status, body })
    }

    /// Creates `count` (1–10) instances; their ids.
    async fn create(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let body = serde_json::json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1",
            "attach_public_ip": false, "count": count});
        let r = self.call(reqwest::Method::POST, "/v1/instances", Some(body)).await?;
        if r.status != 202 {
            bail!("create answered {}: {}", r.status, r.body);
        }
        Ok(ids_of(&r.body, "instance_id"))
    }

    /// The number of instances of the account not yet active or off.
    async fn unsettled(&self) -> anyhow::Result<u64> {
        let r = self.call(reqwest::Method::GET, "/v1/instances?status=pending,work&page_size=1&fields=1", None).await?;
        r.body["total"].as_u64().with_context(|| format!("no total in {}", r.body))
    }
}

fn ids_of(body: &serde_json::Value, key: &str) -> Vec<String> {
    body["result"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r[key].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The requests of the mixed load, with their share (weights out of 100).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    ListInstances,
    InstanceDetail,
    ListVolumes,
    VolumeDetail,
    ListFirewalls,
    FirewallDetail,
    ListSshKeys,
    ListScripts,
    ListOperations,
    ListBills,
    Catalog,
    LiveBill,
    Create,
    Action,
    Delete,
}

const MIX: &[(Op, u32)] = &[
    (Op::ListInstances, 16),
    (Op::InstanceDetail, 14),
    (Op::ListVolumes, 6),
    (Op::VolumeDetail, 4),
    (Op::ListFirewalls, 5),
    (Op::FirewallDetail, 4),
    (Op::ListSshKeys, 4),
    (Op::ListScripts, 4),
    (Op::ListOperations, 6),
    (Op::ListBills, 3),
    (Op::Catalog, 6),
    (Op::LiveBill, 10),
    (Op::Create, 6),
    (Op::Action, 6),
    (Op::Delete, 6),
];

/// Shared state of a phase: ids to read and act on.
struct Pool {
    /// Instances made while growing: read and rebooted, never deleted.
    fixed: Vec<String>,
    /// Instances the load created: the deletes take from here.
    made: std::sync::Mutex<Vec<String>>,
    volume: String,
    firewall: String,
}

#[derive(Default)]
struct PhaseStats {
    all: Vec<Duration>,
    live: Vec<Duration>,
    /// Latencies by request kind.
    by_op: std::collections::BTreeMap<String, Vec<Duration>>,
    /// Answers other than 2xx, by (op, status).
    refused: std::collections::BTreeMap<String, u64>,
}

async fn mixed(m: Arc<Mixed>, sizes: &[usize], seconds: u64, concurrency: usize) -> anyhow::Result<()> {
    // A firewall and a volume to read.
    let fw = m
        .call(
            reqwest::Method::POST,
            "/v1/security-groups",
            Some(serde_json::json!({"title": "mixed", "content": "bench"})),
        )
        .await?;
    let firewall = ids_of(&fw.body, "firewall_id").pop().with_context(|| format!("firewall create: {}", fw.body))?;
    let mut fixed: Vec<String> = Vec::new();
    let first = m.create(1).await?;
    while m.unsettled().await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let vol = m
        .call(
            reqwest::Method::POST,
            "/v1/block-storages",
            Some(serde_json::json!({"instance_id": first[0], "type": "ssd", "size": 20})),
        )
        .await?;
    let volume = ids_of(&vol.body, "block_storage_id").pop().with_context(|| format!("volume create: {}", vol.body))?;
    fixed.extend(first);
    println!("| instances | requests/s | p50 | p99 | live bill p50 | live bill p99 | requests | non-2xx |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let made: Vec<String> = Vec::new();
    let mut details = Vec::new();
    let mut pool = Arc::new(Pool { fixed, made: std::sync::Mutex::new(made), volume, firewall });
    for &size in sizes {
        // Grow to `size` (counting the instances the load made and kept), 10 per request, 16 at once.
        let have = pool.fixed.len() + pool.made.lock().unwrap().len();
        let missing = size.saturating_sub(have);
        let mut grown = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = missing.div_ceil(16).max(1);
        let mut left = missing;
        while left > 0 {
            let n = left.min(per_task);
            left -= n;
            let m = m.clone();
            tasks.spawn(async move {
                let mut ids = Vec::new();
                let mut n = n;
                while n > 0 {
                    let c = n.min(10);
                    ids.extend(m.create(c).await?);
                    n -= c;
                }
                anyhow::Ok(ids)
            });
        }
        while let Some(r) = tasks.join_next().await {
            grown.extend(r??);
        }
        while m.unsettled().await? > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        {
            let p = Arc::get_mut(&mut pool).expect("no phase running");
            p.fixed.extend(grown);
        }
        let stats = phase(&m, &pool, seconds, concurrency).await?;
        let count = stats.all.len();
        let non2xx: u64 = stats.refused.values().sum();
        let mut by_op: Vec<String> = Vec::new();
        for (op, mut lat) in stats.by_op {
            lat.sort();
            by_op.push(format!("{op} {}/{}", ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99))));
        }
        details.push(format!("- {size} instances, p50/p99 by request: {}", by_op.join(", ")));
        let (mut all, mut live) = (stats.all, stats.live);
        all.sort();
        live.sort();
        println!(
            "| {size} | {:.0} | {} | {} | {} | {} | {count} | {non2xx}{} |",
            count as f64 / seconds as f64,
            ms(percentile(&all, 0.5)),
            ms(percentile(&all, 0.99)),
            ms(percentile(&live, 0.5)),
            ms(percentile(&live, 0.99)),
            if stats.refused.is_empty() {
                String::new()
            } else {
                format!(" ({})", stats.refused.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "))
            }
        );
    }
    println!();
    for d in details {
        println!("{d}");
    }
    Ok(())
}

/// `seconds` of the mixed load over `concurrency` clients.
async fn phase(m: &Arc<Mixed>, pool: &Arc<Pool>, seconds: u64, concurrency: usize) -> anyhow::Result<PhaseStats> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..concurrency {
        let (m, pool) = (m.clone(), pool.clone());
        tasks.spawn(async move {
            let mut stats = PhaseStats::default();
            // A small xorshift per client: reproducible, no dependency.
            let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let total_weight: u32 = MIX.iter().map(|(_, w)| w).sum();
            while Instant::now() < until {
                let mut pick = (next() % u64::from(total_weight)) as u32;
                let op = MIX
                    .iter()
                    .find(|(_, w)| {
                        if pick < *w {
                            true
                        } else {
                            pick -= w;
                            false
                        }
                    })
                    .map(|(op, _)| *op)
                    .expect("weights");
                let any_fixed = pool.fixed[(next() % pool.fixed.len() as u64) as usize].clone();
                // The first or the last page: a page in the middle costs its offset by the nature
                // of `page_no` paging, whatever the server does (docs/perf.md, run 4).
                let pages = (pool.fixed.len() as u64).div_ceil(10).max(1);
                let page = if next() % 2 == 0 { 1 } else { pages };
                use reqwest::Method as M;
                let (method, pq, body): (M, String, Option<serde_json::Value>) = match op {
                    Op::ListInstances => (M::GET, format!("/v1/instances?page_size=10&page_no={page}"), None),
                    Op::InstanceDetail => (M::GET, format!("/v1/instances/{any_fixed}"), None),
                    Op::ListVolumes => (M::GET, "/v1/block-storages?page_size=10".into(), None),
                    Op::VolumeDetail => (M::GET, format!("/v1/block-storages/{}", pool.volume), None),
                    Op::ListFirewalls => (M::GET, "/v1/firewall?page_size=10".into(), None),
                    Op::FirewallDetail => (M::GET, format!("/v1/firewall/{}", pool.firewall), None),
                    Op::ListSshKeys => (M::GET, "/v1/auth/ssh_key".into(), None),
                    Op::ListScripts => (M::GET, "/v1/instance/script".into(), None),
                    Op::ListOperations => (M::GET, "/v1/operations?page_size=10".into(), None),
                    Op::ListBills => (M::GET, "/v1/bill".into(), None),
                    Op::Catalog => {
                        (M::GET, ["/v1/flavors", "/v1/images", "/v1/zones"][(next() % 3) as usize].into(), None)
                    }
                    Op::LiveBill => (M::GET, "/v1/bill/live".into(), None),
                    Op::Create => (
                        M::POST,
                        "/v1/instances".into(),
                        Some(serde_json::json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404",
                            "flavor_id": "ss1.c1m1", "attach_public_ip": false})),
                    ),
                    Op::Action => (M::POST, format!("/v1/instances/{any_fixed}/reboot"), None),
                    Op::Delete => {
                        let victim = {
                            let mut made = pool.made.lock().unwrap();
                            let n = made.len();
                            (n > 0).then(|| made.swap_remove((next() % n as u64) as usize))
                        };
                        match victim {
                            Some(id) => (M::DELETE, format!("/v1/instances/{id}"), None),
                            // Nothing made yet: a create instead, so creates and deletes balance.
                            None => continue,
                        }
                    }
                };
                let t = Instant::now();
                let r = m.call(method, &pq, body).await?;
                let took = t.elapsed();
                stats.all.push(took);
                stats.by_op.entry(format!("{op:?}")).or_default().push(took);
                if op == Op::LiveBill {
                    stats.live.push(took);
                }
                if !(200..300).contains(&r.status) {
                    *stats.refused.entry(format!("{op:?} {}", r.status)).or_default() += 1;
                    if op == Op::Delete {
                        // Not deletable yet (still building): try it again later.
                        let id = pq.rsplit('/').next().unwrap_or_default().to_owned();
                        pool.made.lock().unwrap().push(id);
                    }
                } else if op == Op::Create {
                    pool.made.lock().unwrap().extend(ids_of(&r.body, "instance_id"));
                }
            }
            anyhow::Ok(stats)
        });
    }
    let mut out = PhaseStats::default();
    while let Some(r) = tasks.join_next().await {
        let s = r??;
        out.all.extend(s.all);
        out.live.extend(s.live);
        for (k, v) in s.by_op {
            out.by_op.entry(k).or_default().extend(v);
        }
        for (k, v) in s.refused {
            *out.refused.entry(k).or_default() += v;
        }
    }
    Ok(out)
}
