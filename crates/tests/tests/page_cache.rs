//! Instance lists and details are answered from serialized answers kept by the account's view
//! version (migration 0025, `docs/architecture.md`, "Instance page cache"). Every kind of change
//! to what a page shows must be seen on the next read: a kept answer is never served after it,
//! whichever process made the change. Each step reads the page twice before the change (the
//! second read is a kept answer) and once after.

use openwinv_tests::lifecycle::{accepted, act};
use openwinv_tests::{Body, Server};
use reqwest::Method;
use serde_json::{Value, json};

/// Immediate simulated steps, and no rate limit on the bootstrap key (the tests poll a lot).
const FAST: &[&str] = &["--sim-delay", "0", "--default-rate-limit", "0"];

const LIST: &str = "/v1/instances?page_size=10";

/// The first page, read twice: the second answer comes from the kept ones, and must equal the first.
async fn page(s: &Server) -> Vec<Value> {
    let first = s.get(LIST).await.ok_rows().clone();
    let again = s.get(LIST).await.ok_rows().clone();
    assert_eq!(first, again, "two reads of an unchanged page differ");
    first
}

/// The instance's detail, read twice as [`page`] does.
async fn detail(s: &Server, id: &str) -> Value {
    let first = s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0].clone();
    let again = s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0].clone();
    assert_eq!(first, again, "two reads of an unchanged instance differ");
    first
}

/// Both views of the one instance on the page: the list's row and the detail.
async fn views(s: &Server, id: &str) -> (Value, Value) {
    let rows = page(s).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    (rows[0].clone(), detail(s, id).await)
}

/// Reads both views (as [`views`] does) and checks that both show `want` at `pointer` (a JSON
/// pointer: `/status`, `/zone/name`).
async fn both_show(s: &Server, id: &str, pointer: &str, want: Value) -> (Value, Value) {
    let (row, one) = views(s, id).await;
    let at = |v: &Value| v.pointer(pointer).cloned().unwrap_or(Value::Null);
    assert_eq!((at(&row), at(&one)), (want.clone(), want), "{pointer}: {row}");
    (row, one)
}

async fn create(s: &Server, name: &str) -> String {
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": name});
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    let id = r.result()[0]["instance_id"].as_str().expect("an instance id").to_owned();
    let op = accepted(s, r).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    id
}

