//! `create` and `load`: signed requests against a running server.

use super::*;

pub(super) async fn load(
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

pub(super) async fn create(
    endpoint: &str,
    key: &str,
    secret: &str,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
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
