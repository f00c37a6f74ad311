//! Every operation from every state (spec §7's state table), and large lists.

use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};

fn basic() -> Value {
    json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "state"})
}

const OPS: &[&str] = &["start", "shutdown", "reboot", "rebuild", "resize", "delete", "console", "edit"];

async fn request(s: &Server, id: &str, op: &str) -> Resp {
    match op {
        "delete" => s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await,
        "console" => s.get(&format!("/v1/instances/{id}/remote-console")).await,
        "edit" => {
            s.call(Method::PUT, &format!("/v1/instances/{id}"), Some(Body::Json(json!({"description": "d"})))).await
        }
        "resize" => {
            s.call(
                Method::POST,
                &format!("/v1/instances/{id}/resize"),
                Some(Body::Json(json!({"flavor_id": "ss1.c2m4"}))),
            )
            .await
        }
        other => s.call(Method::POST, &format!("/v1/instances/{id}/{other}"), Some(Body::Json(json!({})))).await,
    }
}

/// Steps an operation (explicit mode) until it ends.
async fn finish(s: &Server, op: &str) -> Value {
    for _ in 0..20 {
        let r = s.get(&format!("/v1/operations/{op}")).await;
        if r.ok_rows()[0]["status"] != "running" {
            return r.ok_rows()[0].clone();
        }
        s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    s.wait_operation(op).await
}

/// An instance in `state`; for `pending` and `work` also the operation holding it there.
async fn instance_in(s: &Server, state: &str) -> (String, Option<String>) {
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(basic()))).await;
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let op = r.header("x-operation-id").unwrap().to_owned();
    if state == "pending" {
        return (id, Some(op));
    }
    finish(s, &op).await;
    let run = |action: &'static str| {
        let id = id.clone();
        async move {
            let r = request(s, &id, action).await;
            assert_eq!(r.status, 202, "{action}: {}", r.text);
            r.header("x-operation-id").unwrap().to_owned()
        }
    };
    match state {
        "active" => (id, None),
        "off" => {
            let op = run("shutdown").await;
            finish(s, &op).await;
            (id, None)
        }
        "error" => {
            s.admin(
                Method::POST,
                "/admin/v1/faults",
                Some(json!({"kind": "instance.reboot", "step": "reboot", "mode": "once"})),
            )
            .await
            .ok_rows();
            let op = run("reboot").await;
            assert_eq!(finish(s, &op).await["status"], "failed");
            (id, None)
        }
        "work" => {
            let op = run("reboot").await;
            (id, Some(op))
        }
        _ => unreachable!(),
    }
}

/// What spec §7 says happens: Ok(final status) or Err((http, error_code)).
fn expected(state: &str, op: &str) -> Result<&'static str, (u16, &'static str)> {
    let busy = Err((409, "DELETED_OR_WORKING_INSTANCE"));
    let wrong = Err((409, "CHECK_PARAM"));
    match (state, op) {
        ("pending" | "work", "edit") => Ok("edited"),
        ("pending" | "work", "console") => Err((409, "CHECK_CONSOLE")),
        ("pending" | "work", _) => busy,
        (_, "edit") => Ok("edited"),
        ("active", "console") => Ok("console"),
        (_, "console") => Err((409, "CHECK_CONSOLE")),
        (_, "delete") => Ok("gone"),
        ("off" | "error", "start") => Ok("active"),
        (_, "start") => wrong,
        ("active", "shutdown") => Ok("off"),
        (_, "shutdown") => wrong,
        ("active", "reboot") => Ok("active"),
        (_, "reboot") => wrong,
        ("active", "rebuild" | "resize") => Ok("active"),
        ("off", "rebuild" | "resize") => Ok("off"),
        (_, "rebuild" | "resize") => wrong,
        _ => unreachable!("{state} {op}"),
    }
}

