//! `mixed`: one account grown through the API under a mixed signed load.

use super::*;

/// A signed client of one endpoint, for the mixed load.
pub(super) struct Mixed {
    pub(super) client: reqwest::Client,
    pub(super) endpoint: String,
    pub(super) key: String,
    pub(super) secret: String,
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

pub(super) async fn mixed(
    m: Arc<Mixed>,
    sizes: &[usize],
    seconds: u64,
    concurrency: usize,
    warmup: u64,
    around: Option<&str>,
) -> anyhow::Result<()> {
    let hook = |size: usize, edge: &str| -> anyhow::Result<()> {
        if let Some(cmd) = around {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .env("MIXED_SIZE", size.to_string())
                .env("MIXED_EDGE", edge)
                .status()?;
            anyhow::ensure!(status.success(), "--around command failed at {edge} of {size}: {status}");
        }
        Ok(())
    };
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
        if warmup > 0 {
            phase(&m, &pool, warmup, concurrency).await?;
        }
        hook(size, "start")?;
        let stats = phase(&m, &pool, seconds, concurrency).await?;
        hook(size, "end")?;
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
