//! The web console, part 2a, over plain HTTP (firewalls, billing, API keys, the console in place;
//! both stores) and in headless Chromium (`tests/browser/web2.mjs`).

use std::time::Duration;

use openwinv_tests::browser::{BROWSER_TIMEOUT_SECS, browser_dir, require_browser_tools};
use openwinv_tests::web::Visitor;
use openwinv_tests::{ACCESS_KEY, Body, SECRET_KEY, Server};
use reqwest::Method;
use serde_json::{Value, json};

/// A console user `login` of `account`, signed in.
async fn signed_in(s: &Server, account: &str, login: &str) -> Visitor {
    let r = s.admin(Method::POST, &format!("/admin/v1/accounts/{account}/users"), Some(json!({"login": login}))).await;
    let password = r.ok_rows()[0]["password"].as_str().unwrap().to_owned();
    let mut v = Visitor::new(s, "en");
    let token = v.get("/signin").await.csrf();
    let r = v.post("/signin", &[("csrf", &token), ("login", login), ("password", &password)]).await;
    assert_eq!((r.status, r.location()), (303, "/"), "{}", r.body);
    v
}

/// What maud makes of a text in an element.
fn escaped(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn firewall_of(s: &Server, key: &str, secret: &str, title: &str) -> String {
    let body = json!({"title": title, "content": "web tier"});
    let r = s.call_as(key, secret, Method::POST, "/v1/security-groups", Some(Body::Json(body))).await;
    r.ok_rows()[0]["firewall_id"].as_str().unwrap().to_owned()
}

async fn rules(s: &Server, key: &str, secret: &str, fw: &str) -> Vec<Value> {
    s.call_as(key, secret, Method::GET, &format!("/v1/security-groups/{fw}/rules"), None).await.ok_rows().clone()
}

async fn instance_of(s: &Server, key: &str, secret: &str) -> String {
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "web"});
    let r = s.call_as(key, secret, Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    for _ in 0..600 {
        let r = s.call_as(key, secret, Method::GET, &format!("/v1/instances/{id}"), None).await;
        if r.ok_rows()[0]["status"] == "active" {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} did not become active");
}

#[tokio::test]
async fn the_new_forms_refuse_without_their_csrf_token_and_change_nothing() {
    let s = Server::start_with(&["--sim-delay", "0"], &[]).await;
    let (key, secret) = s.new_account("acme", json!({"rate_limit": 0})).await;
    let mut v = signed_in(&s, "acme", "kim").await;
    let fw = firewall_of(&s, &key, &secret, "web tier").await;
    let vm = instance_of(&s, &key, &secret).await;
    let good = v.get(&format!("/firewalls/{fw}")).await;
    assert_eq!(good.status, 200, "{}", good.body);
    let rule = [("bound", "IN"), ("protocol", "TCP"), ("port", "22"), ("ip", "0.0.0.0/0"), ("title", "ssh")];
    let keys_before = s.admin(Method::GET, "/admin/v1/keys?account=acme", None).await.ok_rows().len();

    let attempts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/firewalls".into(), vec![("title", "another one"), ("content", "x")]),
        (format!("/firewalls/{fw}/rules"), rule.to_vec()),
        (format!("/firewalls/{fw}/attach"), vec![("instance_id", vm.as_str())]),
        (format!("/firewalls/{fw}/edit"), vec![("title", "renamed")]),
        (format!("/firewalls/{fw}/delete"), vec![]),
        ("/api-keys".into(), vec![("allow", "")]),
        (format!("/api-keys/{key}/disable"), vec![]),
        (format!("/instances/{vm}/console"), vec![]),
    ];
    for (path, form) in &attempts {
        // No token, then another session's token.
        for token in [None, Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")] {
            let mut f = form.clone();
            if let Some(t) = token {
                f.push(("csrf", t));
            }
            let r = v.post(path, &f).await;
            assert_eq!(r.status, 403, "{path} without its token: {}", r.body);
            assert!(r.body.contains("security token"), "{}", r.body);
        }
    }
    // Nothing changed.
    let listed = s.call_as(&key, &secret, Method::GET, "/v1/security-groups", None).await;
    assert_eq!(listed.ok_rows().len(), 1, "{}", listed.text);
    assert_eq!(listed.ok_rows()[0]["title"], "web tier");
    assert!(listed.ok_rows()[0]["instances"].as_array().unwrap().is_empty());
    assert!(rules(&s, &key, &secret, &fw).await.is_empty());
    let keys = s.admin(Method::GET, "/admin/v1/keys?account=acme", None).await;
    assert_eq!(keys.ok_rows().len(), keys_before);
    assert!(keys.ok_rows().iter().all(|k| k["enabled"] == true), "{}", keys.text);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM console_tokens").await, 0);

    // With the token, the same rule form works (the token was the only thing missing).
    let mut f = rule.to_vec();
    let token = good.csrf();
    f.push(("csrf", &token));
    let r = v.post(&format!("/firewalls/{fw}/rules"), &f).await;
    assert_eq!((r.status, r.location()), (303, format!("/firewalls/{fw}?done=rule_added").as_str()), "{}", r.body);
    assert_eq!(rules(&s, &key, &secret, &fw).await.len(), 1);
}

