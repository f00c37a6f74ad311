//! Resource limits through the real binary: idle and slow connections (a slowloris), the
//! connection cap, the rate limit shared by two processes on one database, and the bounded
//! access-key cache.

use std::time::{Duration, Instant};

use openwinv_tests::{Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections that send nothing at all.
const IDLE_CONNECTIONS: usize = 40;
/// Connections that send a request head one header line at a time, never finishing it.
const SLOW_CONNECTIONS: usize = 8;
/// The cap the slowloris test runs with: above the idle and slow ones together.
const MAX_CONNECTIONS: usize = 56;
/// The header-read timeout the slowloris test runs with, in seconds.
const HEADER_TIMEOUT_SECS: u64 = 3;

fn host_port(s: &Server) -> String {
    s.endpoint.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection or `limit` passes; returns what was read and
/// whether the connection was closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn idle_and_slow_connections_neither_block_signed_requests_nor_stay_open() {
    let s = Server::start_with(
        &["--max-connections", &MAX_CONNECTIONS.to_string(), "--header-read-timeout", &HEADER_TIMEOUT_SECS.to_string()],
        &[("RUST_LOG", "info")],
    )
    .await;
    let addr = host_port(&s);
    let opened = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    // Slowloris: a header line every 300 ms, so the head is never complete.
    let mut slow = Vec::new();
    for _ in 0..SLOW_CONNECTIONS {
        let mut c = TcpStream::connect(&addr).await.expect("connect");
        slow.push(tokio::spawn(async move {
            if c.write_all(b"GET /v1/zones HTTP/1.1\r\nHost: x\r\n").await.is_err() {
                return true;
            }
            for i in 0..60 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if c.write_all(format!("X-Slow-{i}: y\r\n").as_bytes()).await.is_err() {
                    return true;
                }
                let mut b = [0u8; 1];
                if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), c.read(&mut b)).await {
                    return true;
                }
            }
            false
        }));
    }

    // A signed request among them answers promptly: well before the idle ones are timed out.
    let started = Instant::now();
    s.get("/v1/zones").await.ok_rows();
    assert!(
        started.elapsed() < Duration::from_secs(HEADER_TIMEOUT_SECS) / 2,
        "a signed request took {:?} beside {} idle connections",
        started.elapsed(),
        IDLE_CONNECTIONS + SLOW_CONNECTIONS
    );

    // Past the cap, a connection is answered 503 with the envelope and closed at once; below it,
    // a connection is served (and, sending nothing, stays open until the timeout).
    let extra_count = MAX_CONNECTIONS - IDLE_CONNECTIONS - SLOW_CONNECTIONS + 8;
    let mut extra = Vec::new();
    for _ in 0..extra_count {
        extra.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    let mut refused = 0;
    for c in &mut extra {
        let (bytes, closed) = read_until_closed(c, Duration::from_millis(500)).await;
        if bytes.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(closed && text.starts_with("HTTP/1.1 503"), "neither served nor refused: {text}");
        assert!(text.to_ascii_lowercase().contains("retry-after: 1"), "{text}");
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or("")).expect("a JSON body");
        assert_eq!((body["result"].as_str(), body["error_code"].as_str()), (Some("error"), Some("LIMIT_EXCEEDED")));
        assert!(body["message"].as_str().unwrap().contains(&MAX_CONNECTIONS.to_string()), "{body}");
        refused += 1;
    }
    assert!(refused >= 8, "only {refused} of {extra_count} connections past the cap of {MAX_CONNECTIONS} were refused");
    idle.extend(extra);

    // The server closes idle connections once the header-read timeout has passed, and slow ones
    // too, however often they send a line.
    let limit = Duration::from_secs(HEADER_TIMEOUT_SECS + 5);
    for c in &mut idle {
        let (bytes, closed) = read_until_closed(c, limit.saturating_sub(opened.elapsed())).await;
        assert!(closed, "an idle connection was still open {:?} after it opened", opened.elapsed());
        assert!(bytes.is_empty() || bytes.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&bytes));
    }
    for task in slow {
        assert!(task.await.unwrap(), "a slowloris connection was kept open for 18 s");
    }
    assert!(opened.elapsed() < limit + Duration::from_secs(15));

    // With them gone, requests are served again on new connections.
    for _ in 0..3 {
        s.get("/v1/zones").await.ok_rows();
    }
    let mut c = TcpStream::connect(&addr).await.expect("connect");
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let (bytes, _) = read_until_closed(&mut c, Duration::from_secs(5)).await;
    assert!(bytes.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&bytes));

    // The open-file limits were logged at start.
    let log = std::fs::read_to_string(s.log_path()).unwrap();
    let line = log.lines().find(|l| l.contains("open-file limit")).unwrap_or_else(|| panic!("no fd line:\n{log}"));
    assert!(line.contains("soft=") && line.contains("hard="), "{line}");
}

