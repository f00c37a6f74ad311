//! Operations survive faults at every step, crashes (`kill -9`) and several processes.

use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};

fn basic() -> Value {
    json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "durable"})
}

/// Immediate simulated steps, and no rate limit on the bootstrap key (the tests poll a lot).
const FAST: &[&str] = &["--sim-delay", "0", "--default-rate-limit", "0"];

async fn create_active(s: &Server) -> String {
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(basic()))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "active").await;
    id
}

async fn start_op(s: &Server, id: &str, kind: &str) -> Resp {
    let (method, path, body) = match kind {
        "instance.delete" => (Method::DELETE, format!("/v1/instances/{id}"), json!({})),
        "instance.resize" => (Method::POST, format!("/v1/instances/{id}/resize"), json!({"flavor_id": "ss1.c2m4"})),
        "instance.rebuild" => {
            (Method::POST, format!("/v1/instances/{id}/rebuild"), json!({"image_id": "IMG-debian-12"}))
        }
        other => (Method::POST, format!("/v1/instances/{id}/{}", other.trim_start_matches("instance.")), json!({})),
    };
    let r = s.call(method, &path, Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{kind}: {}", r.text);
    r
}

/// Brings an instance to the state `kind` starts from.
async fn prepare(s: &Server, kind: &str) -> String {
    let id = create_active(s).await;
    if kind == "instance.start" {
        let r = start_op(s, &id, "instance.shutdown").await;
        s.wait_operation(r.header("x-operation-id").unwrap()).await;
    }
    id
}

async fn steps_of(s: &Server, kind: &str) -> Vec<String> {
    let _ = s;
    let steps: &[&str] = match kind {
        "instance.create" => &[
            "place",
            "allocate_addresses",
            "create_machine",
            "create_volumes",
            "attach_volumes",
            "attach_firewall",
            "power_on",
            "settle",
        ],
        "instance.start" => &["power_on", "settle"],
        "instance.shutdown" => &["power_off", "settle"],
        "instance.reboot" => &["reboot", "settle"],
        "instance.rebuild" => &["rebuild_machine", "settle"],
        "instance.resize" => &["resize_machine", "settle"],
        "instance.delete" => &["destroy_machine", "detach_volumes", "release_addresses", "remove"],
        _ => unreachable!(),
    };
    steps.iter().map(|s| s.to_string()).collect()
}

async fn add_fault(s: &Server, kind: &str, step: &str) {
    let r = s.admin(Method::POST, "/admin/v1/faults", Some(json!({"kind": kind, "step": step, "mode": "once"}))).await;
    r.ok_rows();
}

async fn fault_at_every_step(repeat: bool) {
    let envs: &[(&str, &str)] = if repeat { &[("OPENWINV_SIM_REPEAT_STEPS", "1")] } else { &[] };
    let s = Server::start_with(FAST, envs).await;
    for kind in [
        "instance.create",
        "instance.start",
        "instance.shutdown",
        "instance.reboot",
        "instance.rebuild",
        "instance.resize",
        "instance.delete",
    ] {
        for step in steps_of(&s, kind).await {
            let (id, before) = if kind == "instance.create" {
                (None, None)
            } else {
                let id = prepare(&s, kind).await;
                let row = s.get(&format!("/v1/instances/{id}?fields=262143")).await.ok_rows()[0].clone();
                (Some(id), Some(row))
            };
            add_fault(&s, kind, &step).await;
            let r = match &id {
                None => s.call(Method::POST, "/v1/instances", Some(Body::Json(basic()))).await,
                Some(id) => start_op(&s, id, kind).await,
            };
            assert_eq!(r.status, 202, "{kind}/{step}: {}", r.text);
            let id = id.unwrap_or_else(|| r.result()[0]["instance_id"].as_str().unwrap().to_owned());
            let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
            assert_eq!(op["status"], "failed", "{kind}/{step}: {op}");
            assert!(op["error"].as_str().unwrap().contains(&step), "{kind}/{step}: {op}");
            let row = s.get(&format!("/v1/instances/{id}?fields=262143")).await.ok_rows()[0].clone();
            assert_eq!(row["status"], "error", "{kind}/{step}: {row}");
            match &before {
                // A failed create keeps nothing it allocated.
                None => {
                    assert!(row["ip"][0]["public"]["address"].is_null(), "{kind}/{step}: {row}");
                    assert!(row["ip"][0]["private"]["address"].is_null(), "{kind}/{step}: {row}");
                    let held =
                        s.db_count(&format!("SELECT COUNT(*) FROM ip_addresses WHERE instance_id = '{id}'")).await;
                    assert_eq!(held, 0, "{kind}/{step}: leaked addresses");
                    let usage =
                        s.db_count(&format!("SELECT COUNT(*) FROM usage_intervals WHERE resource_id = '{id}'")).await;
                    assert_eq!(usage, 0, "{kind}/{step}: a failed create is not charged");
                }
                // A delete that got past destroying the machine cannot take that back: the
                // instance stays in error, and deleting it again finishes the job.
                Some(_) if kind == "instance.delete" => {}
                // Other operations keep the instance's own resources, and change nothing else.
                Some(before) => {
                    assert_eq!(row["ip"], before["ip"], "{kind}/{step}");
                    assert_eq!(row["flavor"], before["flavor"], "{kind}/{step}");
                    assert_eq!(row["image"], before["image"], "{kind}/{step}");
                    assert_eq!(row["default_account"], before["default_account"], "{kind}/{step}");
                }
            }
            // An instance in error can still be deleted, and that releases everything.
            let d = start_op(&s, &id, "instance.delete").await;
            assert_eq!(s.wait_operation(d.header("x-operation-id").unwrap()).await["status"], "succeeded");
        }
    }
    assert_eq!(s.db_count("SELECT COUNT(*) FROM ip_addresses").await, 0, "no address leaked");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM instances").await, 0);
    let r = s.admin(Method::GET, "/admin/v1/faults", None).await;
    assert!(r.ok_rows().iter().all(|f| f["remaining"] == 0), "every fault fired: {}", r.text);
}

#[tokio::test]
async fn a_fault_at_any_step_unwinds_cleanly() {
    fault_at_every_step(false).await;
}

#[tokio::test]
async fn steps_run_twice_give_the_same_result() {
    fault_at_every_step(true).await;
    // And a clean lifecycle with every step doubled.
    let s = Server::start_with(FAST, &[("OPENWINV_SIM_REPEAT_STEPS", "1")]).await;
    let id = create_active(&s).await;
    assert_eq!(s.db_count(&format!("SELECT COUNT(*) FROM ip_addresses WHERE instance_id = '{id}'")).await, 2);
    for kind in [
        "instance.shutdown",
        "instance.start",
        "instance.reboot",
        "instance.rebuild",
        "instance.resize",
        "instance.delete",
    ] {
        let r = start_op(&s, &id, kind).await;
        assert_eq!(s.wait_operation(r.header("x-operation-id").unwrap()).await["status"], "succeeded", "{kind}");
    }
    assert_eq!(s.db_count("SELECT COUNT(*) FROM ip_addresses").await, 0);
}

#[tokio::test]
async fn transient_faults_are_retried() {
    let s = Server::start_with(FAST, &[]).await;
    let r = s
        .admin(Method::POST, "/admin/v1/faults", Some(json!({"kind": "instance.create", "step": "power_on", "mode": "count", "count": 2, "effect": "transient"})))
        .await;
    r.ok_rows();
    let id = create_active(&s).await;
    let ops = s
        .db_count(&format!("SELECT COUNT(*) FROM operations WHERE resource_id = '{id}' AND status = 'succeeded'"))
        .await;
    assert_eq!(ops, 1);
    // Sticky faults fail every time until cleared; a transient one that never clears unwinds.
    s.admin(
        Method::POST,
        "/admin/v1/faults",
        Some(json!({"kind": "instance.reboot", "step": "reboot", "mode": "sticky", "effect": "transient"})),
    )
    .await
    .ok_rows();
    let r = start_op(&s, &id, "instance.reboot").await;
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "failed", "{op}");
    s.admin(Method::DELETE, "/admin/v1/faults", None).await.ok_rows();
    let r = start_op(&s, &id, "instance.start").await;
    assert_eq!(s.wait_operation(r.header("x-operation-id").unwrap()).await["status"], "succeeded");
}

