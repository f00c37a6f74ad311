//! The web console over plain HTTP (sessions, CSRF, throttling, tenant isolation, the users
//! route, both stores) and in headless Chromium (`tests/browser/web.mjs`: the whole journey).

use openwinv_tests::browser::{BROWSER_TIMEOUT_SECS, browser_dir, require_browser_tools};
use openwinv_tests::web::Visitor;
use openwinv_tests::{Body, ED25519, Server};
use reqwest::Method;
use serde_json::json;

async fn user(s: &Server, account: &str, login: &str) -> String {
    let r = s.admin(Method::POST, &format!("/admin/v1/accounts/{account}/users"), Some(json!({"login": login}))).await;
    let row = &r.ok_rows()[0];
    assert_eq!(row["login"], login);
    row["password"].as_str().expect("a generated password").to_owned()
}

async fn instance(s: &Server, key: &str, secret: &str) -> String {
    let body = json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "theirs"});
    let r = s.call_as(key, secret, Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    r.result()[0]["instance_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sign_in_sessions_csrf_and_sign_out() {
    let s = Server::start().await;
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "acme"}))).await.ok_rows();
    let password = user(&s, "acme", "kim").await;
    let mut v = Visitor::new(&s, "en");

    // Without a session every page leads to the sign-in form.
    let r = v.get("/instances").await;
    assert_eq!((r.status, r.location()), (303, "/signin"));
    let form = v.get("/signin").await;
    assert_eq!(form.status, 200);
    let csp = form.headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    let pre = form.set_cookie("openwinv_pre").expect("a pre-session token cookie");
    assert!(pre.contains("HttpOnly") && pre.contains("SameSite=Strict"), "{pre}");

    // The sign-in form without its token is refused before the password is looked at.
    let r = v.post("/signin", &[("login", "kim"), ("password", &password)]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!v.cookies.contains_key("openwinv_session"));
    let r = v.sign_in("kim", "not the password").await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("The login or the password is wrong."), "{}", r.body);

    let r = v.sign_in("kim", &password).await;
    assert_eq!((r.status, r.location()), (303, "/"));
    let cookie = r.set_cookie("openwinv_session").expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Secure"), "no Secure over plain HTTP: {cookie}");
    let dash = v.get("/").await;
    assert_eq!(dash.status, 200);
    assert!(dash.body.contains("kim @ acme"), "{}", dash.body);
    // The database holds the session's hash, never the cookie.
    let token = v.cookies["openwinv_session"].clone();
    assert_eq!(s.db_count(&format!("SELECT COUNT(*) FROM web_sessions WHERE session_hash = '{token}'")).await, 0);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM web_sessions").await, 1);

    // A state change without the session's CSRF token, or with another one, changes nothing.
    let name_key = [("name", "laptop"), ("public_key", ED25519)];
    let r = v.post("/ssh-keys", &name_key).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r =
        v.post("/ssh-keys", &[("csrf", "x".repeat(32).as_str()), ("name", "laptop"), ("public_key", ED25519)]).await;
    assert_eq!(r.status, 403);
    let keys = s.admin(Method::GET, "/admin/v1/accounts/acme/ssh-keys", None).await;
    assert!(keys.ok_rows().is_empty(), "{}", keys.text);
    let csrf = dash.csrf();
    let r = v.post("/ssh-keys", &[("csrf", csrf.as_str()), ("name", "laptop"), ("public_key", ED25519)]).await;
    assert_eq!((r.status, r.location()), (303, "/ssh-keys?done=created"), "{}", r.body);
    let keys = s.admin(Method::GET, "/admin/v1/accounts/acme/ssh-keys", None).await;
    assert_eq!(keys.ok_rows()[0]["name"], "laptop");

    // An API refusal is shown in the page with the API's message and status.
    let r = v.post("/ssh-keys", &[("csrf", csrf.as_str()), ("name", "bad"), ("public_key", "ssh-rsa nonsense")]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let api = s
        .admin(
            Method::POST,
            "/admin/v1/accounts/acme/ssh-keys",
            Some(json!({"name": "bad", "public_key": "ssh-rsa nonsense"})),
        )
        .await;
    let message = api.json["message"].as_str().unwrap();
    assert!(r.body.contains(&html_escape(message)), "the page lacks the API's message {message}: {}", r.body);

    // Sign-out needs the token too, then ends the session for good.
    let r = v.post("/signout", &[]).await;
    assert_eq!(r.status, 403);
    let r = v.post("/signout", &[("csrf", csrf.as_str())]).await;
    assert_eq!((r.status, r.location()), (303, "/signin"));
    let r = v.get("/").await;
    assert_eq!((r.status, r.location()), (303, "/signin"));
    assert_eq!(s.db_count("SELECT COUNT(*) FROM web_sessions").await, 0);
}

