//! Instances (spec §7) on the simulated hypervisor, through the real binary.

use openwinv_tests::lifecycle::{accepted, act};
use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;

use openwinv_tests::ED25519;

async fn fast() -> Server {
    Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await
}

async fn create(s: &Server, body: Value) -> Resp {
    s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await
}

fn basic() -> Value {
    json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "웹서버"})
}

/// Creates one instance and waits until it is active; returns (id, receipt row).
async fn create_active(s: &Server, body: Value) -> (String, Value) {
    let r = create(s, body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let row = r.result()[0].clone();
    let id = row["instance_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "active").await;
    (id, row)
}

/// The lifecycle body is shared with the QEMU driver's suite (`tests/qemu.rs`).
#[tokio::test]
async fn a_whole_lifecycle() {
    let s = fast().await;
    openwinv_tests::lifecycle::a_whole_lifecycle(&s, async |_: &str| {}).await;
}

#[tokio::test]
async fn the_state_table_is_enforced() {
    // Explicit mode: an operation waits until the operator steps it, so `pending`/`work` last.
    let s = Server::start_with(&["--sim-mode", "explicit", "--default-rate-limit", "0"], &[]).await;
    let r = create(&s, basic()).await;
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let op = r.header("x-operation-id").unwrap().to_owned();
    assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["status"], "pending", "listed at once");
    for (action, body) in [
        ("start", json!({})),
        ("shutdown", json!({})),
        ("reboot", json!({})),
        ("rebuild", json!({})),
        ("resize", json!({"flavor_id": "ss1.c2m4"})),
    ] {
        act(&s, &id, action, body).await.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    }
    s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    s.get(&format!("/v1/instances/{id}/remote-console")).await.assert_error(409, "CHECK_CONSOLE");
    // Editing is allowed while pending.
    let e = s.call(Method::PUT, &format!("/v1/instances/{id}"), Some(Body::Json(json!({"description": "설명"})))).await;
    assert_eq!(e.ok_rows()[0]["description"], "설명");
    // Two hypervisor steps: create the machine, power it on.
    for _ in 0..2 {
        s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
    }
    s.wait_status(&id, "active").await;
    act(&s, &id, "start", json!({})).await.assert_error(409, "CHECK_PARAM");
    let r = act(&s, &id, "shutdown", json!({})).await;
    let op = r.header("x-operation-id").unwrap().to_owned();
    assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["status"], "work");
    s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
    s.wait_status(&id, "off").await;
    act(&s, &id, "shutdown", json!({})).await.assert_error(409, "CHECK_PARAM");
    act(&s, &id, "reboot", json!({})).await.assert_error(409, "CHECK_PARAM");
    s.get(&format!("/v1/instances/{id}/remote-console")).await.assert_error(409, "CHECK_CONSOLE");
    let r = s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
    let op = r.header("x-operation-id").unwrap().to_owned();
    s.call(Method::PUT, &format!("/v1/instances/{id}"), Some(Body::Json(json!({"name": "x"}))))
        .await
        .assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
    s.get(&format!("/v1/instances/{id}")).await.assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn create_validation() {
    let s = fast().await;
    let with = |k: &str, v: Value| {
        let mut b = basic();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = basic();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    for k in ["zone_id", "image_id", "flavor_id"] {
        create(&s, without(k)).await.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    }
    create(&s, with("zone_id", json!("KR9-Z99"))).await.assert_error(400, "ID_INVALID");
    create(&s, with("image_id", json!("IMG-nope"))).await.assert_error(400, "ID_INVALID");
    create(&s, with("flavor_id", json!("nope"))).await.assert_error(400, "ID_INVALID");
    create(&s, with("user_script_id", json!("SCRIPT-nope"))).await.assert_error(400, "ID_INVALID");
    let mut gpu_in_z2 = basic();
    gpu_in_z2["zone_id"] = json!("KR1-Z02");
    gpu_in_z2["flavor_id"] = json!("sg1.c8m32.t4");
    create(&s, gpu_in_z2).await.assert_error(400, "UNAVAILABLE_FLAVOR");
    create(&s, with("flavor_id", json!("ss0.c1m1"))).await.assert_error(400, "UNAVAILABLE_FLAVOR");
    create(&s, with("image_id", json!("IMG-win-2022"))).await.assert_error(400, "UNAVAILABLE_COMBINATION");
    let mut closed = basic();
    closed["zone_id"] = json!("KR1-Z03");
    closed["image_id"] = json!("IMG-ubuntu-2404");
    // The image is not offered in the closed zone either: the closed zone is checked first (spec §6).
    create(&s, closed).await.assert_error(500, "DEV_CHECK_RETURN");
    create(&s, with("ssh_key_id", json!("SSHKEY-nope"))).await.assert_error(400, "UNAVAILABLE_SSH_KEY");
    let key =
        s.call(Method::POST, "/v1/auth/ssh_key", Some(Body::Json(json!({"name": "k", "public_key": ED25519})))).await;
    let key_id = key.ok_rows()[0]["ssh_key_id"].as_str().unwrap().to_owned();
    let mut win = basic();
    win["image_id"] = json!("IMG-win-2022");
    win["flavor_id"] = json!("ss1.c2m4");
    win["ssh_key_id"] = json!(key_id);
    create(&s, win).await.assert_error(400, "UNAVAILABLE_SSH_KEY");
    for c in [json!(0), json!(11), json!("x"), json!(-1)] {
        create(&s, with("count", c)).await.assert_error(400, "CHECK_PARAM");
    }
    create(&s, with("name", json!("가".repeat(65)))).await.assert_error(400, "CHECK_LENGTH");
    create(&s, with("name", json!(""))).await.assert_error(400, "CHECK_LENGTH");
    create(&s, with("description", json!("a".repeat(256)))).await.assert_error(400, "CHECK_LENGTH");
    create(&s, with("attach_public_ip", json!("maybe"))).await.assert_error(400, "CHECK_PARAM");
    // Nothing was made by any refused request.
    assert_eq!(s.get("/v1/instances").await.json["total"], 0);
}

#[tokio::test]
async fn count_creates_all_or_none_and_quotas_hold() {
    let s = fast().await;
    let mut b = basic();
    b["count"] = json!(3);
    b["name"] = json!("batch");
    let r = create(&s, b).await;
    let names: Vec<_> = r.result().iter().map(|x| x["name"].clone()).collect();
    assert_eq!(names, [json!("batch-1"), json!("batch-2"), json!("batch-3")]);
    assert_eq!(r.header("x-operation-id").unwrap().split(',').count(), 3);
    let mut b = basic();
    b["count"] = json!(10);
    assert_eq!(create(&s, b.clone()).await.status, 202);
    // 13 instances exist; 10 more would pass the quota of 20: refused, and none is made.
    let r = create(&s, b).await;
    r.assert_error(403, "LIMIT_EXCEEDED");
    assert_eq!(s.get("/v1/instances").await.json["total"], 13);
    // vCPU quota: 13 + 8 × 8 vCPUs > 64.
    let mut big = basic();
    big["flavor_id"] = json!("ss1.c8m16");
    big["count"] = json!(7);
    create(&s, big).await.assert_error(403, "LIMIT_EXCEEDED");
    assert_eq!(s.get("/v1/instances").await.json["total"], 13);
}

#[tokio::test]
async fn concurrent_creates_of_several_accounts_never_pass_a_quota() {
    let s = Arc::new(fast().await);
    let (k, sec) = s.new_account("other", json!({})).await;
    // Quotas of 7 and 5 instances; 20 and 12 creates of one instance each, all at once (they
    // share create transactions: each must see the ones accepted before it).
    let quota = |name: &str, n: i64| {
        let s = s.clone();
        let name = name.to_owned();
        async move {
            let r =
                s.admin(Method::PUT, &format!("/admin/v1/accounts/{name}/quota"), Some(json!({"instances": n}))).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
    };
    quota("dev", 7).await;
    quota("other", 5).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (s, k, sec) = (s.clone(), k.clone(), sec.clone());
        tasks.push(tokio::spawn(async move {
            let body = Body::Json(basic());
            let r = if i % 8 < 5 {
                s.call(Method::POST, "/v1/instances", Some(body)).await
            } else {
                s.call_as(&k, &sec, Method::POST, "/v1/instances", Some(body)).await
            };
            match r.status {
                202 => true,
                _ => {
                    r.assert_error(403, "LIMIT_EXCEEDED");
                    false
                }
            }
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += usize::from(t.await.unwrap());
    }
    assert_eq!(accepted, 7 + 5);
    assert_eq!(s.get("/v1/instances").await.json["total"], 7);
    let r = s.call_as(&k, &sec, Method::GET, "/v1/instances", None).await;
    assert_eq!(r.json["total"], 5, "{}", r.text);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM instances").await, 12);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM operations").await, 12);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM usage_intervals").await, 12);
}

#[tokio::test]
async fn list_filters_fields_and_pagination() {
    let s = fast().await;
    let (a, _) = create_active(&s, basic()).await;
    let mut b2 = basic();
    b2["zone_id"] = json!("KR1-Z02");
    b2["name"] = json!("db-primary");
    b2["flavor_id"] = json!("sm1.c2m8");
    let (b, _) = create_active(&s, b2).await;
    let mut b3 = basic();
    b3["attach_public_ip"] = json!(false);
    b3["name"] = json!("batch-worker");
    let (c, _) = create_active(&s, b3).await;
    accepted(&s, act(&s, &c, "shutdown", json!({})).await).await;
    let ids = |r: &Resp| r.ok_rows().iter().map(|x| x["instance_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(ids(&s.get("/v1/instances").await), [a.clone(), b.clone(), c.clone()], "creation order");
    assert_eq!(ids(&s.get("/v1/instances?status=off").await), vec![c.clone()]);
    assert_eq!(ids(&s.get("/v1/instances?status=active,off").await).len(), 3);
    assert_eq!(ids(&s.get("/v1/instances?zone_id=KR1-Z02").await), vec![b.clone()]);
    assert_eq!(ids(&s.get("/v1/instances?name=DB").await), vec![b.clone()]);
    assert_eq!(ids(&s.get("/v1/instances?type=memory").await), vec![b.clone()]);
    assert_eq!(ids(&s.get("/v1/instances?min_memory=8").await), vec![b.clone()]);
    assert_eq!(ids(&s.get("/v1/instances?image_id=IMG-ubuntu-2404").await).len(), 3);
    let row_b = s.get(&format!("/v1/instances/{b}")).await.ok_rows()[0].clone();
    let pub_b = row_b["ip"][0]["public"]["address"].as_str().unwrap().to_owned();
    assert_eq!(ids(&s.get(&format!("/v1/instances?ip={pub_b}")).await), vec![b.clone()]);
    assert_eq!(ids(&s.get("/v1/instances?ip=198.19.0.0/16").await), vec![b.clone()]);
    assert_eq!(ids(&s.get("/v1/instances?ip=10.16.0.0/16").await).len(), 3, "private addresses match too");
    let row_c = s.get(&format!("/v1/instances/{c}")).await.ok_rows()[0].clone();
    assert!(row_c["ip"][0]["public"]["address"].is_null());
    assert_eq!(row_c["ip"][0]["public"]["attached"], false);
    s.get("/v1/instances?ip=not-an-ip").await.assert_error(400, "CHECK_PARAM");
    s.get("/v1/instances?status=running").await.assert_error(400, "CHECK_PARAM_ENUM");
    s.get("/v1/instances?fields=x").await.assert_error(400, "CHECK_PARAM");
    s.get("/v1/instances?page_size=1000").await.assert_error(400, "CHECK_PARAM");
    let p = s.get("/v1/instances?page_no=2&page_size=2").await;
    assert_eq!(ids(&p), vec![c.clone()]);
    assert_eq!((p.json["total"].as_u64(), p.json["count"].as_u64()), (Some(3), Some(1)));
    assert!(s.get("/v1/instances?page_no=3&page_size=2").await.ok_rows().is_empty());
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&s.get("/v1/instances?fields=3").await.ok_rows()[0]), ["instance_id", "name"]);
    assert_eq!(keys(&s.get("/v1/instances?fields=262143").await.ok_rows()[0]).len(), 18);
    assert_eq!(keys(&s.get(&format!("/v1/instances/{a}?fields=8")).await.ok_rows()[0]), ["status"]);
}

#[tokio::test]
async fn edit_rules() {
    let s = fast().await;
    let (id, _) = create_active(&s, basic()).await;
    let path = format!("/v1/instances/{id}");
    let put = |b: Value| s.call(Method::PUT, &path, Some(Body::Json(b)));
    let r = put(json!({"name": "  새 이름  ", "description": "한국어 설명"})).await;
    assert_eq!(
        (r.ok_rows()[0]["name"].as_str(), r.ok_rows()[0]["description"].as_str()),
        (Some("새 이름"), Some("한국어 설명"))
    );
    let r = put(json!({"description": ""})).await;
    assert!(r.ok_rows()[0]["description"].is_null(), "empty clears");
    assert_eq!(r.ok_rows()[0]["name"], "새 이름", "omitted keeps");
    put(json!({})).await.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    put(json!({"name": ""})).await.assert_error(400, "CHECK_LENGTH");
    let r = s.call(Method::PUT, &format!("/v1/instances/{id}?fields=2"), Some(Body::Json(json!({"name": "n"})))).await;
    assert_eq!(r.ok_rows()[0], json!({"name": "n"}));
}

#[tokio::test]
async fn action_validation() {
    let s = fast().await;
    let (id, _) = create_active(&s, basic()).await;
    act(&s, &id, "reboot", json!({"type": "soft"})).await.assert_error(400, "CHECK_PARAM_ENUM");
    act(&s, &id, "resize", json!({})).await.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    act(&s, &id, "resize", json!({"flavor_id": "nope"})).await.assert_error(400, "ID_INVALID");
    act(&s, &id, "resize", json!({"flavor_id": "ss1.c1m1"})).await.assert_error(400, "UNAVAILABLE_FLAVOR");
    act(&s, &id, "resize", json!({"flavor_id": "ss0.c1m1"})).await.assert_error(400, "UNAVAILABLE_FLAVOR");
    act(&s, &id, "rebuild", json!({"image_id": "IMG-nope"})).await.assert_error(400, "ID_INVALID");
    act(&s, &id, "rebuild", json!({"image_id": "IMG-win-2022"})).await.assert_error(400, "UNAVAILABLE_COMBINATION");
    // Disks never shrink: from 50 GB to 25 GB is refused.
    accepted(&s, act(&s, &id, "resize", json!({"flavor_id": "ss1.c2m4"})).await).await;
    act(&s, &id, "resize", json!({"flavor_id": "ss1.c1m2"})).await.assert_error(400, "UNAVAILABLE_FLAVOR");
    assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["status"], "active");
}

#[tokio::test]
async fn another_accounts_instances_do_not_exist() {
    let s = fast().await;
    let (id, _) = create_active(&s, basic()).await;
    let (k, sk) = s.new_account("other", json!({})).await;
    let other = |m: Method, p: String, b: Option<Value>| {
        let (k, sk) = (k.clone(), sk.clone());
        let s = &s;
        async move { s.call_as(&k, &sk, m, &p, b.map(Body::Json)).await }
    };
    assert!(other(Method::GET, "/v1/instances".into(), None).await.ok_rows().is_empty());
    other(Method::GET, format!("/v1/instances/{id}"), None).await.assert_error(404, "NOT_FOUND");
    other(Method::PUT, format!("/v1/instances/{id}"), Some(json!({"name": "x"}))).await.assert_error(404, "NOT_FOUND");
    other(Method::DELETE, format!("/v1/instances/{id}"), None).await.assert_error(404, "NOT_FOUND");
    for a in ["start", "shutdown", "reboot", "rebuild"] {
        other(Method::POST, format!("/v1/instances/{id}/{a}"), Some(json!({}))).await.assert_error(404, "NOT_FOUND");
    }
    other(Method::POST, format!("/v1/instances/{id}/resize"), Some(json!({"flavor_id": "ss1.c2m4"})))
        .await
        .assert_error(404, "NOT_FOUND");
    other(Method::GET, format!("/v1/instances/{id}/remote-console"), None).await.assert_error(404, "NOT_FOUND");
    assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["name"], "웹서버");
}

#[tokio::test]
async fn the_console_link_opens_once() {
    let s = fast().await;
    let key = s
        .call(Method::POST, "/v1/auth/ssh_key", Some(Body::Json(json!({"name": "laptop", "public_key": ED25519}))))
        .await;
    let key_row = key.ok_rows()[0].clone();
    let script = s
        .call(
            Method::POST,
            "/v1/instance/script",
            Some(Body::Json(json!({"name": "부팅 스크립트", "content": "echo hi"}))),
        )
        .await;
    let mut b = basic();
    b["ssh_key_id"] = key_row["ssh_key_id"].clone();
    b["user_script_id"] = script.ok_rows()[0]["user_script_id"].clone();
    let (id, _) = create_active(&s, b).await;
    let c = s.get(&format!("/v1/instances/{id}/remote-console")).await;
    let row = c.ok_rows()[0].clone();
    let link = row["link"].as_str().unwrap().to_owned();
    assert!(row["expires_at"].is_string());
    let page = reqwest::get(&link).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("웹서버"), "{html}");
    assert!(html.contains(key_row["fingerprint"].as_str().unwrap()), "{html}");
    assert!(html.contains("부팅 스크립트"), "{html}");
    assert_eq!(reqwest::get(&link).await.unwrap().status(), 404, "opens once");
    // Links expire after five minutes.
    let c = s.get(&format!("/v1/instances/{id}/remote-console")).await;
    let link = c.ok_rows()[0]["link"].as_str().unwrap().to_owned();
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "301s"}))).await.ok_rows();
    assert_eq!(reqwest::get(&link).await.unwrap().status(), 404, "expired");
}

