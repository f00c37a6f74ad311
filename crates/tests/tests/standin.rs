//! The stand-in's controls for test suites (docs/standin.md) through the real binary: reset,
//! snapshots and fixtures, on the store of the run.

use std::collections::HashSet;
use std::time::Duration;

use openwinv_tests::{Body, Server};
use reqwest::Method;
use serde_json::{Value, json};

use openwinv_tests::ED25519;

async fn fast() -> Server {
    Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await
}

fn instance_body(name: &str) -> Value {
    json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": name})
}

/// Creates an instance and returns (instance id, operation id) without waiting.
async fn start_instance(s: &Server, name: &str) -> (String, String) {
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(instance_body(name)))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    (r.result()[0]["instance_id"].as_str().unwrap().to_owned(), r.header("x-operation-id").unwrap().to_owned())
}

async fn instance(s: &Server, name: &str) -> (String, String) {
    let (id, op) = start_instance(s, name).await;
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
    (id, op)
}

/// `keys` without the fields a request itself changes (`last_used_at`).
fn without_last_use(mut v: Value) -> Value {
    if let Some(rows) = v["result"].as_array_mut() {
        for r in rows {
            if let Some(o) = r.as_object_mut() {
                o.remove("last_used_at");
            }
        }
    }
    v
}

/// What a client sees of the whole server: operator views first (before any signed request
/// touches the key), then the account's lists.
async fn observe(s: &Server) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    for path in ["/admin/v1/accounts", "/admin/v1/keys", "/admin/v1/faults"] {
        let r = s.admin(Method::GET, path, None).await;
        r.ok_rows();
        seen.push((path.to_owned(), without_last_use(r.json)));
    }
    let clock = s.admin(Method::GET, "/admin/v1/clock", None).await;
    seen.push(("clock offset".into(), clock.ok_rows()[0]["offset_ms"].clone()));
    for path in [
        "/v1/instances",
        "/v1/block-storages",
        "/v1/auth/ssh_key",
        "/v1/instance/script",
        "/v1/firewall",
        "/v1/security-groups",
        "/v1/bill",
        "/v1/flavors",
        "/v1/zones",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        seen.push((path.to_owned(), r.json));
    }
    seen
}

#[track_caller]
fn assert_same(a: &[(String, Value)], b: &[(String, Value)]) {
    assert_eq!(a.len(), b.len());
    for ((pa, va), (pb, vb)) in a.iter().zip(b) {
        assert_eq!(pa, pb);
        assert_eq!(va, vb, "{pa} differs");
    }
}

/// One "test" of a suite: changes everything a test might.
async fn a_busy_test(s: &mut Server) {
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "other"}))).await.ok_rows();
    s.admin(Method::POST, "/admin/v1/accounts/other/keys", Some(json!({}))).await.ok_rows();
    s.admin(Method::PUT, "/admin/v1/accounts/dev/quota", Some(json!({"instances": 3}))).await.ok_rows();
    s.admin(
        Method::PUT,
        &format!("/admin/v1/keys/{}", openwinv_tests::ACCESS_KEY),
        Some(json!({"allow": ["127.0.0.1/32"]})),
    )
    .await
    .ok_rows();
    s.call(Method::POST, "/v1/auth/ssh_key", Some(Body::Json(json!({"name": "laptop", "public_key": ED25519}))))
        .await
        .ok_rows();
    s.call(Method::POST, "/v1/instance/script", Some(Body::Json(json!({"name": "boot", "content": "#!/bin/sh\n"}))))
        .await
        .ok_rows();
    let fw = json!({"title": "web-1", "content": "web", "rules": [
        {"bound": "IN", "protocol": "TCP", "port": "22", "ip": "0.0.0.0/0", "title": "ssh"}]});
    let r = s.call(Method::POST, "/v1/firewall", Some(Body::Json(fw))).await;
    assert!(r.status == 200 || r.status == 202, "{}", r.text);
    let (web, _) = instance(s, "web").await;
    let volume = json!({"instance_id": web, "type": "ssd", "size": 10, "name": "data"});
    let r = s.call(Method::POST, "/v1/block-storages", Some(Body::Json(volume))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    s.admin(Method::POST, "/admin/v1/faults", Some(json!({"kind": "*", "step": "*", "mode": "once"}))).await.ok_rows();
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "48h"}))).await.ok_rows();
    s.sync_clock().await;
}

