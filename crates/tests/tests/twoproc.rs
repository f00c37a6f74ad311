//! Two server processes on one database share nothing but the store: any process may run any
//! step of any operation, whichever process accepted the request and whichever ran the steps
//! before. Volume, power and firewall operations are interleaved across the two, and one of them
//! is killed in the middle of an operation for the other to finish.

use openwinv_tests::lifecycle::{accepted, act};
use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};

/// Immediate simulated steps, and no rate limit on the bootstrap key (the tests poll a lot).
const FAST: &[&str] = &["--sim-delay", "0", "--default-rate-limit", "0"];

async fn instance(s: &Server, name: &str) -> String {
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": name});
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "active").await;
    id
}

/// Asserts that the operation `r` started succeeded (waiting for it on `s`).
async fn succeeds(s: &Server, r: Resp, what: &str) {
    let op = accepted(s, r).await;
    assert_eq!(op["status"], "succeeded", "{what}: {op}");
}

async fn volume(s: &Server, v: &str) -> Value {
    s.get(&format!("/v1/block-storages/{v}")).await.ok_rows()[0].clone()
}

/// Asks `s` for a 10 GB volume attached to `instance_id`.
async fn new_volume(s: &Server, instance_id: &str) -> Resp {
    s.call(
        Method::POST,
        "/v1/block-storages",
        Some(Body::Json(json!({"instance_id": instance_id, "type": "ssd", "size": 10}))),
    )
    .await
}

async fn firewall_action(s: &Server, fw: &str, action: &str, instance_id: &str) -> Resp {
    let body = json!({"instance_id": instance_id});
    s.call(Method::POST, &format!("/v1/security-groups/{fw}/{action}"), Some(Body::Json(body))).await
}

#[tokio::test]
async fn interleaved_volume_power_and_firewall_operations_across_two_processes() {
    let a = Server::start_with(FAST, &[]).await;
    let b = Server::start_sharing(&a, FAST).await;
    let machines = [instance(&a, "one").await, instance(&b, "two").await];
    let r =
        b.call(Method::POST, "/v1/security-groups", Some(Body::Json(json!({"title": "shared", "content": "x"})))).await;
    let fw = r.ok_rows()[0]["firewall_id"].as_str().unwrap().to_owned();
    let r = new_volume(&a, &machines[0]).await;
    let v = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
    succeeds(&a, r, "create the volume on A").await;

    // Each round: detach on one process, attach (to the other machine) on the other, power the
    // machine off and on across both, attach and detach the firewall across both.
    for round in 0..10 {
        let (here, there) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let to = &machines[(round + 1) % 2];
        let r = there.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await;
        succeeds(there, r, &format!("round {round}: detach")).await;
        let r = here.call(Method::POST, &format!("/v1/block-storages/{v}/attach/{to}"), None).await;
        succeeds(here, r, &format!("round {round}: attach to {to}")).await;
        let row = volume(there, &v).await;
        assert_eq!((row["status"].as_str(), row["instance_id"].as_str()), (Some("in-use"), Some(to.as_str())), "{row}");

        succeeds(there, act(there, to, "shutdown", json!({})).await, &format!("round {round}: shutdown")).await;
        succeeds(here, act(here, to, "start", json!({})).await, &format!("round {round}: start")).await;
        succeeds(here, firewall_action(here, &fw, "attach", to).await, &format!("round {round}: firewall attach"))
            .await;
        succeeds(there, firewall_action(there, &fw, "detach", to).await, &format!("round {round}: firewall detach"))
            .await;
    }
    for m in &machines {
        assert_eq!(a.get(&format!("/v1/instances/{m}")).await.ok_rows()[0]["status"], "active");
    }
    // The volume's last attach ends the loop: detach and delete it across the two.
    succeeds(&a, a.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await, "last detach").await;
    succeeds(&b, b.call(Method::DELETE, &format!("/v1/block-storages/{v}"), None).await, "delete the volume").await;
    assert_eq!(a.db_count("SELECT COUNT(*) FROM operations WHERE status <> 'succeeded'").await, 0);
    assert_eq!(a.db_count("SELECT COUNT(DISTINCT lease_owner) FROM operations").await, 2, "both processes worked");
}

