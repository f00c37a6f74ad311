//! Metering and billing (spec §10) through the real binary, on the server's clock.

use std::time::Duration;

use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};

async fn fast_with(extra: &[&str], envs: &[(&str, &str)]) -> Server {
    let mut args = vec!["--sim-delay", "0", "--default-rate-limit", "0"];
    args.extend_from_slice(extra);
    Server::start_with(&args, envs).await
}

async fn fast() -> Server {
    fast_with(&[], &[]).await
}

/// Moves the server clock to an RFC 3339 instant and signs with it from now on.
async fn set_clock(s: &mut Server, to: &str) {
    s.admin(Method::PUT, "/admin/v1/clock", Some(json!({ "now": to }))).await.ok_rows();
    s.sync_clock().await;
}

async fn advance(s: &mut Server, by: &str) {
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({ "duration": by }))).await.ok_rows();
    s.sync_clock().await;
}

/// Creates an instance (with `extra` body fields) and waits until it is active; returns its id.
async fn instance(s: &Server, key: Option<(&str, &str)>, extra: Value) -> String {
    let mut body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "web"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = match key {
        None => s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await,
        Some((k, sec)) => s.call_as(k, sec, Method::POST, "/v1/instances", Some(Body::Json(body))).await,
    };
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    let op = r.header("x-operation-id").unwrap().to_owned();
    let Some((k, sec)) = key else {
        assert_eq!(s.wait_operation(&op).await["status"], "succeeded");
        return id;
    };
    for _ in 0..600 {
        let r = s.call_as(k, sec, Method::GET, &format!("/v1/operations/{op}"), None).await;
        match r.ok_rows()[0]["status"].as_str() {
            Some("running") => tokio::time::sleep(Duration::from_millis(50)).await,
            status => {
                assert_eq!(status, Some("succeeded"), "{}", r.text);
                return id;
            }
        }
    }
    panic!("operation {op} still running");
}

/// Waits for an accepted operation to succeed.
async fn done(s: &Server, r: Resp) {
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.header("x-operation-id").unwrap().to_owned();
    let row = s.wait_operation(&op).await;
    assert_eq!(row["status"], "succeeded", "{row}");
}

async fn live(s: &Server) -> Value {
    let r = s.get("/v1/bill/live?explain=1").await;
    let rows = r.ok_rows();
    assert_eq!(rows.len(), 1, "{}", r.text);
    rows[0].clone()
}

/// The live bill read during the second `at` (retried when the read slips into the next second).
async fn live_at(s: &mut Server, at: &str, today: &str) -> Value {
    for _ in 0..5 {
        set_clock(s, at).await;
        let row = live(s).await;
        if row["end_date"] == today {
            return row;
        }
    }
    panic!("could not read the live bill during {at}");
}

/// The account's bills (no filter), waiting until there are `n`.
async fn wait_bills(s: &Server, key: Option<(&str, &str)>, n: usize) -> Vec<Value> {
    let mut last = String::new();
    for _ in 0..200 {
        let r = match key {
            None => s.get("/v1/bill?page_size=100").await,
            Some((k, sec)) => s.call_as(k, sec, Method::GET, "/v1/bill?page_size=100", None).await,
        };
        let rows = r.ok_rows().clone();
        if rows.len() >= n {
            assert_eq!(rows.len(), n, "{}", r.text);
            return rows;
        }
        last = r.text;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected {n} bills; last answer: {last}");
}

fn item_sum(row: &Value) -> i64 {
    row["items"].as_array().unwrap().iter().map(|i| i["amount"].as_i64().unwrap()).sum()
}

/// The line of `id` in an explained live bill.
fn line<'a>(row: &'a Value, id: &str) -> &'a Value {
    row["items"].as_array().unwrap().iter().find(|i| i["id"] == id).unwrap_or_else(|| panic!("no line for {id}: {row}"))
}