#[tokio::test]
async fn another_accounts_firewall_key_and_bill_are_the_apis_404() {
    let mut s = Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await;
    // `dev` (the harness's key) has a firewall, and a bill for a month it used an instance in.
    s.admin(Method::PUT, "/admin/v1/clock", Some(json!({"now": "2026-10-30T12:00:00+09:00"}))).await.ok_rows();
    s.sync_clock().await;
    let theirs = firewall_of(&s, ACCESS_KEY, SECRET_KEY, "their tier").await;
    instance_of(&s, ACCESS_KEY, SECRET_KEY).await;
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "48h"}))).await.ok_rows();
    s.sync_clock().await;
    let mut bill = None;
    for _ in 0..200 {
        if let Some(b) = s.get("/v1/bill").await.ok_rows().first() {
            bill = Some(b["bill_id"].as_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bill = bill.expect("dev's October bill");
    s.new_account("acme", json!({"rate_limit": 0})).await;
    let mut v = signed_in(&s, "acme", "kim").await;
    let csrf = v.get("/firewalls").await.csrf();

    // The firewall: the page, and each form on it, answer the API's 404 and change nothing.
    let api = s.call_as(ACCESS_KEY, SECRET_KEY, Method::GET, "/v1/security-groups/FIREWALL-nope/rules", None).await;
    api.assert_error(404, "NOT_FOUND");
    let page = v.get(&format!("/firewalls/{theirs}")).await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(page.body.contains(&escaped(&format!("The firewall `{theirs}`"))), "{}", page.body);
    assert!(page.body.contains("NOT_FOUND"), "{}", page.body);
    for (path, form) in [
        (
            format!("/firewalls/{theirs}/rules"),
            vec![("bound", "IN"), ("protocol", "TCP"), ("port", "22"), ("ip", "0.0.0.0/0"), ("title", "x")],
        ),
        (format!("/firewalls/{theirs}/edit"), vec![("title", "mine now")]),
        (format!("/firewalls/{theirs}/delete"), vec![]),
        (format!("/firewalls/{theirs}/rules/1/delete"), vec![]),
    ] {
        let mut f = form;
        f.push(("csrf", &csrf));
        let r = v.post(&path, &f).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    let still = s.get(&format!("/v1/security-groups/{theirs}")).await;
    assert_eq!(still.ok_rows()[0]["title"], "their tier");
    assert!(still.ok_rows()[0]["rules"].as_array().unwrap().is_empty());

    // Another account's key: 404 with the operator API's message; the key keeps working.
    for action in ["disable", "enable", "allow"] {
        let r = v.post(&format!("/api-keys/{ACCESS_KEY}/{action}"), &[("csrf", &csrf), ("allow", "10.0.0.0/8")]).await;
        assert_eq!(r.status, 404, "{action}: {}", r.body);
        assert!(r.body.contains(&escaped(&format!("The access key `{ACCESS_KEY}`"))), "{}", r.body);
    }
    let keys = v.get("/api-keys").await;
    assert!(!keys.body.contains(ACCESS_KEY), "another account's key is not listed: {}", keys.body);
    let dev_key = s.admin(Method::GET, "/admin/v1/keys?account=dev", None).await;
    assert_eq!(dev_key.ok_rows()[0]["enabled"], true);
    assert!(dev_key.ok_rows()[0]["allow"].as_array().unwrap().is_empty());

    // Another account's bill: the API's 404.
    let api = s.call_as(ACCESS_KEY, SECRET_KEY, Method::GET, "/v1/bill/BILL-nope", None).await;
    api.assert_error(404, "NOT_FOUND");
    let page = v.get(&format!("/billing/{bill}")).await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(page.body.contains(&escaped(&format!("The bill `{bill}`"))), "{}", page.body);
    // Its own page lists no bill, and dev's bill shows for dev.
    assert!(!v.get("/billing").await.body.contains(&bill));
    let mut dev = signed_in(&s, "dev", "lee").await;
    let own = dev.get(&format!("/billing/{bill}")).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert!(own.body.contains("서버") && own.body.contains("bill-group"), "{}", own.body);
}

#[tokio::test]
async fn rules_show_html_as_text_and_refusals_beside_their_field() {
    let s = Server::start_with(&["--sim-delay", "0"], &[]).await;
    let (key, secret) = s.new_account("acme", json!({"rate_limit": 0})).await;
    let mut v = signed_in(&s, "acme", "kim").await;
    let csrf = v.get("/firewalls").await.csrf();

    // Create through the page, with HTML in the description.
    let r = v.post("/firewalls", &[("csrf", &csrf), ("title", "web tier"), ("content", "<b>front</b> & 'back'")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let fw = r.location().trim_start_matches("/firewalls/").split('?').next().unwrap().to_owned();
    let page = v.get(&format!("/firewalls/{fw}")).await;
    assert_eq!(page.text_of("fw-description"), escaped("<b>front</b> & 'back'"), "shown once escaped, not twice");

    // A refused rule: the API's status and message, beside the port field; nothing added.
    let bad = [
        ("csrf", csrf.as_str()),
        ("bound", "IN"),
        ("protocol", "TCP"),
        ("port", "70000"),
        ("ip", "0.0.0.0/0"),
        ("title", "web"),
    ];
    let r = v.post(&format!("/firewalls/{fw}/rules"), &bad).await;
    let api = s
        .call_as(
            &key,
            &secret,
            Method::POST,
            &format!("/v1/security-groups/{fw}/rules"),
            Some(Body::Json(
                json!({"bound": "IN", "protocol": "TCP", "port": "70000", "ip": "0.0.0.0/0", "title": "web"}),
            )),
        )
        .await;
    api.assert_error(400, "CHECK_PARAM");
    assert_eq!(r.status, 400, "{}", r.body);
    let message = api.json["message"].as_str().unwrap();
    assert_eq!(r.text_of("add-port-error"), escaped(message));
    assert!(r.body.contains("aria-describedby=\"add-port-error\""), "{}", r.body);
    assert!(r.body.contains("value=\"70000\""), "what was typed is kept: {}", r.body);
    assert!(rules(&s, &key, &secret, &fw).await.is_empty());
    // A bare address: beside the ip field.
    let bare = [
        ("csrf", csrf.as_str()),
        ("bound", "IN"),
        ("protocol", "TCP"),
        ("port", "22"),
        ("ip", "10.0.0.1"),
        ("title", "web"),
    ];
    let r = v.post(&format!("/firewalls/{fw}/rules"), &bare).await;
    assert_eq!(r.status, 400);
    assert!(r.text_of("add-ip-error").contains("10.0.0.1/32"), "{}", r.body);

    // HTML in a rule's title and description is shown as text.
    let title = "<img src=x onerror=1>";
    let content = "<script>x</script>";
    let good = [
        ("csrf", csrf.as_str()),
        ("bound", "IN"),
        ("protocol", "TCP"),
        ("port", "22"),
        ("ip", "0.0.0.0/0"),
        ("title", title),
        ("content", content),
    ];
    let r = v.post(&format!("/firewalls/{fw}/rules"), &good).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let stored = rules(&s, &key, &secret, &fw).await;
    assert_eq!(stored[0]["title"], title, "the API keeps rule text verbatim");
    let page = v.get(&format!("/firewalls/{fw}")).await;
    assert!(!page.body.contains(title) && !page.body.contains(content), "{}", page.body);
    assert!(page.body.contains(&format!("value=\"{}\"", escaped(title))), "{}", page.body);
    assert!(page.body.contains(&format!("value=\"{}\"", escaped(content))), "{}", page.body);

    // Editing a rule refuses beside the field of that rule's row.
    let rid = stored[0]["rule_id"].to_string();
    let edit = [
        ("csrf", csrf.as_str()),
        ("bound", "IN"),
        ("protocol", "TCP"),
        ("port", "0"),
        ("ip", "0.0.0.0/0"),
        ("title", "ssh"),
    ];
    let r = v.post(&format!("/firewalls/{fw}/rules/{rid}"), &edit).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.text_of(&format!("rule-{rid}-port-error")).contains("`port`"), "{}", r.body);
    assert_eq!(rules(&s, &key, &secret, &fw).await[0]["port"], "22");
}

#[tokio::test]
async fn api_keys_are_the_accounts_own_and_the_secret_is_shown_once() {
    let s = Server::start().await;
    s.new_account("acme", json!({"rate_limit": 0})).await;
    let mut v = signed_in(&s, "acme", "kim").await;
    let csrf = v.get("/api-keys").await.csrf();

    // Without script: the answer to the POST shows the pair once.
    let r = v.post("/api-keys", &[("csrf", &csrf), ("allow", "")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), "no-store");
    let access = r.text_of("new-access-key").to_owned();
    let secret = r.text_of("key-secret").to_owned();
    assert!(secret.len() >= 32, "{secret}");
    let ok = s.call_as(&access, &secret, Method::GET, "/v1/zones", None).await;
    assert_eq!(ok.status, 200, "the new pair signs requests: {}", ok.text);
    let listed = v.get("/api-keys").await;
    assert!(listed.body.contains(&access) && !listed.body.contains(&secret), "{}", listed.body);
    assert!(!listed.body.contains("key-secret"));

    // With htmx: a part of the page with the secret, and the list swapped out of band.
    let r = v.send(Method::POST, "/api-keys", Some(&[("csrf", &csrf), ("allow", "127.0.0.1, 10.0.0.0/8")]), true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("<html"), "a partial: {}", r.body);
    assert!(r.body.contains("<div id=\"key-rows\" hx-swap-oob=\"true\">"), "{}", r.body);
    let second = r.text_of("new-access-key").to_owned();
    let keys = s.admin(Method::GET, "/admin/v1/keys?account=acme", None).await;
    let row = keys.ok_rows().iter().find(|k| k["access_key"] == second.as_str()).unwrap().clone();
    assert_eq!(row["allow"], json!(["127.0.0.1", "10.0.0.0/8"]));

    // A refused allowlist: the operator API's message, nothing made.
    let before = keys.ok_rows().len();
    let r = v.post("/api-keys", &[("csrf", &csrf), ("allow", "not-an-address")]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("`not-an-address`"), "{}", r.body);
    assert_eq!(s.admin(Method::GET, "/admin/v1/keys?account=acme", None).await.ok_rows().len(), before);

    // Allowlist, disable, enable: the API sees each change at once.
    let r = v.post(&format!("/api-keys/{access}/allow"), &[("csrf", &csrf), ("allow", "10.9.9.0/24")]).await;
    assert_eq!((r.status, r.location()), (303, "/api-keys?done=allow"), "{}", r.body);
    let refused = s.call_as(&access, &secret, Method::GET, "/v1/zones", None).await;
    assert_eq!(refused.error_code(), "CHECK_IP", "{}", refused.text);
    v.post(&format!("/api-keys/{access}/allow"), &[("csrf", &csrf), ("allow", "")]).await;
    assert_eq!(s.call_as(&access, &secret, Method::GET, "/v1/zones", None).await.status, 200);
    let r = v.post(&format!("/api-keys/{access}/disable"), &[("csrf", &csrf)]).await;
    assert_eq!(r.location(), "/api-keys?done=disable");
    let refused = s.call_as(&access, &secret, Method::GET, "/v1/zones", None).await;
    assert_eq!(refused.error_code(), "CHECK_CREDENTIAL", "{}", refused.text);
    v.post(&format!("/api-keys/{access}/enable"), &[("csrf", &csrf)]).await;
    assert_eq!(s.call_as(&access, &secret, Method::GET, "/v1/zones", None).await.status, 200);
}

#[tokio::test]
async fn the_billing_page_breaks_the_live_bill_down_and_draws_it_by_day() {
    let s = Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await;
    s.admin(Method::PUT, "/admin/v1/clock", Some(json!({"now": "2026-11-03T09:00:00+09:00"}))).await.ok_rows();
    let mut s = s;
    s.sync_clock().await;
    let (key, secret) = s.new_account("acme", json!({"rate_limit": 0})).await;
    let vm = instance_of(&s, &key, &secret).await;
    let body = json!({"instance_id": vm, "name": "data", "type": "ssd", "size": "20"});
    let r = s.call_as(&key, &secret, Method::POST, "/v1/block-storages", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    // The live bill two seconds before the ends of the 3rd and the 4th (the clock runs on, so a
    // read may land one second later, still in the same day).
    let mut at_day_end = Vec::new();
    for day in ["2026-11-03", "2026-11-04"] {
        let now = format!("{day}T23:59:58+09:00");
        s.admin(Method::PUT, "/admin/v1/clock", Some(json!({ "now": now }))).await.ok_rows();
        s.sync_clock().await;
        let r = s.call_as(&key, &secret, Method::GET, "/v1/bill/live", None).await;
        at_day_end.push(r.ok_rows()[0]["price"].as_i64().unwrap());
    }
    s.admin(Method::PUT, "/admin/v1/clock", Some(json!({"now": "2026-11-05T11:00:00+09:00"}))).await.ok_rows();
    s.sync_clock().await;
    let mut v = signed_in(&s, "acme", "kim").await;
    let page = v.get("/billing").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let api = s.call_as(&key, &secret, Method::GET, "/v1/bill/live?explain=1", None).await;
    let live = api.ok_rows()[0].clone();

    // The breakdown: one row per resource with the API's amounts (read a moment apart: the
    // page's figures may be a second older).
    for item in live["items"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap();
        assert!(page.body.contains(&format!("data-resource=\"{id}\"")), "{id} missing: {}", page.body);
    }
    let price: i64 = page.body.split("data-price=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    assert!(price > 0 && (live["price"].as_i64().unwrap() - price).abs() <= 2, "{price} vs {live}");

    // The chart: an SVG image with its title and description, one bar per day (3 Nov to 5 Nov),
    // and the bars add up to the price shown beside them.
    assert!(page.body.contains("<svg id=\"daily-chart\" class=\"chart\" role=\"img\" aria-labelledby=\"daily-chart-title daily-chart-desc\""), "{}", page.body);
    assert!(
        page.body.contains("<title id=\"daily-chart-title\">") && page.body.contains("<desc id=\"daily-chart-desc\">")
    );
    let totals: Vec<i64> =
        page.body.split("data-total=\"").skip(1).map(|p| p.split('"').next().unwrap().parse().unwrap()).collect();
    assert_eq!(totals.len(), 5, "1 to 5 November: {totals:?}");
    assert_eq!(totals[..2], [0, 0], "nothing before the 3rd");
    assert!(totals[2..].iter().all(|t| *t > 0), "{totals:?}");
    assert_eq!(totals.iter().sum::<i64>(), price, "the days add up to the live bill");
    // Each day is the live bill at its end minus the one at the previous day's end (within the
    // one second the clock may have run between the read and the day's end: under 1 won here).
    let (by_3rd, by_4th) = (totals[2], totals[2] + totals[3]);
    assert!((0..=1).contains(&(by_3rd - at_day_end[0])), "3rd: {totals:?} vs {at_day_end:?}");
    assert!((0..=1).contains(&(by_4th - at_day_end[1])), "4th: {totals:?} vs {at_day_end:?}");
    assert!(page.body.contains("data-series=\"web\"") && page.body.contains("data-series=\"data\""), "{}", page.body);
    // The same figures as a table, and nothing the CSP would refuse.
    assert!(page.body.contains("id=\"chart-table\""));
    assert!(!page.body.contains("style="), "no inline style");
}

#[tokio::test]
async fn the_console_opens_in_the_instance_page_in_a_frame() {
    let s = Server::start_with(&["--sim-delay", "0"], &[]).await;
    let (key, secret) = s.new_account("acme", json!({"rate_limit": 0})).await;
    let vm = instance_of(&s, &key, &secret).await;
    let mut v = signed_in(&s, "acme", "kim").await;
    let page = v.get(&format!("/instances/{vm}")).await;
    let csp = page.header("content-security-policy").to_owned();
    assert!(csp.contains("frame-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.header("x-frame-options"), "DENY", "console pages themselves are never framed");
    assert!(page.body.contains("id=\"console-slot\""));
    let csrf = page.csrf();

    // Without script: the answer to the POST is the page with the frame; no redirect, so the
    // address bar never holds the link.
    let r = v.post(&format!("/instances/{vm}/console"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.location().is_empty());
    let src = r.body.split("<iframe id=\"console-frame\" src=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert!(src.starts_with("/console/"), "{src}");
    assert!(r.body.contains("referrerpolicy=\"no-referrer\""));
    // The console page allows being framed by this origin only, and opens once.
    let console = v.get(&src).await;
    assert_eq!(console.status, 200, "{}", console.body);
    let csp = console.header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'self'") && !csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(v.get(&src).await.status, 404, "the link is spent");

    // With htmx: the slot alone.
    let r = v.send(Method::POST, &format!("/instances/{vm}/console"), Some(&[("csrf", &csrf)]), true).await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("<div id=\"console-slot\">") && r.body.contains("<iframe"), "{}", r.body);
    // Another account's instance: the API's 404.
    let theirs = instance_of(&s, ACCESS_KEY, SECRET_KEY).await;
    let r = v.post(&format!("/instances/{theirs}/console"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(!r.body.contains("<iframe"));
}

#[tokio::test]
async fn the_journey_in_chromium() {
    require_browser_tools();
    let mut s = Server::start_with(&["--sim-delay", "0"], &[]).await;
    let (key, secret) = s.new_account("acme", json!({"rate_limit": 0})).await;
    let vm = instance_of(&s, &key, &secret).await;
    let fw = firewall_of(&s, &key, &secret, "web tier").await;
    // Three hours of use, so that the bill has won to draw.
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "3h"}))).await.ok_rows();
    s.sync_clock().await;
    let r = s.admin(Method::POST, "/admin/v1/accounts/acme/users", Some(json!({"login": "kim"}))).await;
    let password = r.ok_rows()[0]["password"].as_str().unwrap().to_owned();
    let out = tokio::time::timeout(
        Duration::from_secs(BROWSER_TIMEOUT_SECS * 4),
        tokio::process::Command::new("node")
            .current_dir(browser_dir())
            .args(["web2.mjs", &s.endpoint, "kim", &password, &vm, &fw])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("web2.mjs did not finish")
    .expect("run node tests/browser/web2.mjs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("every step passed"), "{text}");
    // What the browser did, seen through the API.
    let fw_row = s.call_as(&key, &secret, Method::GET, &format!("/v1/security-groups/{fw}"), None).await;
    let row = &fw_row.ok_rows()[0];
    assert_eq!(row["rules"].as_array().unwrap().len(), 1, "{row}");
    assert_eq!(row["rules"][0]["port"], "443");
    assert_eq!(row["instances"], json!([vm]));
    let keys = s.admin(Method::GET, "/admin/v1/keys?account=acme", None).await;
    assert_eq!(keys.ok_rows().len(), 3, "the browser made two keys: {}", keys.text);
}

#[tokio::test]
async fn firewalls_attach_detach_and_delete_through_the_api() {
    let s = Server::start_with(&["--sim-delay", "0"], &[]).await;
    let (key, secret) = s.new_account("acme", json!({"rate_limit": 0})).await;
    let vm = instance_of(&s, &key, &secret).await;
    let fw = firewall_of(&s, &key, &secret, "web tier").await;
    let mut v = signed_in(&s, "acme", "kim").await;
    let page = v.get(&format!("/firewalls/{fw}")).await;
    assert!(page.body.contains(&format!("<option value=\"{vm}\">")), "the instance is offered: {}", page.body);
    let csrf = page.csrf();

    let r = v.post(&format!("/firewalls/{fw}/attach"), &[("csrf", &csrf), ("instance_id", &vm)]).await;
    assert_eq!((r.status, r.location()), (303, format!("/firewalls/{fw}?done=attached").as_str()), "{}", r.body);
    let row = s.call_as(&key, &secret, Method::GET, &format!("/v1/security-groups/{fw}"), None).await;
    assert_eq!(row.ok_rows()[0]["instances"], json!([vm]));
    let page = v.get(&format!("/firewalls/{fw}")).await;
    assert!(page.body.contains(&format!("id=\"detach-{vm}\"")), "{}", page.body);
    // The instance's page names it.
    assert!(v.get(&format!("/instances/{vm}")).await.body.contains(&format!("href=\"/firewalls/{fw}\">web tier<")));

    // Attached, it cannot be deleted: the API's 409 and message at the top of the page.
    let r = v.post(&format!("/firewalls/{fw}/delete"), &[("csrf", &csrf)]).await;
    let api = s.call_as(&key, &secret, Method::DELETE, &format!("/v1/security-groups/{fw}"), None).await;
    api.assert_error(409, "IN_USE");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains(&escaped(api.json["message"].as_str().unwrap())), "{}", r.body);

    // Detached (an operation), then deleted.
    let r = v.post(&format!("/firewalls/{fw}/detach"), &[("csrf", &csrf), ("instance_id", &vm)]).await;
    assert_eq!(r.location(), format!("/firewalls/{fw}?done=detached"));
    let mut gone = false;
    for _ in 0..200 {
        let row = s.call_as(&key, &secret, Method::GET, &format!("/v1/security-groups/{fw}"), None).await;
        if row.ok_rows()[0]["instances"] == json!([]) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the firewall stayed attached");
    let r = v.post(&format!("/firewalls/{fw}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!((r.status, r.location()), (303, "/firewalls?done=deleted"), "{}", r.body);
    assert!(s.call_as(&key, &secret, Method::GET, "/v1/security-groups", None).await.ok_rows().is_empty());
    assert_eq!(v.get(&format!("/firewalls/{fw}")).await.status, 404);
}

/// The create wizard's pickers page through the API's lists (at most 100 rows a page), so an
/// account with 150 SSH keys, scripts and firewalls is offered all of them; and the dashboard's
/// bill card leads to the billing page.
#[tokio::test]
async fn the_wizard_offers_every_key_script_and_firewall_past_the_api_page() {
    let s = Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await;
    let (key, secret) = s.new_account("acme", json!({"rate_limit": 0})).await;
    let mut keys = Vec::new();
    let mut scripts = Vec::new();
    let mut fws = Vec::new();
    for n in 0..150 {
        let body = json!({"name": format!("key-{n:03}"), "public_key": openwinv_tests::ED25519});
        let r = s.call_as(&key, &secret, Method::POST, "/v1/auth/ssh_key", Some(Body::Json(body))).await;
        keys.push(r.ok_rows()[0]["ssh_key_id"].as_str().unwrap().to_owned());
        let body = json!({"name": format!("script-{n:03}"), "content": "echo hi"});
        let r = s.call_as(&key, &secret, Method::POST, "/v1/instance/script", Some(Body::Json(body))).await;
        scripts.push(r.ok_rows()[0]["user_script_id"].as_str().unwrap().to_owned());
        fws.push(firewall_of(&s, &key, &secret, &format!("fw-{n:03}")).await);
    }
    // The API gives at most 100 in a page.
    let r = s.call_as(&key, &secret, Method::GET, "/v1/auth/ssh_key?page_size=100", None).await;
    assert_eq!(r.ok_rows().len(), 100, "{}", r.text);

    let mut v = signed_in(&s, "acme", "kim").await;
    let page = v.get("/instances/new?zone_id=KR1-Z01&image_id=IMG-ubuntu-2404").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let count = |name: &str| page.body.matches(&format!("name=\"{name}\" value=\"")).count();
    assert_eq!(count("ssh_key_id"), 150, "every key is offered");
    for id in keys.iter().chain(&scripts).chain(&fws) {
        assert!(page.body.contains(&format!("value=\"{id}\"")), "{id} is not offered");
    }
    // The script and firewall selects: 150 choices each after "none".
    let options = |select: &str| {
        let at = page.body.find(&format!("<select id=\"{select}\"")).unwrap();
        let rest = &page.body[at..];
        rest[..rest.find("</select>").unwrap()].matches("<option value=\"").count()
    };
    assert_eq!((options("user_script_id"), options("security_group")), (151, 151));

    let dash = v.get("/").await;
    assert!(dash.body.contains("<a class=\"card\" id=\"live-bill\" href=\"/billing\">"), "{}", dash.body);
}