/// The password of the console user `dev`, from the first start's `Web console:` line.
fn first_start_password(s: &Server) -> String {
    let out = s.stdout_lines().join("\n");
    let line = out.lines().find(|l| l.starts_with("Web console: ")).unwrap_or_else(|| panic!("{out}"));
    line.split("password ").nth(1).unwrap().split(';').next().unwrap().to_owned()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[tokio::test]
async fn idle_sessions_expire_on_the_server_clock_and_two_processes_share_sessions() {
    let s = Server::start().await;
    let b = Server::start_sharing(&s, &[]).await;
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "acme"}))).await.ok_rows();
    let password = user(&s, "acme", "kim").await;
    let mut v = Visitor::new(&s, "en");
    assert_eq!(v.sign_in("kim", &password).await.status, 303);
    // The session made by one process opens pages on the other.
    let mut other = v.on(&b);
    let r = other.get("/instances").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // 29 idle minutes keep it; 31 end it.
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "29m"}))).await.ok_rows();
    assert_eq!(v.get("/").await.status, 200);
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "31m"}))).await.ok_rows();
    let r = v.get("/").await;
    assert_eq!((r.status, r.location()), (303, "/signin"));
}

#[tokio::test]
async fn sign_in_is_throttled_per_login_and_per_address() {
    let s = Server::start().await;
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "acme"}))).await.ok_rows();
    let password = user(&s, "acme", "kim").await;
    let other = user(&s, "acme", "lee").await;
    let mut v = Visitor::new(&s, "en");
    for _ in 0..5 {
        assert_eq!(v.sign_in("kim", "wrong password").await.status, 401);
    }
    // Past five failures the right password is refused too, until the window ends.
    let r = v.sign_in("kim", &password).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("Too many failed sign-ins"), "{}", r.body);
    // Another login from the same address still signs in (the address allows 20).
    assert_eq!(Visitor::new(&s, "en").sign_in("lee", &other).await.status, 303);
    // Failures for made-up logins count against the address.
    for i in 0..20 {
        v.sign_in(&format!("ghost{i}"), "x").await;
    }
    assert_eq!(Visitor::new(&s, "en").sign_in("lee", &other).await.status, 429);
    // The window is 15 minutes of server time.
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "16m"}))).await.ok_rows();
    assert_eq!(v.sign_in("kim", &password).await.status, 303);
}

