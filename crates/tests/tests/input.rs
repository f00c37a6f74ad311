//! The input layer (spec §1, §4) through the real binary, route by route: NUL bytes, offsets past
//! i64, the framework's own rejections as iwinv envelopes, strict URL decoding, body limits in
//! every encoding, empty bodies, unknown query parameters, URL-encoded multipart names and the
//! length of values echoed in messages. Run on both stores.

use std::time::Duration;

use openwinv_tests::{ACCESS_KEY, Body, ED25519, Resp, SECRET_KEY, Server};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FAST: &[&str] = &["--sim-delay", "0", "--default-rate-limit", "0"];

fn basic() -> Value {
    json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "vm"})
}

fn raw(content_type: &str, bytes: impl Into<Vec<u8>>) -> Option<Body> {
    Some(Body::Raw { content_type: content_type.into(), bytes: bytes.into() })
}

/// An active instance with one volume; returns (instance id, volume id).
async fn instance_with_volume(s: &Server) -> (String, String) {
    let mut body = basic();
    body["block_storage"] = json!([{"size": 10}]);
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "active").await;
    let vols = s.get(&format!("/v1/block-storages?instance_id={id}")).await;
    let vol = vols.ok_rows()[0]["block_storage_id"].as_str().unwrap().to_owned();
    (id, vol)
}

/// Sends a signed request on a connection of its own, writing the body while reading the answer:
/// a server refuses an oversize body before the client has sent it all, and a pooled client
/// would report only the broken pipe (or reuse the closed connection for the next request).
async fn send_oversize(s: &Server, m: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let addr = s.endpoint.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect to openwinv");
    let (mut rd, mut wr) = stream.into_split();
    let mut head = format!(
        "{m} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in Server::signature(ACCESS_KEY, SECRET_KEY, s.now(), path) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        // Keep the write side open (dropping it half-closes the connection) until the answer is read.
        std::future::pending::<()>().await;
        drop(wr);
    });
    let mut answer = Vec::new();
    // The connection may end with a reset once the answer is sent; what was read is kept.
    let read = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "{m} {path}: no end of the answer within 30 s");
    writer.abort();
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok());
    let status = status.unwrap_or_else(|| panic!("{m} {path}: no HTTP answer: {text}"));
    let json = text.split("\r\n\r\n").nth(1).and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    (status, json)
}

#[track_caller]
fn assert_too_large((status, json): (u16, Value), what: &str) {
    assert_eq!((status, json["error_code"].as_str()), (413, Some("CHECK_PARAM")), "{what}: {json}");
    assert_eq!(json["result"], "error", "{what}");
}

/// Asserts a `CHECK_PARAM` envelope whose message names `field`.
#[track_caller]
fn assert_names(r: &Resp, status: u16, field: &str, what: &str) {
    r.assert_error(status, "CHECK_PARAM");
    assert!(r.header("content-type").unwrap_or("").starts_with("application/json"), "{what}: {:?}", r.headers);
    let msg = r.json["message"].as_str().unwrap();
    assert!(msg.contains(&format!("`{field}`")), "{what}: the message does not name `{field}`: {msg}");
}

