//! Block storage (spec §8) on the simulated hypervisor, through the real binary: every volume
//! operation from every volume and instance state, validation, zones, quotas, the per-instance
//! limit, tenants, volumes made with an instance and kept when it is deleted.

use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};

const FAST: &[&str] = &["--sim-delay", "0", "--default-rate-limit", "0"];
const EXPLICIT: &[&str] = &["--sim-mode", "explicit", "--default-rate-limit", "0"];

fn basic() -> Value {
    json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "vm"})
}

fn with(mut b: Value, k: &str, v: Value) -> Value {
    b[k] = v;
    b
}

/// Creates an instance and waits until it is active (timed mode, no delay).
async fn instance(s: &Server, body: Value) -> (String, Value) {
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let row = r.result()[0].clone();
    let id = row["instance_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "active").await;
    (id, row)
}

/// Explicit mode: creates an instance and steps it to active.
async fn instance_explicit(s: &Server, body: Value) -> String {
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let op = r.header("x-operation-id").unwrap().to_owned();
    step(s, &op).await;
    step(s, &op).await;
    s.wait_status(&id, "active").await;
    id
}

async fn step(s: &Server, op: &str) {
    s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
}

fn op_of(r: &Resp) -> String {
    assert_eq!(r.status, 202, "{}", r.text);
    r.header("x-operation-id").expect("X-Operation-Id").to_owned()
}

/// Waits for the operation of a 202 answer; returns its row.
async fn done(s: &Server, r: Resp) -> Value {
    let op = op_of(&r);
    s.wait_operation(&op).await
}

async fn succeeded(s: &Server, r: Resp) {
    let op = done(s, r).await;
    assert_eq!(op["status"], "succeeded", "{op}");
}

async fn post_volume(s: &Server, body: Value) -> Resp {
    s.call(Method::POST, "/v1/block-storages", Some(Body::Json(body))).await
}

/// Creates a volume attached to `instance_id` and waits until it is in use.
async fn volume(s: &Server, instance_id: &str, size: u32) -> String {
    let r = post_volume(s, json!({"instance_id": instance_id, "type": "ssd", "size": size})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
    succeeded(s, r).await;
    id
}

async fn row(s: &Server, id: &str) -> Value {
    s.get(&format!("/v1/block-storages/{id}")).await.ok_rows()[0].clone()
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

/// The `block_storage` field of an instance.
async fn attached(s: &Server, i: &str) -> Vec<Value> {
    s.get(&format!("/v1/instances/{i}?fields=8192")).await.ok_rows()[0]["block_storage"].as_array().unwrap().clone()
}

fn ids_of(list: &[Value]) -> Vec<String> {
    list.iter().map(|v| v["block_storage_id"].as_str().unwrap().to_owned()).collect()
}

/// A volume in the middle of an operation refuses attach, delete and detach with `IN_USE`.
async fn refuses_everything(s: &Server, v: &str, i: &str) {
    attach(s, v, i).await.assert_error(409, "IN_USE");
    delete(s, v).await.assert_error(409, "IN_USE");
    detach(s, v).await.assert_error(409, "IN_USE");
}

#[tokio::test]
async fn a_whole_lifecycle() {
    let s = Server::start_with(FAST, &[]).await;
    let (a, _) = instance(&s, basic()).await;
    let r = post_volume(
        &s,
        json!({"instance_id": a, "type": "ssd", "size": 20, "name": "  데이터  ", "description": "주 디스크"}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let receipt = r.result()[0].clone();
    let v = receipt["block_storage_id"].as_str().unwrap().to_owned();
    assert!(v.starts_with("BS-") && v.len() == 3 + 22, "{v}");
    assert_eq!(receipt, json!({"block_storage_id": v, "instance_id": a, "status": "creating"}));
    // Listed at once, in its transitional status or later.
    let listed = s.get("/v1/block-storages").await;
    assert_eq!(ids_of(listed.ok_rows()), [v.as_str()]);
    let op = done(&s, r).await;
    assert_eq!(
        (op["kind"].as_str(), op["status"].as_str(), op["resource_id"].as_str()),
        (Some("volume.create"), Some("succeeded"), Some(v.as_str()))
    );

    let got = row(&s, &v).await;
    let mut keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["block_storage_id", "created_at", "description", "instance_id", "name", "size", "status", "type", "zone_id"]
    );
    assert_eq!(got["name"], "데이터", "trimmed");
    assert_eq!(got["description"], "주 디스크");
    assert_eq!((got["type"].as_str(), got["size"].as_u64()), (Some("ssd"), Some(20)));
    assert_eq!(
        (got["status"].as_str(), got["instance_id"].as_str(), got["zone_id"].as_str()),
        (Some("in-use"), Some(a.as_str()), Some("KR1-Z01"))
    );
    assert!(got["created_at"].as_str().unwrap().len() == 19, "{got}");
    assert_eq!(
        attached(&s, &a).await,
        [
            json!({"block_storage_id": v, "volume_id": v, "name": "데이터", "size": 20, "type": "ssd", "status": "in-use"})
        ]
    );
    // The default row selection includes block_storage.
    assert_eq!(s.get(&format!("/v1/instances/{a}")).await.ok_rows()[0]["block_storage"].as_array().unwrap().len(), 1);

    let r = detach(&s, &v).await;
    assert_eq!(r.result()[0], json!({"block_storage_id": v, "instance_id": a, "status": "detaching"}));
    let op = done(&s, r).await;
    assert_eq!((op["kind"].as_str(), op["status"].as_str()), (Some("volume.detach"), Some("succeeded")));
    let got = row(&s, &v).await;
    assert_eq!(got["status"], "available");
    assert!(got["instance_id"].is_null());
    assert!(attached(&s, &a).await.is_empty());

    let r = attach(&s, &v, &a).await;
    assert_eq!(r.result()[0], json!({"block_storage_id": v, "instance_id": a, "status": "attaching"}));
    let op = done(&s, r).await;
    assert_eq!((op["kind"].as_str(), op["status"].as_str()), (Some("volume.attach"), Some("succeeded")));
    assert_eq!(row(&s, &v).await["status"], "in-use");
    // Attached volumes cannot be deleted.
    delete(&s, &v).await.assert_error(409, "IN_USE");
    succeeded(&s, detach(&s, &v).await).await;

    let r = delete(&s, &v).await;
    assert_eq!(r.result()[0], json!({"block_storage_id": v, "instance_id": null, "status": "deleting"}));
    let op = done(&s, r).await;
    assert_eq!((op["kind"].as_str(), op["status"].as_str()), (Some("volume.delete"), Some("succeeded")));
    s.get(&format!("/v1/block-storages/{v}")).await.assert_error(404, "NOT_FOUND");
    assert_eq!(s.get("/v1/block-storages").await.json["total"], 0);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM volumes").await, 0);
}

#[tokio::test]
async fn every_operation_from_every_volume_state() {
    // Explicit mode: each hypervisor step waits for the operator, so every status lasts.
    let s = Server::start_with(EXPLICIT, &[]).await;
    let a = instance_explicit(&s, basic()).await;

    // creating (two hypervisor steps: make the volume, attach it)
    let r = post_volume(&s, json!({"instance_id": a, "type": "ssd", "size": 10})).await;
    let v = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
    let op = op_of(&r);
    assert_eq!(row(&s, &v).await["status"], "creating");
    assert_eq!(row(&s, &v).await["instance_id"], a.as_str());
    refuses_everything(&s, &v, &a).await;
    // While one of its volumes is mid-operation, the instance is busy.
    s.call(Method::POST, &format!("/v1/instances/{a}/shutdown"), None)
        .await
        .assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    s.call(Method::DELETE, &format!("/v1/instances/{a}"), None).await.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    step(&s, &op).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(row(&s, &v).await["status"], "creating", "waits for the attach step");
    step(&s, &op).await;
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");

    // in-use
    assert_eq!(row(&s, &v).await["status"], "in-use");
    attach(&s, &v, &a).await.assert_error(409, "IN_USE");
    delete(&s, &v).await.assert_error(409, "IN_USE");

    // detaching
    let op = op_of(&detach(&s, &v).await);
    let got = row(&s, &v).await;
    assert_eq!((got["status"].as_str(), got["instance_id"].as_str()), (Some("detaching"), Some(a.as_str())));
    refuses_everything(&s, &v, &a).await;
    s.call(Method::POST, &format!("/v1/instances/{a}/reboot"), None)
        .await
        .assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    step(&s, &op).await;
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");

    // available
    let got = row(&s, &v).await;
    assert_eq!(got["status"], "available");
    assert!(got["instance_id"].is_null());
    detach(&s, &v).await.assert_error(409, "CHECK_PARAM");

    // attaching
    let op = op_of(&attach(&s, &v, &a).await);
    let got = row(&s, &v).await;
    assert_eq!((got["status"].as_str(), got["instance_id"].as_str()), (Some("attaching"), Some(a.as_str())));
    assert_eq!(attached(&s, &a).await[0]["status"], "attaching");
    refuses_everything(&s, &v, &a).await;
    s.call(Method::DELETE, &format!("/v1/instances/{a}"), None).await.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    step(&s, &op).await;
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
    assert_eq!(row(&s, &v).await["status"], "in-use");

    // deleting
    let op = op_of(&detach(&s, &v).await);
    step(&s, &op).await;
    s.wait_operation(&op).await;
    let op = op_of(&delete(&s, &v).await);
    let got = row(&s, &v).await;
    assert_eq!(got["status"], "deleting");
    assert!(got["instance_id"].is_null());
    refuses_everything(&s, &v, &a).await;
    step(&s, &op).await;
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
    s.get(&format!("/v1/block-storages/{v}")).await.assert_error(404, "NOT_FOUND");
    // Gone volumes: every operation is 404.
    attach(&s, &v, &a).await.assert_error(404, "NOT_FOUND");
    detach(&s, &v).await.assert_error(404, "NOT_FOUND");
    delete(&s, &v).await.assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn every_volume_operation_from_every_instance_state() {
    let s = Server::start_with(EXPLICIT, &[]).await;
    // pending: no volume can be made for, attached to or detached from an instance being created.
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(basic()))).await;
    let a = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let create_op = op_of(&r);
    post_volume(&s, json!({"instance_id": a, "type": "ssd", "size": 10}))
        .await
        .assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    step(&s, &create_op).await;
    step(&s, &create_op).await;
    s.wait_status(&a, "active").await;

    // active: create, attach and detach work.
    let make = |size: u32| {
        let s = &s;
        let a = a.clone();
        async move {
            let r = post_volume(s, json!({"instance_id": a, "type": "sata", "size": size})).await;
            let v = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
            let op = op_of(&r);
            step(s, &op).await;
            step(s, &op).await;
            assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
            v
        }
    };
    let v1 = make(100).await;
    let v2 = make(200).await;
    let op = op_of(&detach(&s, &v2).await);
    step(&s, &op).await;
    s.wait_operation(&op).await;

    // work (a shutdown is running): everything waits.
    let op = op_of(&s.call(Method::POST, &format!("/v1/instances/{a}/shutdown"), None).await);
    post_volume(&s, json!({"instance_id": a, "type": "ssd", "size": 10}))
        .await
        .assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    attach(&s, &v2, &a).await.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    detach(&s, &v1).await.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    step(&s, &op).await;
    s.wait_status(&a, "off").await;

    // off: attach and detach work.
    let op = op_of(&attach(&s, &v2, &a).await);
    step(&s, &op).await;
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
    let op = op_of(&detach(&s, &v2).await);
    step(&s, &op).await;
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");

    // error (a failed start): volumes can be detached, not attached or made.
    s.admin(
        Method::POST,
        "/admin/v1/faults",
        Some(json!({"kind": "instance.start", "step": "power_on", "mode": "once"})),
    )
    .await
    .ok_rows();
    let op = op_of(&s.call(Method::POST, &format!("/v1/instances/{a}/start"), None).await);
    step(&s, &op).await;
    assert_eq!(s.wait_operation(&op).await["status"], "failed");
    s.wait_status(&a, "error").await;
    attach(&s, &v2, &a).await.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    post_volume(&s, json!({"instance_id": a, "type": "ssd", "size": 10}))
        .await
        .assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    let op = op_of(&detach(&s, &v1).await);
    step(&s, &op).await;
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
    assert!(attached(&s, &a).await.is_empty());

    // Deleting (work): the instance is gone for volumes.
    let op = op_of(&s.call(Method::DELETE, &format!("/v1/instances/{a}"), None).await);
    attach(&s, &v1, &a).await.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    step(&s, &op).await;
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
    attach(&s, &v1, &a).await.assert_error(404, "NOT_FOUND");
    post_volume(&s, json!({"instance_id": a, "type": "ssd", "size": 10})).await.assert_error(400, "ID_INVALID");
}

#[tokio::test]
async fn validation_names_the_field_and_makes_nothing() {
    let s = Server::start_with(FAST, &[]).await;
    let (a, _) = instance(&s, basic()).await;
    let ok = json!({"instance_id": a, "type": "ssd", "size": 10});
    let without = |k: &str| {
        let mut b = ok.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    for k in ["instance_id", "type", "size"] {
        let r = post_volume(&s, without(k)).await;
        r.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
        assert!(r.json["message"].as_str().unwrap().contains(&format!("`{k}`")), "{}", r.text);
    }
    for (k, v, code) in [
        ("size", json!("ten"), "CHECK_PARAM"),
        ("size", json!(1.5), "CHECK_PARAM"),
        ("size", json!(9), "CHECK_PARAM"),
        ("size", json!(2001), "CHECK_PARAM"),
        ("size", json!(-10), "CHECK_PARAM"),
        // An unknown type is a value outside the catalog's enum.
        ("type", json!("nvme"), "CHECK_PARAM_ENUM"),
        ("type", json!("SSD"), "CHECK_PARAM_ENUM"),
        ("type", json!(["ssd"]), "CHECK_PARAM"),
        ("instance_id", json!("INSTANCE-nope"), "ID_INVALID"),
        ("name", json!(""), "CHECK_LENGTH"),
        ("name", json!("가".repeat(65)), "CHECK_LENGTH"),
        ("name", json!("a\u{7}b"), "CHECK_PARAM"),
        ("description", json!("d".repeat(256)), "CHECK_LENGTH"),
    ] {
        let r = post_volume(&s, with(ok.clone(), k, v.clone())).await;
        r.assert_error(400, code);
        assert!(r.json["message"].as_str().unwrap().contains(&format!("`{k}`")), "{k}={v}: {}", r.text);
    }
    // sata goes to 20000 GB, ssd to 2000.
    let r = post_volume(&s, json!({"instance_id": a, "type": "sata", "size": 20001})).await;
    r.assert_error(400, "CHECK_PARAM");
    let r = s
        .call(
            Method::POST,
            "/v1/block-storages",
            Some(Body::Raw { content_type: "application/json".into(), bytes: b"{\"size\":".to_vec() }),
        )
        .await;
    r.assert_error(400, "CHECK_PARAM");
    assert_eq!(s.get("/v1/block-storages").await.json["total"], 0, "refused requests make nothing");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM operations WHERE kind LIKE 'volume.%'").await, 0);

    // The bounds are inclusive, and every encoding works.
    let min = post_volume(&s, with(ok.clone(), "size", json!("10"))).await;
    assert_eq!(min.status, 202, "{}", min.text);
    let form = s
        .call(
            Method::POST,
            "/v1/block-storages",
            Some(Body::Form(vec![
                ("instance_id".into(), a.clone()),
                ("type".into(), "ssd".into()),
                ("size".into(), "2000".into()),
                ("name".into(), "폼".into()),
            ])),
        )
        .await;
    assert_eq!(form.status, 202, "{}", form.text);
    let multipart = s
        .call(
            Method::POST,
            "/v1/block-storages",
            Some(Body::Multipart(vec![
                ("instance_id".into(), a.clone()),
                ("type".into(), "sata".into()),
                ("size".into(), "30".into()),
                ("description".into(), "".into()),
            ])),
        )
        .await;
    assert_eq!(multipart.status, 202, "{}", multipart.text);
    for r in [min, form, multipart] {
        succeeded(&s, r).await;
    }
    let rows = s.get("/v1/block-storages").await.ok_rows().clone();
    let sizes: Vec<u64> = rows.iter().map(|r| r["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [10, 2000, 30], "creation order");
    assert_eq!(rows[1]["name"], "폼");
    assert!(rows[2]["description"].is_null(), "an empty description is none");
    assert!(rows[0]["name"].as_str().unwrap().starts_with("volume-"), "a default name: {}", rows[0]);
}

#[tokio::test]
async fn list_filters_and_pagination() {
    let s = Server::start_with(FAST, &[]).await;
    let (a, _) = instance(&s, basic()).await;
    let (b, _) = instance(&s, with(basic(), "zone_id", json!("KR1-Z02"))).await;
    let v1 = volume(&s, &a, 10).await;
    let r = post_volume(&s, json!({"instance_id": b, "type": "sata", "size": 50, "name": "Backup Disk"})).await;
    let v2 = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
    succeeded(&s, r).await;
    let v3 = volume(&s, &a, 20).await;
    succeeded(&s, detach(&s, &v3).await).await;
    let ids = |r: Resp| ids_of(r.ok_rows());
    assert_eq!(ids(s.get("/v1/block-storages").await), [v1.clone(), v2.clone(), v3.clone()]);
    assert_eq!(ids(s.get("/v1/block-storages?zone_id=KR1-Z02").await), [v2.as_str()]);
    assert_eq!(ids(s.get("/v1/block-storages?type=ssd").await), [v1.clone(), v3.clone()]);
    assert_eq!(ids(s.get("/v1/block-storages?name=backup").await), [v2.as_str()]);
    assert_eq!(ids(s.get(&format!("/v1/block-storages?instance_id={a}")).await), [v1.as_str()]);
    assert_eq!(ids(s.get("/v1/block-storages?instance_id=INSTANCE-nope").await), Vec::<String>::new());
    let p = s.get("/v1/block-storages?page_no=2&page_size=2").await;
    assert_eq!(
        (p.json["page_no"].as_u64(), p.json["page_size"].as_u64(), p.json["total"].as_u64(), p.json["count"].as_u64()),
        (Some(2), Some(2), Some(3), Some(1))
    );
    assert_eq!(ids(p), [v3.as_str()]);
    assert!(s.get("/v1/block-storages?page_no=3&page_size=2").await.ok_rows().is_empty());
    s.get("/v1/block-storages?zone_id=KR9-Z99").await.assert_error(400, "ID_INVALID");
    s.get("/v1/block-storages?type=nvme").await.assert_error(400, "CHECK_PARAM_ENUM");
    s.get("/v1/block-storages?page_size=0").await.assert_error(400, "CHECK_PARAM");
    s.get("/v1/block-storages?page_size=101").await.assert_error(400, "CHECK_PARAM");
    s.get("/v1/block-storages?page_no=x").await.assert_error(400, "CHECK_PARAM");
    s.get("/v1/block-storages/BS-nope").await.assert_error(404, "NOT_FOUND");
    // The type catalog route is not a volume.
    assert_eq!(s.get("/v1/block-storages/types").await.ok_rows().len(), 2);
}

#[tokio::test]
async fn zones_must_match() {
    let s = Server::start_with(FAST, &[]).await;
    let (a, _) = instance(&s, basic()).await;
    let (b, _) = instance(&s, with(basic(), "zone_id", json!("KR1-Z02"))).await;
    let v = volume(&s, &a, 10).await;
    assert_eq!(row(&s, &v).await["zone_id"], "KR1-Z01", "made in the instance's zone");
    succeeded(&s, detach(&s, &v).await).await;
    let r = attach(&s, &v, &b).await;
    r.assert_error(400, "UNAVAILABLE_COMBINATION");
    assert!(r.json["message"].as_str().unwrap().contains("KR1-Z02"), "{}", r.text);
    assert_eq!(row(&s, &v).await["status"], "available");
    succeeded(&s, attach(&s, &v, &a).await).await;
}

#[tokio::test]
async fn the_storage_quota_holds() {
    let s = Server::start_with(FAST, &[]).await;
    let (a, _) = instance(&s, basic()).await;
    // Exactly the quota (4000 GB) fits.
    let r = post_volume(&s, json!({"instance_id": a, "type": "sata", "size": 4000})).await;
    let big = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
    succeeded(&s, r).await;
    post_volume(&s, json!({"instance_id": a, "type": "ssd", "size": 10})).await.assert_error(403, "LIMIT_EXCEEDED");
    let with_volume = with(basic(), "block_storage", json!([{"size": 10}]));
    s.call(Method::POST, "/v1/instances", Some(Body::Json(with_volume.clone())))
        .await
        .assert_error(403, "LIMIT_EXCEEDED");
    assert_eq!(s.get("/v1/instances").await.json["total"], 1, "a refused instance create makes nothing");
    assert_eq!(s.get("/v1/block-storages").await.json["total"], 1);
    // Detaching keeps the volume, and its size counts; deleting frees it.
    succeeded(&s, detach(&s, &big).await).await;
    post_volume(&s, json!({"instance_id": a, "type": "ssd", "size": 10})).await.assert_error(403, "LIMIT_EXCEEDED");
    succeeded(&s, delete(&s, &big).await).await;
    instance(&s, with_volume).await;
    // Volumes made with several instances count together: 2 × 2001 > 4000.
    let mut two = with(basic(), "block_storage", json!([{"size": 2001, "type": "sata"}]));
    two["count"] = json!(2);
    s.call(Method::POST, "/v1/instances", Some(Body::Json(two))).await.assert_error(403, "LIMIT_EXCEEDED");
    assert_eq!(s.get("/v1/instances").await.json["total"], 2);
    assert_eq!(s.get("/v1/block-storages").await.json["total"], 1);
    // The operator may lower an account's quota.
    s.admin(Method::PUT, "/admin/v1/accounts/dev/quota", Some(json!({"block_storage_gb": 50}))).await.ok_rows();
    succeeded(&s, post_volume(&s, json!({"instance_id": a, "type": "ssd", "size": 40})).await).await;
    post_volume(&s, json!({"instance_id": a, "type": "ssd", "size": 10})).await.assert_error(403, "LIMIT_EXCEEDED");
}

#[tokio::test]
async fn an_instance_has_at_most_eight_volumes() {
    let s = Server::start_with(FAST, &[]).await;
    let eight: Vec<Value> = (0..8).map(|n| json!({"size": 10 + n})).collect();
    let (a, receipt) = instance(&s, with(basic(), "block_storage", json!(eight))).await;
    let made: Vec<String> =
        receipt["block_storage"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert_eq!(made.len(), 8);
    let list = attached(&s, &a).await;
    assert_eq!(ids_of(&list), made, "in the order asked for");
    assert!(list.iter().all(|v| v["status"] == "in-use"));
    assert_eq!(
        s.get(&format!("/v1/instances/{a}?fields=32768")).await.ok_rows()[0]["connection_limit"]["block_storage"],
        8
    );
    post_volume(&s, json!({"instance_id": a, "type": "ssd", "size": 10})).await.assert_error(403, "LIMIT_EXCEEDED");
    let (b, _) = instance(&s, basic()).await;
    let spare = volume(&s, &b, 10).await;
    let spare2 = volume(&s, &b, 10).await;
    succeeded(&s, detach(&s, &spare).await).await;
    succeeded(&s, detach(&s, &spare2).await).await;
    attach(&s, &spare, &a).await.assert_error(403, "LIMIT_EXCEEDED");
    let nine: Vec<Value> = (0..9).map(|_| json!({"size": 10})).collect();
    s.call(Method::POST, "/v1/instances", Some(Body::Json(with(basic(), "block_storage", json!(nine)))))
        .await
        .assert_error(403, "LIMIT_EXCEEDED");
    // With one slot free, two concurrent attaches: exactly one is accepted.
    succeeded(&s, detach(&s, &made[0]).await).await;
    let (r1, r2) = tokio::join!(attach(&s, &spare, &a), attach(&s, &spare2, &a));
    let mut statuses = [r1.status, r2.status];
    statuses.sort();
    assert_eq!(statuses, [202, 403], "{} / {}", r1.text, r2.text);
    for r in [r1, r2] {
        if r.status == 202 {
            succeeded(&s, r).await;
        } else {
            r.assert_error(403, "LIMIT_EXCEEDED");
        }
    }
    assert_eq!(attached(&s, &a).await.len(), 8);
}

#[tokio::test]
async fn another_accounts_volumes_and_instances_do_not_exist() {
    let s = Server::start_with(FAST, &[]).await;
    let (a, _) = instance(&s, basic()).await;
    let v = volume(&s, &a, 10).await;
    let (k, sk) = s.new_account("other", json!({"rate_limit": 0})).await;
    let other = |m: Method, p: String, b: Option<Value>| {
        let (k, sk) = (k.clone(), sk.clone());
        let s = &s;
        async move { s.call_as(&k, &sk, m, &p, b.map(Body::Json)).await }
    };
    let r = other(Method::GET, "/v1/block-storages".into(), None).await;
    assert!(r.ok_rows().is_empty());
    assert_eq!(r.json["total"], 0);
    assert!(other(Method::GET, format!("/v1/block-storages?instance_id={a}"), None).await.ok_rows().is_empty());
    other(Method::GET, format!("/v1/block-storages/{v}"), None).await.assert_error(404, "NOT_FOUND");
    other(Method::DELETE, format!("/v1/block-storages/{v}"), None).await.assert_error(404, "NOT_FOUND");
    other(Method::POST, format!("/v1/block-storages/{v}/detach"), None).await.assert_error(404, "NOT_FOUND");
    other(Method::POST, format!("/v1/block-storages/{v}/attach/{a}"), None).await.assert_error(404, "NOT_FOUND");
    // Another account's instance, named in the body, is unknown like any unknown id.
    let r =
        other(Method::POST, "/v1/block-storages".into(), Some(json!({"instance_id": a, "type": "ssd", "size": 10})))
            .await;
    r.assert_error(400, "ID_INVALID");
    // The other account's own instance and volume cannot reach ours either.
    let r =
        other(Method::POST, "/v1/instances".into(), Some(with(basic(), "block_storage", json!([{"size": 10}])))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let theirs = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let their_volume = r.result()[0]["block_storage"][0].as_str().unwrap().to_owned();
    let wait_theirs = |op: String| {
        let other = &other;
        async move {
            for _ in 0..600 {
                let r = other(Method::GET, format!("/v1/operations/{op}"), None).await;
                if r.ok_rows()[0]["status"] != "running" {
                    assert_eq!(r.ok_rows()[0]["status"], "succeeded", "{}", r.text);
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("operation {op} still running");
        }
    };
    let op = op_of(&r);
    // Their operation is not ours to see.
    s.get(&format!("/v1/operations/{op}")).await.assert_error(404, "NOT_FOUND");
    wait_theirs(op).await;
    let r = other(Method::POST, format!("/v1/block-storages/{their_volume}/detach"), None).await;
    wait_theirs(op_of(&r)).await;
    succeeded(&s, detach(&s, &v).await).await;
    attach(&s, &v, &theirs).await.assert_error(404, "NOT_FOUND");
    attach(&s, &their_volume, &a).await.assert_error(404, "NOT_FOUND");
    other(Method::POST, format!("/v1/block-storages/{their_volume}/attach/{a}"), None)
        .await
        .assert_error(404, "NOT_FOUND");
    // Each sees only its own.
    assert_eq!(ids_of(s.get("/v1/block-storages").await.ok_rows()), [v.as_str()]);
    assert_eq!(ids_of(other(Method::GET, "/v1/block-storages".into(), None).await.ok_rows()), [their_volume]);
    assert_eq!(row(&s, &v).await["status"], "available");
}

#[tokio::test]
async fn volumes_made_with_an_instance_in_every_encoding() {
    let s = Server::start_with(FAST, &[]).await;
    // JSON arrays.
    let body = with(basic(), "block_storage", json!([{"size": 20}, {"size": "30", "type": "sata", "name": "logs"}]));
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let receipt = r.result()[0].clone();
    let a = receipt["instance_id"].as_str().unwrap().to_owned();
    let made: Vec<String> =
        receipt["block_storage"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert_eq!(made.len(), 2);
    assert!(made.iter().all(|v| v.starts_with("BS-")));
    // Listed at once, being made, attached to the new instance.
    let rows = s.get(&format!("/v1/block-storages?instance_id={a}")).await.ok_rows().clone();
    assert_eq!(ids_of(&rows), made);
    assert!(rows.iter().all(|v| v["status"] == "creating" || v["status"] == "in-use"), "{rows:?}");
    s.wait_status(&a, "active").await;
    let list = attached(&s, &a).await;
    assert_eq!(list[0]["type"], "ssd", "the default type");
    assert_eq!(list[0]["size"], 20);
    assert!(list[0]["name"].as_str().unwrap().starts_with("volume-"));
    assert_eq!(
        list[1],
        json!({"block_storage_id": made[1], "volume_id": made[1], "name": "logs", "size": 30, "type": "sata", "status": "in-use"})
    );
    assert_eq!(row(&s, &made[1]).await["zone_id"], "KR1-Z01");

    // Form keys `block_storage.N.field`, url-encoded and multipart.
    let mut pairs: Vec<(String, String)> =
        basic().as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
    pairs.extend([
        ("block_storage.0.size".into(), "15".into()),
        ("block_storage.0.name".into(), "폼 디스크".into()),
        ("block_storage.1.size".into(), "25".into()),
        ("block_storage.1.type".into(), "sata".into()),
    ]);
    for body in [Body::Form(pairs.clone()), Body::Multipart(pairs.clone())] {
        let r = s.call(Method::POST, "/v1/instances", Some(body)).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
        assert_eq!(r.result()[0]["block_storage"].as_array().unwrap().len(), 2);
        s.wait_status(&id, "active").await;
        let list = attached(&s, &id).await;
        assert_eq!(
            (list[0]["name"].as_str(), list[0]["size"].as_u64(), list[0]["type"].as_str()),
            (Some("폼 디스크"), Some(15), Some("ssd"))
        );
        assert_eq!((list[1]["size"].as_u64(), list[1]["type"].as_str()), (Some(25), Some("sata")));
    }

    // count > 1: each instance gets its own volumes.
    let mut batch = with(basic(), "block_storage", json!([{"size": 10}]));
    batch["count"] = json!(2);
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(batch))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let rows = r.result().clone();
    assert_ne!(rows[0]["block_storage"], rows[1]["block_storage"]);
    for x in &rows {
        let id = x["instance_id"].as_str().unwrap();
        s.wait_status(id, "active").await;
        assert_eq!(json!(ids_of(&attached(&s, id).await)), x["block_storage"]);
    }
    assert_eq!(s.get("/v1/block-storages").await.json["total"], 2 + 2 + 2 + 2);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM volumes WHERE status <> 'in-use'").await, 0);
}

#[tokio::test]
async fn volumes_asked_for_with_an_instance_are_validated_first() {
    let s = Server::start_with(FAST, &[]).await;
    let bs = |v: Value| with(basic(), "block_storage", v);
    for (body, status, code, field) in [
        (bs(json!([{"name": "x"}])), 400, "REQUIRED_POST_PARAM_MISSING", "block_storage.0.size"),
        (bs(json!([{"size": 10}, {"size": 5}])), 400, "CHECK_PARAM", "block_storage.1.size"),
        (bs(json!([{"size": 2001}])), 400, "CHECK_PARAM", "block_storage.0.size"),
        (bs(json!([{"size": "many"}])), 400, "CHECK_PARAM", "block_storage.0.size"),
        (bs(json!([{"size": 10, "type": "nvme"}])), 400, "CHECK_PARAM_ENUM", "block_storage.0.type"),
        (bs(json!([{"size": 10, "name": ""}])), 400, "CHECK_LENGTH", "block_storage.0.name"),
        (bs(json!([{"size": 10, "name": "n".repeat(65)}])), 400, "CHECK_LENGTH", "block_storage.0.name"),
        (bs(json!([7])), 400, "CHECK_PARAM", "block_storage.0"),
        (bs(json!("lots")), 400, "CHECK_PARAM", "block_storage"),
        (bs(json!({"size": 10})), 400, "CHECK_PARAM", "block_storage"),
        (bs(json!((0..9).map(|_| json!({"size": 10})).collect::<Vec<_>>())), 403, "LIMIT_EXCEEDED", "block_storage"),
    ] {
        let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body.clone()))).await;
        r.assert_error(status, code);
        assert!(r.json["message"].as_str().unwrap().contains(&format!("`{field}")), "{body}: {}", r.text);
    }
    let mut pairs: Vec<(String, String)> =
        basic().as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
    pairs.push(("block_storage.0.size".into(), "abc".into()));
    s.call(Method::POST, "/v1/instances", Some(Body::Form(pairs))).await.assert_error(400, "CHECK_PARAM");
    assert_eq!(s.get("/v1/instances").await.json["total"], 0);
    assert_eq!(s.get("/v1/block-storages").await.json["total"], 0);
    // An empty list asks for nothing.
    let (a, receipt) = instance(&s, bs(json!([]))).await;
    assert_eq!(receipt["block_storage"], json!([]));
    assert!(attached(&s, &a).await.is_empty());
}

#[tokio::test]
async fn deleting_an_instance_keeps_its_volumes() {
    let s = Server::start_with(FAST, &[]).await;
    let (a, receipt) = instance(
        &s,
        with(basic(), "block_storage", json!([{"size": 10, "name": "os-data"}, {"size": 40, "type": "sata"}])),
    )
    .await;
    let extra = volume(&s, &a, 30).await;
    let (b, _) = instance(&s, basic()).await;
    let loose = volume(&s, &b, 10).await;
    succeeded(&s, detach(&s, &loose).await).await;
    let mut kept: Vec<String> =
        receipt["block_storage"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    kept.push(extra.clone());
    let before: Vec<Value> = {
        let mut out = Vec::new();
        for v in &kept {
            out.push(row(&s, v).await);
        }
        out
    };
    let r = s.call(Method::DELETE, &format!("/v1/instances/{a}"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.result()[0]["status"], "deleting");
    assert_eq!(r.result()[0]["block_storage"], json!(kept), "the receipt names the volumes kept");
    // While the delete runs, the volumes are being detached.
    succeeded(&s, r).await;
    s.get(&format!("/v1/instances/{a}")).await.assert_error(404, "NOT_FOUND");
    for (v, old) in kept.iter().zip(&before) {
        let now = row(&s, v).await;
        assert_eq!(now["status"], "available", "{now}");
        assert!(now["instance_id"].is_null());
        for k in ["name", "size", "type", "zone_id", "created_at", "description"] {
            assert_eq!(now[k], old[k], "{k} is kept");
        }
    }
    assert_eq!(row(&s, &loose).await["status"], "available", "other volumes are untouched");
    // A kept volume can be attached elsewhere, and deleted.
    succeeded(&s, attach(&s, &kept[0], &b).await).await;
    assert_eq!(ids_of(&attached(&s, &b).await), [kept[0].as_str()]);
    // Deleting an instance without volumes answers an empty list.
    let (c, _) = instance(&s, basic()).await;
    let r = s.call(Method::DELETE, &format!("/v1/instances/{c}"), None).await;
    assert_eq!(r.result()[0]["block_storage"], json!([]));
    succeeded(&s, r).await;
    for v in kept.iter().skip(1).chain([&loose]) {
        succeeded(&s, delete(&s, v).await).await;
    }
    assert_eq!(s.get("/v1/block-storages").await.json["total"], 1);
}

#[tokio::test]
async fn failed_volume_operations_can_be_retried() {
    let s = Server::start_with(FAST, &[]).await;
    let (a, _) = instance(&s, basic()).await;
    let v = volume(&s, &a, 10).await;
    let fault = |kind: &str, step: &str| {
        let body = json!({"kind": kind, "step": step, "mode": "once"});
        let s = &s;
        async move {
            s.admin(Method::POST, "/admin/v1/faults", Some(body)).await.ok_rows();
        }
    };
    // A failed detach leaves the volume attached, in error: it can be detached again, not
    // attached or deleted.
    fault("volume.detach", "detach").await;
    let op = done(&s, detach(&s, &v).await).await;
    assert_eq!(op["status"], "failed");
    assert!(op["error"].as_str().unwrap().contains("detach"), "{op}");
    let got = row(&s, &v).await;
    assert_eq!((got["status"].as_str(), got["instance_id"].as_str()), (Some("error"), Some(a.as_str())));
    assert_eq!(attached(&s, &a).await[0]["status"], "error");
    attach(&s, &v, &a).await.assert_error(409, "IN_USE");
    delete(&s, &v).await.assert_error(409, "IN_USE");
    succeeded(&s, detach(&s, &v).await).await;
    assert_eq!(row(&s, &v).await["status"], "available");
    // A failed attach leaves it detached, in error: it can be attached or deleted, not detached.
    fault("volume.attach", "settle").await;
    assert_eq!(done(&s, attach(&s, &v, &a).await).await["status"], "failed");
    let got = row(&s, &v).await;
    assert_eq!(got["status"], "error");
    assert!(got["instance_id"].is_null(), "{got}");
    assert!(attached(&s, &a).await.is_empty());
    detach(&s, &v).await.assert_error(409, "CHECK_PARAM");
    succeeded(&s, attach(&s, &v, &a).await).await;
    succeeded(&s, detach(&s, &v).await).await;
    // A failed delete leaves it in error; deleting again finishes.
    fault("volume.delete", "delete_volume").await;
    assert_eq!(done(&s, delete(&s, &v).await).await["status"], "failed");
    assert_eq!(row(&s, &v).await["status"], "error");
    succeeded(&s, delete(&s, &v).await).await;
    s.get(&format!("/v1/block-storages/{v}")).await.assert_error(404, "NOT_FOUND");
    // A failed create leaves nothing.
    fault("volume.create", "attach").await;
    let r = post_volume(&s, json!({"instance_id": a, "type": "ssd", "size": 10})).await;
    let v = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
    assert_eq!(done(&s, r).await["status"], "failed");
    s.get(&format!("/v1/block-storages/{v}")).await.assert_error(404, "NOT_FOUND");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM volumes").await, 0);
    assert_eq!(s.get(&format!("/v1/instances/{a}")).await.ok_rows()[0]["status"], "active");
}

/// Each page of the instance list shows its instances' volumes, whichever end the page is read
/// from (a filtered list past the middle is read from the far end, its related rows for the
/// page's rows alone) and whatever the rows an `OFFSET` skips hold.
#[tokio::test]
async fn every_list_page_shows_its_instances_volumes() {
    let s = Server::start_with(FAST, &[]).await;
    let mut instances = Vec::new();
    for _ in 0..5 {
        instances.push(instance(&s, basic()).await.0);
    }
    let first = volume(&s, &instances[0], 10).await;
    let (fourth_a, fourth_b) = (volume(&s, &instances[3], 10).await, volume(&s, &instances[3], 20).await);
    let fifth = volume(&s, &instances[4], 10).await;
    let expected = [vec![first], vec![], vec![], vec![fourth_a, fourth_b], vec![fifth]];
    for filter in ["", "&status=active"] {
        for (page, (id, volumes)) in instances.iter().zip(&expected).enumerate() {
            let rows = s.get(&format!("/v1/instances?page_size=1&page_no={}&fields=8193{filter}", page + 1)).await;
            let rows = rows.ok_rows();
            assert_eq!(rows.len(), 1, "page {} of {filter:?}", page + 1);
            assert_eq!(rows[0]["instance_id"], id.as_str(), "page {} of {filter:?}", page + 1);
            let shown = ids_of(rows[0]["block_storage"].as_array().unwrap());
            assert_eq!(&shown, volumes, "page {} of {filter:?}", page + 1);
            assert_eq!(ids_of(&attached(&s, id).await), shown, "the detail agrees");
        }
    }
}
