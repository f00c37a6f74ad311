//! The operator's hosts pages (`/admin/hosts`, docs/console.md): over plain HTTP, a person's
//! session opens none of them, every form refuses a missing or foreign CSRF token and changes
//! nothing, each move's effect is what `/admin/v1/hosts` then reports, a new host's token is shown
//! once (and is the token its agent registers with), refusals show the operator API's code and
//! message; in headless Chromium (`tests/browser/web_admin.mjs --hosts`) the operator's journey
//! over a control plane in hosts mode with a registered sim agent, with axe-core over the hosts
//! pages. Both stores.

use std::time::Duration;

use openwinv_tests::browser::{BROWSER_TIMEOUT_SECS, browser_dir, require_browser_tools};
use openwinv_tests::hosts::{SimAgent, ZONE, hosts_mode};
use openwinv_tests::web::{Page, Visitor, operator};
use openwinv_tests::{Body, Server};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(90);

async fn api_host(s: &Server, name: &str) -> Value {
    s.admin(Method::GET, &format!("/admin/v1/hosts/{name}"), None).await.ok_rows()[0].clone()
}

async fn api_hosts(s: &Server) -> Vec<String> {
    let r = s.admin(Method::GET, "/admin/v1/hosts", None).await;
    r.ok_rows().iter().map(|h| h["name"].as_str().unwrap().to_owned()).collect()
}

async fn overcommit(s: &Server) -> Value {
    s.admin(Method::GET, "/admin/v1/placements/overcommit", None).await.ok_rows()[0].clone()
}

fn shows_error(p: &Page, status: u16, code: &str, message: &str) {
    assert_eq!(p.status, status, "{}", p.body);
    let alert = p.body.split("role=\"alert\"").nth(1).unwrap_or_else(|| panic!("no error shown: {}", p.body));
    assert!(alert.contains(code) && alert.contains(message), "not {code} {message:?}: {}", p.body);
}

/// A page with a host token of the issued form.
fn issued_token(p: &Page) -> String {
    let token = p.text("issued-host-token");
    assert!(token.starts_with("owh_") && token.len() == 47, "{token}");
    token
}

