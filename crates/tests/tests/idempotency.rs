//! `Idempotency-Key` (spec §12): replay of the first answer for 24 hours, refusal of a reused key
//! with another request, per-account scope, persistence across restarts.

use openwinv_tests::{ACCESS_KEY, Body, Resp, SECRET_KEY, Server};
use openwinv_wire::signing;
use reqwest::Method;
use serde_json::{Value, json};

use openwinv_tests::ED25519;

/// A signed request with an `Idempotency-Key` header (any number of them, as given).
async fn with_keys_as(
    s: &Server,
    creds: (&str, &str),
    keys: &[&str],
    method: Method,
    pq: &str,
    body: Option<Value>,
) -> Resp {
    let mut h = Server::signature(creds.0, creds.1, s.now(), signing::signed_path(pq));
    for k in keys {
        h.push(("Idempotency-Key".into(), (*k).into()));
    }
    s.raw(method, pq, &h, body.map(Body::Json)).await
}

async fn with_key(s: &Server, key: &str, method: Method, pq: &str, body: Option<Value>) -> Resp {
    with_keys_as(s, (ACCESS_KEY, SECRET_KEY), &[key], method, pq, body).await
}

fn new_key(name: &str) -> Value {
    json!({"name": name, "public_key": ED25519})
}

fn replayed(r: &Resp) -> bool {
    r.header("idempotent-replayed") == Some("true")
}

fn id_of(r: &Resp) -> String {
    r.ok_rows()[0]["ssh_key_id"].as_str().expect("ssh_key_id").to_owned()
}

async fn key_count(s: &Server) -> usize {
    s.get("/v1/auth/ssh_key").await.ok_rows().len()
}

