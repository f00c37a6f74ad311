//! Firewalls (spec §9): both path families over one store, validation, attach/detach sagas,
//! limits and tenant isolation, through the real binary.

use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};

async fn fast() -> Server {
    Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await
}

fn rule(bound: &str, protocol: &str, port: &str, ip: &str) -> Value {
    json!({"bound": bound, "protocol": protocol, "port": port, "ip": ip, "title": "rule"})
}

async fn send(s: &Server, method: Method, path: &str, body: Value) -> Resp {
    s.call(method, path, Some(Body::Json(body))).await
}

/// Creates a firewall through family A; returns its id.
async fn create_a(s: &Server, title: &str) -> String {
    let r = send(s, Method::POST, "/v1/security-groups", json!({"title": title, "content": "설명"})).await;
    r.ok_rows()[0]["firewall_id"].as_str().unwrap().to_owned()
}

/// Creates a firewall through family B with rules; returns its id after its operation ended.
async fn create_b(s: &Server, title: &str, rules: Value) -> String {
    let r = send(s, Method::POST, "/v1/firewall", json!({"title": title, "content": "설명", "rules": rules})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.header("x-operation-id").expect("X-Operation-Id").to_owned();
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
    r.result()[0]["firewall_id"].as_str().unwrap().to_owned()
}

async fn detail(s: &Server, family: &str, id: &str) -> Value {
    let r = s.get(&format!("/v1/{family}/{id}")).await;
    let rows = r.ok_rows();
    assert_eq!(rows.len(), 1, "{}", r.text);
    rows[0].clone()
}

/// Creates an active instance; returns its id.
async fn instance(s: &Server) -> String {
    let r = send(
        s,
        Method::POST,
        "/v1/instances",
        json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "fw-test"}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "active").await;
    id
}