#[tokio::test]
async fn another_accounts_ids_give_the_apis_404_and_refusals_show_in_the_page() {
    let s = Server::start().await;
    let (key, secret) = s.new_account("acme", json!({"rate_limit": 0})).await;
    let password = user(&s, "acme", "kim").await;
    let theirs = instance(&s, openwinv_tests::ACCESS_KEY, openwinv_tests::SECRET_KEY).await;
    let mut v = Visitor::new(&s, "ko");
    let signin = v.get("/signin").await;
    assert!(signin.body.contains("<html lang=\"ko\"") && signin.body.contains("로그인"), "{}", signin.body);
    assert_eq!(v.sign_in("kim", &password).await.status, 303);

    let page = v.get(&format!("/instances/{theirs}")).await;
    assert_eq!(page.status, 404, "{}", page.body);
    let api = s.call_as(&key, &secret, Method::GET, &format!("/v1/instances/{theirs}"), None).await;
    api.assert_error(404, "NOT_FOUND");
    let message = api.json["message"].as_str().unwrap();
    assert!(page.body.contains(&html_escape(message)), "{message} not in {}", page.body);
    // Actions on it too: nothing happens to it.
    let csrf = page.csrf();
    let r = v.post(&format!("/instances/{theirs}/action"), &[("csrf", &csrf), ("action", "delete")]).await;
    assert_eq!(r.status, 404);
    let r = v.post(&format!("/instances/{theirs}/password"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 404);
    assert!(!s.get(&format!("/v1/instances/{theirs}")).await.ok_rows().is_empty());

    // The wizard refuses what the API refuses, with its message: 11 instances.
    let form = [
        ("csrf", csrf.as_str()),
        ("zone_id", "KR1-Z01"),
        ("image_id", "IMG-ubuntu-2404"),
        ("flavor_id", "ss1.c1m1"),
        ("count", "11"),
    ];
    let r = v.post("/instances/new", &form).await;
    let api = s
        .call_as(
            &key,
            &secret,
            Method::POST,
            "/v1/instances",
            Some(Body::Json(json!({
                "zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "count": 11
            }))),
        )
        .await;
    assert_eq!(r.status, api.status, "{}", r.body);
    let message = api.json["message"].as_str().unwrap();
    assert!(r.body.contains(&html_escape(message)), "{message} not in {}", r.body);
    assert!(r.body.contains("create-form"), "the wizard is shown again: {}", r.body);
    assert_eq!(s.call_as(&key, &secret, Method::GET, "/v1/instances", None).await.json["total"], 0);

    // Bulk actions ask once, then act through the API.
    let mine = instance(&s, &key, &secret).await;
    let r = v.post("/instances/bulk", &[("csrf", &csrf), ("action", "delete"), ("id", &mine)]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("bulk-confirm"), "{}", r.body);
    assert!(!s.call_as(&key, &secret, Method::GET, "/v1/instances", None).await.ok_rows().is_empty());
    // Another account's id in the same bulk is refused on its own, with the API's 404.
    let r = v
        .post("/instances/bulk", &[("csrf", &csrf), ("action", "shutdown"), ("confirm", "yes"), ("id", &theirs)])
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test]
async fn operators_create_console_users() {
    let s = Server::start().await;
    // The first start made `dev` a console user and said so.
    let password = first_start_password(&s);
    let creds = std::fs::read_to_string(s.data_path("credentials")).unwrap();
    assert!(creds.contains(&format!("password: {password}")), "{creds}");
    assert_eq!(Visitor::new(&s, "en").sign_in("dev", &password).await.status, 303);

    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "acme"}))).await.ok_rows();
    let r = s
        .admin(Method::POST, "/admin/v1/accounts/acme/users", Some(json!({"login": "kim", "password": "short"})))
        .await;
    r.assert_error(400, "CHECK_LENGTH");
    assert!(r.json["message"].as_str().unwrap().contains("`password`"));
    let r = s.admin(Method::POST, "/admin/v1/accounts/acme/users", Some(json!({"login": "k i m"}))).await;
    r.assert_error(400, "CHECK_PARAM");
    let r = s.admin(Method::POST, "/admin/v1/accounts/nobody/users", Some(json!({"login": "kim"}))).await;
    r.assert_error(404, "NOT_FOUND");
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/accounts/acme/users",
            Some(json!({"login": "kim", "password": "a long enough one"})),
        )
        .await;
    assert!(r.ok_rows()[0].get("password").is_none(), "a given password is not echoed: {}", r.text);
    let r = s.admin(Method::POST, "/admin/v1/accounts/acme/users", Some(json!({"login": "kim"}))).await;
    r.assert_error(400, "CHECK_PARAM");
    // The hash is argon2id, never the password.
    assert_eq!(s.db_count("SELECT COUNT(*) FROM users WHERE password_hash LIKE '$argon2id$%'").await, 2);
    let r = s.admin(Method::GET, "/admin/v1/accounts/acme/users", None).await;
    assert_eq!(r.ok_rows().len(), 1);
    assert!(r.ok_rows()[0].get("password").is_none());

    // Through the CLI, with the password on standard input.
    let run = s.cli_run(&["admin", "users", "create", "--account", "acme", "--login", "lee", "--json"]).await.ok();
    let generated = run.row()["password"].as_str().unwrap().to_owned();
    assert_eq!(Visitor::new(&s, "en").sign_in("lee", &generated).await.status, 303);
}

#[tokio::test]
async fn the_journey_in_chromium() {
    require_browser_tools();
    let s = Server::start_with(&["--sim-delay", "2"], &[]).await;
    let (key, secret) = s.new_account("other", json!({"rate_limit": 0})).await;
    let theirs = instance(&s, &key, &secret).await;
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "acme"}))).await.ok_rows();
    let password = user(&s, "acme", "kim").await;
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(BROWSER_TIMEOUT_SECS * 4),
        tokio::process::Command::new("node")
            .current_dir(browser_dir())
            .args(["web.mjs", &s.endpoint, "kim", &password, ED25519, &theirs])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("web.mjs did not finish")
    .expect("run node tests/browser/web.mjs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("every step passed"), "{text}");
}