#[tokio::test]
async fn kill_9_in_the_middle_of_each_operation_kind() {
    // Explicit mode parks every operation at its first hypervisor step; the process is killed
    // there, restarted, and the operation resumes from its saved progress.
    let mut s =
        Server::start_with(&["--sim-mode", "explicit", "--default-rate-limit", "0"], &[("OPENWINV_LEASE_SECS", "1")])
            .await;
    let step = |op: String| {
        let s = &s;
        async move { s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows().len() }
    };
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(basic()))).await;
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let op = r.header("x-operation-id").unwrap().to_owned();
    step(op.clone()).await;
    s.kill9().await;
    s.restart().await;
    s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
    s.wait_status(&id, "active").await;
    for kind in [
        "instance.shutdown",
        "instance.start",
        "instance.reboot",
        "instance.rebuild",
        "instance.resize",
        "instance.delete",
    ] {
        let r = start_op(&s, &id, kind).await;
        let op = r.header("x-operation-id").unwrap().to_owned();
        assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["status"], "work");
        s.kill9().await;
        s.restart().await;
        s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
        assert_eq!(s.wait_operation(&op).await["status"], "succeeded", "{kind}");
    }
    s.get(&format!("/v1/instances/{id}")).await.assert_error(404, "NOT_FOUND");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM ip_addresses").await, 0);
}

