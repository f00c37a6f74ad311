//! The wire corrections of issue 13 (spec §3, §5, §6, §9, §10), asserted through the real binary:
//! what public iwinv clients (a Terraform provider, a TypeScript dashboard) require of an answer.
//! The bill rows' rules (`date_paid`, nulls, negative price filters, `EMPTY_SET`) are asserted in
//! `billing.rs`, where bills are issued.

use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};

async fn fast() -> Server {
    Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await
}

use openwinv_tests::ED25519;

async fn send(s: &Server, method: Method, path: &str, body: Value) -> Resp {
    s.call(method, path, Some(Body::Json(body))).await
}

/// Creates an instance in `KR1-Z01` and waits until it is active; returns its id.
async fn instance(s: &Server) -> String {
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "wire"});
    let r = send(s, Method::POST, "/v1/instances", body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "active").await;
    id
}

async fn import_catalog(s: &Server, toml: &str) -> Resp {
    let headers = vec![("Authorization".to_owned(), format!("Bearer {}", s.admin_token))];
    let body = Body::Raw { content_type: "application/toml".into(), bytes: toml.as_bytes().to_vec() };
    s.raw(Method::PUT, "/admin/v1/catalog", &headers, Some(body)).await
}

/// The catalog export with the zone `zone_id` set to `status`.
async fn catalog_with_zone(s: &Server, zone_id: &str, status: &str) -> String {
    let catalog = s.admin(Method::GET, "/admin/v1/catalog", None).await.text;
    let at = catalog.find(&format!("id = \"{zone_id}\"")).expect("the zone in the catalog");
    let from = at + catalog[at..].find("status = \"").expect("its status");
    let to = from + catalog[from..].find('\n').expect("end of line");
    format!("{}status = \"{status}\"{}", &catalog[..from], &catalog[to..])
}

#[track_caller]
fn assert_no_total(r: &Resp) {
    r.ok_rows();
    assert!(r.json.get("total").is_none(), "no `total` [iwinv live]: {}", r.text);
    assert!(r.json.get("page").is_none(), "never a `page` key: {}", r.text);
}

#[track_caller]
fn assert_total(r: &Resp, rows: u64) {
    r.ok_rows();
    assert_eq!(r.json["total"].as_u64(), Some(rows), "{}", r.text);
    assert!(r.json.get("page").is_none(), "never a `page` key: {}", r.text);
}

#[tokio::test]
async fn only_flavors_images_instances_volumes_and_scripts_carry_total() {
    let s = fast().await;
    let vm = instance(&s).await;
    send(&s, Method::POST, "/v1/auth/ssh_key", json!({"name": "k", "public_key": ED25519})).await.ok_rows();
    let r = send(&s, Method::POST, "/v1/security-groups", json!({"title": "web fw", "content": "c"})).await;
    let fw = r.ok_rows()[0]["firewall_id"].as_str().unwrap().to_owned();
    let rule = json!({"bound": "IN", "protocol": "TCP", "port": "22", "ip": "0.0.0.0/0", "title": "ssh"});
    send(&s, Method::POST, &format!("/v1/security-groups/{fw}/rules"), rule).await.ok_rows();
    send(&s, Method::POST, "/v1/instance/script", json!({"name": "s", "content": "#!/bin/sh\n"})).await.ok_rows();
    let r = send(&s, Method::POST, "/v1/block-storages", json!({"instance_id": vm, "type": "ssd", "size": 10})).await;
    assert_eq!(r.status, 202, "{}", r.text);

    // No `total` [iwinv live], paginated or not.
    let paths = [
        "/v1/auth/ssh_key".to_owned(),
        "/v1/auth/ssh_key?page_size=1&page_no=2".to_owned(),
        "/v1/security-groups".to_owned(),
        "/v1/firewall".to_owned(),
        "/v1/firewall?page_no=9".to_owned(),
        format!("/v1/security-groups/{fw}"),
        format!("/v1/firewall/{fw}"),
        format!("/v1/security-groups/{fw}/rules"),
        "/v1/block-storages/types".to_owned(),
        "/v1/bill/live".to_owned(),
        "/v1/bill".to_owned(),
    ];
    for path in &paths {
        assert_no_total(&s.get(path).await);
    }
    let keys = s.get("/v1/auth/ssh_key").await;
    assert_eq!((keys.json["count"].as_u64(), keys.json["page_no"].as_u64()), (Some(1), Some(1)), "{}", keys.text);
    // `total` on flavors [iwinv] and on images, instances, volumes and scripts [ext].
    let flavors = s.get("/v1/flavors?page_size=100").await;
    assert_total(&flavors, flavors.ok_rows().len() as u64);
    let images = s.get("/v1/images?page_size=100").await;
    assert_total(&images, images.ok_rows().len() as u64);
    assert_total(&s.get("/v1/instances").await, 1);
    assert_total(&s.get("/v1/block-storages").await, 1);
    assert_total(&s.get("/v1/instance/script").await, 1);
}

