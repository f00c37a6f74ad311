//! The image cache's tests, against a control plane played by a socket that serves given bodies.

use std::sync::atomic::{AtomicUsize, Ordering};

use openwinv_driver::BootImage;
use tokio::io::AsyncReadExt;

use super::*;

/// A control plane that answers the n-th request with `bodies[n]` (the last one after that)
/// and counts requests.
async fn serving(bodies: Vec<&'static [u8]>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let body = bodies[n.min(bodies.len() - 1)];
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body).await;
        }
    });
    (base, served)
}

fn cache(dir: &Path, base: String, ttl: Duration) -> ImageCache {
    let config = crate::Config {
        control_plane: base,
        host_token: "owh_test".into(),
        driver: crate::Driver::Qemu,
        zone: "KR1-Z01".into(),
        data_dir: dir.to_owned(),
        ca_file: None,
        address: None,
        vcpus: None,
        memory_mb: None,
        disk_gb: None,
        sim_delay: Duration::ZERO,
        sim_refuse: None,
        accel: openwinv_qemu::Accel::Tcg,
        image_cache_ttl: ttl,
        underlay: None,
        network: Default::default(),
        uplink: None,
    };
    ImageCache::open(dir, Arc::new(Control::new(&config).unwrap()), ttl).unwrap()
}

fn spec(id: &str) -> MachineSpec {
    MachineSpec {
        instance_id: id.into(),
        hostname: "h".into(),
        vcpu: 1,
        memory: 1,
        disk: 10,
        image_id: "IMG-x".into(),
        username: "root".into(),
        password: "pw".into(),
        ssh_keys: vec![],
        user_script: None,
        boot: Some(BootImage::Kernel {
            kernel: "/cp/images/IMG-x/vmlinuz".into(),
            initrd: None,
            cmdline: "console=ttyS0".into(),
            root_disk: None,
        }),
        network: None,
    }
}

fn payload(content: &[u8]) -> Value {
    let sha256 = hex::encode(Sha256::digest(content));
    json!({"boot_files": [{"path": "/cp/images/IMG-x/vmlinuz", "sha256": sha256, "size": content.len()}]})
}

fn events(dir: &Path, event: &str) -> usize {
    let text = std::fs::read_to_string(dir.join("images/events.jsonl")).unwrap_or_default();
    text.lines().filter(|l| serde_json::from_str::<Value>(l).unwrap()["event"] == event).count()
}

#[tokio::test]
async fn a_corrupt_download_is_refused_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let (base, served) = serving(vec![b"evil!", b"good!"]).await;
    let c = cache(dir.path(), base, Duration::from_secs(60));
    let sha256 = hex::encode(Sha256::digest(b"good!"));
    let got = c.prepare(spec("INSTANCE-a"), &payload(b"good!")).await.unwrap();
    let copy = dir.path().join("images").join(&sha256);
    let Some(BootImage::Kernel { kernel, .. }) = &got.boot else { panic!("{got:?}") };
    assert_eq!(kernel, &copy, "the spec names the host's copy");
    assert_eq!(std::fs::read(&copy).unwrap(), b"good!");
    assert_eq!(
        (served.load(Ordering::SeqCst), events(dir.path(), "corrupt"), events(dir.path(), "fetched")),
        (2, 1, 1)
    );
    // A second machine uses the copy: verified, not fetched.
    c.prepare(spec("INSTANCE-b"), &payload(b"good!")).await.unwrap();
    assert_eq!((served.load(Ordering::SeqCst), events(dir.path(), "verified")), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_fetch_per_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (base, served) = serving(vec![b"good!"]).await;
    let c = Arc::new(cache(dir.path(), base, Duration::from_secs(60)));
    let calls = (0..4).map(|i| {
        let c = c.clone();
        tokio::spawn(async move { c.prepare(spec(&format!("INSTANCE-{i}")), &payload(b"good!")).await })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.unwrap().unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), 1, "one download for four machines");
    assert_eq!((events(dir.path(), "fetched"), events(dir.path(), "verified")), (1, 3));
}

#[tokio::test]
async fn a_download_that_never_verifies_is_never_used() {
    let dir = tempfile::tempdir().unwrap();
    let (base, served) = serving(vec![b"evil!"]).await;
    let c = cache(dir.path(), base, Duration::from_secs(60));
    let err = c.prepare(spec("INSTANCE-a"), &payload(b"good!")).await.unwrap_err();
    assert!(matches!(&err, DriverError::Transient(m) if m.contains("not fetched after 3 attempts")), "{err:?}");
    assert_eq!(served.load(Ordering::SeqCst), FETCH_ATTEMPTS as usize);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("images"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "uses.json" && n != "events.jsonl")
        .collect();
    assert!(left.is_empty(), "nothing cached, no temporary left: {left:?}");
    // A spec whose files the item does not name by content is refused for good.
    let err = c.prepare(spec("INSTANCE-a"), &json!({})).await.unwrap_err();
    assert!(matches!(&err, DriverError::Permanent(m) if m.contains("names no content")), "{err:?}");
}

#[tokio::test]
async fn the_sweep_removes_only_copies_no_machine_uses_after_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = serving(vec![b"one", b"two"]).await;
    let c = cache(dir.path(), base, Duration::from_secs(60));
    let a = c.prepare(spec("INSTANCE-a"), &payload(b"one")).await.unwrap();
    c.settle(&a).await;
    let b = c.prepare(spec("INSTANCE-b"), &payload(b"two")).await.unwrap();
    c.settle(&b).await;
    let copy = |s: &MachineSpec| s.boot.as_ref().unwrap().files()[0].to_owned();
    let old = SystemTime::now() - Duration::from_secs(3600);
    for s in [&a, &b] {
        std::fs::File::open(copy(s)).unwrap().set_modified(old).unwrap();
    }
    c.release("INSTANCE-b").await;
    c.sweep().await;
    assert!(copy(&a).exists(), "used by a machine");
    assert!(!copy(&b).exists(), "unused for longer than the ttl");
    // Unused but recent: kept.
    c.release("INSTANCE-a").await;
    std::fs::File::open(copy(&a)).unwrap().set_modified(SystemTime::now()).unwrap();
    c.sweep().await;
    assert!(copy(&a).exists(), "unused for less than the ttl");
    assert_eq!(events(dir.path(), "removed"), 1);
}