async fn rename(s: &Server, id: &str, name: &str) {
    let r = s.call(Method::PUT, &format!("/v1/instances/{id}"), Some(Body::Json(json!({"name": name})))).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn succeeds(s: &Server, r: openwinv_tests::Resp, what: &str) {
    let op = accepted(s, r).await;
    assert_eq!(op["status"], "succeeded", "{what}: {op}");
}

/// A 10 GB volume created on the instance; its id once the operation succeeded.
async fn create_volume(s: &Server, instance_id: &str, what: &str) -> String {
    let body = json!({"instance_id": instance_id, "type": "ssd", "size": 10});
    let r = s.call(Method::POST, "/v1/block-storages", Some(Body::Json(body))).await;
    let v = r.result()[0]["block_storage_id"].as_str().expect("a volume id").to_owned();
    succeeds(s, r, what).await;
    v
}

async fn create_firewall(s: &Server) -> String {
    let body = json!({"title": "web-tier", "content": "x"});
    let r = s.call(Method::POST, "/v1/security-groups", Some(Body::Json(body))).await;
    r.ok_rows()[0]["firewall_id"].as_str().expect("a firewall id").to_owned()
}

/// Puts the account's view version at `v`, behind the server's back.
async fn set_version(db: &sqlx::AnyPool, account: &str, v: i64) {
    sqlx::query("UPDATE view_versions SET v = $1 WHERE account_id = $2")
        .bind(v)
        .bind(account.to_owned())
        .execute(db)
        .await
        .unwrap();
}

fn volume_ids(v: &Value) -> Vec<String> {
    v["block_storage"].as_array().expect("block_storage").iter().map(|b| b["block_storage_id"].to_string()).collect()
}

async fn import_catalog(s: &Server, toml: String) {
    let headers = vec![("Authorization".to_owned(), format!("Bearer {}", s.admin_token))];
    let body = Body::Raw { content_type: "application/toml".into(), bytes: toml.into_bytes() };
    s.raw(Method::PUT, "/admin/v1/catalog", &headers, Some(body)).await.ok_rows();
}

#[tokio::test]
async fn every_change_to_what_a_page_shows_is_seen_on_the_next_read() {
    let s = Server::start_with(FAST, &[]).await;
    assert!(page(&s).await.is_empty());

    // Create (and the addresses its operation gives): a new row, with its public address.
    let id = create(&s, "one").await;
    let (row, one) = views(&s, &id).await;
    assert_eq!((row["name"].as_str(), row["status"].as_str()), (Some("one"), Some("active")), "{row}");
    assert!(row["ip"][0]["public"]["address"].as_str().is_some_and(|a| a.starts_with("198.18.")), "{row}");
    assert_eq!(row, one, "the list's row and the detail agree");

    // Rename.
    rename(&s, &id, "renamed").await;
    both_show(&s, &id, "/name", json!("renamed")).await;

    // Status changes by operations.
    succeeds(&s, act(&s, &id, "shutdown", json!({})).await, "shutdown").await;
    both_show(&s, &id, "/status", json!("off")).await;
    succeeds(&s, act(&s, &id, "start", json!({})).await, "start").await;
    both_show(&s, &id, "/status", json!("active")).await;

    // A volume created on the instance, detached, attached again.
    let v = create_volume(&s, &id, "create the volume").await;
    let (row, one) = views(&s, &id).await;
    assert_eq!(volume_ids(&row), [format!("\"{v}\"")], "{row}");
    assert_eq!(row["block_storage"][0]["status"], "in-use", "{row}");
    assert_eq!(volume_ids(&one), volume_ids(&row));
    succeeds(&s, s.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await, "detach").await;
    let (row, one) = views(&s, &id).await;
    assert!(volume_ids(&row).is_empty() && volume_ids(&one).is_empty(), "{row}");
    let attach = s.call(Method::POST, &format!("/v1/block-storages/{v}/attach/{id}"), None).await;
    succeeds(&s, attach, "attach").await;
    let (row, one) = views(&s, &id).await;
    assert_eq!(volume_ids(&row), [format!("\"{v}\"")], "{row}");
    assert_eq!(volume_ids(&one), volume_ids(&row));

    // A firewall attached and detached.
    let fw = create_firewall(&s).await;
    let body = || Some(Body::Json(json!({"instance_id": id})));
    succeeds(&s, s.call(Method::POST, &format!("/v1/security-groups/{fw}/attach"), body()).await, "attach fw").await;
    both_show(&s, &id, "/firewall", json!([fw])).await;
    succeeds(&s, s.call(Method::POST, &format!("/v1/security-groups/{fw}/detach"), body()).await, "detach fw").await;
    let (row, _) = both_show(&s, &id, "/firewall", json!([])).await;

    // The catalog: the zone's name shows on every row.
    assert_eq!(row["zone"]["name"], "서울 1");
    let catalog = s.admin(Method::GET, "/admin/v1/catalog", None).await.text;
    assert!(catalog.contains("name = \"서울 1\""), "{catalog}");
    import_catalog(&s, catalog.replace("name = \"서울 1\"", "name = \"서울 하나\"")).await;
    both_show(&s, &id, "/zone/name", json!("서울 하나")).await;

    // Console links are one-time: never a kept answer.
    let vnc = |r: openwinv_tests::Resp| r.ok_rows()[0]["vnc"]["link"].as_str().expect("a console link").to_owned();
    let first = vnc(s.get(&format!("/v1/instances/{id}?fields=16385")).await);
    assert_ne!(first, vnc(s.get(&format!("/v1/instances/{id}?fields=16385")).await));

    // Delete.
    let r = s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
    succeeds(&s, r, "delete").await;
    assert!(page(&s).await.is_empty());
    s.get(&format!("/v1/instances/{id}")).await.assert_error(404, "NOT_FOUND");
}

/// The kept answer really is what is served: with a row changed behind the server's back and
/// the version put back, the page still shows the old row; once the version moves, the new one.
#[tokio::test]
async fn a_kept_page_is_served_until_the_version_moves() {
    let s = Server::start_with(FAST, &[]).await;
    let id = create(&s, "kept").await;
    let query_variants = [LIST, "/v1/instances?page_no=1&page_size=10", "/v1/instances?page_size=10&page_no=1"];
    for q in query_variants {
        assert_eq!(s.get(q).await.ok_rows()[0]["name"], "kept", "{q}");
    }
    assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["name"], "kept");
    let db = s.db().await;
    let (account,): (String,) = sqlx::query_as("SELECT account_id FROM instances WHERE instance_id = $1")
        .bind(&id)
        .fetch_one(&db)
        .await
        .expect("the instance's account");
    let version = "SELECT v FROM view_versions WHERE account_id = $1";
    let (before,): (i64,) = sqlx::query_as(version).bind(&account).fetch_one(&db).await.expect("a version");
    sqlx::query("UPDATE instances SET name = 'behind' WHERE instance_id = $1").bind(&id).execute(&db).await.unwrap();
    let (after,): (i64,) = sqlx::query_as(version).bind(&account).fetch_one(&db).await.expect("a version");
    assert!(after > before, "an update of the instance moves the version: {before} → {after}");
    set_version(&db, &account, before).await;
    for q in query_variants {
        assert_eq!(s.get(q).await.ok_rows()[0]["name"], "kept", "{q}: the kept answer");
    }
    assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["name"], "kept");
    // A query the cache has not seen reads the rows.
    assert_eq!(s.get("/v1/instances?page_size=9").await.ok_rows()[0]["name"], "behind");
    set_version(&db, &account, after).await;
    db.close().await;
    for q in query_variants {
        assert_eq!(s.get(q).await.ok_rows()[0]["name"], "behind", "{q}");
    }
    assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["name"], "behind");
}

