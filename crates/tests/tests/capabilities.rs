//! Driver capabilities, checked before a request is accepted: on the QEMU driver with user-mode
//! networking (no firewalls, no public addresses) asking for either is a 400
//! `UNAVAILABLE_COMBINATION` naming the field, and nothing is written; the simulated driver
//! offers everything. No guest boots here: the refusals come before any operation.

use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};

fn require_qemu() {
    for (tool, package) in [("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils")] {
        let ok = std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(ok, "{tool} is missing (the server on `--driver qemu` checks for it): apt-get install -y {package}");
    }
}

async fn send(s: &Server, method: Method, path: &str, body: Value) -> Resp {
    s.call(method, path, Some(Body::Json(body))).await
}

#[track_caller]
fn refused_naming(r: &Resp, field: &str, feature: &str) {
    r.assert_error(400, "UNAVAILABLE_COMBINATION");
    let message = r.json["message"].as_str().unwrap();
    assert!(message.contains(&format!("`{field}`")), "message should name `{field}`: {message}");
    assert!(message.contains(feature) && message.contains("`qemu`"), "{message}");
}

fn create_body(extra: Value) -> Value {
    let mut b = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "cap"});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

#[tokio::test]
async fn qemu_without_networks_refuses_firewalls_and_public_addresses_up_front() {
    require_qemu();
    let s = Server::start_with(&["--driver", "qemu", "--accel", "tcg", "--default-rate-limit", "0"], &[]).await;
    let fw = send(&s, Method::POST, "/v1/security-groups", json!({"title": "web servers", "content": "c"})).await;
    let fw = fw.ok_rows()[0]["firewall_id"].as_str().unwrap().to_owned();

    let r =
        send(&s, Method::POST, "/v1/instances", create_body(json!({"security_group": fw, "attach_public_ip": false})))
            .await;
    refused_naming(&r, "security_group", "firewalls");
    let r = send(&s, Method::POST, "/v1/instances", create_body(json!({"attach_public_ip": true}))).await;
    refused_naming(&r, "attach_public_ip", "public addresses");
    let r = send(&s, Method::POST, "/v1/instances", create_body(json!({"attach_public_ip": "Y"}))).await;
    refused_naming(&r, "attach_public_ip", "public addresses");
    for family in ["security-groups", "firewall"] {
        let r =
            send(&s, Method::POST, &format!("/v1/{family}/{fw}/attach"), json!({"instance_id": "INSTANCE-any"})).await;
        refused_naming(&r, "instance_id", "firewalls");
    }
    assert_eq!(s.db_count("SELECT COUNT(*) FROM instances").await, 0, "nothing was written");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM operations").await, 0, "no operation was started");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM firewall_attachments").await, 0, "nothing was attached");

    // Firewalls themselves (objects and rules) stay available: only enforcing them is refused.
    let r = send(
        &s,
        Method::POST,
        &format!("/v1/security-groups/{fw}/rules"),
        json!({"bound": "IN", "protocol": "TCP",
        "port": "22", "ip": "0.0.0.0/0", "title": "ssh"}),
    )
    .await;
    r.ok_rows();
}

#[tokio::test]
async fn the_simulated_driver_offers_everything() {
    let s = Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await;
    let fw = send(&s, Method::POST, "/v1/security-groups", json!({"title": "web servers", "content": "c"})).await;
    let fw = fw.ok_rows()[0]["firewall_id"].as_str().unwrap().to_owned();
    let r = send(&s, Method::POST, "/v1/instances", create_body(json!({"security_group": fw}))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "active").await;
    let row = s.get(&format!("/v1/instances/{id}?fields=256")).await.ok_rows()[0].clone();
    assert!(row["ip"][0]["public"]["address"].is_string(), "public address by default: {row}");
    assert_eq!(s.get(&format!("/v1/security-groups/{fw}/instances")).await.ok_rows()[0], json!(id));
}