/// Every route with a path parameter, as (method, path with `{}` for the bad value, parameter).
const PATH_ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/v1/instances/{}", "instance_id"),
    ("PUT", "/v1/instances/{}", "instance_id"),
    ("DELETE", "/v1/instances/{}", "instance_id"),
    ("POST", "/v1/instances/{}/start", "instance_id"),
    ("POST", "/v1/instances/{}/shutdown", "instance_id"),
    ("POST", "/v1/instances/{}/reboot", "instance_id"),
    ("POST", "/v1/instances/{}/rebuild", "instance_id"),
    ("POST", "/v1/instances/{}/resize", "instance_id"),
    ("GET", "/v1/instances/{}/remote-console", "instance_id"),
    ("GET", "/v1/instances/{}/reachability?from=1.2.3.4&protocol=TCP&port=1", "instance_id"),
    ("GET", "/v1/flavors/{}", "flavor_id"),
    ("GET", "/v1/images/{}", "image_id"),
    ("GET", "/v1/block-storages/{}", "block_storage_id"),
    ("DELETE", "/v1/block-storages/{}", "block_storage_id"),
    ("POST", "/v1/block-storages/{}/detach", "block_storage_id"),
    ("POST", "/v1/block-storages/{}/attach/INSTANCE-x", "block_storage_id"),
    ("POST", "/v1/block-storages/BS-x/attach/{}", "instance_id"),
    ("DELETE", "/v1/auth/ssh_key/{}", "ssh_key_id"),
    ("DELETE", "/v1/instance/script/{}", "user_script_id"),
    ("GET", "/v1/security-groups/{}", "firewall_id"),
    ("PUT", "/v1/security-groups/{}", "firewall_id"),
    ("DELETE", "/v1/security-groups/{}", "firewall_id"),
    ("GET", "/v1/security-groups/{}/rules", "firewall_id"),
    ("POST", "/v1/security-groups/{}/rules", "firewall_id"),
    ("PUT", "/v1/security-groups/FIREWALL-x/rules/{}", "rule_id"),
    ("DELETE", "/v1/security-groups/FIREWALL-x/rules/{}", "rule_id"),
    ("GET", "/v1/security-groups/{}/instances", "firewall_id"),
    ("POST", "/v1/security-groups/{}/attach", "firewall_id"),
    ("POST", "/v1/security-groups/{}/detach", "firewall_id"),
    ("GET", "/v1/firewall/{}", "firewall_id"),
    ("PUT", "/v1/firewall/{}", "firewall_id"),
    ("DELETE", "/v1/firewall/{}", "firewall_id"),
    ("GET", "/v1/firewall/{}/instances", "firewall_id"),
    ("POST", "/v1/firewall/{}/attach", "firewall_id"),
    ("POST", "/v1/firewall/{}/detach", "firewall_id"),
    ("GET", "/v1/operations/{}", "operation_id"),
    ("GET", "/v1/bill/{}", "bill_id"),
];

/// Operator routes with a path parameter.
const ADMIN_PATH_ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/admin/v1/accounts/{}/disable", "name"),
    ("PUT", "/admin/v1/accounts/{}/quota", "name"),
    ("POST", "/admin/v1/accounts/{}/keys", "name"),
    ("PUT", "/admin/v1/keys/{}", "access_key"),
    ("DELETE", "/admin/v1/keys/{}", "access_key"),
    ("GET", "/admin/v1/accounts/{}/ssh-keys", "name"),
    ("DELETE", "/admin/v1/accounts/dev/scripts/{}", "id"),
    ("POST", "/admin/v1/bills/{}/pay", "bill_id"),
    ("POST", "/admin/v1/sim/step/{}", "operation_id"),
];

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

async fn admin_raw(s: &Server, m: &str, path: &str, body: Option<Body>) -> Resp {
    let headers = vec![("Authorization".to_owned(), format!("Bearer {}", s.admin_token))];
    s.raw(method(m), path, &headers, body).await
}

/// A NUL byte (`%00`) and an escape that is not UTF-8 (`%FF`) in every path id: 400
/// `CHECK_PARAM` naming the parameter, as an envelope, on both stores (PostgreSQL answered 500
/// to the NUL, the framework a plain-text "Invalid URL" to `%FF`).
#[tokio::test]
async fn bad_path_ids_are_check_param_on_every_route() {
    let s = Server::start_with(FAST, &[]).await;
    for bad in ["%00", "a%00b", "%FF", "x%C3%28"] {
        for (m, path, field) in PATH_ROUTES {
            let p = path.replace("{}", bad);
            let r = s.call(method(m), &p, Some(Body::Json(json!({})))).await;
            assert_names(&r, 400, field, &format!("{m} {p}"));
        }
        for (m, path, field) in ADMIN_PATH_ROUTES {
            let p = path.replace("{}", bad);
            let r = admin_raw(&s, m, &p, Some(Body::Json(json!({})))).await;
            assert_names(&r, 400, field, &format!("{m} {p}"));
        }
    }
    // An ordinary unknown id is still 404.
    s.get("/v1/instances/INSTANCE-nothing").await.assert_error(404, "NOT_FOUND");
}

