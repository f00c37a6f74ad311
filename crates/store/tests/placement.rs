//! Placement never overbooks: random host capacities, 200 concurrent placements, on the store
//! this run tests (`OPENWINV_TEST_STORE=sqlite`, the default, or `=postgres` with
//! `OPENWINV_TEST_DATABASE_URL`; asking for PostgreSQL without a URL fails the test).

use std::collections::HashMap;
use std::sync::Arc;

use openwinv_store::hosts::{NewHost, Overcommit, Placed, PlacementRequest, Registration, Resized};
use proptest::prelude::*;

mod common;
use common::{close, open};

const ZONE: &str = "KR1-Z01";
const NOW: i64 = 1_800_000_000;

#[derive(Debug, Clone)]
struct HostSpec {
    vcpus: i64,
    memory_mb: i64,
    disk_gb: i64,
    alive: bool,
    enabled: bool,
    gpu: bool,
}

#[derive(Debug, Clone)]
struct Want {
    vcpus: i64,
    memory_mb: i64,
    disk_gb: i64,
    gpu: bool,
}

fn host_spec() -> impl Strategy<Value = HostSpec> {
    (1i64..=16, 1i64..=64, 10i64..=400, prop::bool::weighted(0.85), prop::bool::weighted(0.85), any::<bool>()).prop_map(
        |(v, m, d, alive, enabled, gpu)| HostSpec { vcpus: v, memory_mb: m * 1024, disk_gb: d, alive, enabled, gpu },
    )
}

fn want() -> impl Strategy<Value = Want> {
    (1i64..=8, 1i64..=16, 10i64..=100, prop::bool::weighted(0.1)).prop_map(|(v, m, d, gpu)| Want {
        vcpus: v,
        memory_mb: m * 1024,
        disk_gb: d,
        gpu,
    })
}

async fn run_case(hosts: Vec<HostSpec>, wants: Vec<Want>, ratios: Overcommit) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()).await);
    store.set_overcommit(&ratios).await.unwrap();
    let mut by_id = HashMap::new();
    for (i, h) in hosts.iter().enumerate() {
        let name = format!("h{i}");
        let token = format!("token-{i}");
        let rec = store
            .create_host(&NewHost { name: &name, zone_id: ZONE, token_sha256: &token, created_at: NOW })
            .await
            .unwrap();
        let caps: Vec<String> = if h.gpu { vec!["sim".into(), "gpu".into()] } else { vec!["sim".into()] };
        let reg = Registration {
            address: "10.0.0.1",
            vcpus: h.vcpus,
            memory_mb: h.memory_mb,
            disk_gb: h.disk_gb,
            driver: "sim",
            capabilities: &caps,
            agent_version: "test",
        };
        // A dead host last beat 21 s before `NOW`.
        let beat = if h.alive { NOW - 5 } else { NOW - 21 };
        store.register_host(&rec.host_id, &reg, beat).await.unwrap().unwrap();
        if !h.enabled {
            store.set_host_state(&name, "disabled").await.unwrap().unwrap();
        }
        by_id.insert(rec.host_id, h.clone());
    }
    // A host of another zone that is never chosen.
    let other = store
        .create_host(&NewHost { name: "elsewhere", zone_id: "KR1-Z02", token_sha256: "t-else", created_at: NOW })
        .await
        .unwrap();
    let caps = vec!["sim".to_string(), "gpu".to_string()];
    let reg = Registration {
        address: "10.0.0.9",
        vcpus: 1000,
        memory_mb: 1 << 30,
        disk_gb: 1 << 30,
        driver: "sim",
        capabilities: &caps,
        agent_version: "test",
    };
    store.register_host(&other.host_id, &reg, NOW).await.unwrap().unwrap();

    // 200 concurrent placements; every tenth instance is asked for twice at once.
    let mut tasks = Vec::new();
    for (i, w) in wants.iter().enumerate() {
        let copies = if i % 10 == 0 { 2 } else { 1 };
        for _ in 0..copies {
            let store = store.clone();
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("INSTANCE-{i:04}");
                let caps: Vec<String> = if w.gpu { vec!["gpu".into()] } else { vec![] };
                let req = PlacementRequest {
                    instance_id: &id,
                    zone_id: ZONE,
                    vcpus: w.vcpus,
                    memory_mb: w.memory_mb,
                    disk_gb: w.disk_gb,
                    capabilities: &caps,
                };
                (i, store.place(&req, NOW).await.expect("placement runs"))
            }));
        }
    }
    let mut outcome: HashMap<usize, Vec<Placed>> = HashMap::new();
    for t in tasks {
        let (i, placed) = t.await.unwrap();
        outcome.entry(i).or_default().push(placed);
    }

    // Each instance has at most one reservation, and both calls of a doubled one agree.
    let rows = store.placements(None).await.unwrap();
    let mut reserved: HashMap<String, (i64, i64, i64)> = HashMap::new();
    for p in &rows {
        let h = by_id.get(&p.host_id).unwrap_or_else(|| panic!("{} placed on a host of another zone", p.instance_id));
        assert!(h.alive && h.enabled, "{} placed on a dead or disabled host", p.instance_id);
        let i: usize = p.instance_id["INSTANCE-".len()..].parse().unwrap();
        let w = &wants[i];
        assert_eq!((p.vcpus, p.memory_mb, p.disk_gb), (w.vcpus, w.memory_mb, w.disk_gb));
        assert!(!w.gpu || h.gpu, "{} needs gpu, placed on a host without it", p.instance_id);
        let e = reserved.entry(p.host_id.clone()).or_default();
        e.0 += p.vcpus;
        e.1 += p.memory_mb;
        e.2 += p.disk_gb;
    }
    for (i, results) in &outcome {
        let id = format!("INSTANCE-{i:04}");
        let row = rows.iter().find(|p| p.instance_id == id);
        let news = results.iter().filter(|r| matches!(r, Placed::New(_))).count();
        assert!(news <= 1, "{id} was placed {news} times");
        for r in results {
            match (r, row) {
                (Placed::New(p) | Placed::Existing(p), Some(row)) => assert_eq!(p, row),
                (Placed::NoHost { .. }, None) => {}
                (r, row) => panic!("{id}: answer {r:?} but stored {row:?}"),
            }
        }
    }
    // Never overbooked.
    for (host_id, (v, m, d)) in &reserved {
        let h = &by_id[host_id];
        assert!(v * 1000 <= h.vcpus * ratios.vcpu_milli, "{host_id}: {v} vCPUs reserved on {h:?}");
        assert!(m * 1000 <= h.memory_mb * ratios.memory_milli, "{host_id}: {m} MB reserved on {h:?}");
        assert!(d * 1000 <= h.disk_gb * ratios.disk_milli, "{host_id}: {d} GB reserved on {h:?}");
    }
    // And never refused while a host had room: loads only grew, so a request refused then
    // still fits nowhere now.
    for (i, results) in &outcome {
        if !results.iter().any(|r| matches!(r, Placed::NoHost { .. })) {
            continue;
        }
        let w = &wants[*i];
        for (host_id, h) in &by_id {
            if !(h.alive && h.enabled) || (w.gpu && !h.gpu) {
                continue;
            }
            let (v, m, d) = reserved.get(host_id).copied().unwrap_or_default();
            let fits = (v + w.vcpus) * 1000 <= h.vcpus * ratios.vcpu_milli
                && (m + w.memory_mb) * 1000 <= h.memory_mb * ratios.memory_milli
                && (d + w.disk_gb) * 1000 <= h.disk_gb * ratios.disk_milli;
            assert!(!fits, "INSTANCE-{i:04} ({w:?}) was refused but fits on {h:?} with {v}/{m}/{d} reserved");
        }
    }
    // Release frees the room, and releasing twice is harmless.
    if let Some(p) = rows.first() {
        assert_eq!(store.release(&p.instance_id).await.unwrap().as_ref(), Some(p));
        assert_eq!(store.release(&p.instance_id).await.unwrap(), None);
    }
    close(&store).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_placements_never_overbook(
        hosts in prop::collection::vec(host_spec(), 1..6),
        wants in prop::collection::vec(want(), 182..=182),
        vcpu_milli in prop::sample::select(vec![1000i64, 1500, 4000]),
        memory_milli in prop::sample::select(vec![1000i64, 1200]),
    ) {
        // 182 instances, every tenth asked for twice: 200 concurrent requests.
        let ratios = Overcommit { vcpu_milli, memory_milli, disk_milli: 1000 };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        rt.block_on(run_case(hosts, wants, ratios));
    }
}

