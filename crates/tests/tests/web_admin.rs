//! The web console's API tester and the operator's pages (issue 17, part 2b): over plain HTTP
//! (CSRF refusals that change nothing, the operator session kept apart from people's, no secret
//! in any page) and in headless Chromium (`tests/browser/web_admin.mjs`: the tester and the
//! operator's journey; `tests/browser/pages.mjs`: axe-core over every page). Both stores.

use openwinv_tests::browser::{BROWSER_TIMEOUT_SECS, browser_dir, require_browser_tools};
use openwinv_tests::web::{Page, Visitor};
use openwinv_tests::{Body, ED25519, Server};
use reqwest::Method;
use serde_json::{Value, json};

async fn user(s: &Server, account: &str, login: &str) -> String {
    let r = s.admin(Method::POST, &format!("/admin/v1/accounts/{account}/users"), Some(json!({"login": login}))).await;
    r.ok_rows()[0]["password"].as_str().expect("a generated password").to_owned()
}

/// An account `acme` with a key, a console user `kim`, an instance, a volume, an SSH key and a
/// script, so that every page has rows. Returns (access key, secret key, kim's password).
async fn acme(s: &Server) -> (String, String, String) {
    let (key, secret) = s.new_account("acme", json!({"rate_limit": 0})).await;
    let password = user(s, "acme", "kim").await;
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "web-1"});
    let r = s.call_as(&key, &secret, Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    wait_active(s, &key, &secret, &id).await;
    let body = json!({"instance_id": id, "type": "ssd", "size": 10, "name": "data-1"});
    let r = s.call_as(&key, &secret, Method::POST, "/v1/block-storages", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let r = s
        .call_as(
            &key,
            &secret,
            Method::POST,
            "/v1/auth/ssh_key",
            Some(Body::Json(json!({"name": "laptop", "public_key": ED25519}))),
        )
        .await;
    r.ok_rows();
    let r = s
        .call_as(
            &key,
            &secret,
            Method::POST,
            "/v1/instance/script",
            Some(Body::Json(json!({"name": "hello", "content": "echo hi"}))),
        )
        .await;
    r.ok_rows();
    (key, secret, password)
}

/// Waits until the instance is `active`, through its owner's key.
async fn wait_active(s: &Server, key: &str, secret: &str, id: &str) {
    for _ in 0..600 {
        let r = s.call_as(key, secret, Method::GET, &format!("/v1/instances/{id}"), None).await;
        if r.ok_rows()[0]["status"] == "active" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{id} did not become active");
}

async fn node(script: &str, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(BROWSER_TIMEOUT_SECS * 4),
        tokio::process::Command::new("node")
            .current_dir(browser_dir())
            .arg(script)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} did not finish"))
    .unwrap_or_else(|e| panic!("run node tests/browser/{script}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

#[tokio::test]
async fn the_api_tester_and_the_operator_pages_in_chromium() {
    require_browser_tools();
    let s = Server::start_with(&["--sim-delay", "0"], &[]).await;
    let (_, _, password) = acme(&s).await;
    let text = node("web_admin.mjs", &[&s.endpoint, "kim", &password, &s.admin_token]).await;
    assert!(text.contains("every step passed"), "{text}");
    // What the operator did in the browser is in the operator API.
    let accounts = s.admin(Method::GET, "/admin/v1/accounts", None).await;
    let team = accounts.ok_rows().iter().find(|a| a["name"] == "team").expect("the account `team`");
    assert_eq!(team["quota"]["instances"], 7, "{team}");
    let clock = s.admin(Method::GET, "/admin/v1/clock", None).await;
    assert!(clock.ok_rows()[0]["offset_ms"].as_i64().unwrap() >= 7_199_000, "{}", clock.text);
}

#[tokio::test]
async fn axe_finds_no_serious_violation_on_any_page_in_chromium() {
    require_browser_tools();
    let s = Server::start_with(&["--sim-delay", "0"], &[]).await;
    let (_, _, password) = acme(&s).await;
    let host = json!({"name": "rack-1", "zone": "KR1-Z01"});
    s.admin(Method::POST, "/admin/v1/hosts", Some(host)).await.ok_rows();
    let text = node("pages.mjs", &[&s.endpoint, "kim", &password, &s.admin_token]).await;
    assert!(text.contains("no serious or critical accessibility violation"), "{text}");
    // Every page of the console was among those checked.
    for page in [
        "signin (",
        "dashboard (",
        "instances (",
        "instance (",
        "wizard-zone",
        "wizard-image",
        "wizard-flavor",
        "volumes (",
        "ssh-keys (",
        "scripts (",
        "api-test (",
        "api-test-answer",
        "admin-signin",
        "admin-accounts",
        "admin-keys",
        "admin-catalog",
        "admin-clock",
        "admin-faults",
        "admin-hosts (",
        "admin-host (",
    ] {
        assert!(text.contains(page), "{page} was not checked:\n{text}");
    }
}

#[tokio::test]
async fn the_tester_signs_on_the_server_and_its_form_needs_the_csrf_token() {
    let s = Server::start().await;
    let (key, secret, password) = acme(&s).await;
    let mut v = Visitor::new(&s, "en");
    assert_eq!(v.sign_in("kim", &password).await.status, 303);
    let form = v.get("/api-test?op=POST%20/v1/auth/ssh_key").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains(&format!("<option value=\"{key}\"")), "the account's key is offered: {}", form.body);
    let csrf = form.csrf();
    let op = "POST /v1/auth/ssh_key";
    let body = json!({"name": "from-tester", "public_key": ED25519}).to_string();
    let count = || async {
        let r = s.call_as(&key, &secret, Method::GET, "/v1/auth/ssh_key", None).await;
        r.ok_rows().iter().filter(|k| k["name"] == "from-tester").count()
    };

    // Without the token, or with another one, nothing is sent.
    let r = v.post("/api-test", &[("op", op), ("key", &key), ("body", &body)]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = v.post("/api-test", &[("csrf", &"x".repeat(32)), ("op", op), ("key", &key), ("body", &body)]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(count().await, 0);

    // With it, the request is made, signed with the key's secret, and shown with its answer.
    let r = v.post("/api-test", &[("csrf", &csrf), ("op", op), ("key", &key), ("body", &body)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(count().await, 1);
    assert!(r.text("response-status").starts_with("200"), "{}", r.text("response-status"));
    assert!(r.text("response-body").contains("\"name\": \"from-tester\""), "{}", r.body);
    let timestamp = r.text("string-to-sign").strip_suffix("/v1/auth/ssh_key").expect("timestamp + path").to_owned();
    let expected = openwinv_wire::signing::sign(&secret, &timestamp, "/v1/auth/ssh_key");
    assert_eq!(r.text("signature"), expected);
    let curl = r.text("curl");
    for part in [
        format!("-X POST '{}/v1/auth/ssh_key'", s.endpoint),
        format!("-H 'X-iwinv-Timestamp: {timestamp}'"),
        format!("-H 'X-iwinv-Credential: {key}'"),
        format!("-H 'X-iwinv-Signature: {expected}'"),
        "-H 'Content-Type: application/json'".to_owned(),
        format!("--data-raw '{body}'"),
    ] {
        assert!(curl.contains(&part), "the curl text lacks {part}:\n{curl}");
    }
    assert!(!r.body.contains(&secret), "the secret is in the page");

    // A bad parameter gets the API's envelope, shown as the API answered it.
    let r = v
        .post("/api-test", &[("csrf", &csrf), ("op", "GET /v1/flavors"), ("key", &key), ("query.min_vcpu", "lots")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.text("response-status").starts_with("400"));
    let answer: Value = serde_json::from_str(&r.text("response-body")).expect("the answer is JSON");
    let direct = s.call_as(&key, &secret, Method::GET, "/v1/flavors?min_vcpu=lots", None).await;
    direct.assert_error(400, "CHECK_PARAM");
    assert_eq!(answer, direct.json, "the tester shows the API's own envelope");

    // Another account's key cannot be used, nor an operation outside /v1.
    let (other, _) = s.new_account("other", json!({})).await;
    let r = v.post("/api-test", &[("csrf", &csrf), ("op", "GET /v1/zones"), ("key", &other)]).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(!r.body.contains("id=\"result\""));
    let r = v.post("/api-test", &[("csrf", &csrf), ("op", "GET /admin/v1/accounts"), ("key", &key)]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!r.body.contains("id=\"result\""));
}

#[tokio::test]
async fn operator_pages_need_the_token_their_own_session_and_csrf() {
    let s = Server::start().await;
    let (_, _, password) = acme(&s).await;

    // A person's session does not open the operator pages.
    let mut person = Visitor::new(&s, "en");
    assert_eq!(person.sign_in("kim", &password).await.status, 303);
    for path in ["/admin/", "/admin/catalog", "/admin/clock", "/admin/faults", "/admin/accounts/acme/keys"] {
        let r = person.get(path).await;
        assert_eq!((r.status, r.location()), (303, "/admin/signin"), "{path}");
    }
    let person_csrf = person.get("/").await.csrf();
    let r = person.post("/admin/accounts", &[("csrf", &person_csrf), ("name", "sneaky")]).await;
    assert_eq!((r.status, r.location()), (303, "/admin/signin"));

    // The sign-in form needs its token; a wrong operator token is refused with a page.
    let mut op = Visitor::new(&s, "en");
    let r = op.post("/admin/signin", &[("token", &s.admin_token)]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!op.cookies.contains_key("openwinv_operator"));
    let r = op.operator_sign_in("not-the-token").await;
    assert_eq!(r.status, 401);
    assert!(r.header("content-type").starts_with("text/html"), "{}", r.header("content-type"));
    assert!(r.body.contains("The operator token is wrong."), "{}", r.body);
    assert!(!op.cookies.contains_key("openwinv_operator"));

    let r = op.operator_signed_in(&s.admin_token).await;
    let cookie = r.set_cookie("openwinv_operator").expect("an operator cookie");
    for attr in ["Path=/admin", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains(&s.admin_token), "the cookie holds a MAC, not the token: {cookie}");
    let page = op.get("/admin/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-account=\"acme\""), "{}", page.body);
    // The operator session opens no person's page.
    assert_eq!(op.get("/instances").await.location(), "/signin");
    // A forged cookie opens nothing.
    let mut forged = Visitor::new(&s, "en");
    let value = op.cookies["openwinv_operator"].clone();
    let (head, _) = value.rsplit_once('.').unwrap();
    forged.cookies.insert("openwinv_operator".into(), format!("{head}.{}", "0".repeat(64)));
    assert_eq!(forged.get("/admin/").await.location(), "/admin/signin");
    let (nonce, _) = head.split_once('.').unwrap();
    forged.cookies.insert("openwinv_operator".into(), format!("{nonce}.99999999999.{}", &value[value.len() - 64..]));
    assert_eq!(forged.get("/admin/").await.location(), "/admin/signin", "a later expiry breaks the MAC");

    // Every operator form refuses a missing or foreign token and changes nothing.
    let csrf = page.csrf();
    let clock_before = s.admin(Method::GET, "/admin/v1/clock", None).await.ok_rows()[0]["offset_ms"].clone();
    let forms: [(&str, Vec<(&str, &str)>); 5] = [
        ("/admin/accounts", vec![("name", "team")]),
        ("/admin/accounts/quota", vec![("account", "acme"), ("instances", "3")]),
        ("/admin/accounts/acme/keys", vec![]),
        ("/admin/clock", vec![("action", "advance"), ("duration", "1h")]),
        ("/admin/faults", vec![("kind", "*"), ("step", "*"), ("mode", "sticky")]),
    ];
    op.forms_refused_without_csrf(&forms, &person_csrf).await;
    let accounts = s.admin(Method::GET, "/admin/v1/accounts", None).await;
    assert!(accounts.ok_rows().iter().all(|a| a["name"] != "team"));
    let acme_row = accounts.ok_rows().iter().find(|a| a["name"] == "acme").unwrap().clone();
    assert_ne!(acme_row["quota"]["instances"], 3);
    assert_eq!(s.admin(Method::GET, "/admin/v1/keys?account=acme", None).await.ok_rows().len(), 1);
    assert_eq!(s.admin(Method::GET, "/admin/v1/clock", None).await.ok_rows()[0]["offset_ms"], clock_before);
    assert!(s.admin(Method::GET, "/admin/v1/faults", None).await.ok_rows().is_empty());

    // With the token each form does what the operator API does, and shows its refusals.
    for (path, fields) in &forms {
        let mut f = fields.clone();
        f.push(("csrf", &csrf));
        let r = op.post(path, &f).await;
        assert!(r.status == 303 || r.status == 200, "{path}: {} {}", r.status, r.body);
    }
    let accounts = s.admin(Method::GET, "/admin/v1/accounts", None).await;
    assert!(accounts.ok_rows().iter().any(|a| a["name"] == "team"));
    let acme_row = accounts.ok_rows().iter().find(|a| a["name"] == "acme").unwrap().clone();
    assert_eq!(acme_row["quota"]["instances"], 3);
    assert_eq!(s.admin(Method::GET, "/admin/v1/keys?account=acme", None).await.ok_rows().len(), 2);
    assert!(
        s.admin(Method::GET, "/admin/v1/clock", None).await.ok_rows()[0]["offset_ms"].as_i64().unwrap() >= 3_599_000
    );
    assert_eq!(s.admin(Method::GET, "/admin/v1/faults", None).await.ok_rows().len(), 1);
    // Deleting a rule, clearing the rules and disabling a key need the token too.
    let fault =
        s.admin(Method::GET, "/admin/v1/faults", None).await.ok_rows()[0]["fault_id"].as_str().unwrap().to_owned();
    let first_key = s.admin(Method::GET, "/admin/v1/keys?account=acme", None).await.ok_rows()[0]["access_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let delete_fault = format!("/admin/faults/{fault}/delete");
    let disable_key = format!("/admin/keys/{first_key}/disable");
    for path in [delete_fault.as_str(), "/admin/faults/clear", disable_key.as_str()] {
        assert_eq!(op.post(path, &[("account", "acme")]).await.status, 403, "{path}");
    }
    assert_eq!(s.admin(Method::GET, "/admin/v1/faults", None).await.ok_rows().len(), 1);
    let r = op.post(&delete_fault, &[("csrf", &csrf)]).await;
    assert_eq!((r.status, r.location()), (303, "/admin/faults?done=faults_cleared"));
    assert!(s.admin(Method::GET, "/admin/v1/faults", None).await.ok_rows().is_empty());
    let r = op.post(&delete_fault, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 404, "the rule is gone: {}", r.body);
    let f = [("csrf", csrf.as_str()), ("kind", "*"), ("step", "*"), ("mode", "count"), ("count", "2")];
    assert_eq!(op.post("/admin/faults", &f).await.status, 303);
    let r = op.post("/admin/faults/clear", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(s.admin(Method::GET, "/admin/v1/faults", None).await.ok_rows().is_empty());
    let r = op.post(&disable_key, &[("csrf", &csrf), ("account", "acme")]).await;
    assert_eq!((r.status, r.location()), (303, "/admin/accounts/acme/keys?done=key_disabled"));
    let keys = s.admin(Method::GET, "/admin/v1/keys?account=acme", None).await;
    assert_eq!(keys.ok_rows().iter().find(|k| k["access_key"] == first_key.as_str()).unwrap()["enabled"], false);
    let r = op.post("/admin/accounts", &[("csrf", &csrf), ("name", "team")]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("CHECK_PARAM") && r.body.contains("The account `team` already exists."), "{}", r.body);
    let r = op.post("/admin/clock", &[("csrf", &csrf), ("action", "advance"), ("duration", "soon")]).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("The field `duration` must be a duration"), "{}", r.body);

    // Sign-out needs the token, then the cookie is gone.
    assert_eq!(op.post("/admin/signout", &[]).await.status, 403);
    let r = op.post("/admin/signout", &[("csrf", &csrf)]).await;
    assert_eq!((r.status, r.location()), (303, "/admin/signin"));
    assert_eq!(op.get("/admin/").await.location(), "/admin/signin");
}

#[tokio::test]
async fn no_page_shows_a_secret() {
    let s = Server::start().await;
    let (key, secret, password) = acme(&s).await;
    let dev_secret = std::fs::read_to_string(s.data_path("credentials")).unwrap();
    let dev_secret = dev_secret
        .lines()
        .find_map(|l| l.strip_prefix("secret_key = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("the first start's secret")
        .to_owned();
    let secrets = [secret.as_str(), dev_secret.as_str(), s.admin_token.as_str()];
    let check = |what: &str, p: &Page| {
        for sec in secrets {
            assert!(!p.body.contains(sec), "{what} shows a secret");
        }
        for c in &p.set_cookies() {
            for sec in secrets {
                assert!(!c.contains(sec), "{what} sets a cookie with a secret");
            }
        }
    };

    let mut v = Visitor::new(&s, "en");
    check("the sign-in form", &v.get("/signin").await);
    assert_eq!(v.sign_in("kim", &password).await.status, 303);
    let rows = s.call_as(&key, &secret, Method::GET, "/v1/instances", None).await;
    let id = rows.ok_rows()[0]["instance_id"].as_str().unwrap().to_owned();
    let mut csrf = String::new();
    for path in [
        "/".to_owned(),
        "/instances".to_owned(),
        format!("/instances/{id}"),
        "/instances/new".to_owned(),
        "/instances/new?zone_id=KR1-Z01".to_owned(),
        "/instances/new?zone_id=KR1-Z01&image_id=IMG-ubuntu-2404".to_owned(),
        "/volumes".to_owned(),
        "/ssh-keys".to_owned(),
        "/scripts".to_owned(),
        "/api-test".to_owned(),
        "/api-test?op=GET%20/v1/zones".to_owned(),
    ] {
        let p = v.get(&path).await;
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        check(&path, &p);
        csrf = p.csrf();
    }
    for (op, extra) in [("GET /v1/zones", ""), ("GET /v1/instances/{instance_id}", id.as_str())] {
        let p = v.post("/api-test", &[("csrf", &csrf), ("op", op), ("key", &key), ("path.instance_id", extra)]).await;
        assert_eq!(p.status, 200, "{op}: {}", p.body);
        assert!(p.text("response-status").starts_with("200"), "{op}: {}", p.body);
        check(op, &p);
    }

    let mut op = Visitor::new(&s, "en");
    check("the operator sign-in", &op.get("/admin/signin").await);
    let r = op.operator_sign_in(&s.admin_token).await;
    check("the operator sign-in's answer", &r);
    for path in ["/admin/", "/admin/accounts/acme/keys", "/admin/catalog", "/admin/clock", "/admin/faults"] {
        let p = op.get(path).await;
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        check(path, &p);
    }
    // A new key's secret is shown once, in the answer to the POST that made it, and never again.
    let csrf = op.get("/admin/").await.csrf();
    let made = op.post("/admin/accounts/acme/keys", &[("csrf", &csrf)]).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let new_secret = made.text("issued-secret-key");
    let new_key = made.text("issued-access-key");
    assert!(new_secret.len() >= 32, "{new_secret}");
    let keys = op.get("/admin/accounts/acme/keys").await;
    assert!(keys.body.contains(&new_key) && !keys.body.contains(&new_secret));
    let tester = v.get("/api-test?op=GET%20/v1/zones").await;
    assert!(tester.body.contains(&new_key) && !tester.body.contains(&new_secret));
}
