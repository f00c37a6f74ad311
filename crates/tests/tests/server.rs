//! Process-level behaviour: first start, restart, health, metrics, documents, routing, request ids.

use openwinv_tests::{ACCESS_KEY, Body, SECRET_KEY, Server, mode};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn first_start_bootstraps_once_and_restart_keeps_everything() {
    let mut s = Server::start().await;
    let out = s.stdout_lines().join("\n");
    assert!(out.contains(&format!("IWINV_ACCESS_KEY={ACCESS_KEY}")), "{out}");
    assert!(out.contains(&format!("IWINV_SECRET_KEY={SECRET_KEY}")), "{out}");
    for f in ["credentials", "admin-token", "encryption-key"] {
        assert_eq!(mode(&s.data_path(f)), 0o600, "{f}");
    }
    let creds = std::fs::read_to_string(s.data_path("credentials")).unwrap();
    assert!(creds.contains(SECRET_KEY) && creds.contains(&s.endpoint), "{creds}");
    let token = s.admin_token.clone();
    // The secret is stored sealed, never in clear.
    if openwinv_tests::store_name() == "sqlite" {
        let db = std::fs::read(s.data_dir.parent().unwrap().join("openwinv.db")).unwrap();
        assert!(!db.windows(SECRET_KEY.len()).any(|w| w == SECRET_KEY.as_bytes()), "secret in clear in the database");
    }

    let key = s
        .call(
            Method::POST,
            "/v1/auth/ssh_key",
            Some(Body::Json(json!({"name": "keep", "public_key":
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}))),
        )
        .await;
    let key_id = key.ok_rows()[0]["ssh_key_id"].clone();
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "later"}))).await.ok_rows();
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "48h"}))).await.ok_rows();
    let before = s.server_time().await;
    s.sync_clock().await;

    let status = s.stop().await.expect("exit status");
    assert!(status.success(), "SIGTERM is a clean shutdown: {status:?}");
    s.restart().await;
    let out = s.stdout_lines().join("\n");
    assert!(!out.contains("IWINV_SECRET_KEY"), "bootstrap ran again: {out}");
    assert_eq!(s.admin_token, token);
    assert_eq!(s.get("/v1/auth/ssh_key").await.ok_rows()[0]["ssh_key_id"], key_id);
    let accounts = s.admin(Method::GET, "/admin/v1/accounts", None).await;
    let names: Vec<_> = accounts.ok_rows().iter().map(|a| a["name"].clone()).collect();
    assert_eq!(names, [json!("dev"), json!("later")]);
    assert_eq!(s.admin(Method::GET, "/admin/v1/keys", None).await.ok_rows().len(), 1);
    assert!(s.server_time().await >= before, "the moved clock survives a restart");
    assert_eq!(s.get("/v1/zones").await.ok_rows().len(), 3);
}

