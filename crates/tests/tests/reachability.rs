//! `GET /v1/instances/{id}/reachability` [ext] and `openwinv firewalls check`: answers from the
//! evaluator over the compiled rules, through the real binary (simulated driver), on the store
//! the run selects.

use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};

async fn fast() -> Server {
    Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await
}

async fn send(s: &Server, method: Method, path: &str, body: Value) -> Resp {
    s.call(method, path, Some(Body::Json(body))).await
}

fn rule(bound: &str, protocol: &str, port: &str, ip: &str) -> Value {
    json!({"bound": bound, "protocol": protocol, "port": port, "ip": ip, "title": "rule"})
}

/// An active instance of the bootstrap account; returns (id, private address, public address).
async fn instance(s: &Server, name: &str, public: bool) -> (String, String, Option<String>) {
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": name,
        "attach_public_ip": public});
    let r = send(s, Method::POST, "/v1/instances", body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "active").await;
    let row = s.get(&format!("/v1/instances/{id}?fields=256")).await.ok_rows()[0].clone();
    let private = row["ip"][0]["private"]["address"].as_str().expect("a private address").to_owned();
    let public_ip = row["ip"][0]["public"]["address"].as_str().map(str::to_owned);
    assert_eq!(public_ip.is_some(), public, "{row}");
    (id, private, public_ip)
}

