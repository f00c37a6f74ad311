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
//! - `heartbeats`: N hypervisor hosts heartbeating every 2 s against a control plane; reports the
//!   heartbeat writes per second it absorbs and their latency (`heartbeats.rs`).

mod heartbeats;

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
        Command::Heartbeats { endpoint, admin_token, hosts, seconds, database } => {
            heartbeats::run(&endpoint, &admin_token, hosts, seconds, database.as_deref()).await
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