#[tokio::test]
async fn a_process_killed_in_the_middle_of_an_operation_is_finished_by_the_other() {
    // Explicit mode holds each operation at its hypervisor step; a short lease lets the survivor
    // take the dead process's operations over quickly.
    let args = &["--sim-mode", "explicit", "--default-rate-limit", "0"];
    let mut a = Server::start_with(args, &[("OPENWINV_LEASE_SECS", "1")]).await;
    let b = Server::start_sharing(&a, args).await;
    let step = async |s: &Server, op: &str| {
        s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
    };
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "x"});
    let mut machines = Vec::new();
    for _ in 0..2 {
        let r = a.call(Method::POST, "/v1/instances", Some(Body::Json(body.clone()))).await;
        let op = r.header("x-operation-id").unwrap().to_owned();
        machines.push(r.result()[0]["instance_id"].as_str().unwrap().to_owned());
        step(&a, &op).await;
        step(&a, &op).await;
        assert_eq!(a.wait_operation(&op).await["status"], "succeeded");
    }
    let r = new_volume(&a, &machines[0]).await;
    let v = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
    let op = r.header("x-operation-id").unwrap().to_owned();
    step(&a, &op).await;
    step(&a, &op).await;
    assert_eq!(a.wait_operation(&op).await["status"], "succeeded");

    // A accepts a detach and is killed while it waits at the hypervisor step; B finishes it and
    // attaches the volume to the other machine, A (restarted) detaches it, and B attaches it back
    // to the first machine: what B did before (attached to the second) must not refuse it.
    let r = a.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await;
    let op = r.header("x-operation-id").unwrap().to_owned();
    a.kill9().await;
    step(&b, &op).await;
    assert_eq!(b.wait_operation(&op).await["status"], "succeeded");
    let r = b.call(Method::POST, &format!("/v1/block-storages/{v}/attach/{}", machines[1]), None).await;
    let op = r.header("x-operation-id").unwrap().to_owned();
    step(&b, &op).await;
    assert_eq!(b.wait_operation(&op).await["status"], "succeeded");
    a.restart().await;
    let r = a.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await;
    let op = r.header("x-operation-id").unwrap().to_owned();
    step(&a, &op).await;
    assert_eq!(a.wait_operation(&op).await["status"], "succeeded");
    let r = b.call(Method::POST, &format!("/v1/block-storages/{v}/attach/{}", machines[0]), None).await;
    let op = r.header("x-operation-id").unwrap().to_owned();
    step(&b, &op).await;
    assert_eq!(b.wait_operation(&op).await["status"], "succeeded");
    let row = volume(&a, &v).await;
    assert_eq!((row["status"].as_str(), row["instance_id"].as_str()), (Some("in-use"), Some(machines[0].as_str())));
}