/// A NUL byte in a filter, a body id or a script's content, in every encoding: 400 naming the
/// field, and nothing stored.
#[tokio::test]
async fn nul_in_filters_and_bodies_is_check_param() {
    let s = Server::start_with(FAST, &[]).await;
    for (path, field) in [
        ("/v1/instances?name=a%00", "name"),
        ("/v1/instances?zone_id=%00", "zone_id"),
        ("/v1/block-storages?instance_id=%00", "instance_id"),
        ("/v1/auth/ssh_key?name=%00", "name"),
        ("/v1/instance/script?name=x%00y", "name"),
        ("/v1/images?name=%00", "name"),
        ("/v1/flavors?type=%00", "type"),
        ("/v1/bill?start_date=%00", "start_date"),
        ("/v1/firewall?unknown=%00", "unknown"),
    ] {
        assert_names(&s.get(path).await, 400, field, path);
    }

    let mut create = basic();
    create["zone_id"] = json!("KR1-Z01\u{0}");
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(create))).await;
    assert_names(&r, 400, "zone_id", "instance create");
    let mut create = basic();
    create["block_storage"] = json!([{"size": 10, "type": "ssd\u{0}"}]);
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(create))).await;
    assert_names(&r, 400, "block_storage.0.type", "nested body field");
    let r =
        s.call(Method::POST, "/v1/firewall/FIREWALL-x/attach", Some(Body::Json(json!({"instance_id": "\u{0}"})))).await;
    assert_names(&r, 400, "instance_id", "firewall attach");

    let script = |enc: &str| -> Option<Body> {
        let pairs = vec![("name".to_owned(), "s".to_owned()), ("content".to_owned(), "echo a\u{0}b".to_owned())];
        match enc {
            "json" => Some(Body::Json(json!({"name": "s", "content": "echo a\u{0}b"}))),
            "form" => Some(Body::Form(pairs)),
            _ => Some(Body::Multipart(pairs)),
        }
    };
    for enc in ["json", "form", "multipart"] {
        let r = s.call(Method::POST, "/v1/instance/script", script(enc)).await;
        assert_names(&r, 400, "content", enc);
    }
    let r = s
        .call(Method::POST, "/v1/instance/script", raw("application/x-www-form-urlencoded", "name=a%00&content=x"))
        .await;
    assert_names(&r, 400, "name", "raw form");
    assert!(s.get("/v1/instance/script").await.ok_rows().is_empty());
    assert!(s.get("/v1/instances").await.ok_rows().is_empty());
}

