//! Signed requests (spec §2) through the real binary.

use openwinv_tests::{ACCESS_KEY, Body, SECRET_KEY, Server};
use reqwest::Method;
use serde_json::json;

fn sig(ts: i64, path: &str) -> Vec<(String, String)> {
    Server::signature(ACCESS_KEY, SECRET_KEY, ts, path)
}

fn without(mut h: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    h.retain(|(k, _)| k != name);
    h
}

#[tokio::test]
async fn a_signed_request_succeeds_and_the_query_is_not_signed() {
    let s = Server::start().await;
    let r = s.get("/v1/zones").await;
    assert_eq!(r.ok_rows().len(), 3);
    // Signed over the path only: adding a query keeps the signature valid.
    let h = sig(s.now(), "/v1/flavors");
    let r = s.raw(Method::GET, "/v1/flavors?type=gpu&page_size=5", &h, None).await;
    assert!(r.ok_rows().iter().all(|f| f["spec"]["type"] == "gpu"));
    // A signature that covered the query is wrong.
    let h = sig(s.now(), "/v1/flavors?type=gpu");
    s.raw(Method::GET, "/v1/flavors?type=gpu", &h, None).await.assert_error(401, "INVALID_SIGNATURE");
}

#[tokio::test]
async fn the_method_is_not_signed_and_hex_case_does_not_matter() {
    let s = Server::start().await;
    let mut h = sig(s.now(), "/v1/auth/ssh_key");
    // The same signature serves GET and POST on that path.
    s.raw(Method::GET, "/v1/auth/ssh_key", &h, None).await.ok_rows();
    let r = s.raw(Method::POST, "/v1/auth/ssh_key", &h, Some(Body::Json(json!({"name": "k"})))).await;
    r.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    h[2].1 = h[2].1.to_uppercase();
    s.raw(Method::GET, "/v1/auth/ssh_key", &h, None).await.ok_rows();
}

#[tokio::test]
async fn missing_and_wrong_credentials() {
    let s = Server::start().await;
    let now = s.now();
    let full = sig(now, "/v1/zones");
    s.raw(Method::GET, "/v1/zones", &without(full.clone(), "X-iwinv-Credential"), None)
        .await
        .assert_error(401, "CHECK_CREDENTIAL");
    s.raw(Method::GET, "/v1/zones", &without(full.clone(), "X-iwinv-Timestamp"), None)
        .await
        .assert_error(401, "CHECK_SIGNATURE");
    s.raw(Method::GET, "/v1/zones", &without(full.clone(), "X-iwinv-Signature"), None)
        .await
        .assert_error(401, "CHECK_SIGNATURE");
    s.raw(Method::GET, "/v1/zones", &[], None).await.assert_error(401, "CHECK_CREDENTIAL");
    // Unknown key.
    let h = Server::signature("NOSUCHKEY00000000000", SECRET_KEY, now, "/v1/zones");
    s.raw(Method::GET, "/v1/zones", &h, None).await.assert_error(401, "CHECK_CREDENTIAL");
    // Wrong secret.
    let h = Server::signature(ACCESS_KEY, "not-the-secret-at-all", now, "/v1/zones");
    s.raw(Method::GET, "/v1/zones", &h, None).await.assert_error(401, "INVALID_SIGNATURE");
    // Garbage signature and a non-integer timestamp.
    let mut h = full.clone();
    h[2].1 = "xyz".into();
    s.raw(Method::GET, "/v1/zones", &h, None).await.assert_error(401, "INVALID_SIGNATURE");
    let mut h = full.clone();
    h[0].1 = format!("{now}.5");
    s.raw(Method::GET, "/v1/zones", &h, None).await.assert_error(401, "CHECK_SIGNATURE");
    // Failures are counted by reason.
    let m = reqwest::get(format!("{}/metrics", s.endpoint)).await.unwrap().text().await.unwrap();
    assert!(m.contains("reason=\"CHECK_CREDENTIAL\""), "{m}");
    assert!(m.contains("reason=\"INVALID_SIGNATURE\""), "{m}");
}

#[tokio::test]
async fn the_window_is_300_seconds_either_way() {
    let s = Server::start().await;
    for (offset, accepted) in [(-300, true), (300, true), (-301, false), (301, false), (-600, false)] {
        // Pin the clock to a whole second so that it cannot tick between here and the check.
        let r = s.admin(Method::PUT, "/admin/v1/clock", Some(json!({"now": "2031-03-01T00:00:00Z"}))).await;
        let t = r.ok_rows()[0]["unix"].as_i64().unwrap();
        let resp = s.raw(Method::GET, "/v1/zones", &sig(t + offset, "/v1/zones"), None).await;
        if accepted {
            resp.ok_rows();
        } else {
            resp.assert_error(401, "CHECK_SIGNATURE");
        }
    }
}