#[tokio::test]
async fn the_same_key_and_request_replays_the_first_answer() {
    // An explicit default: the first-start key of the simulator is otherwise unlimited.
    let s = Server::start_with(&["--default-rate-limit", "60"], &[]).await;
    let first = with_key(&s, "create-laptop-1", Method::POST, "/v1/auth/ssh_key", Some(new_key("laptop"))).await;
    let id = id_of(&first);
    assert!(!replayed(&first), "the first answer is not a replay");
    let again = with_key(&s, "create-laptop-1", Method::POST, "/v1/auth/ssh_key", Some(new_key("laptop"))).await;
    assert!(replayed(&again), "headers: {:?}", again.headers);
    assert_eq!(id_of(&again), id);
    assert_eq!(again.json, first.json, "the stored body, byte for byte the same JSON");
    assert!(again.header("content-type").is_some_and(|c| c.starts_with("application/json")));
    assert!(again.header("x-request-id").is_some(), "a replay still gets its own request id");
    assert!(again.header("ratelimit-limit").is_some(), "and the rate-limit headers");
    assert_eq!(key_count(&s).await, 1, "the handler ran once");

    // Without a key, or with a new one, the request runs again.
    let other = with_key(&s, "create-laptop-2", Method::POST, "/v1/auth/ssh_key", Some(new_key("laptop"))).await;
    assert!(!replayed(&other));
    assert_ne!(id_of(&other), id);
    s.call(Method::POST, "/v1/auth/ssh_key", Some(Body::Json(new_key("laptop")))).await.ok_rows();
    assert_eq!(key_count(&s).await, 3);

    // Reads ignore the header.
    let list = with_key(&s, "create-laptop-1", Method::GET, "/v1/auth/ssh_key", None).await;
    assert_eq!(list.ok_rows().len(), 3);
    assert!(!replayed(&list));
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused() {
    let s = Server::start().await;
    let id = id_of(&with_key(&s, "k1", Method::POST, "/v1/auth/ssh_key", Some(new_key("a"))).await);
    let other_body = with_key(&s, "k1", Method::POST, "/v1/auth/ssh_key", Some(new_key("b"))).await;
    other_body.assert_error(409, "CHECK_PARAM");
    assert!(other_body.json["message"].as_str().unwrap().contains("Idempotency-Key"), "{}", other_body.text);
    assert!(!replayed(&other_body));
    with_key(&s, "k1", Method::POST, "/v1/auth/ssh_key?x=1", Some(new_key("a"))).await.assert_error(409, "CHECK_PARAM");
    with_key(&s, "k1", Method::POST, "/v1/instance/script", Some(new_key("a"))).await.assert_error(409, "CHECK_PARAM");
    with_key(&s, "k1", Method::DELETE, &format!("/v1/auth/ssh_key/{id}"), None).await.assert_error(409, "CHECK_PARAM");
    assert_eq!(key_count(&s).await, 1, "nothing ran");
    // The original request is still replayed.
    let again = with_key(&s, "k1", Method::POST, "/v1/auth/ssh_key", Some(new_key("a"))).await;
    assert!(replayed(&again));
    assert_eq!(id_of(&again), id);
}

#[tokio::test]
async fn error_answers_and_deletes_are_replayed_too() {
    let s = Server::start().await;
    let bad = json!({"name": "x", "public_key": "not a key"});
    let first = with_key(&s, "bad-1", Method::POST, "/v1/auth/ssh_key", Some(bad.clone())).await;
    first.assert_error(400, "CHECK_PARAM");
    let again = with_key(&s, "bad-1", Method::POST, "/v1/auth/ssh_key", Some(bad)).await;
    again.assert_error(400, "CHECK_PARAM");
    assert!(replayed(&again), "a 4xx answer is kept");
    assert_eq!(again.json, first.json);

    // A delete: the replay repeats the first 200 although the key is gone now.
    let id = id_of(&s.call(Method::POST, "/v1/auth/ssh_key", Some(Body::Json(new_key("gone")))).await);
    let path = format!("/v1/auth/ssh_key/{id}");
    let del = with_key(&s, "del-1", Method::DELETE, &path, None).await;
    assert_eq!(del.ok_rows()[0]["ssh_key_id"], id.as_str());
    let del2 = with_key(&s, "del-1", Method::DELETE, &path, None).await;
    assert!(replayed(&del2));
    assert_eq!(del2.json, del.json);
    s.call(Method::DELETE, &path, None).await.assert_error(404, "NOT_FOUND");
    // A 404 is kept as well.
    let missing = with_key(&s, "del-2", Method::DELETE, &path, None).await;
    missing.assert_error(404, "NOT_FOUND");
    let missing2 = with_key(&s, "del-2", Method::DELETE, &path, None).await;
    missing2.assert_error(404, "NOT_FOUND");
    assert!(replayed(&missing2));
}

#[tokio::test]
async fn keys_must_be_1_to_255_visible_ascii_characters() {
    let s = Server::start().await;
    let long = "k".repeat(256);
    for key in ["", "has space", "tab\there", "caf\u{e9}", long.as_str()] {
        let r = with_key(&s, key, Method::POST, "/v1/auth/ssh_key", Some(new_key("x"))).await;
        r.assert_error(400, "CHECK_PARAM");
        assert!(r.json["message"].as_str().unwrap().contains("Idempotency-Key"), "{}", r.text);
    }
    let r =
        with_keys_as(&s, (ACCESS_KEY, SECRET_KEY), &["a", "b"], Method::POST, "/v1/auth/ssh_key", Some(new_key("x")))
            .await;
    r.assert_error(400, "CHECK_PARAM");
    assert_eq!(key_count(&s).await, 0, "refused before the handler");
    let longest = "~".repeat(255);
    with_key(&s, &longest, Method::POST, "/v1/auth/ssh_key", Some(new_key("x"))).await.ok_rows();
    assert!(replayed(&with_key(&s, &longest, Method::POST, "/v1/auth/ssh_key", Some(new_key("x"))).await));
    let odd = r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##;
    with_key(&s, odd, Method::POST, "/v1/auth/ssh_key", Some(new_key("y"))).await.ok_rows();
    assert_eq!(key_count(&s).await, 2);
    // An oversized body with a key gets the same 413 as without one.
    let big = json!({"name": "x", "public_key": "a".repeat(1024 * 1024 + 1)});
    with_key(&s, "big", Method::POST, "/v1/auth/ssh_key", Some(big)).await.assert_error(413, "CHECK_PARAM");
}

#[tokio::test]
async fn answers_are_forgotten_after_24_hours() {
    let mut s = Server::start().await;
    let id = id_of(&with_key(&s, "daily", Method::POST, "/v1/auth/ssh_key", Some(new_key("d"))).await);
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "23h"}))).await.ok_rows();
    s.sync_clock().await;
    let r = with_key(&s, "daily", Method::POST, "/v1/auth/ssh_key", Some(new_key("d"))).await;
    assert!(replayed(&r));
    assert_eq!(id_of(&r), id);
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "1h1s"}))).await.ok_rows();
    s.sync_clock().await;
    let r = with_key(&s, "daily", Method::POST, "/v1/auth/ssh_key", Some(new_key("d"))).await;
    assert!(!replayed(&r), "the key is free again");
    let id2 = id_of(&r);
    assert_ne!(id2, id);
    // The new answer is the one kept now, and an expired key may carry another request.
    let r = with_key(&s, "daily", Method::POST, "/v1/auth/ssh_key", Some(new_key("d"))).await;
    assert!(replayed(&r));
    assert_eq!(id_of(&r), id2);
    assert_eq!(key_count(&s).await, 2);
}