/// Whether an answer came through or was refused by the rate limit (anything else fails).
fn granted(r: &Resp) -> bool {
    if r.status == 429 {
        r.assert_error(429, "LIMIT_EXCEEDED");
        assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
        false
    } else {
        r.ok_rows();
        true
    }
}

#[tokio::test]
async fn two_processes_on_one_database_share_one_bucket_per_key() {
    const LIMIT: usize = 60;
    const REQUESTS: usize = 140;
    const CONCURRENCY: usize = 14;
    let a = Server::start().await;
    let b = Server::start_sharing(&a, &[]).await;
    let (key, secret) = a.new_account("busy", json!({"rate_limit": LIMIT})).await;
    // Connections to both processes are open before the count starts (the bootstrap key has its
    // own bucket).
    for s in [&a, &b] {
        s.get("/v1/zones").await.ok_rows();
    }
    let servers = std::sync::Arc::new([a, b]);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let servers = servers.clone();
        let (key, secret) = (key.clone(), secret.clone());
        tasks.spawn(async move {
            let mut through = 0;
            // Alternate processes request by request.
            for i in (worker..REQUESTS).step_by(CONCURRENCY) {
                let r = servers[i % 2].call_as(&key, &secret, Method::GET, "/v1/zones", None).await;
                through += usize::from(granted(&r));
            }
            through
        });
    }
    let mut through = 0;
    while let Some(n) = tasks.join_next().await {
        through += n.unwrap();
    }
    // The bucket is shared: once it is empty, neither process lets a request through.
    for s in servers.iter() {
        through += usize::from(granted(&s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await));
    }
    let elapsed = started.elapsed();
    // One token comes back per second of the server clock, which keeps running: a run slower than
    // a second may see one more per second it took (whole seconds, rounded up). Two buckets of 60,
    // or one that concurrent requests refill (as before the store's slack: 82 to 120 went through
    // on PostgreSQL), let far more through.
    let refilled = usize::try_from(elapsed.as_secs()).unwrap() + 1;
    assert!(
        (LIMIT..=LIMIT + refilled).contains(&through),
        "{through} of {} requests went through two processes in {elapsed:?}; the limit is {LIMIT} per minute",
        REQUESTS + 2
    );
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends `count` requests, each with a credential never seen before, `tasks` at a time.
async fn unknown_credentials(s: &std::sync::Arc<Server>, from: usize, count: usize, tasks: usize) {
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let s = s.clone();
        set.spawn(async move {
            // Long credentials make every remembered one cost, so that an unbounded cache shows.
            let pad = "X".repeat(1024);
            for n in (from + t..from + count).step_by(tasks) {
                let h = vec![("X-iwinv-Credential".to_owned(), format!("UNKNOWN{n:012}{pad}"))];
                let r = s.raw(Method::GET, "/v1/zones", &h, None).await;
                assert_eq!(r.status, 401, "{}", r.text);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// 200,000 requests as issue 14 measured them, over 64 keep-alive connections from a
/// multi-threaded client so that the run stays well under a minute on two cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_unknown_credentials_leave_memory_flat() {
    // Past the cache's 10,000 entries before the first measurement.
    const WARM_UP: usize = 12_000;
    const TOTAL: usize = 200_000;
    const TASKS: usize = 64;
    /// Growth allowed after the warm-up: an unbounded cache of the remaining 188,000 credentials
    /// (over 1 KiB each) would take well over 188 MiB.
    const GROWTH_LIMIT_KIB: u64 = 12 * 1024;
    let s = std::sync::Arc::new(Server::start().await);
    let pid = s.pid();
    let r = s.raw(Method::GET, "/v1/zones", &[("X-iwinv-Credential".into(), "UNKNOWN".into())], None).await;
    r.assert_error(401, "CHECK_CREDENTIAL");
    unknown_credentials(&s, 0, WARM_UP, TASKS).await;
    let before = rss_kib(pid);
    unknown_credentials(&s, WARM_UP, TOTAL - WARM_UP, TASKS).await;
    let after = rss_kib(pid);
    assert!(
        after <= before + GROWTH_LIMIT_KIB,
        "resident memory grew from {before} KiB to {after} KiB over {} unknown credentials",
        TOTAL - WARM_UP
    );
    // The bootstrap key still works (known keys are cached beside the unknown ones).
    s.get("/v1/zones").await.ok_rows();
}