#[tokio::test]
async fn concurrent_conflicting_actions_accept_exactly_one() {
    let s = Server::start_with(&["--sim-mode", "explicit", "--default-rate-limit", "0"], &[]).await;
    let r = create(&s, basic()).await;
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let op = r.header("x-operation-id").unwrap().to_owned();
    for _ in 0..2 {
        s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
    }
    s.wait_status(&id, "active").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (method, path) = match ["shutdown", "reboot", "rebuild", "delete"][i % 4] {
            "delete" => (Method::DELETE, format!("/v1/instances/{id}")),
            action => (Method::POST, format!("/v1/instances/{id}/{action}")),
        };
        let s = &s;
        tasks.push(async move { s.call(method, &path, Some(Body::Json(json!({})))).await });
    }
    let results = futures_join(tasks).await;
    let accepted = results.iter().filter(|r| r.status == 202).count();
    assert_eq!(accepted, 1, "{:?}", results.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in results.iter().filter(|r| r.status != 202) {
        r.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    }
}

async fn futures_join<F: std::future::Future<Output = Resp>>(futs: Vec<F>) -> Vec<Resp> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    // Poll them all together on this task.
    let mut out: Vec<Option<Resp>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => out[i] = Some(r),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn the_deprecated_security_group_attaches_a_firewall_at_create() {
    let s = fast().await;
    let fw = s
        .call(
            Method::POST,
            "/v1/security-groups",
            Some(Body::Json(json!({"title": "web servers", "content": "웹", "icmp": "N"}))),
        )
        .await;
    let fw_id = fw.ok_rows()[0]["firewall_id"].as_str().unwrap().to_owned();
    let rule = json!({"bound": "IN", "protocol": "TCP", "port": "443", "ip": "0.0.0.0/0", "title": "https"});
    let r = s.call(Method::POST, &format!("/v1/security-groups/{fw_id}/rules"), Some(Body::Json(rule))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut b = basic();
    b["security_group"] = json!("FIREWALL-nope");
    create(&s, b.clone()).await.assert_error(400, "ID_INVALID");
    b["security_group"] = json!(fw_id);
    let (id, _) = create_active(&s, b).await;
    let row = s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0].clone();
    assert_eq!(row["firewall"], json!([fw_id]));
    let attached = s.get(&format!("/v1/security-groups/{fw_id}/instances")).await;
    assert_eq!(attached.ok_rows(), &vec![json!(id)]);
    let link =
        s.get(&format!("/v1/instances/{id}/remote-console")).await.ok_rows()[0]["link"].as_str().unwrap().to_owned();
    let page = reqwest::get(&link).await.unwrap().text().await.unwrap();
    assert!(page.contains("firewall:") && page.contains("443"), "{page}");
    s.call(Method::DELETE, &format!("/v1/security-groups/{fw_id}"), None).await.assert_error(409, "IN_USE");
    accepted(&s, s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await).await;
    assert!(s.get(&format!("/v1/security-groups/{fw_id}/instances")).await.ok_rows().is_empty());
    assert_eq!(s.call(Method::DELETE, &format!("/v1/security-groups/{fw_id}"), None).await.status, 200);
}