#[tokio::test]
async fn a_restore_or_a_reset_is_seen_on_the_next_read() {
    let s = Server::start_with(FAST, &[]).await;
    let id = create(&s, "saved").await;
    assert_eq!(views(&s, &id).await.0["name"], "saved");
    s.admin(Method::POST, "/admin/v1/snapshots", Some(json!({"name": "before"}))).await.ok_rows();
    rename(&s, &id, "changed").await;
    assert_eq!(views(&s, &id).await.0["name"], "changed");
    s.admin(Method::POST, "/admin/v1/snapshots/before/restore", None).await.ok_rows();
    assert_eq!(views(&s, &id).await.0["name"], "saved");
    s.admin(Method::POST, "/admin/v1/reset", Some(json!({}))).await.ok_rows();
    assert!(page(&s).await.is_empty());
    s.get(&format!("/v1/instances/{id}")).await.assert_error(404, "NOT_FOUND");
    s.admin(Method::POST, "/admin/v1/snapshots/before/restore", None).await.ok_rows();
    assert_eq!(views(&s, &id).await.0["name"], "saved");
}

/// A second process on the same database writes; the first one's next read shows it.
#[tokio::test]
async fn a_write_by_another_process_is_seen_on_the_next_read() {
    let a = Server::start_with(FAST, &[]).await;
    let b = Server::start_sharing(&a, FAST).await;
    assert!(page(&a).await.is_empty());
    let id = create(&b, "from-b").await;
    let (row, _) = views(&a, &id).await;
    assert_eq!((row["name"].as_str(), row["status"].as_str()), (Some("from-b"), Some("active")));
    rename(&b, &id, "renamed-on-b").await;
    assert_eq!(views(&a, &id).await.0["name"], "renamed-on-b");
    succeeds(&b, act(&b, &id, "shutdown", json!({})).await, "shutdown on B").await;
    assert_eq!(views(&a, &id).await.0["status"], "off");
    create_volume(&b, &id, "a volume on B").await;
    assert_eq!(views(&a, &id).await.0["block_storage"].as_array().map(Vec::len), Some(1));
    succeeds(&b, b.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await, "delete on B").await;
    assert!(page(&a).await.is_empty());
}

/// Whatever writes a row an instance view shows (an API path, an operation step, another
/// process, or SQL from outside), the next read shows it: the versions are kept by the database
/// itself, table by table.
#[tokio::test]
async fn a_write_to_any_table_a_page_shows_is_seen_on_the_next_read() {
    let s = Server::start_with(FAST, &[]).await;
    let id = create(&s, "direct").await;
    let v = create_volume(&s, &id, "create the volume").await;
    let fw = create_firewall(&s).await;
    let path = format!("/v1/security-groups/{fw}/attach");
    let attach = s.call(Method::POST, &path, Some(Body::Json(json!({"instance_id": id})))).await;
    succeeds(&s, attach, "attach the firewall").await;
    let (row, _) = views(&s, &id).await;
    assert_eq!((volume_ids(&row), &row["firewall"]), (vec![format!("\"{v}\"")], &json!([fw])), "{row}");

    let db = s.db().await;
    let write = async |sql: &str, bind: &str| {
        sqlx::query(sql).bind(bind.to_owned()).execute(&db).await.expect(sql);
    };
    write("UPDATE instances SET name = 'by-sql' WHERE instance_id = $1", &id).await;
    assert_eq!(views(&s, &id).await.0["name"], "by-sql");
    write("UPDATE volumes SET name = 'disk-by-sql' WHERE block_storage_id = $1", &v).await;
    both_show(&s, &id, "/block_storage/0/name", json!("disk-by-sql")).await;
    write("DELETE FROM firewall_attachments WHERE firewall_id = $1", &fw).await;
    both_show(&s, &id, "/firewall", json!([])).await;
    write("UPDATE volumes SET instance_id = NULL, status = 'available' WHERE block_storage_id = $1", &v).await;
    let (row, one) = views(&s, &id).await;
    assert!(volume_ids(&row).is_empty() && volume_ids(&one).is_empty(), "{row}");
    db.close().await;
}