/// `page_no` whose offset is past i64 (or past every row) is an empty page on every list, never
/// a 500 (PostgreSQL's negative `OFFSET`) nor page 1 again (SQLite).
#[tokio::test]
async fn pages_past_i64_are_empty_on_every_list() {
    let s = Server::start_with(FAST, &[]).await;
    instance_with_volume(&s).await;
    s.call(Method::POST, "/v1/instance/script", Some(Body::Json(json!({"name": "s", "content": "echo"}))))
        .await
        .ok_rows();
    s.call(Method::POST, "/v1/auth/ssh_key", Some(Body::Json(json!({"name": "k", "public_key": ED25519}))))
        .await
        .ok_rows();
    let fw = s.call(Method::POST, "/v1/firewall", Some(Body::Json(json!({"title": "fw-1", "content": "c"})))).await;
    assert!(fw.status == 200 || fw.status == 201 || fw.status == 202, "{}", fw.text);
    let lists = [
        "/v1/instances",
        "/v1/block-storages",
        "/v1/auth/ssh_key",
        "/v1/instance/script",
        "/v1/firewall",
        "/v1/security-groups",
        "/v1/flavors",
        "/v1/images",
        "/v1/bill",
        "/v1/operations",
    ];
    for list in lists {
        assert!(!s.get(&format!("{list}?page_size=100")).await.ok_rows().is_empty() || list == "/v1/bill", "{list}");
        for page in [
            "page_no=18446744073709551615",
            "page_no=18446744073709551615&page_size=100",
            "page_no=9223372036854775807",
            "page_no=9223372036854775808&page_size=1",
            "page_no=92233720368547760&page_size=100",
            "page_no=1000",
        ] {
            let r = s.get(&format!("{list}?{page}")).await;
            assert!(r.ok_rows().is_empty(), "{list}?{page}: {}", r.text);
            assert_eq!(r.json["count"], 0, "{list}?{page}: {}", r.text);
        }
        // Past u64 is not a number at all.
        s.get(&format!("{list}?page_no=18446744073709551616")).await.assert_error(400, "CHECK_PARAM");
    }
}

/// Every rejection of the framework is an iwinv envelope: bad escapes in the query, malformed
/// JSON, form and multipart bodies, a method a route does not take, and oversize bodies.
#[tokio::test]
async fn framework_rejections_are_envelopes_route_by_route() {
    let s = Server::start_with(FAST, &[]).await;
    let writes = [
        ("POST", "/v1/instances"),
        ("PUT", "/v1/instances/INSTANCE-x"),
        ("POST", "/v1/instances/INSTANCE-x/reboot"),
        ("POST", "/v1/block-storages"),
        ("POST", "/v1/auth/ssh_key"),
        ("POST", "/v1/instance/script"),
        ("POST", "/v1/firewall"),
        ("POST", "/v1/security-groups"),
        ("POST", "/v1/security-groups/FIREWALL-x/rules"),
    ];
    for (m, path) in writes {
        let what = format!("{m} {path}");
        for (ct, bytes) in [
            ("application/json", &b"{\"name\": "[..]),
            ("application/json", b"[1]"),
            ("application/x-www-form-urlencoded", b"name=%ZZ&%%%"),
            ("application/x-www-form-urlencoded", b"name=%FF"),
            ("multipart/form-data; boundary=xyz", b"--xyz\r\ngarbage"),
            ("multipart/form-data", b"--xyz\r\n\r\nx"),
        ] {
            let r = s.call(method(m), path, raw(ct, bytes)).await;
            r.assert_error(400, "CHECK_PARAM");
            assert!(
                r.header("content-type").unwrap_or("").starts_with("application/json"),
                "{what} {ct}: {:?}",
                r.headers
            );
        }
        let big = format!("{{\"name\":\"{}\"}}", "A".repeat(2 * 1024 * 1024));
        assert_too_large(send_oversize(&s, m, path, "application/json", big.into_bytes()).await, &what);
    }
    for list in ["/v1/instances", "/v1/block-storages", "/v1/auth/ssh_key", "/v1/instance/script", "/v1/images"] {
        assert_names(&s.get(&format!("{list}?name=%ZZ")).await, 400, "name", list);
        assert_names(&s.get(&format!("{list}?name=%FF&page_no=1")).await, 400, "name", list);
    }
    // The malformed form names its field (it used to be read leniently as the name `%ZZ`).
    let r = s.call(Method::POST, "/v1/auth/ssh_key", raw("application/x-www-form-urlencoded", "name=%ZZ&%%%")).await;
    assert_names(&r, 400, "name", "form");
    assert!(s.get("/v1/auth/ssh_key").await.ok_rows().is_empty());

    for (m, path) in [
        ("PATCH", "/v1/instances"),
        ("PATCH", "/v1/instances/INSTANCE-x"),
        ("GET", "/v1/instances/INSTANCE-x/start"),
        ("PUT", "/v1/block-storages"),
        ("POST", "/v1/flavors/x"),
        ("PATCH", "/v1/firewall/FIREWALL-x"),
        ("GET", "/v1/security-groups/FIREWALL-x/rules/1"),
        ("DELETE", "/v1/bill/live"),
        ("POST", "/v1/operations/OP-x"),
    ] {
        let r = s.call(method(m), path, None).await;
        r.assert_error(405, "NOT_FOUND");
        assert!(r.header("content-type").unwrap_or("").starts_with("application/json"), "{m} {path}");
    }
    let r = admin_raw(&s, "PATCH", "/admin/v1/accounts", None).await;
    r.assert_error(405, "NOT_FOUND");
}