#[tokio::test]
async fn scripts_and_uploaded_keys_go_through_the_api_and_pages_escape_what_they_show() {
    let s = Server::start().await;
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "acme"}))).await.ok_rows();
    let password = user(&s, "acme", "kim").await;
    let mut v = Visitor::new(&s, "en");
    assert_eq!(v.sign_in("kim", &password).await.status, 303);
    let csrf = v.get("/scripts").await.csrf();

    let name = "<script>alert(1)</script>";
    let r = v.post("/scripts", &[("csrf", &csrf), ("name", name), ("content", "echo '<b>hi</b>' > /root/x")]).await;
    assert_eq!((r.status, r.location()), (303, "/scripts?done=created"), "{}", r.body);
    let scripts = s.admin(Method::GET, "/admin/v1/accounts/acme/scripts", None).await;
    assert_eq!(scripts.ok_rows()[0]["name"], name);
    let page = v.get("/scripts?done=created").await;
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", page.body);
    assert!(!page.body.contains(name), "the name is shown unescaped: {}", page.body);
    assert!(page.body.contains("echo '&lt;b&gt;hi&lt;/b&gt;'"), "{}", page.body);
    // The API's refusal of a blank script, shown in the page.
    let r = v.post("/scripts", &[("csrf", &csrf), ("name", "blank"), ("content", "   ")]).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("CHECK_LENGTH") && r.body.contains("must not be empty"), "{}", r.body);

    // An SSH key uploaded as a file (multipart), as the page's file input sends it.
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("name", "uploaded")
        .text("public_key", "")
        .part("public_key_file", reqwest::multipart::Part::text(format!("{ED25519}\n")).file_name("id_ed25519.pub"));
    let cookie: Vec<String> = v.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let r = v
        .http
        .post(format!("{}/ssh-keys", s.endpoint))
        .header("cookie", cookie.join("; "))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().await.unwrap_or_default());
    let keys = s.admin(Method::GET, "/admin/v1/accounts/acme/ssh-keys", None).await;
    assert_eq!(keys.ok_rows()[0]["name"], "uploaded");
    // Deleting it needs the token as well.
    let id = keys.ok_rows()[0]["ssh_key_id"].as_str().unwrap().to_owned();
    assert_eq!(v.post(&format!("/ssh-keys/{id}/delete"), &[]).await.status, 403);
    let r = v.post(&format!("/ssh-keys/{id}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!((r.status, r.location()), (303, "/ssh-keys?done=deleted"));
    assert!(s.admin(Method::GET, "/admin/v1/accounts/acme/ssh-keys", None).await.ok_rows().is_empty());
}

#[tokio::test]
async fn cookies_are_secure_when_the_server_speaks_only_https() {
    let s = Server::start_with(&["--tls"], &[]).await;
    let password = first_start_password(&s);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(s.data_path("tls/ca.pem")).unwrap()).unwrap();
    let mut v = Visitor::new(&s, "en");
    v.http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let form = v.get("/signin").await;
    assert!(form.set_cookie("openwinv_pre").unwrap().contains("; Secure"), "{:?}", form.headers);
    let r = v.sign_in("dev", &password).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.set_cookie("openwinv_session").unwrap();
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");
}

#[tokio::test]
async fn a_reset_keeps_the_first_start_console_user_and_signs_everyone_out() {
    let s = Server::start().await;
    let dev_password = first_start_password(&s);
    let dev_kim = user(&s, "dev", "kim").await;
    s.admin(Method::POST, "/admin/v1/accounts", Some(json!({"name": "acme"}))).await.ok_rows();
    let acme_lee = user(&s, "acme", "lee").await;
    let mut signed_in = Visitor::new(&s, "en");
    assert_eq!(signed_in.sign_in("lee", &acme_lee).await.status, 303);

    // --keep-accounts: every account's users stay; sessions end.
    s.admin(Method::POST, "/admin/v1/reset", Some(json!({"keep_accounts": true}))).await.ok_rows();
    let r = signed_in.get("/").await;
    assert_eq!((r.status, r.location()), (303, "/signin"));
    assert_eq!(Visitor::new(&s, "en").sign_in("lee", &acme_lee).await.status, 303);
    assert_eq!(Visitor::new(&s, "en").sign_in("kim", &dev_kim).await.status, 303);

    // A full reset: the first start's `dev` user, as it was; the others are gone.
    s.admin(Method::POST, "/admin/v1/reset", None).await.ok_rows();
    assert_eq!(Visitor::new(&s, "en").sign_in("dev", &dev_password).await.status, 303);
    assert_eq!(Visitor::new(&s, "en").sign_in("kim", &dev_kim).await.status, 401, "kim is gone");
    assert_eq!(Visitor::new(&s, "en").sign_in("lee", &acme_lee).await.status, 401, "lee is gone");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM users").await, 1);
}