#[tokio::test]
async fn kill_9_under_load_loses_and_leaks_nothing() {
    let mut s = Server::start_with(FAST, &[("OPENWINV_LEASE_SECS", "1")]).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut b = basic();
        b["count"] = json!(10);
        let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(b))).await;
        assert_eq!(r.status, 202, "{}", r.text);
        ids.extend(r.result().iter().map(|x| x["instance_id"].as_str().unwrap().to_owned()));
    }
    // Kill while the workers are in the middle of the batch.
    s.kill9().await;
    s.restart().await;
    for id in &ids {
        s.wait_status(id, "active").await;
    }
    assert_eq!(s.db_count("SELECT COUNT(*) FROM ip_addresses").await, 40, "two addresses each, none leaked");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM operations WHERE status <> 'succeeded'").await, 0);
}

#[tokio::test]
async fn timed_steps_complete_when_the_clock_is_advanced() {
    let s = Server::start_with(&["--sim-delay", "3600", "--default-rate-limit", "0"], &[]).await;
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(basic()))).await;
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["status"], "pending");
    // Two hypervisor steps of an hour each.
    for _ in 0..2 {
        s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "1h"}))).await.ok_rows();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let mut s = s;
    s.sync_clock().await;
    s.wait_status(&id, "active").await;
}