#[tokio::test]
async fn flavor_prices_are_plain_integers_without_vat() {
    let s = Server::start().await;
    for path in ["/v1/flavors?page_size=100", "/v1/flavors/ss1.c1m1", "/v1/flavors?fields=128"] {
        let r = s.get(path).await;
        for f in r.ok_rows() {
            for term in ["full", "partial"] {
                let p = &f["price"][term];
                let krw = p["KRW"].as_i64().unwrap_or_else(|| panic!("`KRW` is an integer: {p}"));
                let vat = krw * 10 / 100;
                assert_eq!((p["vat"].as_i64(), p["total"].as_i64()), (Some(vat), Some(krw + vat)), "{p}");
            }
        }
    }
    let one = s.get("/v1/flavors/ss1.c1m1").await;
    let f = &one.ok_rows()[0];
    assert_eq!(f["price"]["full"], json!({"type": "month", "KRW": 9900, "vat": 990, "total": 10890}));
}

#[tokio::test]
async fn rule_create_and_edit_answer_200_and_an_empty_content_keeps_the_old_one() {
    let s = fast().await;
    let r = send(&s, Method::POST, "/v1/security-groups", json!({"title": "web fw", "content": "c"})).await;
    let fw = r.ok_rows()[0]["firewall_id"].as_str().unwrap().to_owned();
    let rules = format!("/v1/security-groups/{fw}/rules");
    let rule =
        json!({"bound": "IN", "protocol": "TCP", "port": "443", "ip": "0.0.0.0/0", "title": "https", "content": "web"});
    let r = send(&s, Method::POST, &rules, rule).await;
    assert_eq!(r.status, 200, "rule create answers 200 [iwinv live]: {}", r.text);
    let id = r.ok_rows()[0]["rule_id"].as_i64().unwrap();
    let path = format!("{rules}/{id}");
    // Empty and null content keep the old value, alone or with other fields.
    for body in [
        json!({"content": ""}),
        json!({"content": null}),
        json!({"content": "", "port": "8443"}),
        json!({"content": null, "title": "tls"}),
    ] {
        let r = send(&s, Method::PUT, &path, body.clone()).await;
        assert_eq!(r.status, 200, "rule edit answers 200 [iwinv live]: {}", r.text);
        assert_eq!(r.ok_rows()[0]["content"], "web", "{body}: {}", r.text);
    }
    let stored = &s.get(&rules).await.ok_rows()[0].clone();
    assert_eq!(
        (&stored["content"], &stored["port"], &stored["title"]),
        (&json!("web"), &json!("8443"), &json!("tls")),
        "{stored}"
    );
    // A new content replaces it; an edit naming no field at all is still refused.
    let r = send(&s, Method::PUT, &path, json!({"content": "api"})).await;
    assert_eq!(r.ok_rows()[0]["content"], "api");
    send(&s, Method::PUT, &path, json!({"note": "x"})).await.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
}