#[tokio::test]
async fn disabled_keys_and_accounts_are_refused() {
    let s = Server::start().await;
    let (key, secret) = s.new_account("acme", json!({})).await;
    s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await.ok_rows();
    s.admin(Method::POST, &format!("/admin/v1/keys/{key}/disable"), None).await.ok_rows();
    s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await.assert_error(401, "CHECK_CREDENTIAL");
    s.admin(Method::PUT, &format!("/admin/v1/keys/{key}"), Some(json!({"enabled": true}))).await.ok_rows();
    s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await.ok_rows();
    s.admin(Method::POST, "/admin/v1/accounts/acme/disable", None).await.ok_rows();
    s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await.assert_error(401, "CHECK_CREDENTIAL");
    s.admin(Method::POST, "/admin/v1/accounts/acme/enable", None).await.ok_rows();
    s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await.ok_rows();
    s.admin(Method::DELETE, &format!("/admin/v1/keys/{key}"), None).await.ok_rows();
    s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await.assert_error(401, "CHECK_CREDENTIAL");
    // Last use is recorded (in the background, so poll for it).
    s.get("/v1/zones").await.ok_rows();
    let mut used = serde_json::Value::Null;
    for _ in 0..50 {
        let r = s.admin(Method::GET, "/admin/v1/keys?account=dev", None).await;
        used = r.ok_rows()[0]["last_used_at"].clone();
        if used.is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(used.is_string(), "last_used_at was not recorded");
}

#[tokio::test]
async fn imported_keys_work_and_duplicates_are_refused() {
    let s = Server::start().await;
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "imp"}))).await.ok_rows();
    let body = json!({"access_key": "IMPORTEDKEY000000001", "secret_key": "imported-secret-0123456789"});
    let r = s.admin(Method::POST, "/admin/v1/accounts/imp/keys", Some(body.clone())).await;
    assert_eq!(r.ok_rows()[0]["secret_key"], "imported-secret-0123456789");
    s.call_as("IMPORTEDKEY000000001", "imported-secret-0123456789", Method::GET, "/v1/zones", None).await.ok_rows();
    s.admin(Method::POST, "/admin/v1/accounts/imp/keys", Some(body)).await.assert_error(400, "CHECK_PARAM");
    // The secret is never shown again.
    let r = s.admin(Method::GET, "/admin/v1/keys?account=imp", None).await;
    assert!(!r.text.contains("imported-secret"), "{}", r.text);
}

#[tokio::test]
async fn the_allowlist_uses_the_peer_or_a_trusted_proxy_header() {
    let s = Server::start_with(&["--trusted-proxy", "127.0.0.1/32"], &[]).await;
    let (k_local, s_local) = s.new_account("local", json!({"allow": ["127.0.0.0/8"]})).await;
    let (key, secret) = s.new_account("office", json!({"allow": ["198.51.100.0/24", "2001:db8::/32"]})).await;
    s.call_as(&k_local, &s_local, Method::GET, "/v1/zones", None).await.ok_rows();
    s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await.assert_error(403, "CHECK_IP");
    // Through the trusted proxy (the loopback peer), the right-most untrusted hop counts.
    let mut h = Server::signature(&key, &secret, s.now(), "/v1/zones");
    h.push(("X-Forwarded-For".into(), "203.0.113.5, 198.51.100.20".into()));
    s.raw(Method::GET, "/v1/zones", &h, None).await.ok_rows();
    h.pop();
    h.push(("X-Forwarded-For".into(), "198.51.100.20, 203.0.113.5".into()));
    s.raw(Method::GET, "/v1/zones", &h, None).await.assert_error(403, "CHECK_IP");
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_untrusted_peers() {
    let s = Server::start().await;
    let (key, secret) = s.new_account("office", json!({"allow": ["198.51.100.0/24"]})).await;
    let mut h = Server::signature(&key, &secret, s.now(), "/v1/zones");
    h.push(("X-Forwarded-For".into(), "198.51.100.20".into()));
    s.raw(Method::GET, "/v1/zones", &h, None).await.assert_error(403, "CHECK_IP");
}

#[tokio::test]
async fn the_rate_limit_is_a_bucket_refilled_by_the_clock() {
    let s = Server::start().await;
    let (key, secret) = s.new_account("busy", json!({"rate_limit": 5})).await;
    // Pin the clock so that real time does not refill the bucket during the test.
    s.admin(Method::PUT, "/admin/v1/clock", Some(json!({"now": "2031-01-01T00:00:00Z"}))).await.ok_rows();
    // The clock keeps running from the pinned point, so requests are signed with its time.
    for remaining in (0..5).rev() {
        let r = signed_at_server_time(&s, &key, &secret).await;
        r.ok_rows();
        assert_eq!(r.header("ratelimit-limit"), Some("5"));
        assert_eq!(r.header("ratelimit-remaining"), Some(remaining.to_string().as_str()), "{:?}", r.headers);
    }
    let r = signed_at_server_time(&s, &key, &secret).await;
    r.assert_error(429, "LIMIT_EXCEEDED");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=12).contains(&retry), "retry-after {retry}");
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    // One token comes back every 12 s of server time.
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "12s"}))).await.ok_rows();
    signed_at_server_time(&s, &key, &secret).await.ok_rows();
    signed_at_server_time(&s, &key, &secret).await.assert_error(429, "LIMIT_EXCEEDED");
    // A full minute refills the bucket.
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "1m"}))).await.ok_rows();
    for _ in 0..5 {
        signed_at_server_time(&s, &key, &secret).await.ok_rows();
    }
}

async fn signed_at_server_time(s: &Server, key: &str, secret: &str) -> openwinv_tests::Resp {
    let t = s.server_time().await;
    s.raw(Method::GET, "/v1/zones", &Server::signature(key, secret, t, "/v1/zones"), None).await
}

#[tokio::test]
async fn rate_limit_zero_is_unlimited_and_the_default_is_sixty() {
    let s = Server::start().await;
    // Keys made by the operator get the default (the first-start key of the simulator is
    // unlimited: tests/tls.rs).
    let (key, secret) = s.new_account("team", json!({})).await;
    let r = s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await;
    assert_eq!(r.header("ratelimit-limit"), Some("60"));
    let (key, secret) = s.new_account("ci", json!({"rate_limit": 0})).await;
    for _ in 0..80 {
        let r = s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await;
        r.ok_rows();
        assert!(r.header("ratelimit-limit").is_none());
    }
}
