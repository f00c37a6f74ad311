//! `standin`: what a test suite pays for the stand-in's controls between tests. Seeds an
//! ordinary test database through `POST /admin/v1/seed` (instances, volumes, firewalls with
//! rules, SSH keys, scripts and past bills), saves it as a snapshot, then times, `--rounds`
//! times each: a reset, a restore of the snapshot, a save, and the seed itself. Each figure is
//! the client's wall time (request to answer, loopback); the reset's own `took_ms` is printed
//! beside it.

use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub struct Args {
    pub endpoint: String,
    pub admin_token: String,
    pub instances: u32,
    pub firewalls: u32,
    pub rounds: usize,
}

fn fixture(a: &Args) -> Value {
    let n = a.instances;
    json!({
        "accounts": [{"name": "bench", "quota": {"instances": n, "vcpu": n * 2, "block_storage_gb": n * 20}}],
        "ssh_keys": [{"account": "bench", "name": "key-{n}", "count": 20,
            "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl bench"}],
        "scripts": [{"account": "bench", "name": "script-{n}", "count": 20, "content": "#!/bin/sh\necho hi\n"}],
        "firewalls": [{"account": "bench", "title": "fw-{n}", "content": "firewall {n}", "count": a.firewalls,
            "rules": [{"bound": "IN", "protocol": "TCP", "port": "22", "ip": "0.0.0.0/0", "title": "ssh"},
                      {"bound": "IN", "protocol": "TCP", "port": "80", "ip": "0.0.0.0/0", "title": "web"}]}],
        "instances": [{"account": "bench", "name": "vm-{n}", "count": n, "zone_id": "KR1-Z01",
            "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1"}],
        "block_storages": [{"account": "bench", "instance": "vm-{n}", "name": "vol-{n}", "count": n.div_ceil(4),
            "type": "ssd", "size": 10}],
        "bills": [{"account": "bench", "month": "2026-06", "price": 15000, "count": 12}],
    })
}

async fn call(
    client: &reqwest::Client,
    a: &Args,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(f64, Value)> {
    let mut req = client.request(method, format!("{}{path}", a.endpoint)).bearer_auth(&a.admin_token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let t = Instant::now();
    let r = req.send().await.with_context(|| path.to_owned())?;
    let status = r.status();
    let v: Value = r.json().await.with_context(|| path.to_owned())?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if !status.is_success() {
        bail!("{path}: {status} {v}");
    }
    Ok((ms, v))
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let max = ms[ms.len() - 1];
    println!("| {name} | {median:.0} | {max:.0} |");
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let post = reqwest::Method::POST;
    let seed_body = fixture(&a);
    let (mut seed, mut reset, mut took, mut restore, mut save) = (vec![], vec![], vec![], vec![], vec![]);
    call(&client, &a, post.clone(), "/admin/v1/reset", Some(&json!({}))).await?;
    let (ms, v) = call(&client, &a, post.clone(), "/admin/v1/seed", Some(&seed_body)).await?;
    seed.push(ms);
    let (_, saved) =
        call(&client, &a, post.clone(), "/admin/v1/snapshots", Some(&json!({"name": "bench-standin"}))).await?;
    let rows = saved["result"][0]["rows"].as_u64().unwrap_or(0);
    let bytes = saved["result"][0]["size_bytes"].as_u64().unwrap_or(0);
    println!(
        "Fixture: {} instances, {} volumes, {} firewalls × 2 rules, 20 SSH keys, 20 scripts, 12 bills \
         (seed answer: {}); the snapshot holds {rows} rows, {} kB.",
        a.instances,
        a.instances.div_ceil(4),
        a.firewalls,
        v["result"][0],
        bytes / 1024
    );
    println!();
    for _ in 0..a.rounds {
        let (ms, v) = call(&client, &a, post.clone(), "/admin/v1/reset", Some(&json!({}))).await?;
        reset.push(ms);
        took.push(v["result"][0]["took_ms"].as_f64().unwrap_or(f64::NAN));
        let (ms, _) = call(&client, &a, post.clone(), "/admin/v1/snapshots/bench-standin/restore", None).await?;
        restore.push(ms);
        let (ms, _) =
            call(&client, &a, post.clone(), "/admin/v1/snapshots", Some(&json!({"name": "bench-again"}))).await?;
        save.push(ms);
        call(&client, &a, post.clone(), "/admin/v1/reset", Some(&json!({}))).await?;
        let (ms, _) = call(&client, &a, post.clone(), "/admin/v1/seed", Some(&seed_body)).await?;
        seed.push(ms);
    }
    println!("| control ({} rounds) | median ms | max ms |", a.rounds);
    println!("|---|---:|---:|");
    summary("reset of the seeded state (client wall time)", reset);
    summary("reset, the server's own `took_ms`", took);
    summary("snapshot restore", restore);
    summary("snapshot save", save);
    summary("seed of the fixture (waits for every instance)", seed);
    for name in ["bench-standin", "bench-again"] {
        call(&client, &a, reqwest::Method::DELETE, &format!("/admin/v1/snapshots/{name}"), None).await?;
    }
    Ok(())
}