#[tokio::test]
async fn live_bill_shape_explain_and_off_time() {
    let mut s = fast().await;
    set_clock(&mut s, "2026-11-10T00:00:00+09:00").await;
    // Nothing yet: price 0, no lines.
    let r = s.get("/v1/bill/live").await;
    let row = &r.ok_rows()[0];
    assert_eq!(r.json["count"], 1);
    assert!(r.json.get("page_no").is_none() && r.json.get("total").is_none(), "not paginated: {}", r.text);
    assert_eq!(
        (row["bill_id"].as_str(), row["start_date"].as_str(), row["end_date"].as_str(), row["currency"].as_str()),
        (Some("BILL-live"), Some("2026-11-01"), Some("2026-11-10"), Some("KRW"))
    );
    assert_eq!(row["price"], 0);
    assert!(row.get("items").is_none(), "items only with explain: {row}");
    assert_eq!(live(&s).await["items"], json!([]));

    let id = instance(&s, None, json!({"block_storage": [{"size": 20, "type": "ssd", "name": "data"}]})).await;
    advance(&mut s, "10h").await;
    let row = live(&s).await;
    assert_eq!(row["price"].as_i64().unwrap(), item_sum(&row));
    let items = row["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{row}");
    // Without `explain` the price is the same (read between two equal plain reads).
    for attempt in 0.. {
        let p1 = plain_price(&s).await;
        let explained = live(&s).await["price"].as_i64().unwrap();
        let p3 = plain_price(&s).await;
        if p1 == p3 {
            assert_eq!(explained, p1);
            break;
        }
        assert!(attempt < 5 && p1 <= explained && explained <= p3);
    }
    let server = line(&row, &id);
    assert_eq!((server["type"].as_str(), server["name"].as_str()), (Some("server"), Some("web")));
    assert_eq!((server["rate"].as_i64(), server["rate_unit"].as_str()), (Some(14), Some("hour")));
    let secs = server["seconds"].as_i64().unwrap();
    assert!((36_000..36_030).contains(&secs), "{server}");
    assert_eq!(server["amount"].as_i64().unwrap(), 14 * secs / 3600);
    let volume = items.iter().find(|i| i["type"] == "volume").unwrap();
    assert_eq!((volume["rate"].as_i64(), volume["rate_unit"].as_str()), (Some(150 * 20), Some("month")));
    let vsecs = volume["seconds"].as_i64().unwrap();
    assert_eq!(volume["amount"].as_i64().unwrap(), 3000 * vsecs / (30 * 86_400));

    // Off time is charged.
    done(&s, s.call(Method::POST, &format!("/v1/instances/{id}/shutdown"), None).await).await;
    s.wait_status(&id, "off").await;
    advance(&mut s, "5h").await;
    let later = live(&s).await;
    let secs_off = line(&later, &id)["seconds"].as_i64().unwrap();
    assert!(secs_off >= secs + 5 * 3600, "{secs} → {secs_off}");
    assert!(later["price"].as_i64() >= row["price"].as_i64());

    for bad in ["2", "yes", "-1"] {
        s.get(&format!("/v1/bill/live?explain={bad}")).await.assert_error(400, "CHECK_PARAM");
    }
}

#[tokio::test]
async fn a_resize_switches_the_rate_when_it_completes() {
    let mut s = fast().await;
    set_clock(&mut s, "2026-11-10T00:00:00+09:00").await;
    let id = instance(&s, None, json!({})).await;
    advance(&mut s, "1h").await;
    let before = s.server_time().await;
    done(
        &s,
        s.call(Method::POST, &format!("/v1/instances/{id}/resize"), Some(Body::Json(json!({"flavor_id": "ss1.c2m4"}))))
            .await,
    )
    .await;
    let after = s.server_time().await;
    advance(&mut s, "1h").await;
    let row = live(&s).await;
    let l = line(&row, &id);
    assert_eq!(l["rate"], 45, "the new flavor's hourly rate: {l}");

    // Two intervals: the old rate through the second the resize completed in, the new one after.
    let db = s.db().await;
    let ivs: Vec<(i64, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT hourly, monthly, start_at, end_at FROM usage_intervals WHERE resource_id = $1 ORDER BY start_at",
    )
    .bind(&id)
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    assert_eq!(ivs.len(), 2, "{ivs:?}");
    let (h1, m1, s1, e1) = ivs[0];
    let (h2, m2, s2, e2) = ivs[1];
    assert_eq!((h1, m1, h2, m2, e2), (14, 9900, 45, 31_900, None));
    let switched = e1.unwrap();
    assert_eq!(switched, s2);
    assert!(before < switched && switched <= after + 1, "{before} < {switched} <= {after} + 1");
    // Seconds at the old rate, then the rest at the new one.
    let old = switched - s1;
    let expected = (14 * old + 45 * (l["seconds"].as_i64().unwrap() - old)) / 3600;
    assert_eq!(l["amount"].as_i64().unwrap(), expected, "{l}");
}