#[tokio::test]
async fn health_readiness_metrics_and_documents() {
    let s = Server::start().await;
    let get = |p: &str| reqwest::get(format!("{}{p}", s.endpoint));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    s.get("/v1/zones").await.ok_rows();
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("openwinv_http_requests_total{method=\"GET\",route=\"/v1/zones\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("openwinv_http_request_duration_seconds_bucket"), "{metrics}");
    let served = get("/openapi.json").await.unwrap().text().await.unwrap();
    let checked_in = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json")).unwrap();
    assert_eq!(served, checked_in);
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert!(doc["paths"]["/v1/flavors"]["get"].is_object());
    let html = get("/error").await.unwrap().text().await.unwrap();
    assert!(html.contains("DELETED_OR_WORKING_INSTANCE") && html.contains("<table"), "{html}");
    let json: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/error", s.endpoint))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["result"].as_array().unwrap().len(), 24);
    assert_eq!(json["result"][0]["error_code"], "NOT_FOUND");
    let fields: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/fields/v1/instances", s.endpoint))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bits: u64 = fields["result"].as_array().unwrap().iter().map(|r| r["bit"].as_u64().unwrap()).sum();
    assert_eq!(bits, 262143);
    let flavors = get("/fields/v1/flavors").await.unwrap().text().await.unwrap();
    assert!(flavors.contains("supporting_images"));
}

#[tokio::test]
async fn unknown_routes_methods_and_trailing_slashes_get_the_envelope() {
    let s = Server::start().await;
    s.get("/v1/nothing-here").await.assert_error(404, "NOT_FOUND");
    s.get("/v1/zones/").await.assert_error(404, "NOT_FOUND");
    s.raw(Method::GET, "/nope", &[], None).await.assert_error(404, "NOT_FOUND");
    let r = s.call(Method::DELETE, "/v1/zones", None).await;
    r.assert_error(405, "NOT_FOUND");
    // A wrong method is answered before authentication, like an unknown route.
    s.raw(Method::DELETE, "/v1/zones", &[], None).await.assert_error(405, "NOT_FOUND");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let s = Server::start().await;
    let mut h = Server::signature(ACCESS_KEY, SECRET_KEY, s.now(), "/v1/zones");
    h.push(("X-Request-Id".into(), "trace-me-123".into()));
    let r = s.raw(Method::GET, "/v1/zones", &h, None).await;
    assert_eq!(r.header("x-request-id"), Some("trace-me-123"));
    let r = s.get("/v1/zones").await;
    assert!(r.header("x-request-id").is_some_and(|v| v.starts_with("REQ-")));
    let r = s.raw(Method::GET, "/v1/zones", &[], None).await;
    assert!(r.header("x-request-id").is_some(), "errors carry it too");
}

#[tokio::test]
async fn the_operator_api_needs_the_token() {
    let s = Server::start().await;
    s.raw(Method::GET, "/admin/v1/accounts", &[], None).await.assert_error(401, "CHECK_CREDENTIAL");
    let h = vec![("Authorization".to_owned(), "Bearer wrong".to_owned())];
    s.raw(Method::GET, "/admin/v1/accounts", &h, None).await.assert_error(401, "CHECK_CREDENTIAL");
    // Signed iwinv credentials are not operator credentials.
    let h = Server::signature(ACCESS_KEY, SECRET_KEY, s.now(), "/admin/v1/accounts");
    s.raw(Method::GET, "/admin/v1/accounts", &h, None).await.assert_error(401, "CHECK_CREDENTIAL");
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "dev"}))).await.assert_error(400, "CHECK_PARAM");
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "bad name"})))
        .await
        .assert_error(400, "CHECK_PARAM");
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({}))).await.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    s.admin(Method::POST, "/admin/v1/accounts/dev/keys", Some(json!({"allow": ["not-a-cidr"]})))
        .await
        .assert_error(400, "CHECK_PARAM");
    s.admin(Method::POST, "/admin/v1/accounts/dev/keys", Some(json!({"rate_limit": -1})))
        .await
        .assert_error(400, "CHECK_PARAM");
    s.admin(Method::POST, "/admin/v1/accounts/ghost/keys", Some(json!({}))).await.assert_error(404, "NOT_FOUND");
    s.admin(Method::PUT, "/admin/v1/clock", Some(json!({"now": "yesterday"}))).await.assert_error(400, "CHECK_PARAM");
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "soon"})))
        .await
        .assert_error(400, "CHECK_PARAM");
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "-1h"})))
        .await
        .assert_error(400, "CHECK_PARAM");
}

#[tokio::test]
async fn the_clock_can_be_set_and_advanced_and_keeps_running() {
    let mut s = Server::start().await;
    let r = s.admin(Method::PUT, "/admin/v1/clock", Some(json!({"now": "2030-06-01T09:00:00+09:00"}))).await;
    let t0 = r.ok_rows()[0]["unix"].as_i64().unwrap();
    assert_eq!(t0, 1_906_502_400);
    let r = s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "1h30m"}))).await;
    let t1 = r.ok_rows()[0]["unix"].as_i64().unwrap();
    assert!((t1 - t0 - 5400).abs() <= 2, "{t0} {t1}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(s.server_time().await > t1, "the clock keeps running after it was moved");
    // Rows are stamped with the server clock, in Asia/Seoul.
    s.sync_clock().await;
    let r = s.call(Method::POST, "/v1/instance/script", Some(Body::Json(json!({"name": "t", "content": "x"})))).await;
    assert!(r.ok_rows()[0]["created_at"].as_str().unwrap().starts_with("2030-06-01 10:3"), "{}", r.text);
}

#[tokio::test]
async fn qemu_driver_refuses_to_move_the_clock_or_inject_faults() {
    // A real hypervisor runs on real time: the operator tools of the simulated driver are refused
    // with 409 and a sentence, and nothing moved.
    let s = Server::start_with(&["--driver", "qemu", "--accel", "tcg"], &[]).await;
    let before = s.server_time().await;
    let r = s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "48h"}))).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("sim"), "{}", r.text);
    let r = s.admin(Method::PUT, "/admin/v1/clock", Some(json!({"now": "2030-01-01T00:00:00Z"}))).await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = s.admin(Method::POST, "/admin/v1/faults", Some(json!({"kind": "*", "step": "*", "mode": "sticky"}))).await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = s.admin(Method::POST, "/admin/v1/sim/step/OP-none", None).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(s.server_time().await - before < 60, "the clock did not move");
}
