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
mod load;
mod mixed;
mod standin;
mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use openwinv_billing::Month;
use openwinv_wire::signing;

use load::{create, load};
use mixed::{Mixed, mixed};
use store::{close_month, rate_limit, seed, seed_usage};

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
        /// Seconds of the same load before each measured phase, not counted: the steady state
        /// at a size rather than the first seconds after the account grew by thousands at once
        /// (0: measure from the first request).
        #[arg(long, default_value_t = 0)]
        warmup: u64,
        /// A shell command run just before and just after each measured phase, with
        /// `MIXED_SIZE` and `MIXED_EDGE` (`start` or `end`) in its environment: for profiling a
        /// phase alone (reset the database's statement statistics, read CPU times).
        #[arg(long)]
        around: Option<String>,
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
        Command::Mixed { endpoint, access_key, secret_key, sizes, seconds, concurrency, warmup, around } => {
            let m = Mixed {
                client: reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?,
                endpoint,
                key: access_key,
                secret: secret_key,
            };
            mixed(Arc::new(m), &sizes, seconds, concurrency, warmup, around.as_deref()).await
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