#[tokio::test]
async fn month_boundaries_follow_the_billing_time_zone() {
    let mut seoul = fast().await;
    let mut utc = fast_with(&["--billing-timezone", "UTC"], &[]).await;
    for s in [&mut seoul, &mut utc] {
        // 23:59 on 30 November in Seoul, 14:59 in UTC.
        set_clock(s, "2026-11-30T14:59:00Z").await;
        instance(s, None, json!({})).await;
        set_clock(s, "2026-11-30T15:00:30Z").await;
    }
    // Seoul is in December: the live bill starts on 1 December and November's bill is issued.
    let row = live(&seoul).await;
    assert_eq!((row["start_date"].as_str(), row["end_date"].as_str()), (Some("2026-12-01"), Some("2026-12-01")));
    let bills = wait_bills(&seoul, None, 1).await;
    assert_eq!(bills[0]["name"], "2026년 11월 정기 청구");
    assert_eq!(
        (bills[0]["usage_start"].as_str(), bills[0]["usage_end"].as_str()),
        (Some("2026-11-01"), Some("2026-11-30"))
    );
    // UTC is still in November: no bill.
    let row = live(&utc).await;
    assert_eq!((row["start_date"].as_str(), row["end_date"].as_str()), (Some("2026-11-01"), Some("2026-11-30")));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(utc.get("/v1/bill").await.ok_rows().len(), 0);
    // Until midnight UTC.
    set_clock(&mut utc, "2026-12-01T00:00:05Z").await;
    let bills = wait_bills(&utc, None, 1).await;
    assert_eq!(
        (bills[0]["bill_date"].as_str(), bills[0]["name"].as_str()),
        (Some("2026-12-01"), Some("2026년 11월 정기 청구"))
    );
}