#[tokio::test]
async fn a_closed_zone_is_refused_before_any_other_check() {
    let s = fast().await;
    let vm = instance(&s).await;
    let closed = json!({"zone_id": "KR1-Z03", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1"});
    let with = |k: &str, v: Value| {
        let mut b = closed.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = closed.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    // Unknown image and flavor, a flavor not offered there, a Windows image on a small flavor, a
    // missing image: the closed zone answers first.
    for body in [
        closed.clone(),
        with("image_id", json!("IMG-nope")),
        with("flavor_id", json!("nope")),
        with("flavor_id", json!("sg1.c8m32.t4")),
        with("image_id", json!("IMG-win-2022")),
        without("image_id"),
        without("flavor_id"),
        with("block_storage", json!([{"size": 10, "type": "nvme"}])),
    ] {
        let r = send(&s, Method::POST, "/v1/instances", body.clone()).await;
        r.assert_error(500, "DEV_CHECK_RETURN");
        assert!(r.json["message"].as_str().unwrap().contains("KR1-Z03"), "{body}: {}", r.text);
    }
    // An unknown zone is still ID_INVALID.
    send(&s, Method::POST, "/v1/instances", with("zone_id", json!("KR9-Z99"))).await.assert_error(400, "ID_INVALID");
    // A volume for an instance in a zone closed since: the zone before the type and size.
    let original = s.admin(Method::GET, "/admin/v1/catalog", None).await.text;
    import_catalog(&s, &catalog_with_zone(&s, "KR1-Z01", "off").await).await.ok_rows();
    for body in
        [json!({"instance_id": vm, "type": "nvme", "size": 10}), json!({"instance_id": vm, "type": "ssd", "size": 1})]
    {
        send(&s, Method::POST, "/v1/block-storages", body).await.assert_error(500, "DEV_CHECK_RETURN");
    }
    import_catalog(&s, &original).await.ok_rows();
    let r = send(&s, Method::POST, "/v1/block-storages", json!({"instance_id": vm, "type": "nvme", "size": 10})).await;
    r.assert_error(400, "CHECK_PARAM_ENUM");
}

#[tokio::test]
async fn an_unknown_block_storage_type_is_outside_the_catalog_enum() {
    let s = fast().await;
    let vm = instance(&s).await;
    let r = send(&s, Method::POST, "/v1/block-storages", json!({"instance_id": vm, "type": "nvme", "size": 10})).await;
    r.assert_error(400, "CHECK_PARAM_ENUM");
    let message = r.json["message"].as_str().unwrap();
    assert!(message.contains("`type`") && message.contains("ssd") && message.contains("sata"), "{message}");
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1",
        "block_storage": [{"size": 10, "type": "SSD"}]});
    let r = send(&s, Method::POST, "/v1/instances", body).await;
    r.assert_error(400, "CHECK_PARAM_ENUM");
    assert!(r.json["message"].as_str().unwrap().contains("`block_storage.0.type`"), "{}", r.text);
    s.get("/v1/block-storages?type=nvme").await.assert_error(400, "CHECK_PARAM_ENUM");
    // The type list's own filter keeps iwinv's CHECK_PARAM.
    s.get("/v1/block-storages/types?type=nvme").await.assert_error(400, "CHECK_PARAM");
    assert_eq!(s.get("/v1/instances").await.json["total"], 1, "refused requests make nothing");
    assert_eq!(s.get("/v1/block-storages").await.json["total"], 0);
}

#[tokio::test]
async fn catalog_ids_must_match_the_public_pattern() {
    let s = Server::start().await;
    let exported = s.admin(Method::GET, "/admin/v1/catalog", None).await.text;
    let zone = |id: &str| format!("[[zones]]\nid = \"{id}\"\nname = \"Lab\"\n");
    for bad in [".hidden", "a b", "a/b", "존1", "a:b", ""] {
        let r = import_catalog(&s, &zone(bad)).await;
        r.assert_error(400, "CHECK_PARAM");
        let message = r.json["message"].as_str().unwrap();
        assert!(message.contains("zone id") && message.contains("A-Z a-z 0-9 - _ ."), "{bad}: {message}");
    }
    let flavor = exported.replacen("id = \"ss1.c1m1\"", "id = \"ss1 c1m1\"", 1);
    assert_ne!(flavor, exported);
    let r = import_catalog(&s, &flavor).await;
    r.assert_error(400, "CHECK_PARAM");
    assert!(r.json["message"].as_str().unwrap().contains("`ss1 c1m1`"), "{}", r.text);
    assert_eq!(s.admin(Method::GET, "/admin/v1/catalog", None).await.text, exported, "refused imports change nothing");
    // Dots, dashes and underscores, and a leading dash or underscore, are fine.
    let odd = format!("{}{}", zone("_lab-1.a"), zone("-lab"));
    import_catalog(&s, &odd).await.ok_rows();
    let zones: Vec<Value> = s.get("/v1/zones").await.ok_rows().iter().map(|z| z["zone_id"].clone()).collect();
    assert_eq!(zones, [json!("_lab-1.a"), json!("-lab")]);
}

#[tokio::test]
async fn key_import_accepts_the_iwinv_documentation_pair() {
    let s = Server::start().await;
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "docs"}))).await.ok_rows();
    let import = |a: &str, sec: &str| {
        s.admin(Method::POST, "/admin/v1/accounts/docs/keys", Some(json!({"access_key": a, "secret_key": sec})))
    };
    let r = import("test_access_key", "your_secret_key").await;
    assert_eq!(r.ok_rows()[0]["access_key"], "test_access_key");
    s.call_as("test_access_key", "your_secret_key", Method::GET, "/v1/zones", None).await.ok_rows();
    // The iwinv documentation's signature example, with that secret, matches ours.
    let headers = Server::signature("test_access_key", "your_secret_key", 1710000000, "/v1/example/param1/param2");
    let signature = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-iwinv-signature")).unwrap();
    assert_eq!(signature.1, "8ca2700c4d713ffaa657017a5d1dff97c4619512b6eef75ab1da9d38a518dc94");
    // Any printable ASCII without blanks, 1-128 / 1-256 characters.
    let odd = "k/1+x=?#%";
    import(odd, "s").await.ok_rows();
    s.call_as(odd, "s", Method::GET, "/v1/zones", None).await.ok_rows();
    let r = s.admin(Method::POST, "/admin/v1/keys/k%2F1+x=%3F%23%25/disable", None).await;
    assert_eq!(r.ok_rows()[0]["enabled"], false, "{}", r.text);
    let (longest_access, longest_secret) = ("a".repeat(128), "s".repeat(256));
    import(&longest_access, &longest_secret).await.ok_rows();
    let (too_long_access, too_long_secret) = ("a".repeat(129), "s".repeat(257));
    for (a, sec, field) in [
        ("", "secret", "access_key"),
        ("a b", "secret", "access_key"),
        ("키", "secret", "access_key"),
        (too_long_access.as_str(), "secret", "access_key"),
        ("fresh-key", "", "secret_key"),
        ("fresh-key", "two words", "secret_key"),
        ("fresh-key", "tab\there", "secret_key"),
        ("fresh-key", too_long_secret.as_str(), "secret_key"),
    ] {
        let r = import(a, sec).await;
        r.assert_error(400, "CHECK_PARAM");
        assert!(r.json["message"].as_str().unwrap().contains(&format!("`{field}`")), "{a}/{sec}: {}", r.text);
    }
    // Keys openwinv issues stay long and random.
    let r = s.admin(Method::POST, "/admin/v1/accounts/docs/keys", Some(json!({}))).await;
    let issued = &r.ok_rows()[0];
    assert!(issued["access_key"].as_str().unwrap().len() >= 20, "{issued}");
    assert!(issued["secret_key"].as_str().unwrap().len() >= 32, "{issued}");
}