/// A 20 MiB multipart body gets 413 like JSON and form ones (it was 400 "malformed").
#[tokio::test]
async fn oversize_multipart_is_413() {
    let s = Server::start_with(FAST, &[]).await;
    let multipart = |size: usize| {
        let mut b = b"--xyz\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nx\r\n".to_vec();
        b.extend_from_slice(b"--xyz\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n");
        b.extend(std::iter::repeat_n(b'A', size));
        b.extend_from_slice(b"\r\n--xyz--\r\n");
        b
    };
    let ct = "multipart/form-data; boundary=xyz";
    for path in ["/v1/instances", "/v1/instance/script", "/v1/auth/ssh_key", "/v1/block-storages"] {
        assert_too_large(send_oversize(&s, "POST", path, ct, multipart(20 * 1024 * 1024)).await, path);
        assert_too_large(send_oversize(&s, "POST", path, ct, multipart(1024 * 1024)).await, path);
    }
    let form = format!("name=x&content={}", "A".repeat(20 * 1024 * 1024)).into_bytes();
    let what = "20 MiB form";
    assert_too_large(
        send_oversize(&s, "POST", "/v1/instance/script", "application/x-www-form-urlencoded", form).await,
        what,
    );
    // Just under the limit is read and parsed.
    let r = s.call(Method::POST, "/v1/instance/script", raw(ct, multipart(1000))).await;
    assert_eq!(r.ok_rows()[0]["content"].as_str().map(str::len), Some(1000));
    assert_eq!(s.get("/v1/instance/script").await.ok_rows().len(), 1);
}

/// An empty body is no fields whatever its `Content-Type` (a dashboard sends
/// `application/json` with nothing on start, shutdown and delete), and unknown query parameters
/// such as its `page=` are ignored.
#[tokio::test]
async fn empty_bodies_are_no_fields_and_unknown_query_parameters_are_ignored() {
    let s = Server::start_with(FAST, &[]).await;
    let (id, _) = instance_with_volume(&s).await;
    for ct in [
        "application/json",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "text/plain",
    ] {
        let r = s.call(Method::POST, &format!("/v1/instances/{id}/shutdown"), raw(ct, "")).await;
        assert_eq!(r.status, 202, "shutdown with an empty {ct} body: {}", r.text);
        s.wait_status(&id, "off").await;
        let r = s.call(Method::POST, &format!("/v1/instances/{id}/start"), raw(ct, "")).await;
        assert_eq!(r.status, 202, "start with an empty {ct} body: {}", r.text);
        s.wait_status(&id, "active").await;
    }
    // Empty is no fields, so a create that needs fields names the first missing one.
    let r = s.call(Method::POST, "/v1/instances", raw("multipart/form-data", "")).await;
    r.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    for list in [
        "/v1/instances",
        "/v1/block-storages",
        "/v1/auth/ssh_key",
        "/v1/instance/script",
        "/v1/firewall",
        "/v1/flavors",
        "/v1/images",
        "/v1/zones",
        "/v1/bill/live",
    ] {
        let r = s.get(&format!("{list}?page=&foo=bar&x")).await;
        r.ok_rows();
    }
    s.get(&format!("/v1/instances/{id}?page=")).await.ok_rows();
    let r = s.call(Method::DELETE, &format!("/v1/instances/{id}?page="), raw("application/json", "")).await;
    assert_eq!(r.status, 202, "delete with an empty JSON body: {}", r.text);
}

