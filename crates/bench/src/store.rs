//! The subcommands that work on a store directly: `seed`, `seed-usage`, `close-month`,
//! `rate-limit`.

use super::*;

/// Inserts `count` active instances for `account`, in batches, as the server would have.
pub(super) async fn seed(database: &str, account: &str, count: usize) -> anyhow::Result<()> {
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
pub(super) async fn seed_usage(
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
pub(super) async fn close_month(database: &str, month: &str, timezone: &str) -> anyhow::Result<()> {
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
pub(super) async fn rate_limit(database: &str, access_key: &str, checks: u32, concurrency: u32) -> anyhow::Result<()> {
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