/// Least loaded first: equal empty hosts take one instance each before any takes a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_spreads_over_equal_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for i in 0..3 {
        let name = format!("h{i}");
        let tok = format!("tok{i}");
        let rec = store
            .create_host(&NewHost { name: &name, zone_id: ZONE, token_sha256: &tok, created_at: NOW })
            .await
            .unwrap();
        let caps = vec!["sim".to_string()];
        let reg = Registration {
            address: "10.0.0.1",
            vcpus: 8,
            memory_mb: 16384,
            disk_gb: 200,
            driver: "sim",
            capabilities: &caps,
            agent_version: "t",
        };
        store.register_host(&rec.host_id, &reg, NOW).await.unwrap();
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        let id = format!("INSTANCE-{i}");
        let req = PlacementRequest {
            instance_id: &id,
            zone_id: ZONE,
            vcpus: 1,
            memory_mb: 1024,
            disk_gb: 20,
            capabilities: &[],
        };
        let Placed::New(p) = store.place(&req, NOW).await.unwrap() else { panic!("not placed") };
        *counts.entry(p.host_name).or_default() += 1;
        let most = counts.values().max().copied().unwrap();
        let least = if counts.len() < 3 { 0 } else { counts.values().min().copied().unwrap() };
        assert!(most - least <= 1, "after {} placements: {counts:?}", i + 1);
        // Idempotent: the same instance again gets the same host.
        let again = store.place(&req, NOW).await.unwrap();
        assert!(matches!(again, Placed::Existing(ref q) if q.instance_id == id), "{again:?}");
    }
    // Resize checks the instance's own host: 8 vCPUs × 4.0 = 32, two instances there.
    let p = store.placement("INSTANCE-0").await.unwrap().unwrap();
    let grown = store.resize_placement("INSTANCE-0", 31, 2048, 40).await.unwrap();
    assert!(matches!(&grown, Resized::Done(q) if q.host_id == p.host_id && q.vcpus == 31), "{grown:?}");
    let too_big = store.resize_placement("INSTANCE-0", 32, 2048, 40).await.unwrap();
    assert!(matches!(&too_big, Resized::NoRoom(q) if q.vcpus == 31), "{too_big:?}");
    assert_eq!(store.resize_placement("INSTANCE-none", 1, 1, 1).await.unwrap(), Resized::NotPlaced);

    // A dead zone: the host's heartbeat is 21 s old by the clock placement is given.
    let req = PlacementRequest {
        instance_id: "INSTANCE-x",
        zone_id: ZONE,
        vcpus: 1,
        memory_mb: 1,
        disk_gb: 1,
        capabilities: &[],
    };
    assert_eq!(store.place(&req, NOW + 21).await.unwrap(), Placed::NoHost { hosts: 3, usable: 0 });
    close(&store).await;
}