#[tokio::test]
async fn keys_are_scoped_to_the_account() {
    let s = Server::start().await;
    let (key, secret) = s.new_account("other", json!({})).await;
    let mine = with_key(&s, "shared", Method::POST, "/v1/auth/ssh_key", Some(new_key("same"))).await;
    let theirs =
        with_keys_as(&s, (&key, &secret), &["shared"], Method::POST, "/v1/auth/ssh_key", Some(new_key("same"))).await;
    assert!(!replayed(&theirs), "another account's key is another key");
    assert_ne!(id_of(&mine), id_of(&theirs));
    // Even with a different request, the other account's use does not conflict.
    let theirs2 =
        with_keys_as(&s, (&key, &secret), &["mine-only"], Method::POST, "/v1/auth/ssh_key", Some(new_key("b"))).await;
    id_of(&theirs2);
    with_key(&s, "mine-only", Method::POST, "/v1/auth/ssh_key", Some(new_key("c"))).await.ok_rows();
    let replay =
        with_keys_as(&s, (&key, &secret), &["shared"], Method::POST, "/v1/auth/ssh_key", Some(new_key("same"))).await;
    assert!(replayed(&replay));
    assert_eq!(id_of(&replay), id_of(&theirs));
    assert_eq!(key_count(&s).await, 2);
}

