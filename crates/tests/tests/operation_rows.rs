//! Operation rows already in databases keep working: rows as the server wrote them before the
//! operations had typed contracts (params as JSON maps built by hand, progress as the index of
//! the next step) are loaded by the binary and run to completion. The params below are literal
//! JSON of that code, and differ from what each request asked for, so that the result shows the
//! operation read them.

use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};

async fn send(s: &Server, method: Method, path: &str, body: Value) -> Resp {
    let r = s.call(method, path, Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{path}: {}", r.text);
    r
}

fn operation(r: &Resp) -> String {
    r.header("x-operation-id").expect("X-Operation-Id").to_owned()
}

fn new_instance(name: &str) -> Value {
    json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": name})
}

/// Grants the paced steps of `op` (explicit mode holds each one until granted).
async fn step(s: &Server, op: &str, times: usize) {
    for _ in 0..times {
        s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
    }
}

async fn active(s: &Server, name: &str) -> String {
    let r = send(s, Method::POST, "/v1/instances", new_instance(name)).await;
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    step(s, &operation(&r), 2).await;
    s.wait_status(&id, "active").await;
    id
}

async fn view(s: &Server, id: &str) -> Value {
    s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0].clone()
}

async fn attached(s: &Server, firewall: &str) -> Vec<String> {
    let rows = s.get(&format!("/v1/security-groups/{firewall}/instances")).await.ok_rows().clone();
    rows.iter().map(|r| r.as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn rows_written_before_typed_operations_run_to_completion() {
    let mut s = Server::start_with(&["--sim-mode", "explicit", "--default-rate-limit", "0"], &[]).await;
    let (resized, rebuilt, guarded) =
        (active(&s, "resized").await, active(&s, "rebuilt").await, active(&s, "guarded").await);
    let mut firewalls = Vec::new();
    for title in ["legacy-create", "legacy-attach"] {
        let r = s
            .call(Method::POST, "/v1/security-groups", Some(Body::Json(json!({"title": title, "content": "legacy"}))))
            .await;
        firewalls.push(r.ok_rows()[0]["firewall_id"].as_str().unwrap().to_owned());
    }
    let (fw_create, fw_attach) = (&firewalls[0], &firewalls[1]);

    // Operations as requests start them; explicit mode holds each at its first hypervisor step.
    let without_public = |name: &str| {
        let mut body = new_instance(name);
        body["attach_public_ip"] = json!(false);
        body
    };
    let create = send(&s, Method::POST, "/v1/instances", without_public("created")).await;
    let created = create.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let older = send(&s, Method::POST, "/v1/instances", without_public("older")).await;
    let older_id = older.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let resize =
        send(&s, Method::POST, &format!("/v1/instances/{resized}/resize"), json!({"flavor_id": "ss1.c2m4"})).await;
    let rebuild = send(&s, Method::POST, &format!("/v1/instances/{rebuilt}/rebuild"), json!({})).await;
    let attach =
        send(&s, Method::POST, &format!("/v1/security-groups/{fw_attach}/attach"), json!({"instance_id": guarded}))
            .await;
    let ops = [&create, &older, &resize, &rebuild, &attach].map(operation);
    s.kill9().await;

    // The rows as the untyped code wrote them: its params, progress at the first step.
    let pool = s.db().await;
    let sealed: (String,) = sqlx::query_as(&format!("SELECT params FROM operations WHERE operation_id = '{}'", ops[3]))
        .fetch_one(&pool)
        .await
        .unwrap();
    let sealed: Value = serde_json::from_str(&sealed.0).unwrap();
    let sealed = sealed["password_sealed"].as_str().expect("the rebuild's sealed password").to_owned();
    let rows = [
        // `POST /v1/instances`: the deprecated `security_group`, the volume hint, the address inputs
        // (the request asked for no public address and no firewall).
        format!(r#"{{"security_group":"{fw_create}","no_volumes":true,"zone_id":"KR1-Z01","attach_public_ip":true}}"#),
        // A create written before the hints: the steps read the instance and look for volumes.
        "{}".to_owned(),
        // The request asked for ss1.c2m4.
        r#"{"flavor_id":"ss1.c4m8"}"#.to_owned(),
        // The request asked for the current image.
        format!(r#"{{"image_id":"IMG-debian-12","password_sealed":"{sealed}"}}"#),
        format!(r#"{{"instance_id":"{guarded}","changed":true}}"#),
    ];
    for (op, params) in ops.iter().zip(&rows) {
        let r = sqlx::query(&format!(
            "UPDATE operations SET params = '{params}', step = 0, undoing = 0, attempts = 0, status = 'running' \
             WHERE operation_id = '{op}'"
        ))
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(r.rows_affected(), 1, "{op}");
    }
    pool.close().await;

    s.restart().await;
    for (op, paced) in ops.iter().zip([2, 2, 1, 1, 1]) {
        step(&s, op, paced).await;
        assert_eq!(s.wait_operation(op).await["status"], "succeeded", "{op}");
    }

    let made = view(&s, &created).await;
    assert_eq!(made["status"], "active", "{made}");
    assert_eq!(made["ip"][0]["public"]["attached"], true, "the row's attach_public_ip was read: {made}");
    assert!(made["ip"][0]["private"]["address"].is_string(), "{made}");
    assert_eq!(attached(&s, fw_create).await, vec![created.as_str()], "the row's security_group was attached");
    let made = view(&s, &older_id).await;
    assert_eq!(made["status"], "active", "{made}");
    assert_eq!(made["ip"][0]["public"]["attached"], false, "read from the instance: {made}");
    assert_eq!(view(&s, &resized).await["flavor"]["flavor_id"], "ss1.c4m8");
    assert_eq!(view(&s, &rebuilt).await["image"]["image_id"], "IMG-debian-12");
    assert_eq!(attached(&s, fw_attach).await, vec![guarded.as_str()]);
}