/// Attaches or detaches through `family`; asserts 202 and returns the finished operation.
async fn attachment(s: &Server, family: &str, id: &str, action: &str, instance_id: &str) -> Value {
    let r = send(s, Method::POST, &format!("/v1/{family}/{id}/{action}"), json!({"instance_id": instance_id})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let row = &r.result()[0];
    assert_eq!((row["firewall_id"].as_str(), row["instance_id"].as_str()), (Some(id), Some(instance_id)));
    assert_eq!(row["status"], if action == "attach" { "attaching" } else { "detaching" });
    let op = r.header("x-operation-id").expect("X-Operation-Id").to_owned();
    let done = s.wait_operation(&op).await;
    assert_eq!(done["kind"], format!("firewall.{action}"));
    done
}

async fn attached_to(s: &Server, family: &str, id: &str) -> Vec<Value> {
    s.get(&format!("/v1/{family}/{id}/instances")).await.ok_rows().clone()
}

#[track_caller]
fn assert_error_naming(r: &Resp, status: u16, code: &str, field: &str) {
    r.assert_error(status, code);
    let message = r.json["message"].as_str().unwrap();
    assert!(message.contains(&format!("`{field}`")), "message should name `{field}`: {message}");
}

#[tokio::test]
async fn firewall_fields_are_validated_in_both_families() {
    let s = fast().await;
    let long = |n: usize| "가".repeat(n);
    let base = json!({"title": "web servers", "content": "front"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    let cases = [
        (with("title", Value::Null), 400, "REQUIRED_POST_PARAM_MISSING", "title"),
        (with("content", Value::Null), 400, "REQUIRED_POST_PARAM_MISSING", "content"),
        (with("title", json!("abc")), 400, "CHECK_LENGTH", "title"),
        (with("title", json!(long(33))), 400, "CHECK_LENGTH", "title"),
        (with("title", json!("   ab   ")), 400, "CHECK_LENGTH", "title"),
        (with("content", json!("")), 400, "CHECK_LENGTH", "content"),
        (with("content", json!(long(51))), 400, "CHECK_LENGTH", "content"),
        (with("icmp", json!("y")), 400, "CHECK_PARAM_ENUM", "icmp"),
        (with("icmp", json!("YES")), 400, "CHECK_PARAM_ENUM", "icmp"),
        (with("icmp", json!("")), 400, "CHECK_PARAM_ENUM", "icmp"),
        (with("title", json!(["x"])), 400, "CHECK_PARAM", "title"),
        (with("rules", json!("not a list")), 400, "CHECK_PARAM", "rules"),
        (with("rules", json!([1])), 400, "CHECK_PARAM", "rules.0"),
    ];
    for family in ["security-groups", "firewall"] {
        for (body, status, code, field) in &cases {
            let r = send(&s, Method::POST, &format!("/v1/{family}"), body.clone()).await;
            assert_error_naming(&r, *status, code, field);
        }
    }
    assert_eq!(s.db_count("SELECT COUNT(*) FROM firewalls").await, 0, "nothing was written");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM operations").await, 0, "nothing was written");

    // Bounds are inclusive and count code points; icmp defaults to Y.
    for family in ["security-groups", "firewall"] {
        let r = send(&s, Method::POST, &format!("/v1/{family}"), json!({"title": long(4), "content": long(50)})).await;
        assert!(r.status == 200 || r.status == 202, "{}", r.text);
        assert_eq!(r.result()[0]["icmp"], "Y");
        assert_eq!(r.result()[0]["title"], long(4));
        let r =
            send(&s, Method::POST, &format!("/v1/{family}"), json!({"title": long(32), "content": "x", "icmp": "N"}))
                .await;
        assert_eq!(r.result()[0]["icmp"], "N");
    }

    // Edits validate the same way and name the field; nothing at all is REQUIRED_POST_PARAM_MISSING.
    let id = create_a(&s, "edit target").await;
    for family in ["security-groups", "firewall"] {
        let path = format!("/v1/{family}/{id}");
        assert_error_naming(&send(&s, Method::PUT, &path, json!({"title": "abc"})).await, 400, "CHECK_LENGTH", "title");
        assert_error_naming(
            &send(&s, Method::PUT, &path, json!({"content": ""})).await,
            400,
            "CHECK_LENGTH",
            "content",
        );
        assert_error_naming(&send(&s, Method::PUT, &path, json!({"icmp": "n"})).await, 400, "CHECK_PARAM_ENUM", "icmp");
        send(&s, Method::PUT, &path, json!({})).await.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    }
    assert_eq!(detail(&s, "firewall", &id).await["title"], "edit target");
}

/// Every rule check of §9, through family A (`POST …/rules`), family B create (`rules[]`) and
/// family B edit (`PUT` with `rules`).
#[tokio::test]
async fn rule_fields_are_validated_in_both_families() {
    let s = fast().await;
    let ok =
        json!({"bound": "IN", "protocol": "TCP", "port": "22", "ip": "0.0.0.0/0", "title": "ssh", "content": "admin"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    let cases = [
        (with("bound", json!("in")), 400, "CHECK_PARAM_ENUM", "bound"),
        (with("bound", json!("BOTH")), 400, "CHECK_PARAM_ENUM", "bound"),
        (with("protocol", json!("tcp")), 400, "CHECK_PARAM_ENUM", "protocol"),
        (with("protocol", json!("ICMP")), 400, "CHECK_PARAM_ENUM", "protocol"),
        (with("port", json!("0")), 400, "CHECK_PARAM", "port"),
        (with("port", json!("65536")), 400, "CHECK_PARAM", "port"),
        (with("port", json!("20-10")), 400, "CHECK_PARAM", "port"),
        (with("port", json!("0-10")), 400, "CHECK_PARAM", "port"),
        (with("port", json!("1-65536")), 400, "CHECK_PARAM", "port"),
        (with("port", json!("http")), 400, "CHECK_PARAM", "port"),
        (with("port", json!("1-2-3")), 400, "CHECK_PARAM", "port"),
        (with("port", json!("")), 400, "CHECK_PARAM", "port"),
        (with("port", json!(-5)), 400, "CHECK_PARAM", "port"),
        (with("ip", json!("1.2.3.4")), 400, "CHECK_PARAM", "ip"),
        (with("ip", json!("1.2.3.4/33")), 400, "CHECK_PARAM", "ip"),
        (with("ip", json!("1.2.3/24")), 400, "CHECK_PARAM", "ip"),
        (with("ip", json!("anywhere")), 400, "CHECK_PARAM", "ip"),
        (with("ip", json!("::/0")), 400, "IPV6_NOT_SUPPORTED", "ip"),
        (with("ip", json!("2001:db8::/32")), 400, "IPV6_NOT_SUPPORTED", "ip"),
        (with("ip", json!("2001:db8::1")), 400, "IPV6_NOT_SUPPORTED", "ip"),
        (with("title", json!("")), 400, "CHECK_LENGTH", "title"),
        (with("title", json!("가".repeat(26))), 400, "CHECK_LENGTH", "title"),
        (with("content", json!("가".repeat(26))), 400, "CHECK_LENGTH", "content"),
        (with("bound", Value::Null), 400, "REQUIRED_POST_PARAM_MISSING", "bound"),
        (with("protocol", Value::Null), 400, "REQUIRED_POST_PARAM_MISSING", "protocol"),
        (with("port", Value::Null), 400, "REQUIRED_POST_PARAM_MISSING", "port"),
        (with("ip", Value::Null), 400, "REQUIRED_POST_PARAM_MISSING", "ip"),
        (with("title", Value::Null), 400, "REQUIRED_POST_PARAM_MISSING", "title"),
    ];
    let a = create_a(&s, "family A").await;
    let b = create_b(&s, "family B", json!([ok.clone()])).await;
    for (rule, status, code, field) in &cases {
        let r = send(&s, Method::POST, &format!("/v1/security-groups/{a}/rules"), rule.clone()).await;
        assert_error_naming(&r, *status, code, field);
        let r = send(
            &s,
            Method::POST,
            "/v1/firewall",
            json!({"title": "family B", "content": "x", "rules": [ok.clone(), rule]}),
        )
        .await;
        assert_error_naming(&r, *status, code, &format!("rules.1.{field}"));
        let r = send(&s, Method::PUT, &format!("/v1/firewall/{b}"), json!({"rules": [rule]})).await;
        assert_error_naming(&r, *status, code, &format!("rules.0.{field}"));
    }
    // Rule edits (family A) validate each given field the same way.
    let first =
        send(&s, Method::POST, &format!("/v1/security-groups/{a}/rules"), ok.clone()).await.ok_rows()[0].clone();
    let rule_path = format!("/v1/security-groups/{a}/rules/{}", first["rule_id"]);
    for (rule, status, code, field) in cases.iter().filter(|(_, _, code, _)| *code != "REQUIRED_POST_PARAM_MISSING") {
        let mut change = serde_json::Map::new();
        change.insert(field.to_string(), rule[*field].clone());
        let change = Value::Object(change);
        assert_error_naming(&send(&s, Method::PUT, &rule_path, change).await, *status, code, field);
    }
    send(&s, Method::PUT, &rule_path, json!({})).await.assert_error(400, "REQUIRED_POST_PARAM_MISSING");

    // Nothing invalid was written: A has its one rule, B its original one, one B firewall exists.
    assert_eq!(s.get(&format!("/v1/security-groups/{a}/rules")).await.ok_rows().len(), 1);
    assert_eq!(detail(&s, "firewall", &b).await["rules"].as_array().unwrap().len(), 1);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM firewalls").await, 2);

    // Accepted edges: ports as numbers, full range, host bits kept verbatim, content optional.
    let edges = [
        json!({"bound": "OUT", "protocol": "UDP", "port": 65535, "ip": "10.1.2.3/8", "title": "가".repeat(25), "content": "나".repeat(25)}),
        json!({"bound": "IN", "protocol": "UDP", "port": "1-65535", "ip": "192.168.0.1/32", "title": "x"}),
        json!({"bound": "IN", "protocol": "TCP", "port": "80-80", "ip": "0.0.0.0/0", "title": "x", "content": ""}),
    ];
    for e in &edges {
        let r = send(&s, Method::POST, &format!("/v1/security-groups/{a}/rules"), e.clone()).await;
        let row = r.ok_rows()[0].clone();
        assert!(row["rule_id"].is_i64(), "rule ids are integers: {row}");
        assert_eq!(row["ip"], e["ip"]);
        assert_eq!(row["port"].as_str().unwrap(), e["port"].to_string().trim_matches('"'));
    }
    let rules = s.get(&format!("/v1/security-groups/{a}/rules")).await;
    let rows = rules.ok_rows();
    assert_eq!(rows[1]["content"], "나".repeat(25));
    assert!(rows[2]["content"].is_null(), "omitted content is null: {}", rows[2]);
    assert!(rows[3]["content"].is_null(), "empty content is null: {}", rows[3]);
    let r = send(&s, Method::POST, "/v1/firewall", json!({"title": "family B", "content": "x", "rules": edges})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.result()[0]["rules"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn duplicates_are_refused() {
    let s = fast().await;
    let ssh = rule("IN", "TCP", "22", "0.0.0.0/0");
    let a = create_a(&s, "duplicates").await;
    send(&s, Method::POST, &format!("/v1/security-groups/{a}/rules"), ssh.clone()).await.ok_rows();
    // Same match with another title is still a duplicate.
    let mut retitled = ssh.clone();
    retitled["title"] = json!("other");
    for body in [ssh.clone(), retitled] {
        let r = send(&s, Method::POST, &format!("/v1/security-groups/{a}/rules"), body).await;
        r.assert_error(400, "CHECK_PARAM");
    }
    // Not duplicates: another port, another protocol, another bound, the same network written
    // with host bits.
    for other in [
        rule("IN", "TCP", "23", "0.0.0.0/0"),
        rule("IN", "UDP", "22", "0.0.0.0/0"),
        rule("OUT", "TCP", "22", "0.0.0.0/0"),
        rule("IN", "TCP", "22", "0.0.0.1/0"),
    ] {
        send(&s, Method::POST, &format!("/v1/security-groups/{a}/rules"), other).await.ok_rows();
    }
    // An edit that would make a rule equal to another.
    let rules = s.get(&format!("/v1/security-groups/{a}/rules")).await.ok_rows().clone();
    let second = rules[1]["rule_id"].clone();
    send(&s, Method::PUT, &format!("/v1/security-groups/{a}/rules/{second}"), json!({"port": "22"}))
        .await
        .assert_error(400, "CHECK_PARAM");
    // Family B: inside one request, on create and on replace.
    let r = send(
        &s,
        Method::POST,
        "/v1/firewall",
        json!({"title": "dups", "content": "x", "rules": [ssh.clone(), ssh.clone()]}),
    )
    .await;
    assert_error_naming(&r, 400, "CHECK_PARAM", "rules.1");
    let b = create_b(&s, "dups", json!([ssh.clone()])).await;
    let r = send(
        &s,
        Method::PUT,
        &format!("/v1/firewall/{b}"),
        json!({"rules": [ssh.clone(), rule("IN", "TCP", "80", "0.0.0.0/0"), ssh.clone()]}),
    )
    .await;
    assert_error_naming(&r, 400, "CHECK_PARAM", "rules.2");
    // Replacing with the same rule is not a duplicate of the rule it replaces.
    send(&s, Method::PUT, &format!("/v1/firewall/{b}"), json!({"rules": [ssh]})).await.ok_rows();
}

#[tokio::test]
async fn one_store_behind_two_path_families() {
    let s = fast().await;
    // Made through A, seen through B.
    let a = create_a(&s, "made in A").await;
    assert!(a.starts_with("FIREWALL-") && a.len() == "FIREWALL-".len() + 22, "{a}");
    let r =
        send(&s, Method::POST, &format!("/v1/security-groups/{a}/rules"), rule("IN", "TCP", "443", "0.0.0.0/0")).await;
    let rule_id = r.ok_rows()[0]["rule_id"].as_i64().unwrap();
    let seen = detail(&s, "firewall", &a).await;
    assert_eq!(seen["title"], "made in A");
    assert_eq!(seen["icmp"], "Y");
    assert_eq!(seen["instances"], json!([]));
    assert_eq!(
        seen["rules"],
        json!([{"rule_id": rule_id, "bound": "IN", "protocol": "TCP", "port": "443", "ip": "0.0.0.0/0", "title": "rule", "content": null}])
    );
    // Made through B, seen through A, with its rules.
    let b = create_b(
        &s,
        "made in B",
        json!([rule("IN", "TCP", "22", "10.0.0.0/8"), rule("OUT", "UDP", "53", "8.8.8.8/32")]),
    )
    .await;
    let seen = detail(&s, "security-groups", &b).await;
    assert_eq!(seen["title"], "made in B");
    let rules = s.get(&format!("/v1/security-groups/{b}/rules")).await;
    assert_eq!(rules.json["count"], 2);
    assert!(rules.json.get("page_no").is_none(), "rules are not paginated: {}", rules.text);
    let ids: Vec<i64> = rules.ok_rows().iter().map(|r| r["rule_id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    // Lists of both families are the same, in creation order, 50 per page by default.
    for family in ["security-groups", "firewall"] {
        let r = s.get(&format!("/v1/{family}")).await;
        let got: Vec<&str> = r.ok_rows().iter().map(|f| f["firewall_id"].as_str().unwrap()).collect();
        assert_eq!(got, vec![a.as_str(), b.as_str()]);
        assert_eq!(
            (r.json["page_size"].as_u64(), r.json["page_no"].as_u64(), r.json.get("total")),
            (Some(50), Some(1), None),
            "no total [iwinv live]: {}",
            r.text
        );
        let r = s.get(&format!("/v1/{family}?page_size=1&page_no=2")).await;
        assert_eq!(r.ok_rows()[0]["firewall_id"], b.as_str());
        assert!(s.get(&format!("/v1/{family}?page_no=3&page_size=1")).await.ok_rows().is_empty());
        s.get(&format!("/v1/{family}?page_size=0")).await.assert_error(400, "CHECK_PARAM");
    }

    // An edit that omits fields keeps them (both families).
    send(&s, Method::PUT, &format!("/v1/security-groups/{b}"), json!({"title": "renamed in A"})).await.ok_rows();
    let after = detail(&s, "firewall", &b).await;
    assert_eq!(
        (after["title"].as_str(), after["content"].as_str(), after["icmp"].as_str()),
        (Some("renamed in A"), Some("설명"), Some("Y"))
    );
    assert_eq!(after["rules"].as_array().unwrap().len(), 2, "rules kept");
    let r = send(&s, Method::PUT, &format!("/v1/firewall/{b}"), json!({"icmp": "N"})).await;
    assert_eq!(r.ok_rows()[0]["icmp"], "N");
    assert_eq!(r.ok_rows()[0]["title"], "renamed in A");
    assert_eq!(r.ok_rows()[0]["rules"], after["rules"], "an edit without `rules` keeps them");
    // Family B with `rules` replaces the whole set; new rules get new ids.
    let r = send(
        &s,
        Method::PUT,
        &format!("/v1/firewall/{b}"),
        json!({"rules": [rule("IN", "UDP", "51820", "0.0.0.0/0")]}),
    )
    .await;
    let row = r.ok_rows()[0].clone();
    assert_eq!(row["rules"].as_array().unwrap().len(), 1);
    assert_eq!(row["rules"][0]["port"], "51820");
    assert!(!ids.contains(&row["rules"][0]["rule_id"].as_i64().unwrap()), "rule ids are not reused");
    assert_eq!(s.get(&format!("/v1/security-groups/{b}/rules")).await.ok_rows().len(), 1);
    let r = send(&s, Method::PUT, &format!("/v1/firewall/{b}"), json!({"rules": []})).await;
    assert_eq!(r.ok_rows()[0]["rules"], json!([]));

    // A rule edit that omits fields keeps them; so do an empty and a null content [iwinv live].
    let path = format!("/v1/security-groups/{a}/rules/{rule_id}");
    let r = send(&s, Method::PUT, &path, json!({"content": "web", "port": "8443"})).await;
    assert_eq!(
        r.ok_rows()[0],
        json!({"rule_id": rule_id, "bound": "IN", "protocol": "TCP", "port": "8443", "ip": "0.0.0.0/0", "title": "rule", "content": "web"})
    );
    let r = send(&s, Method::PUT, &path, json!({"title": "https", "content": ""})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.ok_rows()[0],
        json!({"rule_id": rule_id, "bound": "IN", "protocol": "TCP", "port": "8443", "ip": "0.0.0.0/0", "title": "https", "content": "web"})
    );
    assert_eq!(detail(&s, "firewall", &a).await["rules"][0]["title"], "https");
    // Unknown rules and non-integer rule ids are 404.
    for bad in ["999999", "abc", "1.5"] {
        send(&s, Method::PUT, &format!("/v1/security-groups/{a}/rules/{bad}"), json!({"title": "x"}))
            .await
            .assert_error(404, "NOT_FOUND");
        s.call(Method::DELETE, &format!("/v1/security-groups/{a}/rules/{bad}"), None)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    // Rule delete is a string acknowledgement.
    let r = s.call(Method::DELETE, &path, None).await;
    assert_eq!(
        (r.status, r.json["result"].as_str(), r.json["code"].as_str()),
        (200, Some("success"), Some("0x00")),
        "{}",
        r.text
    );
    assert!(s.get(&format!("/v1/security-groups/{a}/rules")).await.ok_rows().is_empty());
    s.call(Method::DELETE, &path, None).await.assert_error(404, "NOT_FOUND");

    // Deleted through B, gone through A: detail is 200 [] count 0 [iwinv]; other calls 404.
    let r = s.call(Method::DELETE, &format!("/v1/firewall/{a}"), None).await;
    assert_eq!((r.status, r.json["result"].as_str()), (200, Some("success")), "{}", r.text);
    for family in ["security-groups", "firewall"] {
        for id in [a.as_str(), "FIREWALL-doesnotexist000000000000"] {
            let r = s.get(&format!("/v1/{family}/{id}")).await;
            assert!(r.ok_rows().is_empty());
            assert_eq!(r.json["count"], 0);
            send(&s, Method::PUT, &format!("/v1/{family}/{id}"), json!({"title": "gone!"}))
                .await
                .assert_error(404, "NOT_FOUND");
            s.call(Method::DELETE, &format!("/v1/{family}/{id}"), None).await.assert_error(404, "NOT_FOUND");
            s.get(&format!("/v1/{family}/{id}/instances")).await.assert_error(404, "NOT_FOUND");
        }
    }
    s.get(&format!("/v1/security-groups/{a}/rules")).await.assert_error(404, "NOT_FOUND");
    send(&s, Method::POST, &format!("/v1/security-groups/{a}/rules"), rule("IN", "TCP", "1", "0.0.0.0/0"))
        .await
        .assert_error(404, "NOT_FOUND");
    assert_eq!(
        s.db_count("SELECT COUNT(*) FROM firewall_rules WHERE firewall_id NOT IN (SELECT firewall_id FROM firewalls)")
            .await,
        0
    );
}

#[tokio::test]
async fn content_is_html_escaped_on_output_and_titles_are_verbatim() {
    let s = fast().await;
    let content = r#"<b>"Tom's" & co</b>"#;
    let escaped = "&lt;b&gt;&quot;Tom&#039;s&quot; &amp; co&lt;/b&gt;";
    let title = r#"<i>"it's" & x</i>"#;
    let r = send(&s, Method::POST, "/v1/security-groups", json!({"title": title, "content": content})).await;
    let row = r.ok_rows()[0].clone();
    assert_eq!((row["content"].as_str(), row["title"].as_str()), (Some(escaped), Some(title)));
    let id = row["firewall_id"].as_str().unwrap().to_owned();
    let r = send(
        &s,
        Method::POST,
        &format!("/v1/security-groups/{id}/rules"),
        json!({"bound": "IN", "protocol": "TCP", "port": "1", "ip": "0.0.0.0/0", "title": "<x>&", "content": "'y'"}),
    )
    .await;
    assert_eq!((r.ok_rows()[0]["title"].as_str(), r.ok_rows()[0]["content"].as_str()), (Some("<x>&"), Some("'y'")));
    for family in ["security-groups", "firewall"] {
        assert_eq!(detail(&s, family, &id).await["content"], escaped);
        assert_eq!(s.get(&format!("/v1/{family}")).await.ok_rows()[0]["content"], escaped);
    }
    // Stored as given: an edit of another field does not escape it twice.
    send(&s, Method::PUT, &format!("/v1/firewall/{id}"), json!({"icmp": "N"})).await.ok_rows();
    assert_eq!(detail(&s, "firewall", &id).await["content"], escaped);
    // The 50-character bound counts the text as given, not its escaped form.
    let r = send(&s, Method::POST, "/v1/firewall", json!({"title": "long escapes", "content": "&".repeat(50)})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.result()[0]["content"], "&amp;".repeat(50));
}

#[tokio::test]
async fn every_encoding_is_accepted() {
    let s = fast().await;
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    let fields = [
        ("title", "form firewall"),
        ("content", "x"),
        ("icmp", "N"),
        ("rules.0.bound", "IN"),
        ("rules.0.protocol", "TCP"),
        ("rules.0.port", "22"),
        ("rules.0.ip", "10.0.0.0/8"),
        ("rules.0.title", "ssh"),
        ("rules.1.bound", "OUT"),
        ("rules.1.protocol", "UDP"),
        ("rules.1.port", "53"),
        ("rules.1.ip", "1.1.1.1/32"),
        ("rules.1.title", "dns"),
    ];
    for body in [Body::Form(pairs(&fields)), Body::Multipart(pairs(&fields))] {
        let r = s.call(Method::POST, "/v1/firewall", Some(body)).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let row = &r.result()[0];
        assert_eq!(row["icmp"], "N");
        assert_eq!(row["rules"].as_array().unwrap().len(), 2);
        assert_eq!(row["rules"][1]["ip"], "1.1.1.1/32");
    }
    let r = s
        .call(
            Method::POST,
            "/v1/firewall",
            Some(Body::Form(pairs(&[("title", "form firewall"), ("content", "x"), ("rules.0.bound", "SIDEWAYS")]))),
        )
        .await;
    assert_error_naming(&r, 400, "CHECK_PARAM_ENUM", "rules.0.bound");
    let id = create_a(&s, "form rules").await;
    let r = s
        .call(
            Method::POST,
            &format!("/v1/security-groups/{id}/rules"),
            Some(Body::Form(pairs(&[
                ("bound", "IN"),
                ("protocol", "UDP"),
                ("port", "1000-2000"),
                ("ip", "0.0.0.0/0"),
                ("title", "range"),
            ]))),
        )
        .await;
    assert_eq!(r.ok_rows()[0]["port"], "1000-2000");
    let r = s
        .call(
            Method::POST,
            &format!("/v1/security-groups/{id}/attach"),
            Some(Body::Multipart(pairs(&[("instance_id", "INSTANCE-nope")]))),
        )
        .await;
    assert_error_naming(&r, 400, "ID_INVALID", "INSTANCE-nope");
    let r = s
        .call(
            Method::POST,
            "/v1/firewall",
            Some(Body::Raw { content_type: "application/json".into(), bytes: b"{\"title\":".to_vec() }),
        )
        .await;
    r.assert_error(400, "CHECK_PARAM");
}

#[tokio::test]
async fn limits() {
    let s = fast().await;
    let many = |n: usize| json!((1..=n).map(|p| rule("IN", "TCP", &p.to_string(), "0.0.0.0/0")).collect::<Vec<_>>());
    // 100 rules per firewall, on create, replace and add.
    let r =
        send(&s, Method::POST, "/v1/firewall", json!({"title": "too many", "content": "x", "rules": many(101)})).await;
    r.assert_error(403, "LIMIT_EXCEEDED");
    let full = create_b(&s, "full house", many(100)).await;
    assert_eq!(s.get(&format!("/v1/security-groups/{full}/rules")).await.ok_rows().len(), 100);
    let r =
        send(&s, Method::POST, &format!("/v1/security-groups/{full}/rules"), rule("IN", "TCP", "1000", "0.0.0.0/0"))
            .await;
    r.assert_error(403, "LIMIT_EXCEEDED");
    send(&s, Method::PUT, &format!("/v1/firewall/{full}"), json!({"rules": many(101)}))
        .await
        .assert_error(403, "LIMIT_EXCEEDED");
    send(&s, Method::PUT, &format!("/v1/security-groups/{full}"), json!({"rules": many(101)}))
        .await
        .assert_error(403, "LIMIT_EXCEEDED");
    assert_eq!(s.get(&format!("/v1/security-groups/{full}/rules")).await.ok_rows().len(), 100);
    // After deleting one, one more fits.
    let first = s.get(&format!("/v1/security-groups/{full}/rules")).await.ok_rows()[0]["rule_id"].clone();
    s.call(Method::DELETE, &format!("/v1/security-groups/{full}/rules/{first}"), None).await;
    send(&s, Method::POST, &format!("/v1/security-groups/{full}/rules"), rule("IN", "TCP", "1000", "0.0.0.0/0"))
        .await
        .ok_rows();

    // 5 firewalls per instance.
    let vm = instance(&s).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(create_a(&s, &format!("limit {i}")).await);
    }
    for id in &ids[..5] {
        assert_eq!(attachment(&s, "security-groups", id, "attach", &vm).await["status"], "succeeded");
    }
    let r = send(&s, Method::POST, &format!("/v1/firewall/{}/attach", ids[5]), json!({"instance_id": vm})).await;
    r.assert_error(403, "LIMIT_EXCEEDED");
    // Re-attaching one already attached is still fine at the limit.
    assert_eq!(attachment(&s, "firewall", &ids[0], "attach", &vm).await["status"], "succeeded");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM firewall_attachments").await, 5);
    attachment(&s, "firewall", &ids[0], "detach", &vm).await;
    assert_eq!(attachment(&s, "firewall", &ids[5], "attach", &vm).await["status"], "succeeded");
}

#[tokio::test]
async fn attach_and_detach() {
    let s = fast().await;
    let vm = instance(&s).await;
    let other_vm = instance(&s).await;
    let fw = create_b(&s, "web servers", json!([rule("IN", "TCP", "80", "0.0.0.0/0")])).await;

    // Attach (A), idempotently; seen through both families.
    let op = attachment(&s, "security-groups", &fw, "attach", &vm).await;
    assert_eq!((op["status"].as_str(), op["resource_id"].as_str()), (Some("succeeded"), Some(fw.as_str())));
    assert_eq!(attachment(&s, "security-groups", &fw, "attach", &vm).await["status"], "succeeded");
    assert_eq!(attachment(&s, "firewall", &fw, "attach", &vm).await["status"], "succeeded");
    attachment(&s, "firewall", &fw, "attach", &other_vm).await;
    for family in ["security-groups", "firewall"] {
        assert_eq!(attached_to(&s, family, &fw).await, vec![json!(vm), json!(other_vm)]);
        assert_eq!(detail(&s, family, &fw).await["instances"], json!([vm, other_vm]));
    }
    assert_eq!(s.db_count("SELECT COUNT(*) FROM firewall_attachments").await, 2);

    // Errors: unknown firewall, unknown instance, missing instance_id.
    for family in ["security-groups", "firewall"] {
        for action in ["attach", "detach"] {
            let path = format!("/v1/{family}/FIREWALL-doesnotexist000000000000/{action}");
            send(&s, Method::POST, &path, json!({"instance_id": vm})).await.assert_error(404, "NOT_FOUND");
            let path = format!("/v1/{family}/{fw}/{action}");
            let r = send(&s, Method::POST, &path, json!({"instance_id": "INSTANCE-doesnotexist000000000000"})).await;
            assert_error_naming(&r, 400, "ID_INVALID", "INSTANCE-doesnotexist000000000000");
            assert_error_naming(
                &send(&s, Method::POST, &path, json!({})).await,
                400,
                "REQUIRED_POST_PARAM_MISSING",
                "instance_id",
            );
            assert_error_naming(
                &send(&s, Method::POST, &path, json!({"instance_id": " "})).await,
                400,
                "REQUIRED_POST_PARAM_MISSING",
                "instance_id",
            );
        }
    }

    // A rule change on an attached firewall re-applies it (firewall.sync, id in X-Operation-Id).
    let r =
        send(&s, Method::POST, &format!("/v1/security-groups/{fw}/rules"), rule("IN", "TCP", "443", "0.0.0.0/0")).await;
    r.ok_rows();
    let op = r.header("x-operation-id").expect("a sync operation").to_owned();
    let done = s.wait_operation(&op).await;
    assert_eq!((done["kind"].as_str(), done["status"].as_str()), (Some("firewall.sync"), Some("succeeded")));
    let r = send(&s, Method::PUT, &format!("/v1/firewall/{fw}"), json!({"title": "renamed web"})).await;
    assert!(r.header("x-operation-id").is_none(), "a title change needs no re-apply");

    // Delete refused while attached, in both families.
    for family in ["security-groups", "firewall"] {
        s.call(Method::DELETE, &format!("/v1/{family}/{fw}"), None).await.assert_error(409, "IN_USE");
    }
    // Detach (B), idempotently.
    assert_eq!(attachment(&s, "firewall", &fw, "detach", &vm).await["status"], "succeeded");
    assert_eq!(attachment(&s, "security-groups", &fw, "detach", &vm).await["status"], "succeeded");
    assert_eq!(attached_to(&s, "firewall", &fw).await, vec![json!(other_vm)]);
    s.call(Method::DELETE, &format!("/v1/firewall/{fw}"), None).await.assert_error(409, "IN_USE");

    // Deleting an instance removes its attachments; then the firewall can go.
    let r = s.call(Method::DELETE, &format!("/v1/instances/{other_vm}"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert!(attached_to(&s, "security-groups", &fw).await.is_empty());
    let r = s.call(Method::DELETE, &format!("/v1/security-groups/{fw}"), None).await;
    assert_eq!(r.json["result"], "success", "{}", r.text);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM firewall_attachments").await, 0);
}

#[tokio::test]
async fn a_failed_attach_or_detach_leaves_no_trace() {
    let s = fast().await;
    let vm = instance(&s).await;
    let fw = create_a(&s, "faulty").await;
    let fault = |kind: &str| json!({"kind": kind, "step": "apply_firewall", "mode": "once"});
    s.admin(Method::POST, "/admin/v1/faults", Some(fault("firewall.attach"))).await.ok_rows();
    let op = attachment(&s, "security-groups", &fw, "attach", &vm).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert!(op["error"].as_str().unwrap().contains("apply_firewall"), "{op}");
    assert!(attached_to(&s, "security-groups", &fw).await.is_empty(), "the attachment was taken back");

    attachment(&s, "security-groups", &fw, "attach", &vm).await;
    s.admin(Method::POST, "/admin/v1/faults", Some(fault("firewall.detach"))).await.ok_rows();
    let op = attachment(&s, "firewall", &fw, "detach", &vm).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert_eq!(attached_to(&s, "firewall", &fw).await, vec![json!(vm)], "the attachment was put back");

    // A repeated attach that fails does not remove the attachment it found.
    s.admin(Method::POST, "/admin/v1/faults", Some(fault("firewall.attach"))).await.ok_rows();
    assert_eq!(attachment(&s, "firewall", &fw, "attach", &vm).await["status"], "failed");
    assert_eq!(attached_to(&s, "firewall", &fw).await, vec![json!(vm)]);
}

#[tokio::test]
async fn a_busy_instance_refuses_attach_and_detach() {
    let s = Server::start_with(&["--sim-mode", "explicit", "--default-rate-limit", "0"], &[]).await;
    let fw = create_a(&s, "waiting").await;
    let r = send(
        &s,
        Method::POST,
        "/v1/instances",
        json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1"}),
    )
    .await;
    let vm = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let create_op = r.header("x-operation-id").unwrap().to_owned();
    for family in ["security-groups", "firewall"] {
        for action in ["attach", "detach"] {
            let r = send(&s, Method::POST, &format!("/v1/{family}/{fw}/{action}"), json!({"instance_id": vm})).await;
            r.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
        }
    }
    for _ in 0..2 {
        s.admin(Method::POST, &format!("/admin/v1/sim/step/{create_op}"), None).await.ok_rows();
    }
    s.wait_status(&vm, "active").await;
    // Accepted at once and visible at once; the driver step waits for the operator.
    let r = send(&s, Method::POST, &format!("/v1/firewall/{fw}/attach"), json!({"instance_id": vm})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.header("x-operation-id").unwrap().to_owned();
    assert_eq!(attached_to(&s, "firewall", &fw).await, vec![json!(vm)]);
    assert_eq!(s.get(&format!("/v1/operations/{op}")).await.ok_rows()[0]["status"], "running");
    s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
    // An instance being deleted is busy too.
    let r = s.call(Method::DELETE, &format!("/v1/instances/{vm}"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    send(&s, Method::POST, &format!("/v1/firewall/{fw}/detach"), json!({"instance_id": vm}))
        .await
        .assert_error(409, "DELETED_OR_WORKING_INSTANCE");
}

#[tokio::test]
async fn tenants_are_isolated_on_every_endpoint() {
    let s = fast().await;
    let (key, secret) = s.new_account("other", json!({})).await;
    let mine = create_b(&s, "mine", json!([rule("IN", "TCP", "22", "0.0.0.0/0")])).await;
    let vm = instance(&s).await;
    let rule_id = s.get(&format!("/v1/firewall/{mine}")).await.ok_rows()[0]["rules"][0]["rule_id"].clone();
    let as_other = |method: Method, path: String, body: Option<Value>| {
        let (key, secret) = (key.clone(), secret.clone());
        let s = &s;
        async move { s.call_as(&key, &secret, method, &path, body.map(Body::Json)).await }
    };

    for family in ["security-groups", "firewall"] {
        let r = as_other(Method::GET, format!("/v1/{family}"), None).await;
        assert!(r.ok_rows().is_empty(), "{}", r.text);
        assert_eq!(r.json["count"], 0);
        let r = as_other(Method::GET, format!("/v1/{family}/{mine}"), None).await;
        assert!(r.ok_rows().is_empty(), "detail as if unknown: {}", r.text);
        as_other(Method::PUT, format!("/v1/{family}/{mine}"), Some(json!({"title": "stolen"})))
            .await
            .assert_error(404, "NOT_FOUND");
        as_other(Method::DELETE, format!("/v1/{family}/{mine}"), None).await.assert_error(404, "NOT_FOUND");
        as_other(Method::GET, format!("/v1/{family}/{mine}/instances"), None).await.assert_error(404, "NOT_FOUND");
        for action in ["attach", "detach"] {
            as_other(Method::POST, format!("/v1/{family}/{mine}/{action}"), Some(json!({"instance_id": vm})))
                .await
                .assert_error(404, "NOT_FOUND");
        }
    }
    as_other(Method::GET, format!("/v1/security-groups/{mine}/rules"), None).await.assert_error(404, "NOT_FOUND");
    as_other(Method::POST, format!("/v1/security-groups/{mine}/rules"), Some(rule("IN", "TCP", "23", "0.0.0.0/0")))
        .await
        .assert_error(404, "NOT_FOUND");
    as_other(Method::PUT, format!("/v1/security-groups/{mine}/rules/{rule_id}"), Some(json!({"port": "2222"})))
        .await
        .assert_error(404, "NOT_FOUND");
    as_other(Method::DELETE, format!("/v1/security-groups/{mine}/rules/{rule_id}"), None)
        .await
        .assert_error(404, "NOT_FOUND");

    // The other account's own firewall cannot take my instance, nor mine theirs.
    let r = as_other(Method::POST, "/v1/firewall".into(), Some(json!({"title": "theirs", "content": "x"}))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let theirs = r.result()[0]["firewall_id"].as_str().unwrap().to_owned();
    for family in ["security-groups", "firewall"] {
        let r = as_other(Method::POST, format!("/v1/{family}/{theirs}/attach"), Some(json!({"instance_id": vm}))).await;
        r.assert_error(400, "ID_INVALID");
        send(&s, Method::POST, &format!("/v1/{family}/{theirs}/attach"), json!({"instance_id": vm}))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    // Nothing changed for the owner.
    let row = detail(&s, "firewall", &mine).await;
    assert_eq!((row["title"].as_str(), row["rules"].as_array().unwrap().len()), (Some("mine"), 1));
    assert_eq!(s.get("/v1/firewall").await.ok_rows().len(), 1);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM firewall_attachments").await, 0);
}

#[tokio::test]
async fn steps_are_idempotent_and_survive_a_crash() {
    // Every step (and undo) runs twice.
    let s =
        Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[("OPENWINV_SIM_REPEAT_STEPS", "1")])
            .await;
    let vm = instance(&s).await;
    let fw = create_b(&s, "twice", json!([rule("IN", "TCP", "22", "0.0.0.0/0")])).await;
    assert_eq!(attachment(&s, "firewall", &fw, "attach", &vm).await["status"], "succeeded");
    let r = send(&s, Method::POST, &format!("/v1/security-groups/{fw}/rules"), rule("OUT", "TCP", "443", "0.0.0.0/0"))
        .await;
    assert_eq!(s.wait_operation(r.header("x-operation-id").unwrap()).await["status"], "succeeded");
    assert_eq!(attachment(&s, "firewall", &fw, "detach", &vm).await["status"], "succeeded");
    s.admin(
        Method::POST,
        "/admin/v1/faults",
        Some(json!({"kind": "firewall.attach", "step": "apply_firewall", "mode": "once"})),
    )
    .await
    .ok_rows();
    assert_eq!(attachment(&s, "firewall", &fw, "attach", &vm).await["status"], "failed");
    assert!(attached_to(&s, "firewall", &fw).await.is_empty());
    drop(s);

    // An accepted attach whose server dies before the driver step finishes after a restart.
    let mut s = Server::start_with(&["--sim-mode", "explicit", "--default-rate-limit", "0"], &[]).await;
    let fw = create_a(&s, "crash test").await;
    let r = send(
        &s,
        Method::POST,
        "/v1/instances",
        json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1"}),
    )
    .await;
    let vm = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let create_op = r.header("x-operation-id").unwrap().to_owned();
    for _ in 0..2 {
        s.admin(Method::POST, &format!("/admin/v1/sim/step/{create_op}"), None).await.ok_rows();
    }
    s.wait_status(&vm, "active").await;
    let r = send(&s, Method::POST, &format!("/v1/firewall/{fw}/attach"), json!({"instance_id": vm})).await;
    let op = r.header("x-operation-id").unwrap().to_owned();
    s.kill9().await;
    s.restart().await;
    assert_eq!(attached_to(&s, "firewall", &fw).await, vec![json!(vm)]);
    s.admin(Method::POST, &format!("/admin/v1/sim/step/{op}"), None).await.ok_rows();
    assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
}