#[tokio::test]
async fn totals_and_quotas_follow_resizes_and_deletes() {
    let s = fast().await;
    let (a, _) = create_active(&s, basic()).await;
    // 1 vCPU becomes 8: with 7 more 8-vCPU instances the account is at its 64 vCPUs.
    accepted(&s, act(&s, &a, "resize", json!({"flavor_id": "ss1.c8m16"})).await).await;
    let mut big = basic();
    big["flavor_id"] = json!("ss1.c8m16");
    big["count"] = json!(7);
    let r = create(&s, big).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let ops: Vec<String> = r.header("x-operation-id").unwrap().split(',').map(str::to_owned).collect();
    for op in &ops {
        s.wait_operation(op).await;
    }
    create(&s, basic()).await.assert_error(403, "LIMIT_EXCEEDED");
    assert_eq!(s.get("/v1/instances").await.json["total"], 8);
    // Deleting one gives its 8 vCPUs back and lowers the total.
    let r = s.call(Method::DELETE, &format!("/v1/instances/{a}"), None).await;
    accepted(&s, r).await;
    assert_eq!(s.get("/v1/instances").await.json["total"], 7);
    assert_eq!(s.get("/v1/instances?status=active").await.json["total"], 7);
    assert_eq!(create(&s, basic()).await.status, 202);
    assert_eq!(s.get("/v1/instances").await.json["total"], 8);
}