#[tokio::test]
async fn a_reset_between_two_tests_gives_identical_first_start_answers() {
    let mut s = fast().await;
    let first = observe(&s).await;
    a_busy_test(&mut s).await;
    assert_ne!(observe(&s).await.len(), 0);

    // How long a reset takes is a figure of scripts/bench (section `standin`, docs/perf.md), not
    // an assertion here.
    let r = s.admin(Method::POST, "/admin/v1/reset", None).await;
    let done = &r.ok_rows()[0];
    assert!(done["removed_rows"].as_u64().unwrap() > 0, "{done}");
    assert_eq!((done["accounts"].as_i64(), done["access_keys"].as_i64()), (Some(1), Some(1)), "{done}");
    s.sync_clock().await;
    assert_same(&first, &observe(&s).await);

    // The second "test" runs as the first did: same quota, same addresses, same answers.
    a_busy_test(&mut s).await;
    s.admin(Method::POST, "/admin/v1/reset", Some(json!({}))).await.ok_rows();
    s.sync_clock().await;
    assert_same(&first, &observe(&s).await);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM usage_intervals").await, 0);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM ip_addresses").await, 0);
}

#[tokio::test]
async fn reset_keep_accounts_keeps_accounts_and_keys_only() {
    let s = fast().await;
    let (key, secret) = s.new_account("team", json!({})).await;
    s.call_as(
        &key,
        &secret,
        Method::POST,
        "/v1/auth/ssh_key",
        Some(Body::Json(json!({"name": "k", "public_key": ED25519}))),
    )
    .await
    .ok_rows();
    let accounts = s.admin(Method::GET, "/admin/v1/accounts", None).await.json;
    let r = s.admin(Method::POST, "/admin/v1/reset", Some(json!({"keep_accounts": true}))).await;
    assert_eq!((r.ok_rows()[0]["accounts"].as_i64(), r.ok_rows()[0]["access_keys"].as_i64()), (Some(2), Some(2)));
    assert_eq!(s.admin(Method::GET, "/admin/v1/accounts", None).await.json, accounts);
    let keys = s.call_as(&key, &secret, Method::GET, "/v1/auth/ssh_key", None).await;
    assert!(keys.ok_rows().is_empty(), "{}", keys.text);

    // Without the flag the other account and its key are gone.
    s.admin(Method::POST, "/admin/v1/reset", None).await.ok_rows();
    let r = s.call_as(&key, &secret, Method::GET, "/v1/auth/ssh_key", None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    s.admin(Method::POST, "/admin/v1/reset", Some(json!({"keep_accounts": "maybe"})))
        .await
        .assert_error(400, "CHECK_PARAM");
}

#[tokio::test]
async fn reset_while_operations_run_cancels_them_cleanly() {
    let s = fast().await;
    let mut ops = Vec::new();
    for i in 0..12 {
        ops.push(start_instance(&s, &format!("busy-{i}")).await);
    }
    let r = s.admin(Method::POST, "/admin/v1/reset", None).await;
    r.ok_rows();
    // Workers that held those operations drop them: nothing of them comes back.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for table in ["instances", "operations", "ip_addresses", "usage_intervals", "volumes", "instance_counts"] {
        assert_eq!(s.db_count(&format!("SELECT COUNT(*) FROM {table}")).await, 0, "{table} after the reset");
    }
    for (id, op) in &ops {
        s.get(&format!("/v1/instances/{id}")).await.assert_error(404, "NOT_FOUND");
        assert_eq!(s.get(&format!("/v1/operations/{op}")).await.status, 404);
    }
    // The engine goes on with new work.
    let (id, _) = instance(&s, "after").await;
    assert_eq!(s.wait_status(&id, "active").await["name"], "after");
}

