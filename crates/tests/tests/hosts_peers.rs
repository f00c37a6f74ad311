//! Which hosts the control plane tells about a network's peers (issue 18, VXLAN), on the store
//! this run tests, with sim agents (no root, no QEMU; `hosts_net.rs` sends the packets): every
//! (account, zone) network gets its own VNI with its first address, carried in the machine spec;
//! after each placement of a network's machine every host of the network gets a `set_peers` item
//! naming the others' underlay addresses, and after a delete the hosts left are told again. An
//! agent's `--underlay` must be an IPv4 address.

use std::collections::BTreeMap;
use std::time::Duration;

use openwinv_tests::hosts::{ZONE, add_host, call, operation_succeeded, spawn_agent};
use openwinv_tests::{Body, Resp, Server, binary};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(90);

/// A running `openwinv agent --driver sim --underlay IP`.
async fn agent(s: &Server, name: &str, underlay: &str, dir: &std::path::Path) -> Child {
    let token = add_host(s, name).await;
    let mut cmd = Command::new(binary());
    cmd.args(["agent", "--control-plane", &s.endpoint, "--host-token", &token, "--driver", "sim"])
        .args(["--zone", ZONE, "--vcpus", "8", "--memory-mb", "8192", "--disk-gb", "400", "--underlay", underlay])
        .arg("--data-dir")
        .arg(dir.join(name))
        .env("RUST_LOG", "info");
    spawn_agent(cmd, name, &dir.join(format!("{name}.log")), WAIT).await.0
}

/// Waits for the operation an answer names, as the account that started it; it must succeed.
async fn done(s: &Server, who: Option<&(String, String)>, r: Resp) {
    assert_eq!(r.status, 202, "{}", r.text);
    operation_succeeded(s, who, &r, WAIT).await;
}

async fn create(s: &Server, who: Option<&(String, String)>, name: &str) -> String {
    let body = json!({"zone_id": ZONE, "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": name});
    let r = call(s, who, Method::POST, "/v1/instances", Some(body)).await;
    let id = r.result()[0]["instance_id"].as_str().expect("instance_id").to_owned();
    done(s, who, r).await;
    id
}

