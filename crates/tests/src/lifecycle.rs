//! Test bodies shared by the simulated driver's suite and the QEMU driver's: the same API calls and
//! the same assertions, whatever runs the machines.

use reqwest::Method;
use serde_json::{Value, json};

use crate::{Body, Resp, Server};

/// Posts an instance action.
pub async fn act(s: &Server, id: &str, action: &str, body: Value) -> Resp {
    s.call(Method::POST, &format!("/v1/instances/{id}/{action}"), Some(Body::Json(body))).await
}

/// Asserts a 202 and waits for its operation to end; returns the operation.
pub async fn accepted(s: &Server, r: Resp) -> Value {
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.header("x-operation-id").expect("X-Operation-Id").to_owned();
    s.wait_operation(&op).await
}

/// An instance's whole life through the API (spec §7): create, read, shutdown, start, reboot SOFT
/// and HARD, rebuild, resize while off, delete. Needs `IMG-ubuntu-2404` and `IMG-debian-12` in
/// zone `KR1-Z01` and flavors `ss1.c1m1`, `ss1.c2m4` (the default catalog).
///
/// `booted(instance_id)` is called after every action that powers the machine on (create, start,
/// reboot, rebuild) once the API reports it done: a real driver waits there until the guest has
/// booted (and checks that it did); the simulated one has nothing to wait for.
pub async fn a_whole_lifecycle(s: &Server, mut booted: impl AsyncFnMut(&str)) {
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "웹서버"});
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let receipt = r.result()[0].clone();
    assert_eq!(receipt["status"], "building");
    assert_eq!(receipt["name"], "웹서버");
    assert_eq!(receipt["default_account"]["username"], "root");
    let password = receipt["default_account"]["password"].as_str().unwrap().to_owned();
    assert!(password.chars().count() >= 16);
    let id = receipt["instance_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("INSTANCE-"));
    let op = accepted(s, r).await;
    assert_eq!((op["status"].as_str(), op["kind"].as_str()), (Some("succeeded"), Some("instance.create")), "{op}");
    booted(&id).await;

    let row = s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0].clone();
    assert_eq!(row["status"], "active");
    assert!(row.get("default_account").is_none() && row.get("vnc").is_none(), "secrets only on request: {row}");
    for key in [
        "instance_id",
        "name",
        "description",
        "status",
        "provide",
        "start_date",
        "stop_date",
        "ip",
        "zone",
        "flavor",
        "image",
        "monitoring",
        "block_storage",
        "connection_limit",
        "traffic",
        "firewall",
    ] {
        assert!(row.get(key).is_some(), "missing {key}: {row}");
    }
    assert_eq!(row["zone"], json!({"zone_id": "KR1-Z01", "name": "서울 1"}));
    assert_eq!(row["flavor"]["vcpu"], 1);
    // A driver without public addresses (QEMU on user-mode networking) gives none by default
    // (docs/compat.md, "Driver capabilities"); the simulated driver gives one from the pool.
    let public = row["ip"][0]["public"]["address"].as_str().map(str::to_owned);
    if let Some(p) = &public {
        assert!(p.starts_with("198.18."), "{p}");
    }
    let private = row["ip"][0]["private"]["address"].as_str().unwrap().to_owned();
    assert!(row["ip"][0]["private"]["address"].as_str().unwrap().starts_with("10.16."));
    let secret = s.get(&format!("/v1/instances/{id}?fields=129")).await;
    assert_eq!(secret.ok_rows()[0]["default_account"]["password"], password.as_str());

    let off = accepted(s, act(s, &id, "shutdown", json!({})).await).await;
    assert_eq!(off["status"], "succeeded", "{off}");
    let row = s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0].clone();
    assert_eq!(row["status"], "off");
    assert!(row["stop_date"].is_string());
    accepted(s, act(s, &id, "start", json!({})).await).await;
    s.wait_status(&id, "active").await;
    booted(&id).await;
    for t in ["SOFT", "HARD"] {
        let op = accepted(s, act(s, &id, "reboot", json!({"type": t})).await).await;
        assert_eq!(op["status"], "succeeded", "reboot {t}: {op}");
        booted(&id).await;
    }
    let op = accepted(s, act(s, &id, "rebuild", json!({"image_id": "IMG-debian-12"})).await).await;
    assert_eq!(op["status"], "succeeded", "rebuild: {op}");
    booted(&id).await;
    let row = s.get(&format!("/v1/instances/{id}?fields=262143")).await.ok_rows()[0].clone();
    assert_eq!(row["image"]["image_id"], "IMG-debian-12");
    assert_eq!(row["status"], "active");
    assert_ne!(row["default_account"]["password"], password.as_str(), "rebuild gives a new password");
    assert_eq!(row["ip"][0]["public"]["address"].as_str(), public.as_deref(), "rebuild keeps addresses");
    accepted(s, act(s, &id, "shutdown", json!({})).await).await;
    let op = accepted(s, act(s, &id, "resize", json!({"flavor_id": "ss1.c2m4"})).await).await;
    assert_eq!(op["status"], "succeeded", "resize: {op}");
    let row = s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0].clone();
    assert_eq!(
        (row["flavor"]["flavor_id"].as_str(), row["status"].as_str()),
        (Some("ss1.c2m4"), Some("off")),
        "resize keeps power state"
    );
    assert_eq!(row["ip"][0]["public"]["address"].as_str(), public.as_deref());

    let d = s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
    assert_eq!(d.result()[0]["status"], "deleting");
    assert_eq!(d.result()[0]["block_storage"], json!([]));
    assert_eq!(accepted(s, d).await["status"], "succeeded");
    s.get(&format!("/v1/instances/{id}")).await.assert_error(404, "NOT_FOUND");
    // The address went back to the pool.
    let r = s.get(&format!("/v1/instances?ip={}", public.as_deref().unwrap_or(&private))).await;
    assert!(r.ok_rows().is_empty());
}