#[tokio::test]
async fn reset_drops_operations_waiting_in_explicit_mode() {
    // Explicit mode: operations wait for the operator; a reset drops them while they wait.
    let s = Server::start_with(&["--sim-mode", "explicit"], &[]).await;
    let (_, op) = start_instance(&s, "parked").await;
    let r = s.admin(Method::POST, "/admin/v1/reset", None).await;
    assert!(r.ok_rows()[0]["cancelled_operations"].as_u64().unwrap() >= 1, "{}", r.text);
    s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.assert_error(404, "NOT_FOUND");
}

/// What a snapshot must give back: lists, bills, operations.
async fn state_of(s: &Server, ops: &[String]) -> Vec<(String, Value)> {
    let mut seen = observe(s).await;
    for op in ops {
        let r = s.get(&format!("/v1/operations/{op}")).await;
        seen.push((op.clone(), r.json));
    }
    seen
}

#[tokio::test]
async fn snapshot_save_change_restore_gives_the_saved_state() {
    let mut s = fast().await;
    let (instance_id, op1) = instance(&s, "kept").await;
    let r =
        s.call(Method::POST, "/v1/auth/ssh_key", Some(Body::Json(json!({"name": "laptop", "public_key": ED25519}))));
    let key_id = r.await.ok_rows()[0]["ssh_key_id"].as_str().map(str::to_owned);
    seed(&s, "application/json", &json!({"bills": [{"month": "2026-01", "price": 1000, "count": 3}]}).to_string())
        .await
        .ok_rows();
    let ops = vec![op1.clone()];
    let saved = state_of(&s, &ops).await;

    let run = s.cli_run(&["--json", "admin", "snapshot", "save", "base"]).await.ok();
    assert_eq!(run.row()["name"], "base");
    assert!(run.row()["rows"].as_u64().unwrap() > 0);

    // Changes of every kind.
    let r = s.call(Method::DELETE, &format!("/v1/instances/{instance_id}"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    s.wait_operation(r.header("x-operation-id").unwrap()).await;
    if let Some(k) = key_id {
        s.call(Method::DELETE, &format!("/v1/auth/ssh_key/{k}"), None).await;
    }
    instance(&s, "new").await;
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "later"}))).await.ok_rows();
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "3h"}))).await.ok_rows();
    s.sync_clock().await;
    assert_ne!(state_of(&s, &ops).await, saved);

    s.cli_run(&["--json", "admin", "snapshot", "restore", "base"]).await.ok();
    s.sync_clock().await;
    assert_same(&saved, &state_of(&s, &ops).await);
    // The restored instance works on: its machine is driven again.
    let r = s.call(Method::POST, &format!("/v1/instances/{instance_id}/shutdown"), Some(Body::Json(json!({})))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    s.wait_status(&instance_id, "off").await;

    let list = s.cli_run(&["--json", "admin", "snapshot", "list"]).await.ok();
    assert_eq!(list.rows().iter().map(|r| r["name"].clone()).collect::<Vec<_>>(), vec![json!("base")]);
    s.cli_run(&["admin", "snapshot", "delete", "base"]).await.ok();
    s.admin(Method::POST, "/admin/v1/snapshots/base/restore", None).await.assert_error(404, "NOT_FOUND");
    s.admin(Method::POST, "/admin/v1/snapshots", Some(json!({"name": "../x"}))).await.assert_error(400, "CHECK_PARAM");
    s.admin(Method::POST, "/admin/v1/snapshots", Some(json!({})))
        .await
        .assert_error(400, "REQUIRED_POST_PARAM_MISSING");
}