/// Snapshots live in the database: one process saves, the other lists, restores and deletes
/// them, and a reset on either keeps them.
#[tokio::test]
async fn snapshots_are_shared_by_every_process_on_the_database() {
    let a = Server::start_with(FAST, &[]).await;
    let b = Server::start_sharing(&a, FAST).await;
    let names = |r: Resp| r.ok_rows().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let kept = instance(&a, "kept").await;
    let saved = a.admin(Method::POST, "/admin/v1/snapshots", Some(json!({"name": "base"}))).await;
    assert!(saved.ok_rows()[0]["size_bytes"].as_u64().unwrap() > 0, "{}", saved.text);

    assert_eq!(names(b.admin(Method::GET, "/admin/v1/snapshots", None).await), ["base"]);
    let later = instance(&b, "later").await;
    // A reset on B empties the state but keeps the snapshot A saved.
    b.admin(Method::POST, "/admin/v1/reset", Some(json!({}))).await.ok_rows();
    assert_eq!(a.get(&format!("/v1/instances/{kept}")).await.status, 404);
    assert_eq!(names(a.admin(Method::GET, "/admin/v1/snapshots", None).await), ["base"]);

    // B restores what A saved; both see it.
    b.admin(Method::POST, "/admin/v1/snapshots/base/restore", None).await.ok_rows();
    for s in [&a, &b] {
        let r = s.get(&format!("/v1/instances/{kept}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(s.get(&format!("/v1/instances/{later}")).await.status, 404);
    }
    // A snapshot never contains the saved snapshots: saving again keeps one row per name.
    a.admin(Method::POST, "/admin/v1/snapshots", Some(json!({"name": "second"}))).await.ok_rows();
    b.admin(Method::POST, "/admin/v1/snapshots/base/restore", None).await.ok_rows();
    assert_eq!(names(a.admin(Method::GET, "/admin/v1/snapshots", None).await), ["base", "second"]);

    let gone = a.admin(Method::DELETE, "/admin/v1/snapshots/base", None).await;
    assert_eq!(gone.ok_rows()[0]["name"], "base");
    b.admin(Method::POST, "/admin/v1/snapshots/base/restore", None).await.assert_error(404, "NOT_FOUND");
    assert_eq!(names(b.admin(Method::GET, "/admin/v1/snapshots", None).await), ["second"]);
}

/// Creates, deletes and reboots of one account raced across two processes. The quota holds
/// (creates check it under the account's lock), and what the triggers keep per account (the
/// instance and operation counts and the usage version, written at commit on PostgreSQL,
/// migration 0028) equals the rows it counts, whichever transaction committed first.
#[tokio::test]
async fn racing_writes_of_one_account_keep_the_quota_and_the_kept_counts() {
    use futures_util::future::join_all;
    let a = Server::start_with(FAST, &[]).await;
    let b = Server::start_sharing(&a, FAST).await;
    a.admin(Method::PUT, "/admin/v1/accounts/dev/quota", Some(json!({"instances": 12, "vcpu": 100}))).await.ok_rows();
    let body = || json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1"});
    let create = |i: usize| {
        let s = if i.is_multiple_of(2) { &a } else { &b };
        s.call(Method::POST, "/v1/instances", Some(Body::Json(body())))
    };
    // 24 creates at once, half on each process: exactly 12 fit.
    let answers = join_all((0..24).map(create)).await;
    let mut made = Vec::new();
    for r in &answers {
        match r.status {
            202 => made.push(r.result()[0]["instance_id"].as_str().unwrap().to_owned()),
            403 => assert_eq!(r.error_code(), "LIMIT_EXCEEDED", "{}", r.text),
            _ => panic!("create: {} {}", r.status, r.text),
        }
    }
    assert_eq!(made.len(), 12, "the quota admits 12 instances");
    for id in &made {
        a.wait_status(id, "active").await;
    }

    // Half deleted, a quarter rebooted and three more created, all at once across both (the
    // quota raised so that the creates fit whichever order they meet the deletes in).
    a.admin(Method::PUT, "/admin/v1/accounts/dev/quota", Some(json!({"instances": 15, "vcpu": 100}))).await.ok_rows();
    let racing = made.iter().enumerate().map(|(i, id)| {
        let s = if i.is_multiple_of(2) { &a } else { &b };
        let path = format!("/v1/instances/{id}");
        async move {
            match i % 4 {
                0 | 1 => s.call(Method::DELETE, &path, None).await,
                2 => s.call(Method::POST, &format!("{path}/reboot"), None).await,
                _ => s.call(Method::POST, "/v1/instances", Some(Body::Json(body()))).await,
            }
        }
    });
    for r in join_all(racing).await {
        assert!(r.status == 202 || r.status == 200, "{} {}", r.status, r.text);
    }
    for s in [&a, &b] {
        for _ in 0..200 {
            if s.db_count("SELECT COUNT(*) FROM operations WHERE status = 'running'").await == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    assert_eq!(a.db_count("SELECT COUNT(*) FROM operations WHERE status = 'running'").await, 0, "operations settle");
    let rows = a.db_count("SELECT COUNT(*) FROM instances").await;
    assert_eq!(rows, 12 - 6 + 3, "12 made, 6 deleted, 3 created");
    assert_eq!(
        a.db_count("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM instance_counts").await,
        rows,
        "the kept instance count"
    );
    assert_eq!(
        a.db_count("SELECT CAST(COALESCE(SUM(vcpu), 0) AS BIGINT) FROM instance_counts").await,
        a.db_count("SELECT CAST(COALESCE(SUM(vcpu), 0) AS BIGINT) FROM instances").await,
        "the kept vCPU count"
    );
    assert_eq!(
        a.db_count("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM operation_counts").await,
        a.db_count("SELECT COUNT(*) FROM operations").await,
        "the kept operation count"
    );
    // Every usage write bumped the version once and recorded its change under that version.
    let version = a.db_count("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM usage_versions").await;
    assert!(version >= 15 + 6, "15 intervals opened, 6 closed: version {version}");
    assert_eq!(
        a.db_count("SELECT COUNT(DISTINCT version) FROM usage_changes").await,
        version,
        "one change per version"
    );
    for s in [&a, &b] {
        let r = s.get("/v1/instances?page_size=100").await;
        assert_eq!(r.ok_rows().len() as i64, rows);
        assert_eq!(r.json["total"], json!(rows), "{}", r.text);
    }
}
