//! Address allocation through the real binary: every instance gets its own private address in
//! the account's subnet, and a public pool hands out each of its addresses once, says when it is
//! exhausted, and gives back what a deleted instance held.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use openwinv_tests::{Body, Server};
use reqwest::Method;
use serde_json::json;

async fn fast() -> Server {
    Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await
}

/// Creates `count` instances in KR1-Z01; their ids.
async fn create(s: &Server, count: u32, public: bool) -> Vec<String> {
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1",
        "attach_public_ip": public, "count": count});
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    r.result().iter().map(|row| row["instance_id"].as_str().unwrap().to_owned()).collect()
}

/// The instance's (public, private) addresses once it is active.
async fn addresses(s: &Server, id: &str) -> (Option<Ipv4Addr>, Ipv4Addr) {
    s.wait_status(id, "active").await;
    let row = s.get(&format!("/v1/instances/{id}?fields=262143")).await.ok_rows()[0].clone();
    let ip = &row["ip"][0];
    let public = ip["public"]["address"].as_str().map(|a| a.parse().unwrap());
    let private = ip["private"]["address"].as_str().unwrap_or_else(|| panic!("no private address: {row}"));
    (public, private.parse().unwrap())
}

#[tokio::test]
async fn every_instance_gets_its_own_private_address_in_the_subnet() {
    let s = fast().await;
    s.admin(Method::PUT, "/admin/v1/accounts/dev/quota", Some(json!({"instances": 100, "vcpu": 100}))).await.ok_rows();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.extend(create(&s, 10, false).await);
    }
    let network = u32::from(Ipv4Addr::new(10, 16, 0, 0));
    let mut seen = HashSet::new();
    for id in &ids {
        let (public, private) = addresses(&s, id).await;
        assert_eq!(public, None, "{id} asked for no public address");
        // In 10.16.0.0/16, and neither the network address, nor the gateway, nor the broadcast.
        let host = u32::from(private).wrapping_sub(network);
        assert!((2..65535).contains(&host), "{id}: {private} is not a host of 10.16.0.0/16 to hand out");
        assert!(seen.insert(private), "{private} handed out twice");
    }
    assert_eq!(seen.len(), 60);
}

#[tokio::test]
async fn a_small_public_pool_hands_out_each_address_once_then_says_it_is_exhausted() {
    let s = fast().await;
    let exported = s.admin(Method::GET, "/admin/v1/catalog", None).await;
    assert_eq!(exported.status, 200);
    let small = exported.text.replace("public_pool = \"198.18.0.0/16\"", "public_pool = \"198.18.7.0/29\"");
    assert_ne!(small, exported.text, "the default catalog gives KR1-Z01 the pool 198.18.0.0/16");
    let headers = vec![("Authorization".to_owned(), format!("Bearer {}", s.admin_token))];
    s.raw(
        Method::PUT,
        "/admin/v1/catalog",
        &headers,
        Some(Body::Raw { content_type: "application/toml".into(), bytes: small.into_bytes() }),
    )
    .await
    .ok_rows();
    // A /29 has 8 addresses: the network, the gateway and the broadcast are never handed out.
    let pool: HashSet<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(198, 18, 7, h)).collect();
    let made = create(&s, 5, true).await;
    let mut held = HashSet::new();
    for id in &made {
        let public = addresses(&s, id).await.0.unwrap_or_else(|| panic!("{id} has no public address"));
        assert!(pool.contains(&public), "{id}: {public} outside the pool");
        assert!(held.insert(public), "{public} handed out twice");
    }
    assert_eq!(held, pool);

    // The sixth finds none: its create fails, naming the pool.
    let r = s
        .call(
            Method::POST,
            "/v1/instances",
            Some(Body::Json(json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404",
                "flavor_id": "ss1.c1m1", "attach_public_ip": true}))),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "failed", "{op}");
    let error = op["error"].as_str().unwrap_or_default();
    assert!(error.contains("198.18.7.0/29") && error.contains("exhausted"), "{op}");

    // A deleted instance gives its address back, and the next create gets that one.
    let freed = addresses(&s, &made[2]).await.0.unwrap();
    let d = s.call(Method::DELETE, &format!("/v1/instances/{}", made[2]), None).await;
    assert_eq!(d.status, 202, "{}", d.text);
    s.wait_operation(d.header("x-operation-id").unwrap()).await;
    let again = create(&s, 1, true).await;
    assert_eq!(addresses(&s, &again[0]).await.0, Some(freed));
}