#[tokio::test]
async fn hosts_pages_need_the_operator_and_csrf_and_do_what_the_operator_api_does() {
    let s = Server::start().await;
    let (_key, _secret) = s.new_account("acme", json!({})).await;
    let r = s.admin(Method::POST, "/admin/v1/accounts/acme/users", Some(json!({"login": "kim"}))).await;
    let password = r.ok_rows()[0]["password"].as_str().unwrap().to_owned();
    s.admin(Method::POST, "/admin/v1/hosts", Some(json!({"name": "old", "zone": ZONE}))).await.ok_rows();

    // A person's session opens no hosts page and makes no move.
    let mut person = Visitor::new(&s, "en");
    assert_eq!(person.sign_in("kim", &password).await.status, 303);
    for path in ["/admin/hosts", "/admin/hosts/old"] {
        let r = person.get(path).await;
        assert_eq!((r.status, r.location()), (303, "/admin/signin"), "{path}");
    }
    let person_csrf = person.get("/").await.csrf();
    for (path, fields) in [
        ("/admin/hosts", vec![("name", "sneaky"), ("zone", ZONE)]),
        ("/admin/hosts/old/disable", vec![]),
        ("/admin/hosts/old/remove", vec![]),
        ("/admin/placements/overcommit", vec![("vcpu", "9")]),
    ] {
        let mut f = fields.clone();
        f.push(("csrf", &person_csrf));
        let r = person.post(path, &f).await;
        assert_eq!((r.status, r.location()), (303, "/admin/signin"), "{path}");
    }
    assert_eq!(api_hosts(&s).await, ["old"]);
    assert_eq!(api_host(&s, "old").await["state"], "enabled");

    // The operator finds the page in the navigation; the host that never registered says so.
    let (mut op, csrf) = operator(&s).await;
    let list = op.get("/admin/hosts").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains(r#"<a href="/admin/hosts" aria-current="page">Hosts</a>"#), "{}", list.body);
    assert!(list.body.contains(r#"tr data-host="old""#), "{}", list.body);
    assert!(list.body.contains(r#"data-status="new""#), "{}", list.body);

    // Every form refuses a missing or foreign token and changes nothing.
    let before = overcommit(&s).await;
    let forms: [(&str, Vec<(&str, &str)>); 9] = [
        ("/admin/hosts", vec![("name", "h1"), ("zone", ZONE)]),
        ("/admin/placements/overcommit", vec![("vcpu", "2.5")]),
        ("/admin/hosts/old/disable", vec![]),
        ("/admin/hosts/old/drain", vec![]),
        ("/admin/hosts/old/enable", vec![]),
        ("/admin/hosts/old/evacuate", vec![]),
        ("/admin/hosts/old/declare-dead", vec![("confirm", "old")]),
        ("/admin/hosts/old/remove", vec![]),
        ("/admin/hosts/old/strays/destroy", vec![("instance_id", "INSTANCE-x")]),
    ];
    op.forms_refused_without_csrf(&forms, &person_csrf).await;
    assert_eq!(api_hosts(&s).await, ["old"]);
    assert_eq!(api_host(&s, "old").await["state"], "enabled");
    assert_eq!(overcommit(&s).await, before);

    // Adding a host shows its token once, in the answer to the POST; it is the host's token.
    let made = op.post("/admin/hosts", &[("csrf", &csrf), ("name", "h1"), ("zone", ZONE)]).await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert!(made.header("location").is_empty());
    assert_eq!(made.text("issued-host-name"), "h1");
    let token = issued_token(&made);
    assert!(made.text("issued-host-command").contains(&format!("--zone {ZONE} --host-token {token}")));
    assert_eq!(made.header("cache-control"), "no-store");
    assert!(made.body.contains(r#"tr data-host="h1""#), "the list shows it: {}", made.body);
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    let sql = format!("SELECT COUNT(*) FROM hosts WHERE name = 'h1' AND token_sha256 = '{digest}'");
    assert_eq!(s.db_count(&sql).await, 1);
    for path in ["/admin/hosts", "/admin/hosts/h1", "/admin/hosts?done=host_added"] {
        let p = op.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        assert!(!p.body.contains(&token) && !p.body.contains("issued-host-token"), "{path} shows the token again");
    }

    // Refusals of the add form: the operator API's code and message, the name sent back escaped.
    let r = op.post("/admin/hosts", &[("csrf", &csrf), ("name", "h1"), ("zone", ZONE)]).await;
    shows_error(&r, 400, "CHECK_PARAM", "The field `name`: a host `h1` exists already.");
    let r = op.post("/admin/hosts", &[("csrf", &csrf), ("name", "<b>x</b>\"y"), ("zone", ZONE)]).await;
    shows_error(&r, 400, "CHECK_PARAM", "The field `name` must be 1-63 characters of A-Z a-z 0-9 - _ .");
    assert!(r.body.contains(r#"value="&lt;b&gt;x&lt;/b&gt;&quot;y""#), "{}", r.body);
    assert!(!r.body.contains("<b>x</b>"), "{}", r.body);
    assert!(!r.body.contains("issued-host-token"));
    let r = op.post("/admin/hosts", &[("csrf", &csrf), ("name", "h2"), ("zone", "KR9-Z99")]).await;
    shows_error(&r, 400, "ID_INVALID", "The field `zone` names no zone of the catalog: `KR9-Z99`.");
    assert_eq!(api_hosts(&s).await, ["h1", "old"]);

    // The host's page and each state move, seen through the operator API.
    let page = op.get("/admin/hosts/h1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="no-placements""#) && page.body.contains(r#"id="no-strays""#));
    assert!(!page.body.contains(r#"id="host-enable""#), "an enabled host offers no enable");
    for (act, want) in [("disable", "disabled"), ("drain", "draining"), ("enable", "enabled")] {
        let r = op.post(&format!("/admin/hosts/h1/{act}"), &[("csrf", &csrf)]).await;
        assert_eq!((r.status, r.location()), (303, format!("/admin/hosts/h1?done=host_{act}").as_str()), "{act}");
        assert_eq!(api_host(&s, "h1").await["state"], want, "{act}");
        let p = op.get(r.location()).await;
        assert!(p.text("host-state").contains(want), "{act}: {}", p.text("host-state"));
        assert!(p.body.contains(r#"class="notice""#), "{act}: {}", p.body);
    }

    // Evacuation needs hosts mode; the refusal is shown as the API gives it.
    let r = op.post("/admin/hosts/h1/evacuate", &[("csrf", &csrf)]).await;
    shows_error(&r, 409, "CHECK_PARAM", "serve --placement hosts");
    // An unknown stray, an unknown host, an unknown move.
    let r = op.post("/admin/hosts/h1/strays/destroy", &[("csrf", &csrf), ("instance_id", "INSTANCE-nope")]).await;
    shows_error(&r, 404, "NOT_FOUND", "A stray machine `INSTANCE-nope` on the host `h1` was not found.");
    let r = op.get("/admin/hosts/nope").await;
    shows_error(&r, 404, "NOT_FOUND", "The host `nope` was not found.");
    let r = op.post("/admin/hosts/nope/disable", &[("csrf", &csrf)]).await;
    shows_error(&r, 404, "NOT_FOUND", "The host `nope` was not found.");
    let r = op.post("/admin/hosts/h1/explode", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(api_host(&s, "h1").await["state"], "enabled");

    // Declaring dead needs the host's name typed; then the host is dead.
    for confirm in ["", "h", "old"] {
        let r = op.post("/admin/hosts/h1/declare-dead", &[("csrf", &csrf), ("confirm", confirm)]).await;
        shows_error(&r, 400, "CHECK_PARAM", "The field `confirm` must be the host's name, `h1`");
    }
    assert_eq!(api_host(&s, "h1").await["state"], "enabled");
    // A volume whose storage the host keeps (written straight to the store: h1 has no agent).
    let db = s.db().await;
    sqlx::query(
        "INSERT INTO volumes (block_storage_id, account_id, name, type, size, status, zone_id, created_at, host_id) \
         SELECT 'BS-keptonh1', account_id, 'kept', 'ssd', 10, 'available', $1, 0, \
         (SELECT host_id FROM hosts WHERE name = 'h1') FROM accounts ORDER BY created_at LIMIT 1",
    )
    .bind(ZONE)
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    let r = op.post("/admin/hosts/h1/declare-dead", &[("csrf", &csrf), ("confirm", " h1 ")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.text("declared-dead").contains("the host h1 was declared dead at"), "{}", r.body);
    assert_eq!(r.text("dead-failed-work"), "0");
    assert!(r.text("declared-dead").contains("Volumes whose storage it kept"), "{}", r.body);
    assert_eq!(r.text("dead-volumes"), "BS-keptonh1");
    assert_eq!(api_host(&s, "h1").await["state"], "dead");
    assert!(op.get("/admin/hosts").await.body.contains(r#"data-status="dead""#));

    // The overcommit ratios: a field left empty keeps its value, a bad one names its field.
    let r = op.post("/admin/placements/overcommit", &[("csrf", &csrf), ("vcpu", "2.5"), ("memory", "")]).await;
    assert_eq!((r.status, r.location()), (303, "/admin/hosts?done=overcommit"), "{}", r.body);
    let now = overcommit(&s).await;
    assert_eq!(now["vcpu"], 2.5);
    assert_eq!((&now["memory"], &now["disk"]), (&before["memory"], &before["disk"]));
    assert!(op.get("/admin/hosts").await.body.contains(r#"id="oc-vcpu" name="vcpu" value="2.5""#));
    let r = op.post("/admin/placements/overcommit", &[("csrf", &csrf), ("vcpu", "lots")]).await;
    shows_error(&r, 400, "CHECK_PARAM", "The field `vcpu` must be a number from 0.1 to 64.");
    assert!(r.body.contains(r#"value="lots""#), "what was sent is kept: {}", r.body);
    assert_eq!(overcommit(&s).await["vcpu"], 2.5);

    // Removing.
    let r = op.post("/admin/hosts/h1/remove", &[("csrf", &csrf)]).await;
    assert_eq!((r.status, r.location()), (303, "/admin/hosts?done=host_removed"), "{}", r.body);
    assert_eq!(api_hosts(&s).await, ["old"]);
    let r = op.post("/admin/hosts/h1/remove", &[("csrf", &csrf)]).await;
    shows_error(&r, 404, "NOT_FOUND", "The host `h1` was not found.");
}

/// Starts a sim agent of host `name` with the token the page issued.
async fn start_agent(s: &Server, name: &str, token: &str) -> SimAgent {
    let mut a = SimAgent::new(&s.endpoint, name, token, &[]);
    a.spawn().await;
    a
}

async fn create(s: &Server, name: &str) -> String {
    let body = json!({"zone_id": ZONE, "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": name});
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    r.result()[0]["instance_id"].as_str().unwrap().to_owned()
}

async fn shut_down(s: &Server, id: &str) {
    let r = s.call(Method::POST, &format!("/v1/instances/{id}/shutdown"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(s.wait_operation(r.header("x-operation-id").unwrap()).await["status"], "succeeded");
}

async fn wait_strays(s: &Server, name: &str, want: Value) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let h = api_host(s, name).await;
        if h["strays"] == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "host {name} never had strays {want}: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Hosts mode with a sim agent started with the token the page showed: the host's page lists its
/// placements with their accounts and states, refuses to remove or declare dead a host in use,
/// shows an evacuation's moving and left-behind instances, and destroys a stray.
#[tokio::test]
async fn a_host_page_shows_placements_evacuation_and_strays_of_a_registered_agent() {
    let s = hosts_mode(&[]).await;
    let (mut op, csrf) = operator(&s).await;
    let made = op.post("/admin/hosts", &[("csrf", &csrf), ("name", "h1"), ("zone", ZONE)]).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let mut agent = start_agent(&s, "h1", &issued_token(&made)).await;
    let running = create(&s, "running").await;
    let stopped = create(&s, "stopped").await;
    shut_down(&s, &stopped).await;

    let list = op.get("/admin/hosts").await;
    let row = list.body.split(r#"tr data-host="h1""#).nth(1).unwrap().split("</tr>").next().unwrap().to_owned();
    for part in [r#"data-status="alive""#, r#"data-field="vcpus">2 / 8<"#, r#"data-field="instances">2<"#, ">sim<"] {
        assert!(row.contains(part), "the row lacks {part}: {row}");
    }
    let page = op.get("/admin/hosts/h1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for (id, status) in [(&running, "active"), (&stopped, "off")] {
        let tr = page.body.split(&format!(r#"tr data-placement="{id}""#)).nth(1).expect("a placement row");
        let tr = tr.split("</tr>").next().unwrap();
        assert!(tr.contains("<td>dev</td>") && tr.contains(&format!(">{status}<")), "{id}: {tr}");
    }

    // Moves the API refuses on a host in use, with its code and message.
    let r = op.post("/admin/hosts/h1/remove", &[("csrf", &csrf)]).await;
    shows_error(&r, 409, "IN_USE", "The host `h1` holds 2 instance(s)");
    let r = op.post("/admin/hosts/h1/declare-dead", &[("csrf", &csrf), ("confirm", "h1")]).await;
    shows_error(&r, 409, "CHECK_PARAM", "The host `h1` is alive");
    assert_eq!(api_host(&s, "h1").await["state"], "enabled");
    assert_eq!(api_hosts(&s).await, ["h1"]);

    // Evacuation: the stopped instance moves (one operation), the running one stays, with why.
    let r = op.post("/admin/hosts/h1/evacuate", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let moving = r.body.split(&format!(r#"tr data-moving="{stopped}""#)).nth(1).expect("the stopped one moves");
    let operation = moving.split("<code>").nth(2).unwrap().split('<').next().unwrap().to_owned();
    assert!(operation.starts_with("OP-"), "{operation}");
    let left = r.body.split(&format!(r#"tr data-left="{running}""#)).nth(1).expect("the running one stays");
    assert!(left.split("</tr>").next().unwrap().contains("shut it down first"), "{left}");
    // With no other host in the zone the move unwinds and the instance stays, stopped, on h1.
    let done = s.wait_operation(&operation).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(s.wait_status(&stopped, "off").await["status"], "off");

    // A machine the host has that no placement names is a stray, destroyed only from the page.
    agent.kill9().await;
    let mut record: Value = serde_json::from_slice(&std::fs::read(agent.machines_file()).unwrap()).unwrap();
    let stray = "INSTANCE-stray0001";
    record["machines"][stray] = json!({"state": "stopped", "generation": 1});
    std::fs::write(agent.machines_file(), serde_json::to_vec(&record).unwrap()).unwrap();
    agent.spawn().await;
    wait_strays(&s, "h1", json!([stray])).await;
    let page = op.get("/admin/hosts/h1").await;
    assert!(page.body.contains(&format!(r#"tr data-stray="{stray}""#)), "{}", page.body);
    let r = op.post("/admin/hosts/h1/strays/destroy", &[("instance_id", stray)]).await;
    assert_eq!(r.status, 403);
    let r = op.post("/admin/hosts/h1/strays/destroy", &[("csrf", &csrf), ("instance_id", &running)]).await;
    shows_error(&r, 404, "NOT_FOUND", "A stray machine");
    assert_eq!(api_host(&s, "h1").await["strays"], json!([stray]));
    let r = op.post("/admin/hosts/h1/strays/destroy", &[("csrf", &csrf), ("instance_id", stray)]).await;
    assert_eq!((r.status, r.location()), (303, "/admin/hosts/h1?done=stray_destroyed"), "{}", r.body);
    assert_eq!(api_host(&s, "h1").await["strays"], json!([]));
    assert!(op.get("/admin/hosts/h1").await.body.contains(r#"id="no-strays""#));
}

/// The operator's journey in Chromium over a control plane in hosts mode with a registered sim
/// agent holding an instance: the list, adding a host (token shown once), the host's page with
/// its placement, drain and enable, a refused remove; axe-core over the hosts pages.
#[tokio::test]
async fn the_hosts_pages_in_chromium() {
    require_browser_tools();
    let s = hosts_mode(&["--sim-delay", "0"]).await;
    let token = openwinv_tests::hosts::add_host(&s, "rack-1").await;
    let _agent = start_agent(&s, "rack-1", &token).await;
    let id = create(&s, "web-1").await;
    let r = s.admin(Method::POST, "/admin/v1/accounts/dev/users", Some(json!({"login": "kim"}))).await;
    let password = r.ok_rows()[0]["password"].as_str().unwrap().to_owned();
    let out = tokio::time::timeout(
        Duration::from_secs(BROWSER_TIMEOUT_SECS * 4),
        Command::new("node")
            .current_dir(browser_dir())
            .args(["web_admin.mjs", &s.endpoint, "kim", &password, &s.admin_token, "--hosts", "rack-1"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("web_admin.mjs did not finish")
    .expect("run node tests/browser/web_admin.mjs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("every step passed"), "{text}");
    for page in ["axe admin-hosts:", "axe admin-host:", "axe admin-host-added:"] {
        assert!(text.contains(page), "{page} was not checked:\n{text}");
    }
    // What the operator did in the browser is in the operator API.
    assert_eq!(api_hosts(&s).await, ["rack-1", "rack-2"]);
    let rack = api_host(&s, "rack-1").await;
    assert_eq!((&rack["state"], &rack["instances"]), (&json!("enabled"), &json!(1)), "{rack}");
    let placed = s.admin(Method::GET, &format!("/admin/v1/placements/{id}"), None).await;
    assert_eq!(placed.ok_rows()[0]["host"], "rack-1");
}