/// Snapshot files that earlier releases wrote in `<data>/snapshots` move into the database at
/// start; a file that is not a snapshot stays.
#[tokio::test]
async fn snapshot_files_of_earlier_releases_move_into_the_database() {
    let mut s = fast().await;
    s.admin(Method::POST, "/admin/v1/snapshots", Some(json!({"name": "now"}))).await.ok_rows();
    s.stop().await;
    let dir = s.data_path("snapshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("old.json"), "{\"saved_at\":1700000000,\"rows\":0}\n{\"format\":1,\"tables\":[]}").unwrap();
    std::fs::write(dir.join("junk.json"), "not a snapshot").unwrap();
    s.restart().await;
    let list = s.admin(Method::GET, "/admin/v1/snapshots", None).await;
    let rows = list.ok_rows();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["now", "old"]);
    assert_eq!(rows[1]["rows"], 0);
    assert!(!dir.join("old.json").exists(), "an imported file is removed");
    assert!(dir.join("junk.json").exists(), "a file that is not a snapshot stays");
}

async fn seed(s: &Server, content_type: &str, body: &str) -> openwinv_tests::Resp {
    let headers = vec![("Authorization".to_owned(), format!("Bearer {}", s.admin_token))];
    s.raw(
        Method::POST,
        "/admin/v1/seed",
        &headers,
        Some(Body::Raw { content_type: content_type.into(), bytes: body.as_bytes().to_vec() }),
    )
    .await
}

/// Every row of a paged /v1 list, page by page.
async fn all_pages(s: &Server, key: (&str, &str), path: &str, page_size: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    for page in 1.. {
        let r =
            s.call_as(key.0, key.1, Method::GET, &format!("{path}?page_no={page}&page_size={page_size}"), None).await;
        let got = r.ok_rows().clone();
        assert!(got.len() <= page_size, "{path} page {page}: {} rows", got.len());
        let last = got.len() < page_size;
        rows.extend(got);
        if last {
            break;
        }
        assert!(page < 100, "{path} never ends");
    }
    rows
}

const FIXTURE: &str = r##"
[[accounts]]
name = "team"
quota = { instances = 50 }

[[keys]]
account = "team"
access_key = "test_access_key"
secret_key = "team-secret-key-0123456789"
rate_limit = 0

[[ssh_keys]]
account = "team"
name = "laptop-{n}"
public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example"
count = 12

[[scripts]]
account = "team"
name = "boot-{n}"
content = "#!/bin/sh\necho {n}\n"
count = 3

[[firewalls]]
account = "team"
title = "web-{n}"
content = "firewall {n}"
count = 55
rules = [
  { bound = "IN", protocol = "TCP", port = "22", ip = "0.0.0.0/0", title = "ssh" },
  { bound = "IN", protocol = "TCP", port = "80-443", ip = "10.0.0.0/8", title = "web" },
]

[[bills]]
account = "team"
month = "2026-06"
count = 14
items = [
  { name = "web", price = 12000, rate = 25, seconds = 480 },
  { kind = "volume", name = "data", price = 3000 },
]

[[bills]]
account = "dev"
month = "2026-06"
price = 500
paid = true
"##;