#[tokio::test]
async fn stored_answers_survive_a_restart() {
    let mut s = Server::start().await;
    let first = with_key(&s, "durable", Method::POST, "/v1/auth/ssh_key", Some(new_key("k"))).await;
    let id = id_of(&first);
    s.restart().await;
    let again = with_key(&s, "durable", Method::POST, "/v1/auth/ssh_key", Some(new_key("k"))).await;
    assert!(replayed(&again));
    assert_eq!(id_of(&again), id);
    with_key(&s, "durable", Method::POST, "/v1/auth/ssh_key", Some(new_key("other")))
        .await
        .assert_error(409, "CHECK_PARAM");
    assert_eq!(key_count(&s).await, 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_run_the_handler_once() {
    let s = Server::start().await;
    let (key, secret) = s.new_account("burst", json!({"rate_limit": 0})).await;
    let creds = (key.as_str(), secret.as_str());
    let send = || with_keys_as(&s, creds, &["burst-1"], Method::POST, "/v1/auth/ssh_key", Some(new_key("burst")));
    let (a, b, c, d, e, f, g, h) = tokio::join!(send(), send(), send(), send(), send(), send(), send(), send());
    let answers = [a, b, c, d, e, f, g, h];
    let mut ids = Vec::new();
    for r in &answers {
        if r.status == 200 {
            ids.push(id_of(r));
        } else {
            r.assert_error(409, "CHECK_PARAM");
            assert!(r.json["message"].as_str().unwrap().contains("still being processed"), "{}", r.text);
        }
    }
    assert!(!ids.is_empty(), "one request ran");
    assert!(ids.iter().all(|i| *i == ids[0]), "every 200 is the same object: {ids:?}");
    assert_eq!(answers.iter().filter(|r| r.status == 200 && !replayed(r)).count(), 1, "exactly one original");
    let list = s.call_as(&key, &secret, Method::GET, "/v1/auth/ssh_key", None).await;
    assert_eq!(list.ok_rows().len(), 1);
    // Once finished, the key replays.
    assert!(replayed(&send().await));
}

async fn import_catalog(s: &Server, toml: String) {
    let headers = vec![("Authorization".to_owned(), format!("Bearer {}", s.admin_token))];
    let body = Body::Raw { content_type: "application/toml".into(), bytes: toml.into_bytes() };
    s.raw(Method::PUT, "/admin/v1/catalog", &headers, Some(body)).await.ok_rows();
}

#[tokio::test]
async fn server_errors_are_not_kept_and_202_answers_replay_their_operation() {
    let s = Server::start_with(&["--sim-delay", "0"], &[]).await;
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "a"});
    // Close the zone: creation there answers 500 DEV_CHECK_RETURN.
    let catalog = s.admin(Method::GET, "/admin/v1/catalog", None).await.text;
    let at = catalog.find("id = \"KR1-Z01\"").expect("zone KR1-Z01 in the catalog");
    let status = at + catalog[at..].find("status = \"on\"").expect("its status");
    let closed = format!("{}status = \"off\"{}", &catalog[..status], &catalog[status + "status = \"on\"".len()..]);
    import_catalog(&s, closed).await;
    for _ in 0..2 {
        let r = with_key(&s, "vm-1", Method::POST, "/v1/instances", Some(body.clone())).await;
        r.assert_error(500, "DEV_CHECK_RETURN");
        assert!(!replayed(&r), "a 5xx answer is not kept");
    }
    // Open again: the same key and request now run, and their 202 is kept.
    import_catalog(&s, catalog).await;
    let first = with_key(&s, "vm-1", Method::POST, "/v1/instances", Some(body.clone())).await;
    assert_eq!(first.status, 202, "{}", first.text);
    assert!(!replayed(&first));
    let op = first.header("x-operation-id").expect("X-Operation-Id").to_owned();
    let again = with_key(&s, "vm-1", Method::POST, "/v1/instances", Some(body)).await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert!(replayed(&again));
    assert_eq!(again.header("x-operation-id"), Some(op.as_str()));
    assert_eq!(again.json, first.json);
    assert_eq!(s.get("/v1/instances").await.ok_rows().len(), 1);
}

#[tokio::test]
async fn stored_answers_are_sealed_at_rest() {
    use sqlx::Connection;
    let s = Server::start().await;
    let marker = "marker-5e1f0c";
    let first = with_key(&s, "sealed", Method::POST, "/v1/auth/ssh_key", Some(new_key(marker))).await;
    id_of(&first);
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&s.database_url).await.expect("connect");
    let bodies: Vec<(String,)> =
        sqlx::query_as("SELECT body FROM idempotency_keys").fetch_all(&mut conn).await.expect("select");
    conn.close().await.ok();
    assert_eq!(bodies.len(), 1);
    assert!(!bodies[0].0.contains(marker), "an answer (which may carry a password) is not kept in clear");
    let again = with_key(&s, "sealed", Method::POST, "/v1/auth/ssh_key", Some(new_key(marker))).await;
    assert!(replayed(&again));
    assert_eq!(again.ok_rows()[0]["name"], marker);
}