/// The host an instance is placed on.
async fn host_of(s: &Server, id: &str) -> String {
    s.admin(Method::GET, &format!("/admin/v1/placements/{id}"), None).await.ok_rows()[0]["host"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every `set_peers` item answered so far, oldest first: (host name, payload).
async fn set_peers_items(s: &Server) -> Vec<(String, Value)> {
    let db = s.db().await;
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT h.name, w.payload, w.state FROM host_work w JOIN hosts h ON h.host_id = w.host_id \
         WHERE w.call = 'set_peers' ORDER BY w.created_at, w.work_key",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    for (host, payload, state) in &rows {
        assert_eq!(state, "done", "the step waited for the answer of {host}: {payload}");
    }
    rows.into_iter().map(|(h, p, _)| (h, serde_json::from_str(&p).unwrap())).collect()
}

/// The last peers each host was told for the network with `vni`.
async fn told(s: &Server, vni: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (host, p) in set_peers_items(s).await.into_iter().filter(|(_, p)| p["vni"] == *vni) {
        let peers = p["peers"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect();
        out.insert(host, peers);
    }
    out
}

/// The VNI the create of `id` handed its host, in the machine spec.
async fn spec_vni(s: &Server, id: &str) -> Value {
    let db = s.db().await;
    let (payload,): (String,) =
        sqlx::query_as("SELECT payload FROM host_work WHERE call = 'create' AND instance_id = $1")
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap();
    let spec: Value = serde_json::from_str(&payload).unwrap();
    spec["network"]["vni"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosts_of_a_network_are_told_their_peers() {
    let s = Server::start_with(&["--placement", "hosts"], &[]).await;
    s.admin(Method::PUT, "/admin/v1/accounts/dev/quota", Some(json!({"instances": 100, "vcpu": 100}))).await.ok_rows();
    let dir = tempfile::tempdir().unwrap();
    let underlay = |h: &str| format!("192.0.2.{}", &h[1..]);
    let mut agents = Vec::new();
    for h in ["h1", "h2", "h3"] {
        agents.push(agent(&s, h, &underlay(h), dir.path()).await);
    }

    // A bad underlay is refused, naming the field.
    let token = add_host(&s, "hx").await;
    let headers = vec![("Authorization".to_owned(), format!("Bearer {token}"))];
    let body = json!({"zone": ZONE, "address": "192.0.2.9", "vcpus": 2, "memory_mb": 2048, "disk_gb": 50,
        "driver": "sim", "capabilities": ["sim"], "agent_version": "t", "underlay": "cp.example"});
    let r = s.raw(Method::POST, "/internal/v1/hosts/register", &headers, Some(Body::Json(body))).await;
    r.assert_error(400, "CHECK_PARAM");
    assert!(r.json["message"].as_str().unwrap().contains("`underlay`"), "{}", r.text);
    s.admin(Method::DELETE, "/admin/v1/hosts/hx", None).await.ok_rows();

    // a1: its network's first machine; its host is told it has no peer.
    let a1 = create(&s, None, "a1").await;
    let vni_a = spec_vni(&s, &a1).await;
    assert!(vni_a.as_u64().is_some_and(|v| (4097..1 << 24).contains(&v)), "a VNI in the spec: {vni_a}");
    let x = host_of(&s, &a1).await;
    assert_eq!(told(&s, &vni_a).await, BTreeMap::from([(x.clone(), vec![])]));

    // a2 on another host: both hosts are told the other.
    let a2 = create(&s, None, "a2").await;
    assert_eq!(spec_vni(&s, &a2).await, vni_a, "one VNI per (account, zone) network");
    let y = host_of(&s, &a2).await;
    assert_ne!(x, y, "equal hosts take one each");
    assert_eq!(
        told(&s, &vni_a).await,
        BTreeMap::from([(x.clone(), vec![underlay(&y)]), (y.clone(), vec![underlay(&x)])])
    );

    // Another account: a network of its own, nothing told about it to account a's hosts.
    let b = s.new_account("peersb", json!({"rate_limit": 0})).await;
    let b1 = create(&s, Some(&b), "b1").await;
    let vni_b = spec_vni(&s, &b1).await;
    assert_ne!(vni_b, vni_a, "two networks, two VNIs");
    let z = host_of(&s, &b1).await;
    assert_eq!(told(&s, &vni_b).await, BTreeMap::from([(z, vec![])]));
    assert_eq!(told(&s, &vni_a).await.len(), 2, "account a's hosts only");

    // a3: the network's hosts are told again.
    let before = set_peers_items(&s).await.len();
    let a3 = create(&s, None, "a3").await;
    let items = set_peers_items(&s).await;
    let new: Vec<&String> = items[before..].iter().filter(|(_, p)| p["vni"] == vni_a).map(|(h, _)| h).collect();
    // Each host of a1, a2 and a3 is told the others (a3 may share a host or take b1's).
    let mut hosts = vec![x.clone(), y.clone(), host_of(&s, &a3).await];
    hosts.sort();
    hosts.dedup();
    assert_eq!(new.len(), hosts.len(), "every host of the network is told after a placement: {new:?}");
    let expected: BTreeMap<String, Vec<String>> =
        hosts.iter().map(|h| (h.clone(), hosts.iter().filter(|o| *o != h).map(|o| underlay(o)).collect())).collect();
    let mut got = told(&s, &vni_a).await;
    got.values_mut().for_each(|p| p.sort());
    assert_eq!(got, expected);

    // Deleting a2 (and a3 if it shared nothing with a1): a1's host is left without peers.
    for id in [&a2, &a3] {
        if host_of(&s, id).await != x {
            let r = call(&s, None, Method::DELETE, &format!("/v1/instances/{id}"), None).await;
            done(&s, None, r).await;
        }
    }
    assert_eq!(told(&s, &vni_a).await[&x], Vec::<String>::new(), "the hosts that left are no peers of a1's host");

    // Each list carries its network's version, higher for a list read later (the lists here
    // were read one after another), and each host applied every list it was told.
    let mut versions: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (host, p) in set_peers_items(&s).await {
        let v = p["version"].as_i64().unwrap_or_else(|| panic!("a version: {p}"));
        let seen = versions.entry(p["vni"].to_string()).or_default();
        assert!(seen.last().is_none_or(|last| v >= *last), "{host}: version {v} after {seen:?}: {p}");
        if seen.last() != Some(&v) {
            seen.push(v);
        }
    }
    assert!(versions[&vni_a.to_string()].len() >= 4, "three creates and a2's delete told a's network: {versions:?}");
    let db = s.db().await;
    let results: Vec<(String,)> =
        sqlx::query_as("SELECT result FROM host_work WHERE call = 'set_peers'").fetch_all(&db).await.unwrap();
    for (r,) in results {
        assert_eq!(serde_json::from_str::<Value>(&r).unwrap()["applied"], true, "{r}");
    }
    drop(agents);
}