#[tokio::test]
async fn a_resource_living_across_a_month_boundary() {
    let mut s = fast().await;
    set_clock(&mut s, "2026-10-31T12:00:00+09:00").await;
    let id = instance(&s, None, json!({"block_storage": [{"size": 20, "type": "ssd"}]})).await;
    // The live bill at October's last second is what October's bill will say.
    let october = live_at(&mut s, "2026-10-31T23:59:59+09:00", "2026-10-31").await;
    assert!(october["price"].as_i64().unwrap() > 0);
    // November starts from zero.
    set_clock(&mut s, "2026-11-01T00:00:00+09:00").await;
    let row = live(&s).await;
    assert_eq!(row["start_date"], "2026-11-01");
    assert!(line(&row, &id)["seconds"].as_i64().unwrap() < 60, "{row}");
    // Past the end of November: both months are billed.
    set_clock(&mut s, "2026-12-01T00:00:05+09:00").await;
    let bills = wait_bills(&s, None, 2).await;
    let (oct, nov) = (&bills[0], &bills[1]);
    assert_eq!(oct["name"], "2026년 10월 정기 청구");
    assert_eq!(oct["price"], october["price"]);
    assert_eq!((oct["bill_date"].as_str(), nov["bill_date"].as_str()), (Some("2026-11-01"), Some("2026-12-01")));
    // A whole November: the server at its monthly cap (720 h × 14 > 9900), 20 GB of ssd at 150/GB.
    assert_eq!(
        (nov["price"].as_i64(), nov["vat"].as_i64(), nov["payment_price"].as_i64()),
        (Some(12_900), Some(1290), Some(14_190))
    );
    assert_eq!(
        (nov["type"].as_str(), nov["payment_status"].as_str(), nov["currency"].as_str()),
        (Some("regular"), Some("unpaid"), Some("KRW"))
    );
    assert_eq!(
        (&nov["date_paid"], &nov["invoice"], &nov["tax"]),
        (&json!(""), &json!([]), &json!([])),
        "unpaid: date_paid \"\""
    );
    let detail = s.get(&format!("/v1/bill/{}", nov["bill_id"].as_str().unwrap())).await.ok_rows()[0].clone();
    let groups = detail["group"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{detail}");
    assert_eq!(
        (groups[0]["type"].as_str(), groups[0]["count"].as_i64(), groups[0]["sub_total"].as_i64()),
        (Some("서버"), Some(1), Some(9900))
    );
    assert_eq!(
        (groups[1]["type"].as_str(), groups[1]["count"].as_i64(), groups[1]["sub_total"].as_i64()),
        (Some("블록 스토리지"), Some(1), Some(3000))
    );
    let item = &groups[0]["item"][0];
    assert_eq!(
        (
            item["service_id"].as_str(),
            item["name"].as_str(),
            item["price"].as_i64(),
            item["usage_start"].as_str(),
            item["usage_end"].as_str()
        ),
        (Some(id.as_str()), Some("web"), Some(9900), Some("2026-11-01"), Some("2026-11-30"))
    );
    let oct_detail = s.get(&format!("/v1/bill/{}", oct["bill_id"].as_str().unwrap())).await.ok_rows()[0].clone();
    assert_eq!(oct_detail["group"][0]["item"][0]["usage_start"], "2026-10-31");
    assert_eq!(
        oct_detail["price"],
        oct_detail["group"].as_array().unwrap().iter().map(|g| g["sub_total"].as_i64().unwrap()).sum::<i64>()
    );
    // Exactly once: more ticks change nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.db_count("SELECT COUNT(*) FROM bills").await, 2);
}

#[tokio::test]
async fn a_month_that_ends_while_the_server_is_down_is_billed_when_it_comes_back() {
    let mut s = fast().await;
    set_clock(&mut s, "2026-11-25T00:00:00+09:00").await;
    let id = instance(&s, None, json!({})).await;
    // A crash loses nothing.
    s.kill9().await;
    s.restart().await;
    let row = live(&s).await;
    assert!(line(&row, &id)["seconds"].as_i64().unwrap() >= 1);
    // Stop two seconds before the month ends; the clock (stored) keeps running meanwhile.
    set_clock(&mut s, "2026-11-30T23:59:58+09:00").await;
    s.stop().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(s.db_count("SELECT COUNT(*) FROM bills").await, 0);
    s.restart().await;
    s.sync_clock().await;
    let bills = wait_bills(&s, None, 1).await;
    // Six whole days at 14 won an hour (the server was created within a second of midnight).
    let price = bills[0]["price"].as_i64().unwrap();
    assert!((2014..=2016).contains(&price), "{}", bills[0]);
    assert_eq!(bills[0]["name"], "2026년 11월 정기 청구");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM billing_months WHERE month = '2026-11'").await, 1);
}

#[tokio::test]
async fn a_restored_snapshot_has_its_finished_months_closed_again() {
    let mut s = fast().await;
    set_clock(&mut s, "2026-11-20T00:00:00+09:00").await;
    instance(&s, None, json!({})).await;
    advance(&mut s, "1h").await;
    s.admin(Method::POST, "/admin/v1/snapshots", Some(json!({"name": "november"}))).await.ok_rows();
    set_clock(&mut s, "2026-12-01T00:00:05+09:00").await;
    let first = wait_bills(&s, None, 1).await;
    // Back to a state with November's usage and no bill, then past November's end again: the
    // month is closed again (the closer must not trust what it knew of the replaced state).
    s.admin(Method::POST, "/admin/v1/snapshots/november/restore", None).await.ok_rows();
    assert_eq!(s.db_count("SELECT COUNT(*) FROM bills").await, 0);
    set_clock(&mut s, "2026-12-01T00:00:05+09:00").await;
    let again = wait_bills(&s, None, 1).await;
    assert_eq!(again[0]["price"], first[0]["price"], "{again:?} {first:?}");
    assert_ne!(again[0]["bill_id"], first[0]["bill_id"]);
}

#[tokio::test]
async fn two_servers_closing_the_same_month_issue_one_bill_per_account() {
    let mut a = fast().await;
    set_clock(&mut a, "2026-11-20T00:00:00+09:00").await;
    let mut b = Server::start_sharing(&a, &["--sim-delay", "0", "--default-rate-limit", "0"]).await;
    let mut keys = Vec::new();
    for n in 0..3 {
        let (k, sec) = a.new_account(&format!("tenant{n}"), json!({"rate_limit": 0})).await;
        instance(&a, Some((&k, &sec)), json!({})).await;
        keys.push((k, sec));
    }
    instance(&b, None, json!({})).await;
    // Both processes see the month end (the clock is shared through the database).
    set_clock(&mut a, "2026-12-01T00:00:01+09:00").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.sync_clock().await;
    for (k, sec) in &keys {
        wait_bills(&b, Some((k, sec)), 1).await;
    }
    wait_bills(&a, None, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.db_count("SELECT COUNT(*) FROM bills").await, 4);
    assert_eq!(a.db_count("SELECT COUNT(*) FROM bills WHERE month = '2026-11'").await, 4);
    assert_eq!(a.db_count("SELECT COUNT(*) FROM bill_items").await, 4);
    // Each account sees only its own.
    let (k, sec) = &keys[0];
    let mine = b.call_as(k, sec, Method::GET, "/v1/bill", None).await;
    let theirs = a.get("/v1/bill").await;
    let (m, t) = (&mine.ok_rows()[0], &theirs.ok_rows()[0]);
    assert_ne!(m["bill_id"], t["bill_id"]);
    b.call_as(k, sec, Method::GET, &format!("/v1/bill/{}", t["bill_id"].as_str().unwrap()), None)
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn bill_list_filters_pages_and_detail() {
    let mut s = fast().await;
    set_clock(&mut s, "2026-07-15T00:00:00+09:00").await;
    instance(&s, None, json!({})).await;
    // July (part), August, September and October (whole months, capped at 9900).
    set_clock(&mut s, "2026-11-01T00:00:01+09:00").await;
    let bills = wait_bills(&s, None, 4).await;
    let dates: Vec<&str> = bills.iter().map(|b| b["bill_date"].as_str().unwrap()).collect();
    assert_eq!(dates, ["2026-08-01", "2026-09-01", "2026-10-01", "2026-11-01"], "oldest first");
    let prices: Vec<i64> = bills.iter().map(|b| b["price"].as_i64().unwrap()).collect();
    let july = prices[0];
    assert!(july < 9900 && prices[1..] == [9900, 9900, 9900], "{prices:?}");
    // Unpaid: `date_paid` is "", and no key of a bill row is ever null (spec §10).
    for b in &bills {
        assert_eq!((b["payment_status"].as_str(), b["date_paid"].as_str()), (Some("unpaid"), Some("")), "{b}");
        assert!(b.as_object().unwrap().values().all(|v| !v.is_null()), "a null in {b}");
    }

    let count = |q: &'static str| {
        let s = &s;
        async move {
            let r = s.get(&format!("/v1/bill?{q}")).await;
            let n = r.ok_rows().len();
            (n, r)
        }
    };
    for (q, n) in [
        ("start_date=2026-09-01", 3),
        ("end_date=2026-09-01", 2),
        ("start_date=2026-09-01&end_date=2026-09-01", 1),
        ("start_date=2026-08-01&end_date=2026-11-01", 4),
        ("min_price=9900", 3),
        ("max_price=9900", 4),
        ("max_price=9899", 1),
        // Negative bounds are accepted [iwinv live].
        ("min_price=-1", 4),
        ("min_price=-5000&max_price=9899", 1),
    ] {
        assert_eq!(count(q).await.0, n, "{q}");
    }
    let r = s.get(&format!("/v1/bill?min_price={july}&max_price={july}")).await;
    assert_eq!(r.ok_rows().len(), 1);
    // Strings for page_no and page_size [iwinv]; a page past the end is empty.
    let (n, r) = count("page_size=3").await;
    assert_eq!(
        (n, &r.json["page_no"], &r.json["page_size"], &r.json["count"]),
        (3, &json!("1"), &json!("3"), &json!(3))
    );
    // No `total` and no `page` key [iwinv live].
    assert!(r.json.get("total").is_none() && r.json.get("page").is_none(), "{}", r.text);
    let (n, r) = count("page_size=3&page_no=2").await;
    assert_eq!((n, &r.json["page_no"]), (1, &json!("2")));
    let (n, r) = count("page_no=9").await;
    assert_eq!((n, &r.json["count"]), (0, &json!(0)));
    // A filter that matches nothing on page 1: EMPTY_SET [iwinv]; on a later page: an empty page.
    for q in [
        "min_price=9901",
        "max_price=-1",
        "start_date=2030-01-01",
        "end_date=2026-07-31",
        "start_date=2026-10-02&end_date=2026-10-31",
    ] {
        s.get(&format!("/v1/bill?{q}")).await.assert_error(400, "EMPTY_SET");
    }
    assert_eq!(count("min_price=9901&page_no=2").await.0, 0);
    // Bad values name the parameter.
    for q in [
        "start_date=2026-9-1",
        "end_date=yesterday",
        "start_date=2026-02-30",
        "max_price=1.5",
        "min_price=cheap",
        "page_no=0",
        "page_size=abc",
        "page_size=101",
    ] {
        let r = s.get(&format!("/v1/bill?{q}")).await;
        r.assert_error(400, "CHECK_PARAM");
        let field = q.split('=').next().unwrap();
        assert!(r.json["message"].as_str().unwrap().contains(field), "{q}: {}", r.text);
    }

    // Detail; another account's bill and unknown ids are 404.
    let id = bills[3]["bill_id"].as_str().unwrap();
    let detail = s.get(&format!("/v1/bill/{id}")).await.ok_rows()[0].clone();
    for k in [
        "bill_id",
        "usage_start",
        "usage_end",
        "bill_date",
        "type",
        "payment_status",
        "name",
        "price",
        "vat",
        "payment_price",
        "currency",
        "date_paid",
        "invoice",
        "tax",
        "group",
    ] {
        assert!(detail.get(k).is_some(), "{k} missing: {detail}");
    }
    let (k, sec) = s.new_account("other", json!({"rate_limit": 0})).await;
    s.call_as(&k, &sec, Method::GET, &format!("/v1/bill/{id}"), None).await.assert_error(404, "NOT_FOUND");
    // No bills and no filter: 200 and an empty list, not EMPTY_SET [ours]; with a filter, EMPTY_SET.
    let r = s.call_as(&k, &sec, Method::GET, "/v1/bill", None).await;
    assert_eq!((r.status, r.ok_rows().len()), (200, 0), "{}", r.text);
    assert!(r.json.get("total").is_none(), "{}", r.text);
    s.call_as(&k, &sec, Method::GET, "/v1/bill?min_price=-1", None).await.assert_error(400, "EMPTY_SET");
    s.get("/v1/bill/BILL-0000000000000000000000").await.assert_error(404, "NOT_FOUND");

    // The operator marks a bill paid, once.
    let r = s.admin(Method::POST, &format!("/admin/v1/bills/{id}/pay"), None).await;
    let paid = &r.ok_rows()[0];
    assert_eq!((paid["payment_status"].as_str(), paid["date_paid"].as_str()), (Some("paid"), Some("2026-11-01")));
    let listed = s.get("/v1/bill?start_date=2026-11-01").await.ok_rows()[0].clone();
    assert_eq!(listed["date_paid"], "2026-11-01", "{listed}");
    advance(&mut s, "48h").await;
    let again = &s.admin(Method::POST, &format!("/admin/v1/bills/{id}/pay"), None).await.ok_rows()[0].clone();
    assert_eq!(again["date_paid"], "2026-11-01");
    assert_eq!(s.get(&format!("/v1/bill/{id}")).await.ok_rows()[0]["payment_status"], "paid");
    s.admin(Method::POST, "/admin/v1/bills/BILL-nope/pay", None).await.assert_error(404, "NOT_FOUND");
    let r = s.raw(Method::POST, &format!("/admin/v1/bills/{id}/pay"), &[], None).await;
    assert_eq!(r.status, 401, "{}", r.text);
}

#[tokio::test]
async fn bills_can_be_issued_paid() {
    let mut s = fast_with(&[], &[("OPENWINV_BILLS_PAID_ON_ISSUE", "true")]).await;
    set_clock(&mut s, "2026-11-30T00:00:00+09:00").await;
    instance(&s, None, json!({})).await;
    set_clock(&mut s, "2026-12-01T09:00:00+09:00").await;
    let bill = &wait_bills(&s, None, 1).await[0];
    assert_eq!((bill["payment_status"].as_str(), bill["date_paid"].as_str()), (Some("paid"), Some("2026-12-01")));
}

#[tokio::test]
async fn volumes_are_metered_from_creation_to_deletion() {
    let mut s = fast().await;
    set_clock(&mut s, "2026-11-10T00:00:00+09:00").await;
    let inst = instance(&s, None, json!({})).await;
    let r = s
        .call(
            Method::POST,
            "/v1/block-storages",
            Some(Body::Json(json!({"instance_id": inst, "type": "sata", "size": 100}))),
        )
        .await;
    let vol = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
    done(&s, r).await;
    advance(&mut s, "1h").await;
    done(&s, s.call(Method::POST, &format!("/v1/block-storages/{vol}/detach"), None).await).await;
    done(&s, s.call(Method::DELETE, &format!("/v1/block-storages/{vol}"), None).await).await;
    let row = live(&s).await;
    let l = line(&row, &vol).clone();
    assert_eq!((l["type"].as_str(), l["rate"].as_i64()), (Some("volume"), Some(50 * 100)));
    advance(&mut s, "1h").await;
    let later = live(&s).await;
    assert_eq!(line(&later, &vol)["seconds"], l["seconds"], "no charge after deletion");
    assert!(l["seconds"].as_i64().unwrap() >= 3600);

    // A create that fails leaves no usage either.
    s.admin(
        Method::POST,
        "/admin/v1/faults",
        Some(json!({"kind": "volume.create", "step": "create_volume", "mode": "once"})),
    )
    .await
    .ok_rows();
    let r = s
        .call(
            Method::POST,
            "/v1/block-storages",
            Some(Body::Json(json!({"instance_id": inst, "type": "ssd", "size": 10}))),
        )
        .await;
    let failed = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
    let op = r.header("x-operation-id").unwrap().to_owned();
    assert_eq!(s.wait_operation(&op).await["status"], "failed");
    assert_eq!(s.db_count(&format!("SELECT COUNT(*) FROM usage_intervals WHERE resource_id = '{failed}'")).await, 0);
    assert!(live(&s).await["items"].as_array().unwrap().iter().all(|i| i["id"] != failed.as_str()));
}

#[tokio::test]
async fn the_live_bill_sees_every_process_write_at_once() {
    let mut a = fast().await;
    set_clock(&mut a, "2026-11-10T00:00:00+09:00").await;
    let b = Server::start_sharing(&a, &["--sim-delay", "0", "--default-rate-limit", "0"]).await;
    let first = instance(&a, None, json!({})).await;
    assert_eq!(live(&a).await["items"].as_array().unwrap().len(), 1);
    // Written through the other process: seen by this one's next read.
    let second = instance(&b, None, json!({"name": "other"})).await;
    let row = live(&a).await;
    assert_eq!(row["items"].as_array().unwrap().len(), 2, "{row}");
    line(&row, &second);
    // A rename through the other process shows too.
    let r = b.call(Method::PUT, &format!("/v1/instances/{first}"), Some(Body::Json(json!({"name": "renamed"})))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(line(&live(&a).await, &first)["name"], "renamed");
    // And a deletion stops the charge.
    done(&b, b.call(Method::DELETE, &format!("/v1/instances/{second}"), None).await).await;
    let at_delete = line(&live(&a).await, &second)["seconds"].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(line(&live(&a).await, &second)["seconds"], at_delete);
}

/// The live bill's price without `explain`.
async fn plain_price(s: &Server) -> i64 {
    s.get("/v1/bill/live").await.ok_rows()[0]["price"].as_i64().unwrap()
}

#[tokio::test]
async fn volumes_kept_when_their_instance_is_deleted_keep_accruing() {
    let mut s = fast().await;
    set_clock(&mut s, "2026-11-10T00:00:00+09:00").await;
    let inst = instance(&s, None, json!({"block_storage": [{"size": 50, "type": "ssd", "name": "keep"}]})).await;
    let row = s.get(&format!("/v1/instances/{inst}")).await.ok_rows()[0].clone();
    let vol = row["block_storage"][0]["block_storage_id"].as_str().unwrap().to_owned();
    advance(&mut s, "1h").await;
    done(&s, s.call(Method::DELETE, &format!("/v1/instances/{inst}"), None).await).await;
    let v = s.get(&format!("/v1/block-storages/{vol}")).await.ok_rows()[0].clone();
    assert_eq!(
        (v["status"].as_str(), v["name"].as_str(), v["size"].as_i64()),
        (Some("available"), Some("keep"), Some(50))
    );
    assert!(v["instance_id"].is_null());
    let before = line(&live(&s).await, &vol)["seconds"].as_i64().unwrap();
    let server_before = line(&live(&s).await, &inst)["seconds"].as_i64().unwrap();
    advance(&mut s, "2h").await;
    let after = live(&s).await;
    assert!(
        line(&after, &vol)["seconds"].as_i64().unwrap() >= before + 7200,
        "the kept volume keeps accruing: {after}"
    );
    assert_eq!(line(&after, &inst)["seconds"].as_i64().unwrap(), server_before, "the deleted server stopped");
}

#[tokio::test]
async fn a_failed_create_is_not_charged_until_the_instance_is_started() {
    let mut s = fast().await;
    set_clock(&mut s, "2026-11-10T00:00:00+09:00").await;
    s.admin(
        Method::POST,
        "/admin/v1/faults",
        Some(json!({"kind": "instance.create", "step": "power_on", "mode": "once"})),
    )
    .await
    .ok_rows();
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "broken"});
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    assert_eq!(s.wait_operation(r.header("x-operation-id").unwrap()).await["status"], "failed");
    assert_eq!(s.wait_status(&id, "error").await["status"], "error");
    // The row stays, in error, but the machine never existed for the user: no charge.
    assert_eq!(s.db_count(&format!("SELECT COUNT(*) FROM usage_intervals WHERE resource_id = '{id}'")).await, 0);
    advance(&mut s, "1h").await;
    let row = live(&s).await;
    assert!(row["items"].as_array().unwrap().iter().all(|i| i["id"] != id.as_str()), "{row}");
    assert_eq!(row["price"], 0, "{row}");

    // Started from `error`, it accrues from the start on, like a new instance.
    done(&s, s.call(Method::POST, &format!("/v1/instances/{id}/start"), None).await).await;
    advance(&mut s, "1h").await;
    let l = line(&live(&s).await, &id).clone();
    let seconds = l["seconds"].as_i64().unwrap();
    assert!((3600..3660).contains(&seconds), "charged from the start, not from the create: {l}");
    // Started again later (after a shutdown), it keeps its one interval.
    done(&s, s.call(Method::POST, &format!("/v1/instances/{id}/shutdown"), None).await).await;
    done(&s, s.call(Method::POST, &format!("/v1/instances/{id}/start"), None).await).await;
    assert_eq!(s.db_count(&format!("SELECT COUNT(*) FROM usage_intervals WHERE resource_id = '{id}'")).await, 1);
}