#[tokio::test]
async fn two_processes_share_the_work_and_run_each_operation_once() {
    let a = Server::start_with(FAST, &[]).await;
    let b = Server::start_sharing(&a, FAST).await;
    let mut ids = Vec::new();
    // 10 accounts × 20 instances = 200 create operations, sent to both processes.
    let mut keys = Vec::new();
    for n in 0..10 {
        keys.push(a.new_account(&format!("tenant{n}"), json!({"rate_limit": 0})).await);
    }
    let mut tasks = Vec::new();
    for (n, (k, sk)) in keys.iter().enumerate() {
        for half in 0..2 {
            let server = if (n + half) % 2 == 0 { &a } else { &b };
            let mut body = basic();
            body["count"] = json!(10);
            tasks.push(
                async move { server.call_as(k, sk, Method::POST, "/v1/instances", Some(Body::Json(body))).await },
            );
        }
    }
    for t in tasks {
        let r = t.await;
        assert_eq!(r.status, 202, "{}", r.text);
        ids.extend(r.result().iter().map(|x| x["instance_id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(ids.len(), 200);
    for _ in 0..600 {
        if a.db_count("SELECT COUNT(*) FROM operations WHERE status = 'running'").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(a.db_count("SELECT COUNT(*) FROM operations WHERE status = 'succeeded'").await, 200);
    assert_eq!(a.db_count("SELECT COUNT(*) FROM instances WHERE status = 'active'").await, 200);
    // Each settle ran once (it bumps the generation, guarded by the operation id).
    assert_eq!(a.db_count("SELECT COUNT(*) FROM instances WHERE generation <> 1").await, 0);
    assert_eq!(a.db_count("SELECT COUNT(*) FROM ip_addresses").await, 400);
    assert_eq!(a.db_count("SELECT COUNT(DISTINCT lease_owner) FROM operations").await, 2, "both processes worked");
}

// =============================================================================================
// Block storage (volumes): a fault at every step of every volume operation, and of the volume
// steps of instance create and delete, leaves no trace; kill -9 in the middle of each volume
// operation, then restart, finishes it.
// =============================================================================================

mod volumes {
    use super::{FAST, add_fault, basic};
    use openwinv_tests::{Body, Resp, Server};
    use reqwest::Method;
    use serde_json::{Value, json};

    const STEPS: &[(&str, &[&str])] = &[
        ("volume.create", &["create_volume", "attach", "settle"]),
        ("volume.attach", &["attach", "settle"]),
        ("volume.detach", &["detach", "settle"]),
        ("volume.delete", &["delete_volume", "remove"]),
    ];
    const INSTANCE_CREATE: &[&str] = &[
        "allocate_addresses",
        "create_machine",
        "create_volumes",
        "attach_volumes",
        "attach_firewall",
        "power_on",
        "settle",
    ];
    const INSTANCE_DELETE: &[&str] = &["destroy_machine", "detach_volumes", "release_addresses", "remove"];

    fn op_of(r: &Resp) -> String {
        assert_eq!(r.status, 202, "{}", r.text);
        r.header("x-operation-id").unwrap().to_owned()
    }

    async fn finish(s: &Server, r: Resp) -> Value {
        let op = op_of(&r);
        s.wait_operation(&op).await
    }

    async fn ok(s: &Server, r: Resp) {
        let op = finish(s, r).await;
        assert_eq!(op["status"], "succeeded", "{op}");
    }

    async fn row(s: &Server, v: &str) -> Option<Value> {
        let r = s.get(&format!("/v1/block-storages/{v}")).await;
        if r.status == 404 {
            return None;
        }
        Some(r.ok_rows()[0].clone())
    }

    async fn attached(s: &Server, i: &str) -> Vec<Value> {
        s.get(&format!("/v1/instances/{i}?fields=8192")).await.ok_rows()[0]["block_storage"].as_array().unwrap().clone()
    }

    async fn create(s: &Server, i: &str) -> Resp {
        s.call(
            Method::POST,
            "/v1/block-storages",
            Some(Body::Json(json!({"instance_id": i, "type": "ssd", "size": 10}))),
        )
        .await
    }

    async fn attach(s: &Server, v: &str, i: &str) -> Resp {
        s.call(Method::POST, &format!("/v1/block-storages/{v}/attach/{i}"), None).await
    }

    async fn detach(s: &Server, v: &str) -> Resp {
        s.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await
    }

    async fn delete(s: &Server, v: &str) -> Resp {
        s.call(Method::DELETE, &format!("/v1/block-storages/{v}"), None).await
    }

    /// A volume in use on `i`.
    async fn in_use(s: &Server, i: &str) -> String {
        let r = create(s, i).await;
        let v = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
        ok(s, r).await;
        v
    }

    async fn available(s: &Server, i: &str) -> String {
        let v = in_use(s, i).await;
        ok(s, detach(s, &v).await).await;
        v
    }

    fn with_volumes() -> Value {
        let mut b = basic();
        b["block_storage"] = json!([{"size": 10, "name": "one"}, {"size": 20, "type": "sata"}]);
        b
    }

    async fn faults(repeat: bool) {
        let envs: &[(&str, &str)] = if repeat { &[("OPENWINV_SIM_REPEAT_STEPS", "1")] } else { &[] };
        let s = Server::start_with(FAST, envs).await;
        let i = super::create_active(&s).await;
        for (kind, steps) in STEPS {
            for step in *steps {
                let v = match *kind {
                    "volume.create" => None,
                    "volume.detach" => Some(in_use(&s, &i).await),
                    _ => Some(available(&s, &i).await),
                };
                add_fault(&s, kind, step).await;
                let r = match (*kind, &v) {
                    ("volume.create", _) => create(&s, &i).await,
                    ("volume.attach", Some(v)) => attach(&s, v, &i).await,
                    ("volume.detach", Some(v)) => detach(&s, v).await,
                    (_, Some(v)) => delete(&s, v).await,
                    _ => unreachable!(),
                };
                let v = v.unwrap_or_else(|| r.result()[0]["block_storage_id"].as_str().unwrap().to_owned());
                let op = finish(&s, r).await;
                assert_eq!(op["status"], "failed", "{kind}/{step}: {op}");
                assert!(op["error"].as_str().unwrap().contains(step), "{kind}/{step}: {op}");
                let inst = s.get(&format!("/v1/instances/{i}")).await.ok_rows()[0].clone();
                assert_eq!(inst["status"], "active", "{kind}/{step}: the instance is untouched");
                let on_instance: Vec<Value> =
                    attached(&s, &i).await.into_iter().filter(|x| x["block_storage_id"] == v.as_str()).collect();
                match *kind {
                    // A failed create leaves nothing.
                    "volume.create" => {
                        assert!(row(&s, &v).await.is_none(), "{kind}/{step}");
                        assert!(on_instance.is_empty(), "{kind}/{step}");
                        assert_eq!(
                            s.db_count(&format!("SELECT COUNT(*) FROM volumes WHERE block_storage_id = '{v}'")).await,
                            0
                        );
                        continue;
                    }
                    // A failed detach leaves the volume attached; a failed attach or delete
                    // leaves it detached; both in error with the reason in the operation.
                    "volume.detach" => {
                        let got = row(&s, &v).await.unwrap();
                        assert_eq!(
                            (got["status"].as_str(), got["instance_id"].as_str()),
                            (Some("error"), Some(i.as_str())),
                            "{kind}/{step}"
                        );
                        assert_eq!(on_instance.len(), 1, "{kind}/{step}");
                        ok(&s, detach(&s, &v).await).await;
                    }
                    _ => {
                        let got = row(&s, &v).await.unwrap();
                        assert_eq!(got["status"], "error", "{kind}/{step}: {got}");
                        assert!(got["instance_id"].is_null(), "{kind}/{step}: {got}");
                        assert!(on_instance.is_empty(), "{kind}/{step}");
                        if *kind == "volume.attach" {
                            ok(&s, attach(&s, &v, &i).await).await;
                            ok(&s, detach(&s, &v).await).await;
                        }
                    }
                }
                // Whatever failed, the volume can still be deleted.
                ok(&s, delete(&s, &v).await).await;
                assert!(row(&s, &v).await.is_none(), "{kind}/{step}");
            }
        }

        // Instance create with volumes: a failure at any step leaves no volume.
        for step in INSTANCE_CREATE {
            add_fault(&s, "instance.create", step).await;
            let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(with_volumes()))).await;
            let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
            let made: Vec<String> = r.result()[0]["block_storage"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(made.len(), 2);
            let op = finish(&s, r).await;
            assert_eq!(op["status"], "failed", "instance.create/{step}: {op}");
            assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["status"], "error");
            assert!(attached(&s, &id).await.is_empty(), "instance.create/{step}");
            for v in &made {
                assert!(row(&s, v).await.is_none(), "instance.create/{step}: {v} is left");
            }
            ok(&s, s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await).await;
        }
        assert_eq!(s.db_count("SELECT COUNT(*) FROM volumes").await, 0, "a failed instance create leaves no volume");

        // Instance delete with volumes: the volumes are kept whatever fails, and a second delete
        // finishes the job with every volume available.
        for step in INSTANCE_DELETE {
            let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(with_volumes()))).await;
            let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
            let made: Vec<String> = r.result()[0]["block_storage"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect();
            ok(&s, r).await;
            add_fault(&s, "instance.delete", step).await;
            let op = finish(&s, s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await).await;
            assert_eq!(op["status"], "failed", "instance.delete/{step}: {op}");
            assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["status"], "error");
            for v in &made {
                let got = row(&s, v).await.unwrap_or_else(|| panic!("instance.delete/{step}: {v} was lost"));
                // Before the volumes were detached they stay attached; after, they are free.
                let expect = if ["destroy_machine", "detach_volumes"].contains(step) { "in-use" } else { "available" };
                assert_eq!(got["status"], expect, "instance.delete/{step}: {got}");
            }
            let r = s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
            let kept = r.result()[0]["block_storage"].clone();
            ok(&s, r).await;
            for v in &made {
                let got = row(&s, v).await.unwrap();
                assert_eq!(
                    (got["status"].as_str(), got["instance_id"].is_null()),
                    (Some("available"), true),
                    "instance.delete/{step}: {got}"
                );
                assert!(kept.as_array().unwrap().is_empty() || kept.as_array().unwrap().contains(&json!(v)));
                ok(&s, delete(&s, v).await).await;
            }
        }
        assert_eq!(s.db_count("SELECT COUNT(*) FROM volumes").await, 0);
        assert!(attached(&s, &i).await.is_empty());
        assert_eq!(s.db_count("SELECT COUNT(*) FROM operations WHERE status = 'running'").await, 0);
        let r = s.admin(Method::GET, "/admin/v1/faults", None).await;
        assert!(r.ok_rows().iter().all(|f| f["remaining"] == 0), "every fault fired: {}", r.text);
    }

    #[tokio::test]
    async fn a_fault_at_any_volume_step_leaves_no_trace() {
        faults(false).await;
    }

    #[tokio::test]
    async fn volume_steps_run_twice_give_the_same_result() {
        faults(true).await;
    }

    #[tokio::test]
    async fn kill_9_in_the_middle_of_each_volume_operation() {
        let mut s = Server::start_with(
            &["--sim-mode", "explicit", "--default-rate-limit", "0"],
            &[("OPENWINV_LEASE_SECS", "1")],
        )
        .await;
        async fn step(s: &Server, op: &str) {
            s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
        }
        // An instance made with a volume, killed between its two hypervisor steps.
        let mut b = basic();
        b["block_storage"] = json!([{"size": 10, "name": "boot-data"}]);
        let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(b))).await;
        let i = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
        let first = r.result()[0]["block_storage"][0].as_str().unwrap().to_owned();
        let op = op_of(&r);
        step(&s, &op).await;
        s.kill9().await;
        s.restart().await;
        step(&s, &op).await;
        s.wait_status(&i, "active").await;
        assert_eq!(row(&s, &first).await.unwrap()["status"], "in-use");

        // volume.create, killed between making the volume and attaching it.
        let r = create(&s, &i).await;
        let v = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
        let op = op_of(&r);
        step(&s, &op).await;
        s.kill9().await;
        s.restart().await;
        assert_eq!(row(&s, &v).await.unwrap()["status"], "creating");
        step(&s, &op).await;
        assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
        assert_eq!(row(&s, &v).await.unwrap()["status"], "in-use");

        // detach, attach, detach and delete, each killed while waiting for its hypervisor step.
        for (what, during) in
            [("detach", "detaching"), ("attach", "attaching"), ("detach", "detaching"), ("delete", "deleting")]
        {
            let r = match what {
                "detach" => detach(&s, &v).await,
                "attach" => attach(&s, &v, &i).await,
                _ => delete(&s, &v).await,
            };
            let op = op_of(&r);
            assert_eq!(row(&s, &v).await.unwrap()["status"], during);
            s.kill9().await;
            s.restart().await;
            assert_eq!(row(&s, &v).await.unwrap()["status"], during, "{what} survives the crash");
            step(&s, &op).await;
            assert_eq!(s.wait_operation(&op).await["status"], "succeeded", "{what}");
        }
        assert!(row(&s, &v).await.is_none());

        // An instance delete with a volume attached, killed mid-way: the volume is kept.
        let r = s.call(Method::DELETE, &format!("/v1/instances/{i}"), None).await;
        assert_eq!(r.result()[0]["block_storage"], json!([first]));
        let op = op_of(&r);
        assert_eq!(row(&s, &first).await.unwrap()["status"], "detaching");
        s.kill9().await;
        s.restart().await;
        step(&s, &op).await;
        assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
        let got = row(&s, &first).await.unwrap();
        assert_eq!(
            (got["status"].as_str(), got["name"].as_str(), got["size"].as_u64()),
            (Some("available"), Some("boot-data"), Some(10))
        );
        assert!(got["instance_id"].is_null());
        assert_eq!(s.db_count("SELECT COUNT(*) FROM operations WHERE status = 'running'").await, 0);
        assert_eq!(s.db_count("SELECT COUNT(*) FROM ip_addresses").await, 0);
    }
}