#[tokio::test]
async fn a_seeded_inventory_pages_over_v1() {
    let s = fast().await;
    let r = seed(&s, "application/toml", FIXTURE).await;
    let done = &r.ok_rows()[0];
    assert_eq!(
        (done["accounts"].as_u64(), done["ssh_keys"].as_u64(), done["scripts"].as_u64()),
        (Some(1), Some(12), Some(3)),
        "{done}"
    );
    assert_eq!(
        (done["firewalls"].as_u64(), done["firewall_rules"].as_u64(), done["bills"].as_u64()),
        (Some(55), Some(110), Some(15))
    );
    assert_eq!(done["access_keys"][0]["access_key"], "test_access_key");
    let team = ("test_access_key", "team-secret-key-0123456789");

    let firewalls = all_pages(&s, team, "/v1/firewall", 50).await;
    assert_eq!(firewalls.len(), 55);
    let titles: HashSet<&str> = firewalls.iter().map(|f| f["title"].as_str().unwrap()).collect();
    assert_eq!(titles.len(), 55);
    assert!(titles.contains("web-1") && titles.contains("web-55"));
    assert_eq!(firewalls[0]["rules"].as_array().unwrap().len(), 2, "{}", firewalls[0]);
    assert_eq!(all_pages(&s, team, "/v1/security-groups", 20).await.len(), 55);

    let keys = all_pages(&s, team, "/v1/auth/ssh_key", 10).await;
    assert_eq!(keys.len(), 12);
    assert_eq!(keys.iter().map(|k| k["name"].as_str().unwrap()).collect::<HashSet<_>>().len(), 12);
    assert_eq!(all_pages(&s, team, "/v1/instance/script", 2).await.len(), 3);

    let bills = all_pages(&s, team, "/v1/bill", 5).await;
    assert_eq!(bills.len(), 14);
    let starts: HashSet<&str> = bills.iter().map(|b| b["usage_start"].as_str().unwrap()).collect();
    assert!(starts.contains("2026-06-01") && starts.contains("2025-05-01"), "{starts:?}");
    assert!(bills.iter().all(|b| b["price"] == 15000 && b["vat"] == 1500 && b["payment_status"] == "unpaid"));
    let detail = s
        .call_as(team.0, team.1, Method::GET, &format!("/v1/bill/{}", bills[0]["bill_id"].as_str().unwrap()), None)
        .await;
    assert!(detail.text.contains("\"data\""), "{}", detail.text);
    let dev = s.get("/v1/bill").await;
    assert_eq!(dev.ok_rows().len(), 1);
    assert_eq!(
        (dev.ok_rows()[0]["price"].as_i64(), dev.ok_rows()[0]["payment_status"].as_str()),
        (Some(500), Some("paid"))
    );

    // The CLI sends the same file.
    let path = s.data_path("../more.toml");
    std::fs::write(&path, "[[ssh_keys]]\nname = \"cli\"\npublic_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\"\n").unwrap();
    let run = s.cli_run(&["--json", "admin", "seed", path.to_str().unwrap()]).await.ok();
    assert_eq!(run.row()["ssh_keys"], 1);
}

const MACHINES: &str = r##"
[[accounts]]
name = "team"
quota = { instances = 50, vcpu = 100, block_storage_gb = 1000 }

[[keys]]
account = "team"
access_key = "team_key"
secret_key = "team-secret-key-0123456789"
rate_limit = 0

[[instances]]
account = "team"
zone_id = "KR1-Z01"
image_id = "IMG-ubuntu-2404"
flavor_id = "ss1.c1m1"
name = "web-{n}"
count = 12

[[instances]]
account = "team"
zone_id = "KR1-Z01"
image_id = "IMG-ubuntu-2404"
flavor_id = "ss1.c1m1"
name = "idle-{n}"
status = "off"
count = 2

[[block_storages]]
account = "team"
instance = "web-{n}"
type = "ssd"
size = 10
name = "data-{n}"
count = 3

[[block_storages]]
account = "team"
instance = "idle-1"
type = "ssd"
size = 20
name = "spare"
detached = true
"##;