#[tokio::test]
async fn every_operation_from_every_state() {
    let s = Server::start_with(&["--sim-mode", "explicit", "--default-rate-limit", "0"], &[]).await;
    s.admin(Method::PUT, "/admin/v1/accounts/dev/quota", Some(json!({"instances": 100, "vcpu": 200}))).await.ok_rows();
    for state in ["pending", "active", "off", "work", "error"] {
        for op in OPS {
            let (id, holder) = instance_in(&s, state).await;
            let before = s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["status"].clone();
            assert_eq!(before, state, "setup of {state}");
            let r = request(&s, &id, op).await;
            match expected(state, op) {
                Err((status, code)) => {
                    r.assert_error(status, code);
                    let after = s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["status"].clone();
                    assert_eq!(after, state, "{op} from {state} must change nothing");
                }
                Ok("edited") => assert_eq!(r.ok_rows()[0]["description"], "d", "{op} from {state}"),
                Ok("console") => assert!(r.ok_rows()[0]["link"].is_string()),
                Ok(end) => {
                    assert_eq!(r.status, 202, "{op} from {state}: {}", r.text);
                    let op_id = r.header("x-operation-id").unwrap().to_owned();
                    assert_eq!(finish(&s, &op_id).await["status"], "succeeded", "{op} from {state}");
                    let after = s.get(&format!("/v1/instances/{id}")).await;
                    if end == "gone" {
                        after.assert_error(404, "NOT_FOUND");
                    } else {
                        assert_eq!(after.ok_rows()[0]["status"], end, "{op} from {state}");
                    }
                }
            }
            if let Some(holder) = holder {
                finish(&s, &holder).await;
            }
        }
    }
}

#[tokio::test]
async fn a_thousand_instances_list_filter_and_paginate() {
    let s = Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await;
    s.admin(Method::PUT, "/admin/v1/accounts/dev/quota", Some(json!({"instances": 1000, "vcpu": 1000})))
        .await
        .ok_rows();
    let mut created = Vec::new();
    for batch in 0..100 {
        let mut b = basic();
        b["count"] = json!(10);
        b["name"] = json!(format!("b{batch:02}"));
        if batch % 4 == 0 {
            b["zone_id"] = json!("KR1-Z02");
        }
        let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(b))).await;
        assert_eq!(r.status, 202, "{}", r.text);
        created.extend(r.result().iter().map(|x| x["instance_id"].as_str().unwrap().to_owned()));
    }
    let mut b = basic();
    b["count"] = json!(1);
    s.call(Method::POST, "/v1/instances", Some(Body::Json(b))).await.assert_error(403, "LIMIT_EXCEEDED");
    for _ in 0..600 {
        if s.get("/v1/instances?status=pending,work&page_size=1").await.json["total"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut seen = Vec::new();
    for page in 1..=10 {
        let r = s.get(&format!("/v1/instances?page_no={page}&page_size=100&fields=9")).await;
        assert_eq!(r.json["total"], 1000);
        assert_eq!(r.json["count"], 100);
        for row in r.ok_rows() {
            assert_eq!(row["status"], "active");
            seen.push(row["instance_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, created, "every instance once, in creation order");
    assert!(s.get("/v1/instances?page_no=11&page_size=100").await.ok_rows().is_empty());
    let last = s.get("/v1/instances?page_no=100&page_size=10&fields=1").await;
    let ids: Vec<_> = last.ok_rows().iter().map(|r| r["instance_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, created[990..].to_vec(), "the last page read from the far end is in order");
    let mid = s.get("/v1/instances?page_no=51&page_size=10&fields=1").await;
    let ids: Vec<_> = mid.ok_rows().iter().map(|r| r["instance_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, created[500..510].to_vec());
    assert_eq!(s.get("/v1/instances?zone_id=KR1-Z02&page_size=1").await.json["total"], 250);
    assert_eq!(s.get("/v1/instances?name=b07-&page_size=100").await.json["total"], 10);
    assert_eq!(s.get("/v1/instances?ip=198.19.0.0/16&page_size=1").await.json["total"], 250);
    assert_eq!(s.get("/v1/instances?status=off&page_size=1").await.json["total"], 0);
    // Each bit selects exactly its field.
    let table = s.raw(Method::GET, "/fields/v1/instances", &[("Accept".into(), "application/json".into())], None).await;
    for f in table.ok_rows() {
        let bit = f["bit"].as_u64().unwrap();
        let r = s.get(&format!("/v1/instances?page_size=3&fields={bit}")).await;
        for row in r.ok_rows() {
            let keys: Vec<_> = row.as_object().unwrap().keys().cloned().collect();
            assert_eq!(keys, [f["field"].as_str().unwrap().to_owned()], "bit {bit}");
        }
    }
    let r = s.get("/v1/instances?page_size=1&fields=262143").await;
    assert_eq!(r.ok_rows()[0].as_object().unwrap().len(), 18);
}