/// Creates a family-B firewall with rules, attaches it to `instance_id` and waits; returns its id
/// and its rules' ids in order.
async fn firewall_on(s: &Server, title: &str, icmp: &str, rules: Value, instance_id: &str) -> (String, Vec<i64>) {
    let r =
        send(s, Method::POST, "/v1/firewall", json!({"title": title, "content": "c", "icmp": icmp, "rules": rules}))
            .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["firewall_id"].as_str().unwrap().to_owned();
    s.wait_operation(r.header("x-operation-id").unwrap()).await;
    let r = send(s, Method::POST, &format!("/v1/firewall/{id}/attach"), json!({"instance_id": instance_id})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(s.wait_operation(r.header("x-operation-id").unwrap()).await["status"], "succeeded");
    let rules = s.get(&format!("/v1/firewall/{id}")).await.ok_rows()[0]["rules"].clone();
    let ids = rules.as_array().unwrap().iter().map(|r| r["rule_id"].as_i64().unwrap()).collect();
    (id, ids)
}

async fn ask(s: &Server, id: &str, query: &str) -> Value {
    let r = s.get(&format!("/v1/instances/{id}/reachability?{query}")).await;
    let rows = r.ok_rows();
    assert_eq!(rows.len(), 1, "{}", r.text);
    rows[0].clone()
}

/// Checks an answer against `expected`: "verdict gate direction step", `-` for an absent
/// direction or step (e.g. "accept chains in rule"), and the deciding rules.
#[track_caller]
fn verdict(v: &Value, expected: &str, rules: &[String]) {
    let got = [&v["verdict"], &v["gate"], &v["direction"], &v["step"]].map(|f| f.as_str().unwrap_or("-").to_owned());
    assert_eq!(got.join(" "), expected, "{v}");
    let got: Vec<String> = v["rules"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    assert_eq!(got, rules, "{v}");
    assert!(!v["reason"].as_str().unwrap().is_empty(), "{v}");
}

/// Sends a firewall write and waits for the operation it started, if any.
async fn change(s: &Server, method: Method, path: &str, body: Value) -> Resp {
    let r = send(s, method, path, body).await;
    assert!(r.status < 300, "{}", r.text);
    if let Some(op) = r.header("x-operation-id") {
        s.wait_operation(op).await;
    }
    r
}

#[tokio::test]
async fn answers_follow_the_compiled_rules() {
    let s = fast().await;
    let (web, web_private, web_public) = instance(&s, "web", true).await;
    let (db, db_private, _) = instance(&s, "db", false).await;
    let web_public = web_public.unwrap();

    // No firewall: everything passes, from a neighbour and from outside to the public address.
    let v = ask(&s, &web, &format!("from={db}&protocol=TCP&port=80")).await;
    verdict(&v, "accept chains in default", &[]);
    assert_eq!((v["source_ip"].as_str(), v["destination_ip"].as_str()), (Some(&*db_private), Some(&*web_private)));
    assert_eq!(
        (v["from"].as_str(), v["instance_id"].as_str(), v["port"].as_u64()),
        (Some(&*db), Some(&*web), Some(80))
    );
    let v = ask(&s, &web, "from=198.51.100.7&protocol=UDP&port=53").await;
    verdict(&v, "accept chains in default", &[]);
    assert_eq!(v["destination_ip"].as_str(), Some(&*web_public));
    // The same neighbour named by its private address is the same machine.
    let v = ask(&s, &web, &format!("from={db_private}&protocol=TCP&port=80")).await;
    assert_eq!(v["source_ip"].as_str(), Some(&*db_private));
    verdict(&v, "accept chains in default", &[]);
    // No public address: nothing outside reaches it.
    verdict(&ask(&s, &db, "from=198.51.100.7&protocol=TCP&port=22").await, "drop not_public - -", &[]);
    // A private address that is no machine's, arriving from outside, is spoofed.
    let stranger =
        if web_private == "10.16.255.254" || db_private == "10.16.255.254" { "10.16.255.253" } else { "10.16.255.254" };
    verdict(
        &ask(&s, &web, &format!("from={stranger}&protocol=TCP&port=22")).await,
        "drop spoofed_from_outside - -",
        &[],
    );

    // A firewall on web: SSH from anywhere, ICMP off.
    let (fw, ids) = firewall_on(&s, "web-only-ssh", "N", json!([rule("IN", "TCP", "22", "0.0.0.0/0")]), &web).await;
    let ssh = vec![format!("{fw}#{}", ids[0])];
    verdict(&ask(&s, &web, &format!("from={db}&protocol=TCP&port=22")).await, "accept chains in rule", &ssh);
    verdict(&ask(&s, &web, &format!("from={db}&protocol=TCP&port=80")).await, "drop chains in default", &[]);
    verdict(&ask(&s, &web, &format!("from={db}&protocol=UDP&port=22")).await, "drop chains in default", &[]);
    verdict(&ask(&s, &web, &format!("from={db}&protocol=ICMP")).await, "drop chains in default", &[]);
    verdict(&ask(&s, &web, "from=198.51.100.7&protocol=TCP&port=22").await, "accept chains in rule", &ssh);
    // The other way round nothing changed: db has no firewall, web's outbound is open.
    verdict(&ask(&s, &db, &format!("from={web}&protocol=TCP&port=80")).await, "accept chains in default", &[]);

    // A rule opens port 80 to the private network only; the answer changes with it.
    let r =
        change(&s, Method::POST, &format!("/v1/security-groups/{fw}/rules"), rule("IN", "TCP", "80", "10.16.0.0/16"))
            .await;
    let http = r.ok_rows()[0]["rule_id"].as_i64().unwrap();
    let opened = vec![format!("{fw}#{http}")];
    verdict(&ask(&s, &web, &format!("from={db}&protocol=TCP&port=80")).await, "accept chains in rule", &opened);
    verdict(&ask(&s, &web, "from=198.51.100.7&protocol=TCP&port=80").await, "drop chains in default", &[]);
    // ICMP on: the firewall's id is the deciding source.
    let r = change(&s, Method::PUT, &format!("/v1/security-groups/{fw}"), json!({"icmp": "Y"})).await;
    r.ok_rows();
    verdict(
        &ask(&s, &web, &format!("from={db}&protocol=ICMP")).await,
        "accept chains in icmp",
        std::slice::from_ref(&fw),
    );

    // An OUT rule on db restricts what db sends: its outbound chain decides first.
    let (egress, eids) = firewall_on(&s, "db-egress", "Y", json!([rule("OUT", "TCP", "443", "0.0.0.0/0")]), &db).await;
    verdict(&ask(&s, &web, &format!("from={db}&protocol=TCP&port=22")).await, "drop chains out default", &[]);
    let v = ask(&s, &web, &format!("from={db}&protocol=TCP&port=80")).await;
    verdict(&v, "drop chains out default", &[]);
    // Outbound to 443 passes db's chain; web has no rule for 443, so its inbound chain drops.
    verdict(&ask(&s, &web, &format!("from={db}&protocol=TCP&port=443")).await, "drop chains in default", &[]);
    // Open 443 on web as well: both chains accept, the inbound rule is the one named.
    let r = change(&s, Method::POST, &format!("/v1/security-groups/{fw}/rules"), rule("IN", "TCP", "443", "0.0.0.0/0"))
        .await;
    let https = r.ok_rows()[0]["rule_id"].as_i64().unwrap();
    verdict(
        &ask(&s, &web, &format!("from={db}&protocol=TCP&port=443")).await,
        "accept chains in rule",
        &[format!("{fw}#{https}")],
    );
    assert_eq!(eids.len(), 1);

    // Detaching the egress firewall opens db's outbound again.
    let r = send(&s, Method::POST, &format!("/v1/firewall/{egress}/detach"), json!({"instance_id": db})).await;
    assert_eq!(s.wait_operation(r.header("x-operation-id").unwrap()).await["status"], "succeeded");
    verdict(&ask(&s, &web, &format!("from={db}&protocol=TCP&port=80")).await, "accept chains in rule", &opened);

    // The CLI asks the same question, by instance name.
    let row = s
        .cli_run(&["--json", "firewalls", "check", "web", "--from", "db", "--protocol", "tcp", "--port", "22"])
        .await
        .ok()
        .row();
    verdict(&row, "accept chains in rule", &ssh);
    let row = s
        .cli_run(&[
            "--json",
            "firewalls",
            "check",
            &web,
            "--from",
            "198.51.100.7",
            "--protocol",
            "TCP",
            "--port",
            "3306",
        ])
        .await
        .ok()
        .row();
    verdict(&row, "drop chains in default", &[]);
    s.cli_run(&["firewalls", "check", "web", "--from", "db", "--protocol", "icmp"]).await.ok().stdout_has("accept");
}

#[tokio::test]
async fn bad_questions_are_refused_naming_the_parameter() {
    let s = fast().await;
    let (web, _, _) = instance(&s, "web", true).await;
    let cases = [
        ("protocol=TCP&port=22", 400, "REQUIRED_GET_PARAM_MISSING", "from"),
        ("from=1.2.3.4&port=22", 400, "REQUIRED_GET_PARAM_MISSING", "protocol"),
        ("from=1.2.3.4&protocol=TCP", 400, "REQUIRED_GET_PARAM_MISSING", "port"),
        ("from=1.2.3.4&protocol=tcp&port=22", 400, "CHECK_PARAM_ENUM", "protocol"),
        ("from=1.2.3.4&protocol=SCTP&port=22", 400, "CHECK_PARAM_ENUM", "protocol"),
        ("from=1.2.3.4&protocol=TCP&port=0", 400, "CHECK_PARAM", "port"),
        ("from=1.2.3.4&protocol=TCP&port=65536", 400, "CHECK_PARAM", "port"),
        ("from=1.2.3.4&protocol=TCP&port=2x", 400, "CHECK_PARAM", "port"),
        ("from=1.2.3.4&protocol=ICMP&port=22", 400, "CHECK_PARAM", "port"),
        ("from=%3A%3A1&protocol=TCP&port=22", 400, "IPV6_NOT_SUPPORTED", "from"),
        ("from=INSTANCE-nope&protocol=TCP&port=22", 404, "NOT_FOUND", "from"),
    ];
    for (query, status, code, field) in cases {
        let r = s.get(&format!("/v1/instances/{web}/reachability?{query}")).await;
        r.assert_error(status, code);
        let message = r.json["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{field}`")), "{query}: message should name `{field}`: {message}");
    }
    s.get("/v1/instances/INSTANCE-nope/reachability?from=1.2.3.4&protocol=TCP&port=22")
        .await
        .assert_error(404, "NOT_FOUND");

    // Another account sees neither the instance nor may name it as a source.
    let (key, secret) = s.new_account("other", json!({})).await;
    let path = format!("/v1/instances/{web}/reachability?from=1.2.3.4&protocol=TCP&port=22");
    s.call_as(&key, &secret, Method::GET, &path, None).await.assert_error(404, "NOT_FOUND");
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "theirs"});
    let r = s.call_as(&key, &secret, Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let theirs = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let r = s.get(&format!("/v1/instances/{web}/reachability?from={theirs}&protocol=TCP&port=22")).await;
    r.assert_error(404, "NOT_FOUND");
    assert!(r.json["message"].as_str().unwrap().contains("`from`"), "{}", r.text);
}