#[tokio::test]
async fn a_seeded_fleet_of_instances_and_volumes_is_there_when_the_seed_answers() {
    let mut s = fast().await;
    let r = seed(&s, "application/toml", MACHINES).await;
    let done = &r.ok_rows()[0];
    assert_eq!((done["instances"].as_u64(), done["block_storages"].as_u64()), (Some(14), Some(4)), "{done}");
    let team = ("team_key", "team-secret-key-0123456789");

    let all = all_pages(&s, team, "/v1/instances", 5).await;
    assert_eq!(all.len(), 14);
    let status_of = |name: &str| {
        all.iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("no {name} in {all:?}"))["status"].clone()
    };
    for n in 1..=12 {
        assert_eq!(status_of(&format!("web-{n}")), "active");
    }
    assert_eq!(status_of("idle-1"), "off");
    assert_eq!(status_of("idle-2"), "off");
    // The dev account sees none of them.
    assert!(s.get("/v1/instances").await.ok_rows().is_empty());

    let volumes = all_pages(&s, team, "/v1/block-storages", 2).await;
    assert_eq!(volumes.len(), 4);
    let web1 = all.iter().find(|i| i["name"] == "web-1").unwrap()["instance_id"].as_str().unwrap().to_owned();
    let data1 = volumes.iter().find(|v| v["name"] == "data-1").expect("data-1");
    assert_eq!(
        (data1["status"].as_str(), data1["instance_id"].as_str()),
        (Some("in-use"), Some(web1.as_str())),
        "{data1}"
    );
    let spare = volumes.iter().find(|v| v["name"] == "spare").expect("spare");
    assert_eq!(spare["status"], "available", "{spare}");

    // Seeded machines are billed like any other: an hour later the live bill explains a line
    // for each server and volume.
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "1h"}))).await.ok_rows();
    s.sync_clock().await;
    let live = s.call_as(team.0, team.1, Method::GET, "/v1/bill/live?explain=1", None).await;
    assert!(live.ok_rows()[0]["price"].as_i64().unwrap() > 0, "{}", live.text);
    assert!(
        live.text.contains(&web1) && live.text.contains(data1["block_storage_id"].as_str().unwrap()),
        "{}",
        live.text
    );
}

#[tokio::test]
async fn a_bad_fixture_changes_nothing_and_names_the_entry() {
    let s = fast().await;
    let bad = json!({
        "accounts": [{"name": "first"}],
        "ssh_keys": [{"name": "ok", "public_key": ED25519}, {"name": "broken", "public_key": "nope"}],
    });
    let r = seed(&s, "application/json", &bad.to_string()).await;
    r.assert_error(400, "CHECK_PARAM");
    assert!(r.json["message"].as_str().unwrap().starts_with("ssh_keys[1]: "), "{}", r.text);
    // All or nothing: the account and the first key made before the failure are gone.
    assert_eq!(s.admin(Method::GET, "/admin/v1/accounts", None).await.ok_rows().len(), 1);
    assert!(s.get("/v1/auth/ssh_key").await.ok_rows().is_empty());

    let r = seed(&s, "application/json", r#"{"servers": []}"#).await;
    r.assert_error(400, "CHECK_PARAM");
    assert!(r.json["message"].as_str().unwrap().contains("servers"), "{}", r.text);
    // An instance the API would refuse fails the fixture, naming the entry; the instances made
    // before it are gone.
    let bad = json!({"instances": [
        {"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "ok"},
        {"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "no-such-flavor", "name": "bad"},
    ]});
    let r = seed(&s, "application/json", &bad.to_string()).await;
    r.assert_error(400, "ID_INVALID");
    assert!(r.json["message"].as_str().unwrap().starts_with("instances[1]: "), "{}", r.text);
    assert!(s.get("/v1/instances").await.ok_rows().is_empty());
    let r =
        seed(&s, "application/json", &json!({"instances": [{"zone_id": "KR1-Z01", "status": "paused"}]}).to_string())
            .await;
    r.assert_error(400, "CHECK_PARAM_ENUM");
    assert!(r.json["message"].as_str().unwrap().contains("`status`"), "{}", r.text);
    let r = seed(
        &s,
        "application/json",
        &json!({"block_storages": [{"instance": "ghost", "type": "ssd", "size": 10}]}).to_string(),
    )
    .await;
    r.assert_error(400, "CHECK_PARAM");
    assert!(r.json["message"].as_str().unwrap().contains("ghost"), "{}", r.text);
    seed(&s, "application/json", &json!({"bills": [{"month": "2999-01", "price": 1}]}).to_string())
        .await
        .assert_error(400, "CHECK_PARAM");
    seed(&s, "application/toml", "accounts = 3").await.assert_error(400, "CHECK_PARAM");
}
