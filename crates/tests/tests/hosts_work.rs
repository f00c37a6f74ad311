//! Sagas driving hypervisor hosts through the real binaries (issue 18, part 2): a control plane
//! in hosts mode (`serve --placement hosts`, SQLite or PostgreSQL) and sim agents, each in its
//! own data directory. Placement spreads creates over the hosts; every driver step runs on the
//! agent of the instance's host (the agents' own run logs say so); a step whose agent is killed
//! mid-run completes after the restart, run to completion once; an agent away makes its
//! instances `unreachable` and their actions refused, operations in flight wait for it; and
//! `declare-dead` unwinds and errors what was there (docs/hosts.md).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openwinv_tests::hosts::SimAgent as Agent;
use openwinv_tests::hosts::{WAIT, ZONE, act, create, hosts_mode, instance, placements, wait_host, wait_host_status};
use openwinv_tests::{Body, Server};
use reqwest::Method;
use serde_json::{Value, json};

async fn action(s: &Server, id: &str, what: &str) -> openwinv_tests::Resp {
    s.call(Method::POST, &format!("/v1/instances/{id}/{what}"), None).await
}

/// Twelve creates spread four to a host; every lifecycle step and delete runs on the agent of
/// the instance's host and nowhere else, each call once; runtime reports follow.
#[tokio::test]
async fn sagas_run_on_the_agent_of_the_instances_host() {
    let s = hosts_mode(&[]).await;
    let agents =
        [Agent::start(&s, "h1", &[]).await, Agent::start(&s, "h2", &[]).await, Agent::start(&s, "h3", &[]).await];
    // One after another, so that each placement sees the ones before (docs/hosts.md: concurrent
    // placements on PostgreSQL may pick the same least-loaded host).
    let mut ids = Vec::new();
    for i in 0..12 {
        let (id, op) = create(&s, &format!("vm{i}")).await;
        let row = s.wait_operation(&op).await;
        assert_eq!(row["status"], "succeeded", "{row}");
        ids.push(id);
    }
    // Equal hosts fill evenly (docs/hosts.md): four each.
    let placed = placements(&s).await;
    assert_eq!(placed.len(), 12, "{placed:?}");
    let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
    for h in placed.values() {
        *per_host.entry(h).or_default() += 1;
    }
    assert_eq!(per_host, BTreeMap::from([("h1", 4), ("h2", 4), ("h3", 4)]));
    for id in &ids {
        let row = instance(&s, id).await;
        assert_eq!((row["status"].as_str(), row["host_status"].as_str()), (Some("active"), Some("up")), "{row}");
    }
    // Each create ran its machine on its own host: create then start, nowhere else.
    for a in &agents {
        let created: BTreeSet<String> = a.done().into_iter().filter(|(c, _)| c == "create").map(|(_, i)| i).collect();
        let mine: BTreeSet<String> = placed.iter().filter(|(_, h)| **h == a.name).map(|(i, _)| i.clone()).collect();
        assert_eq!(created, mine, "agent {}", a.name);
        let started: BTreeSet<String> = a.done().into_iter().filter(|(c, _)| c == "start").map(|(_, i)| i).collect();
        assert_eq!(started, mine, "agent {}", a.name);
    }

    // Lifecycle actions and deletes, one instance per host.
    let agent_of = |id: &str| agents.iter().find(|a| a.name == placed[id]).unwrap();
    let picks: Vec<String> =
        ["h1", "h2", "h3"].iter().map(|h| placed.iter().find(|(_, p)| p == h).unwrap().0.clone()).collect();
    for id in &picks {
        act(&s, id, "shutdown").await;
        assert_eq!(instance(&s, id).await["status"], "off");
        let stored = s
            .db_count(&format!(
                "SELECT COUNT(*) FROM instance_runtime WHERE instance_id = '{id}' AND state = 'stopped'"
            ))
            .await;
        assert_eq!(stored, 1, "the agent's report of {id} stopped");
        act(&s, id, "start").await;
        act(&s, id, "reboot").await;
        let r = s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
        assert_eq!(r.status, 202, "{}", r.text);
        s.wait_operation(r.header("x-operation-id").unwrap()).await;
    }
    for id in &picks {
        let mine = agent_of(id);
        for call in ["stop", "reboot", "destroy"] {
            for a in &agents {
                let n = a.done().iter().filter(|(c, i)| c == call && i == id).count();
                assert_eq!(n, usize::from(a.name == mine.name), "{call} of {id} on {}", a.name);
            }
        }
        // create's start and the start action: two starts on its host, none elsewhere.
        assert_eq!(mine.done().iter().filter(|(c, i)| c == "start" && i == id).count(), 2);
        assert_eq!(s.get(&format!("/v1/instances/{id}")).await.status, 404);
    }
    assert_eq!(placements(&s).await.len(), 9, "a deleted instance holds no reservation");
    // Every key ran once (no duplicate run without a kill).
    for a in &agents {
        let mut starts: BTreeMap<String, usize> = BTreeMap::new();
        for r in a.runs().iter().filter(|r| r["event"] == "start") {
            *starts.entry(r["key"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        assert!(starts.values().all(|n| *n == 1), "agent {}: {starts:?}", a.name);
    }
}

/// kill -9 of the agent while its driver runs a create: after the restart the item is handed out
/// again, the operation completes, and the call ran to completion once.
#[tokio::test]
async fn a_step_interrupted_by_kill_9_completes_once_after_the_restart() {
    let s = hosts_mode(&[]).await;
    let mut agent = Agent::start(&s, "slow", &["--sim-delay", "2"]).await;
    let (id, op) = create(&s, "vm").await;
    let deadline = std::time::Instant::now() + WAIT;
    while !agent.runs().iter().any(|r| r["event"] == "start" && r["call"] == "create") {
        assert!(std::time::Instant::now() < deadline, "the agent never started the create");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.kill9().await;
    let create_done = |r: &Value| r["event"] == "done" && r["call"] == "create";
    assert!(!agent.runs().iter().any(create_done), "the kill came too late: {:?}", agent.runs());
    agent.spawn().await;
    let row = s.wait_operation(&op).await;
    assert_eq!(row["status"], "succeeded", "{row}");
    assert_eq!(instance(&s, &id).await["status"], "active");
    let runs = agent.runs();
    let create_key = runs.iter().find(|r| r["call"] == "create").unwrap()["key"].clone();
    let count = |event: &str| runs.iter().filter(|r| r["key"] == create_key && r["event"] == event).count();
    assert_eq!((count("start"), count("done")), (2, 1), "{runs:#?}");
    // Each other call of the create ran once.
    assert_eq!(runs.iter().filter(|r| r["call"] == "start" && r["event"] == "done").count(), 1, "{runs:#?}");
}

/// An agent away: its instances are `unreachable` (server clock), actions on them refused with
/// the host named, others unaffected; an operation begun before the host went offline waits for
/// it, and everything works again when the agent returns.
#[tokio::test]
async fn an_unreachable_host_marks_its_instances_and_refuses_actions_until_it_returns() {
    let s = hosts_mode(&[]).await;
    let mut a1 = Agent::start(&s, "h1", &[]).await;
    let _a2 = Agent::start(&s, "h2", &[]).await;
    let (x, op_x) = create(&s, "x").await;
    s.wait_operation(&op_x).await;
    let (y, op_y) = create(&s, "y").await;
    s.wait_operation(&op_y).await;
    let placed = placements(&s).await;
    assert_ne!(placed[&x], placed[&y], "two equal hosts take one each: {placed:?}");
    let (on_h1, on_h2) = if placed[&x] == "h1" { (x, y) } else { (y, x) };

    // The agent stops; the host is still alive by the clock: an action is accepted and waits.
    a1.kill9().await;
    let r = action(&s, &on_h1, "shutdown").await;
    assert_eq!(r.status, 202, "{}", r.text);
    let waiting = r.header("x-operation-id").unwrap().to_owned();
    // 21 s later on the server clock the host is offline.
    s.cli_run(&["admin", "clock", "advance", "21s"]).await.ok();
    wait_host(&s, "h1", "offline").await;
    let row = wait_host_status(&s, &on_h1, "unreachable").await;
    assert_eq!(row["status"], "work", "the machine keeps its last status: {row}");
    wait_host_status(&s, &on_h2, "up").await;
    let list = s.get("/v1/instances").await;
    let marks: BTreeMap<String, String> = list
        .ok_rows()
        .iter()
        .map(|r| (r["instance_id"].as_str().unwrap().to_owned(), r["host_status"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(marks[&on_h1], "unreachable");
    let cli = s.cli_run(&["instances", "list"]).await.ok();
    let line = cli.stdout.lines().find(|l| l.contains(on_h1.as_str())).unwrap_or_else(|| panic!("{}", cli.stdout));
    assert!(line.contains("host unreachable"), "{line}");
    // Actions on it are refused, naming the host; the other host's instance works.
    let r = s.call(Method::DELETE, &format!("/v1/instances/{on_h1}"), None).await;
    r.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    assert!(r.json["message"].as_str().unwrap().contains("`h1`"), "{}", r.text);
    act(&s, &on_h2, "shutdown").await;
    let op = s.get(&format!("/v1/operations/{waiting}")).await.ok_rows()[0].clone();
    assert_eq!(op["status"], "running", "the operation waits for its host: {op}");

    // The agent returns: the waiting operation completes, actions work again.
    a1.spawn().await;
    wait_host_status(&s, &on_h1, "up").await;
    let op = s.wait_operation(&waiting).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert_eq!(instance(&s, &on_h1).await["status"], "off");
    act(&s, &on_h1, "start").await;
    assert_eq!(a1.runs().iter().filter(|r| r["call"] == "stop" && r["event"] == "done").count(), 1);
}

/// `declare-dead`: refused while the host is alive; on an offline host its waiting operation
/// unwinds, its instances become `error` with the reason, their reservations are released, and
/// they can be deleted.
#[tokio::test]
async fn declare_dead_unwinds_errors_and_releases() {
    let s = hosts_mode(&[]).await;
    let mut a1 = Agent::start(&s, "h1", &[]).await;
    let (x, op_x) = create(&s, "x").await;
    let (y, op_y) = create(&s, "y").await;
    s.wait_operation(&op_x).await;
    s.wait_operation(&op_y).await;
    let r = s.admin(Method::POST, "/admin/v1/hosts/h1/declare-dead", None).await;
    r.assert_error(409, "CHECK_PARAM");
    assert!(r.json["message"].as_str().unwrap().contains("alive"), "{}", r.text);

    a1.kill9().await;
    let r = action(&s, &x, "reboot").await;
    assert_eq!(r.status, 202, "{}", r.text);
    let waiting = r.header("x-operation-id").unwrap().to_owned();
    s.cli_run(&["admin", "clock", "advance", "21s"]).await.ok();
    wait_host(&s, "h1", "offline").await;
    let dead = s.cli_run(&["admin", "hosts", "declare-dead", "h1", "-o", "json"]).await.ok().row();
    assert_eq!(dead["host"]["state"], "dead", "{dead}");
    let listed: BTreeSet<&str> = dead["instances"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(listed, BTreeSet::from([x.as_str(), y.as_str()]));
    let op = s.wait_operation(&waiting).await;
    assert_eq!(op["status"], "failed", "{op}");
    for id in [&x, &y] {
        let row = s.wait_status(id, "error").await;
        assert_eq!(row["host_status"], "none", "{row}");
        assert_eq!(s.admin(Method::GET, &format!("/admin/v1/placements/{id}"), None).await.status, 404);
    }
    let sql = format!(
        "SELECT COUNT(*) FROM instances WHERE instance_id = '{y}' AND error_reason LIKE '%h1 was declared dead%'"
    );
    assert_eq!(s.db_count(&sql).await, 1);
    // A dead host takes no new instance; deleting an instance it held works (nothing to destroy).
    let (z, op_z) = create(&s, "z").await;
    let op = s.wait_operation(&op_z).await;
    assert_eq!(op["status"], "failed", "no live host: {op}");
    assert!(op.to_string().contains("no host of zone"), "{op}");
    for id in [&x, &y, &z] {
        let r = s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
        assert_eq!(op["status"], "succeeded", "{op}");
    }
}

/// The reservation of one instance: `[vcpus, memory_mb, disk_gb]`.
async fn reserved(s: &Server, id: &str) -> Value {
    let p = s.admin(Method::GET, &format!("/admin/v1/placements/{id}"), None).await.ok_rows()[0].clone();
    json!([p["reserved"]["vcpus"], p["reserved"]["memory_mb"], p["reserved"]["disk_gb"]])
}

/// The flavor the instance records (the list shows it only with a `fields` bit).
async fn flavor_is(s: &Server, id: &str, flavor: &str) -> bool {
    s.db_count(&format!("SELECT COUNT(*) FROM instances WHERE instance_id = '{id}' AND flavor_id = '{flavor}'")).await
        == 1
}

async fn resize(s: &Server, id: &str, flavor: &str) -> openwinv_tests::Resp {
    let body = json!({"flavor_id": flavor});
    s.call(Method::POST, &format!("/v1/instances/{id}/resize"), Some(Body::Json(body))).await
}

/// Resize checks the instance's own host first (docs/hosts.md): a flavor the host has room for
/// runs on that agent and the reservation grows; one it has no room for is refused up front with
/// the reservation unchanged; a resize that fails after reserving puts the reservation back.
#[tokio::test]
async fn resize_reserves_on_the_instances_host_or_is_refused() {
    let s = hosts_mode(&[]).await;
    // 8 vCPU, 8192 MB, 400 GB; vCPU overcommitted 4 times, memory and disk not.
    let a1 = Agent::start(&s, "h1", &[]).await;
    let (x, op_x) = create(&s, "x").await;
    let (y, op_y) = create(&s, "y").await;
    s.wait_operation(&op_x).await;
    s.wait_operation(&op_y).await;
    assert_eq!(reserved(&s, &x).await, json!([1, 1024, 25]));

    // Room: 4096 + 1024 of 8192 MB.
    let r = resize(&s, &x, "ss1.c2m4").await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert!(flavor_is(&s, &x, "ss1.c2m4").await);
    assert_eq!(reserved(&s, &x).await, json!([2, 4096, 50]));
    let resized = |a: &Agent| a.done().iter().filter(|(c, i)| c == "resize" && *i == x).count();
    assert_eq!(resized(&a1), 1, "the resize ran on h1's agent once");

    // No room: 8192 + 1024 > 8192 MB. Refused before any operation; nothing changes.
    let r = resize(&s, &x, "ss1.c4m8").await;
    r.assert_error(400, "UNAVAILABLE_FLAVOR");
    let message = r.json["message"].as_str().unwrap();
    assert!(message.contains("ss1.c4m8") && message.contains("`h1`"), "{message}");
    assert_eq!(r.header("x-operation-id"), None);
    assert_eq!(reserved(&s, &x).await, json!([2, 4096, 50]));
    assert_eq!(reserved(&s, &y).await, json!([1, 1024, 25]));
    assert_eq!(instance(&s, &x).await["status"], "active");
    assert!(flavor_is(&s, &x, "ss1.c2m4").await);
    assert_eq!(resized(&a1), 1);

    // With y gone there is room; a failure after the machine changed undoes the resize on the
    // agent and gives the host back the room reserved for it.
    let r = s.call(Method::DELETE, &format!("/v1/instances/{y}"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    s.wait_operation(r.header("x-operation-id").unwrap()).await;
    let fault = json!({"kind": "instance.resize", "step": "settle", "mode": "once"});
    s.admin(Method::POST, "/admin/v1/faults", Some(fault)).await.ok_rows();
    let r = resize(&s, &x, "ss1.c4m8").await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert_eq!(resized(&a1), 3, "the resize and its undo ran on h1's agent");
    assert_eq!(reserved(&s, &x).await, json!([2, 4096, 50]), "back to the recorded flavor");
    assert_eq!(instance(&s, &x).await["status"], "error");
    assert!(flavor_is(&s, &x, "ss1.c2m4").await);

    // Started again, the same resize runs.
    act(&s, &x, "start").await;
    let r = resize(&s, &x, "ss1.c4m8").await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert_eq!(reserved(&s, &x).await, json!([4, 8192, 100]));
    assert!(flavor_is(&s, &x, "ss1.c4m8").await);
}

/// Billing and quotas do not depend on where a machine runs (issue 18): in hosts mode the
/// account's quota refuses the create past it as in one process, and the live bill has a line
/// for each instance, whichever host runs it.
#[tokio::test]
async fn quotas_and_the_live_bill_are_unchanged_by_the_host() {
    let mut s = hosts_mode(&[]).await;
    let _agents = [Agent::start(&s, "h1", &[]).await, Agent::start(&s, "h2", &[]).await];
    s.admin(Method::PUT, "/admin/v1/accounts/dev/quota", Some(json!({"instances": 2}))).await.ok_rows();
    let mut ids = Vec::new();
    for name in ["b1", "b2"] {
        let (id, op) = create(&s, name).await;
        assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
        ids.push(id);
    }
    let hosts: BTreeSet<String> = placements(&s).await.into_values().collect();
    assert_eq!(hosts.len(), 2, "one instance on each host: {hosts:?}");
    let body = json!({"zone_id": ZONE, "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "b3"});
    s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await.assert_error(403, "LIMIT_EXCEEDED");
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "2h"}))).await.ok_rows();
    s.sync_clock().await;
    let bill = s.get("/v1/bill/live?explain=1").await;
    let row = &bill.ok_rows()[0];
    let items = row["items"].as_array().unwrap();
    for id in &ids {
        let line = items.iter().find(|i| i["id"] == id.as_str()).unwrap_or_else(|| panic!("no line for {id}: {row}"));
        assert!(line["amount"].as_i64().unwrap() > 0, "{line}");
    }
    let sum: i64 = items.iter().map(|i| i["amount"].as_i64().unwrap()).sum();
    assert_eq!(row["price"].as_i64().unwrap(), sum, "{row}");
}