// =============================================================================================
// Recovery after a crash: a restarted process takes back the leases its previous run died with
// at once (it knows that run's worker id from its data directory), and only those.
// =============================================================================================

#[tokio::test]
async fn a_restarted_process_takes_back_its_own_dead_leases_at_once() {
    // The default lease (30 s, longer than the test's waits): a restart must not wait for it.
    let mut s = Server::start_with(&["--sim-mode", "explicit", "--default-rate-limit", "0"], &[]).await;
    let mut ops = Vec::new();
    for _ in 0..2 {
        let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(basic()))).await;
        assert_eq!(r.status, 202, "{}", r.text);
        ops.push(r.header("x-operation-id").unwrap().to_owned());
    }
    let (own, foreign) = (&ops[0], &ops[1]);
    s.kill9().await;
    // The process died in the middle of a step of each operation, holding its lease: the first as
    // this process (the run whose worker id the data directory records), the second as if it
    // belonged to another process that still lives and will finish it.
    let dead = std::fs::read_to_string(s.data_path("worker-id")).expect("the worker id of the dead run");
    let dead = dead.trim();
    assert!(dead.starts_with("WORKER-"), "{dead}");
    let an_hour_on = openwinv_tests::unix_now() * 1000 + 3_600_000;
    let pool = s.db().await;
    for (op, owner) in [(own, dead), (foreign, "WORKER-elsewhere")] {
        let r = sqlx::query(&format!(
            "UPDATE operations SET lease_owner = '{owner}', lease_until = {an_hour_on} WHERE operation_id = '{op}'"
        ))
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(r.rows_affected(), 1);
    }
    pool.close().await;

    s.restart().await;
    for op in &ops {
        for _ in 0..2 {
            s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
        }
    }
    assert_eq!(s.wait_operation(own).await["status"], "succeeded", "its own dead lease is taken back at once");
    let row = s.get(&format!("/v1/operations/{foreign}")).await.ok_rows()[0].clone();
    assert_eq!(row["status"], "running", "another process's lease is left until it expires: {row}");
    let n = s
        .db_count(&format!(
            "SELECT COUNT(*) FROM operations WHERE operation_id = '{foreign}' AND lease_owner = 'WORKER-elsewhere'"
        ))
        .await;
    assert_eq!(n, 1);
}