/// The list of which resource each usage version changed (migration 0015) is trimmed at every
/// 64th version (0029): it keeps the last 1,024 to 1,087 versions of an account, never fewer than
/// the 1,024 the live bill reads, and it does not grow without bound.
#[tokio::test]
async fn the_usage_change_list_keeps_the_last_1024_versions() {
    let s = fast().await;
    let pool = s.db().await;
    let (account,): (String,) =
        sqlx::query_as("SELECT account_id FROM accounts WHERE name = 'dev'").fetch_one(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO usage_intervals (interval_id, account_id, resource_id, kind, name, product, size, hourly, \
         monthly, start_at, end_at) VALUES ('IV-trim', $1, 'INSTANCE-trim', 'server', 'trim', 'ss1.c1m1', 0, 14, \
         9900, 0, NULL)",
    )
    .bind(&account)
    .execute(&pool)
    .await
    .unwrap();
    for i in 0..1200 {
        sqlx::query("UPDATE usage_intervals SET name = $1 WHERE interval_id = 'IV-trim'")
            .bind(format!("trim-{i}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let version = s.db_count(&format!("SELECT version FROM usage_versions WHERE account_id = '{account}'")).await;
    assert!(version >= 1201, "one version per write: {version}");
    let kept = s.db_count(&format!("SELECT COUNT(*) FROM usage_changes WHERE account_id = '{account}'")).await;
    assert!((1024..1088).contains(&kept), "{kept} versions kept at version {version}");
    let oldest = s.db_count(&format!("SELECT MIN(version) FROM usage_changes WHERE account_id = '{account}'")).await;
    assert_eq!(oldest, version - kept + 1, "the newest versions are the ones kept");
}