/// Instance `name` and `description` in multipart bodies are URL-decoded once (`+` is a space);
/// JSON and form values, and firewall text in any encoding, are taken as they came.
#[tokio::test]
async fn multipart_instance_names_are_url_decoded_once() {
    let s = Server::start_with(FAST, &[]).await;
    let mut pairs: Vec<(String, String)> =
        basic().as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
    pairs.retain(|(k, _)| k != "name");
    pairs.push(("name".into(), "web+%EC%84%9C%EB%B2%84%2B1".into()));
    pairs.push(("description".into(), "50%25+off%2C+really".into()));
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Multipart(pairs.clone()))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let row = s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0].clone();
    assert_eq!(row["name"], "web 서버+1");
    assert_eq!(row["description"], "50% off, really");

    // Edit too; a bad escape is refused, naming the field.
    let edit = |name: &str| Some(Body::Multipart(vec![("name".into(), name.into())]));
    s.call(Method::PUT, &format!("/v1/instances/{id}"), edit("new%20name")).await.ok_rows();
    assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["name"], "new name");
    let r = s.call(Method::PUT, &format!("/v1/instances/{id}"), edit("100%")).await;
    assert_names(&r, 400, "name", "bad escape");
    let r = s.call(Method::PUT, &format!("/v1/instances/{id}"), edit("a%00")).await;
    assert_names(&r, 400, "name", "encoded NUL");

    // JSON and form: verbatim (the form's own encoding is decoded once, by the form).
    let r = s.call(Method::PUT, &format!("/v1/instances/{id}"), Some(Body::Json(json!({"name": "a+b%20c"})))).await;
    assert_eq!(r.ok_rows()[0]["name"], "a+b%20c");
    let form = Body::Form(vec![("name".into(), "d+e%20f".into())]);
    let r = s.call(Method::PUT, &format!("/v1/instances/{id}"), Some(form)).await;
    assert_eq!(r.ok_rows()[0]["name"], "d+e%20f");

    // Firewall text is verbatim even in multipart.
    let fw = Body::Multipart(vec![("title".into(), "a+b%20c".into()), ("content".into(), "x%2By".into())]);
    let r = s.call(Method::POST, "/v1/firewall", Some(fw)).await;
    assert!(r.status < 300, "{}", r.text);
    let list = s.get("/v1/firewall").await;
    let row = &list.ok_rows()[0];
    assert_eq!((row["title"].as_str(), row["content"].as_str()), (Some("a+b%20c"), Some("x%2By")), "{row}");
}

/// A message repeats at most 64 characters of a client's value, then `…`.
#[tokio::test]
async fn long_values_are_echoed_clipped() {
    let s = Server::start_with(FAST, &[]).await;
    let long = "x".repeat(50_000);
    let r = s.get(&format!("/v1/instances/INSTANCE-{long}")).await;
    r.assert_error(404, "NOT_FOUND");
    let msg = r.json["message"].as_str().unwrap();
    assert!(msg.contains(&format!("INSTANCE-{}…", "x".repeat(55))), "{msg}");
    assert!(msg.chars().count() < 200, "{} characters", msg.chars().count());

    let mut create = basic();
    create["zone_id"] = json!("z".repeat(500_000));
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(create))).await;
    r.assert_error(400, "ID_INVALID");
    assert!(r.json["message"].as_str().unwrap().chars().count() < 200, "{}", r.text.len());

    let r = s.get(&format!("/v1/instances?page_no={}", "9".repeat(10_000))).await;
    r.assert_error(400, "CHECK_PARAM");
    assert!(r.text.len() < 400, "{}", r.text.len());
    let r = s.get(&format!("/v1/no-such-route-{long}")).await;
    r.assert_error(404, "NOT_FOUND");
    assert!(r.text.len() < 400, "{}", r.text.len());
}
