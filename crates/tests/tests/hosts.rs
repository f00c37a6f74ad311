//! Hypervisor hosts through the real binaries: a control plane (`openwinv serve`, SQLite or
//! PostgreSQL) and sim agents (`openwinv agent`), each in its own data directory. Registration,
//! liveness by the server clock, refused tokens, the agent protocol's checks, runtime reports with
//! generations, and placement through the operator API (docs/hosts.md).

use std::time::Duration;

use openwinv_tests::hosts::{SimAgent, WAIT, ZONE, add_host_row};
use openwinv_tests::{Body, Server, binary};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::Command;

/// A `SimAgent` with 2 vCPUs, 4 GiB and 100 GiB, logging warnings, that checks it registered as
/// itself.
struct Agent(SimAgent);

impl std::ops::Deref for Agent {
    type Target = SimAgent;
    fn deref(&self) -> &SimAgent {
        &self.0
    }
}

impl std::ops::DerefMut for Agent {
    fn deref_mut(&mut self) -> &mut SimAgent {
        &mut self.0
    }
}

impl Agent {
    /// Not started yet.
    fn new(s: &Server, name: &str, token: &str, extra: &[&str]) -> Agent {
        let a = SimAgent::new(&s.endpoint, name, token, extra);
        Agent(SimAgent { capacity: ["2", "4096", "100"], rust_log: "warn", ..a })
    }

    /// Starts an agent and waits until it has registered.
    async fn start(s: &Server, name: &str, token: &str, extra: &[&str]) -> Agent {
        let mut a = Agent::new(s, name, token, extra);
        a.spawn().await;
        a
    }

    async fn spawn(&mut self) {
        let line = self.0.spawn().await;
        assert!(line.contains(&format!("host {} (HOST-", self.name)), "{line}");
    }
}

/// Adds a host through the CLI and returns its token.
async fn add_host(s: &Server, name: &str) -> String {
    let row = add_host_row(s, name).await;
    assert_eq!(row["name"], name);
    let token = row["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("owh_") && token.len() == 47, "{token}");
    token
}

async fn hosts(s: &Server) -> Vec<Value> {
    s.admin(Method::GET, "/admin/v1/hosts", None).await.ok_rows().clone()
}

/// Polls until every named host has the given status; returns the rows.
async fn wait_statuses(s: &Server, want: &[(&str, &str)]) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let rows = hosts(s).await;
        let status = |name: &str| {
            rows.iter()
                .find(|h| h["name"] == name)
                .map(|h| h["status"].as_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        if want.iter().all(|(n, st)| status(n) == *st) {
            return rows;
        }
        assert!(std::time::Instant::now() < deadline, "hosts never reached {want:?}: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A POST to the agent protocol with a token.
async fn internal(s: &Server, token: &str, what: &str, body: Option<Value>) -> openwinv_tests::Resp {
    let headers = vec![("Authorization".to_owned(), format!("Bearer {token}"))];
    s.raw(Method::POST, &format!("/internal/v1/hosts/{what}"), &headers, body.map(Body::Json)).await
}

fn registration(vcpus: i64) -> Value {
    json!({"zone": ZONE, "address": "192.0.2.10", "vcpus": vcpus, "memory_mb": 8192, "disk_gb": 200,
           "driver": "sim", "capabilities": ["sim"], "agent_version": "test"})
}

/// Creates `n` instances of `ss1.c1m1` (1 vCPU, 1 GB, 25 GB); returns their ids.
async fn create_instances(s: &Server, n: usize) -> Vec<String> {
    s.admin(Method::PUT, "/admin/v1/accounts/dev/quota", Some(json!({"instances": 100, "vcpu": 100}))).await.ok_rows();
    let mut ids = Vec::new();
    for i in 0..n {
        let body =
            json!({"zone_id": ZONE, "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": format!("vm{i}")});
        let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
        assert_eq!(r.status, 202, "{}", r.text);
        ids.push(r.result()[0]["instance_id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn place(s: &Server, instance_id: &str) -> openwinv_tests::Resp {
    s.admin(Method::POST, "/admin/v1/placements", Some(json!({"instance_id": instance_id}))).await
}

/// Three sim agents register and are alive; one killed is offline once the server clock is 21 s
/// past its last heartbeat while the others stay alive; restarted, it is alive again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_register_go_offline_and_come_back() {
    let s = Server::start().await;
    let mut agents = Vec::new();
    for name in ["h1", "h2", "h3"] {
        let token = add_host(&s, name).await;
        agents.push(Agent::start(&s, name, &token, &[]).await);
    }
    let rows = wait_statuses(&s, &[("h1", "alive"), ("h2", "alive"), ("h3", "alive")]).await;
    for h in &rows {
        assert_eq!(h["driver"], "sim");
        assert_eq!(h["capabilities"], json!(["sim"]));
        assert_eq!(h["capacity"], json!({"vcpus": 2, "memory_mb": 4096, "disk_gb": 100}));
        assert_eq!(h["address"], "127.0.0.1");
        assert_eq!(h["state"], "enabled");
        assert!(h["heartbeat_age_s"].as_i64().unwrap() <= 20, "{h}");
    }
    // Each agent wrote what it registered as into its own data directory.
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(agents[0].dir.path().join("data/host.json")).unwrap()).unwrap();
    assert_eq!(recorded["name"], "h1");

    agents[1].kill9().await;
    // Liveness reads the server clock: 21 s later, the killed host's last heartbeat is too old,
    // and the two live agents' next heartbeats (every 2 s) keep them alive.
    s.cli_run(&["admin", "clock", "advance", "21s"]).await.ok();
    let rows = wait_statuses(&s, &[("h1", "alive"), ("h2", "offline"), ("h3", "alive")]).await;
    let h2 = rows.iter().find(|h| h["name"] == "h2").unwrap();
    assert!(h2["heartbeat_age_s"].as_i64().unwrap() > 20, "{h2}");
    let list = s.cli_run(&["admin", "hosts", "list"]).await.ok();
    let line = list.stdout.lines().find(|l| l.starts_with("h2 ")).unwrap_or_else(|| panic!("{}", list.stdout));
    assert!(line.contains("offline"), "{line}");
    // An offline host takes no new instance.
    let ids = create_instances(&s, 3).await;
    for id in &ids {
        let p = place(&s, id).await;
        assert_ne!(p.ok_rows()[0]["host"], "h2", "{}", p.text);
    }

    agents[1].spawn().await;
    wait_statuses(&s, &[("h1", "alive"), ("h2", "alive"), ("h3", "alive")]).await;
}

/// An agent whose token is not a host's stops with the control plane's message; every call of
/// the agent protocol without a valid token is 401 CHECK_CREDENTIAL; a removed host's token stops
/// working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_tokens_are_refused() {
    let s = Server::start().await;
    let agent = Agent::new(&s, "x", "owh_not-a-token", &[]);
    let out = tokio::time::timeout(WAIT, agent.command().output()).await.expect("the agent exits").unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the host token") && stderr.contains("CHECK_CREDENTIAL"), "{stderr}");

    for what in ["register", "heartbeat", "runtime"] {
        internal(&s, "owh_wrong", what, Some(registration(2))).await.assert_error(401, "CHECK_CREDENTIAL");
        let bare = s.raw(Method::POST, &format!("/internal/v1/hosts/{what}"), &[], None).await;
        bare.assert_error(401, "CHECK_CREDENTIAL");
    }
    // The operator token is not a host token.
    internal(&s, &s.admin_token, "heartbeat", None).await.assert_error(401, "CHECK_CREDENTIAL");

    let token = add_host(&s, "gone").await;
    internal(&s, &token, "register", Some(registration(2))).await.ok_rows();
    internal(&s, &token, "heartbeat", None).await.ok_rows();
    s.cli_run(&["admin", "hosts", "remove", "gone"]).await.ok();
    internal(&s, &token, "heartbeat", None).await.assert_error(401, "CHECK_CREDENTIAL");
}

/// The agent protocol checks what it is sent and names the field; a heartbeat before any
/// registration asks for one; runtime reports keep the highest generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_protocol_checks_and_runtime_generations() {
    let s = Server::start_with(&["--sim-delay", "0"], &[]).await;
    let t1 = add_host(&s, "p1").await;
    let t2 = add_host(&s, "p2").await;

    // The operator face names the field it refuses.
    let r = s.admin(Method::POST, "/admin/v1/hosts", Some(json!({"name": "p1", "zone": ZONE}))).await;
    r.assert_error(400, "CHECK_PARAM");
    assert!(r.json["message"].as_str().unwrap().contains("`name`"), "{}", r.text);
    let r = s.admin(Method::POST, "/admin/v1/hosts", Some(json!({"name": "bad name!", "zone": ZONE}))).await;
    r.assert_error(400, "CHECK_PARAM");
    // `.` and `..` would be path steps in `/admin/v1/hosts/{name}`, which clients resolve away.
    for dots in [".", ".."] {
        let r = s.admin(Method::POST, "/admin/v1/hosts", Some(json!({"name": dots, "zone": ZONE}))).await;
        r.assert_error(400, "CHECK_PARAM");
        assert!(r.text.contains("`name`"), "{}", r.text);
    }
    let r = s.admin(Method::POST, "/admin/v1/hosts", Some(json!({"name": "p9", "zone": "KR9-Z99"}))).await;
    r.assert_error(400, "ID_INVALID");
    assert!(r.json["message"].as_str().unwrap().contains("`zone`"), "{}", r.text);
    s.admin(Method::POST, "/admin/v1/hosts", Some(json!({"name": "p9"})))
        .await
        .assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    s.admin(Method::GET, "/admin/v1/hosts/nope", None).await.assert_error(404, "NOT_FOUND");
    s.admin(Method::POST, "/admin/v1/hosts/nope/drain", None).await.assert_error(404, "NOT_FOUND");
    let fresh = s.admin(Method::GET, "/admin/v1/hosts/p1", None).await;
    assert_eq!(fresh.ok_rows()[0]["status"], "new");
    // Hosts are the operator's: a signed /v1 key is not let in.
    let r = s.call(Method::GET, "/admin/v1/hosts", None).await;
    r.assert_error(401, "CHECK_CREDENTIAL");

    let r = internal(&s, &t1, "heartbeat", None).await;
    r.assert_error(404, "NOT_FOUND");
    assert!(r.json["message"].as_str().unwrap().contains("register"), "{}", r.text);

    let mut wrong_zone = registration(2);
    wrong_zone["zone"] = json!("KR1-Z02");
    let r = internal(&s, &t1, "register", Some(wrong_zone)).await;
    r.assert_error(400, "CHECK_PARAM");
    assert!(r.json["message"].as_str().unwrap().contains("`zone`"), "{}", r.text);
    let mut bad_driver = registration(2);
    bad_driver["driver"] = json!("xen");
    internal(&s, &t1, "register", Some(bad_driver)).await.assert_error(400, "CHECK_PARAM_ENUM");
    let r = internal(&s, &t1, "register", Some(registration(0))).await;
    r.assert_error(400, "CHECK_PARAM");
    assert!(r.json["message"].as_str().unwrap().contains("`vcpus`"), "{}", r.text);
    let mut missing = registration(2);
    missing.as_object_mut().unwrap().remove("memory_mb");
    internal(&s, &t1, "register", Some(missing)).await.assert_error(400, "REQUIRED_POST_PARAM_MISSING");

    let reg = internal(&s, &t1, "register", Some(registration(4))).await;
    let row = &reg.ok_rows()[0];
    assert_eq!((row["name"].as_str(), row["heartbeat_interval_ms"].as_i64()), (Some("p1"), Some(2000)));
    assert_eq!(row["offline_after_s"], 20);
    let beat = internal(&s, &t1, "heartbeat", None).await;
    assert_eq!(beat.ok_rows()[0]["state"], "enabled");

    // p1 is the only alive host: the instance goes there.
    let ids = create_instances(&s, 1).await;
    let id = &ids[0];
    let p = place(&s, id).await;
    assert_eq!(p.ok_rows()[0]["host"], "p1", "{}", p.text);
    // An instance's host is one join away.
    let joined = s
        .db_count(&format!(
            "SELECT COUNT(*) FROM instances i JOIN instance_hosts h ON h.instance_id = i.instance_id \
             WHERE i.instance_id = '{id}' AND h.host_name = 'p1' AND h.host_state = 'enabled' \
             AND h.last_heartbeat_at IS NOT NULL"
        ))
        .await;
    assert_eq!(joined, 1);

    let report = |generation: i64, state: &str| json!({"machines": [{"instance_id": id, "state": state, "generation": generation}]});
    let r = internal(&s, &t1, "runtime", Some(report(2, "running"))).await;
    assert_eq!(r.ok_rows()[0]["outcome"], "accepted");
    // A late report (generation 1) does not roll the state back; neither does a repeat.
    let r = internal(&s, &t1, "runtime", Some(report(1, "stopped"))).await;
    assert_eq!(r.ok_rows()[0], json!({"instance_id": id, "outcome": "stale", "stored_generation": 2}));
    let r = internal(&s, &t1, "runtime", Some(report(2, "stopped"))).await;
    assert_eq!(r.ok_rows()[0]["outcome"], "stale");
    let stored = s
        .db_count(&format!("SELECT generation FROM instance_runtime WHERE instance_id = '{id}' AND state = 'running'"))
        .await;
    assert_eq!(stored, 2);
    let r = internal(&s, &t1, "runtime", Some(report(3, "stopped"))).await;
    assert_eq!(r.ok_rows()[0]["outcome"], "accepted");
    // Another host cannot report a machine that is not placed on it.
    internal(&s, &t2, "register", Some(registration(4))).await.ok_rows();
    let r = internal(&s, &t2, "runtime", Some(report(9, "absent"))).await;
    assert_eq!(r.ok_rows()[0]["outcome"], "not_placed");
    let r = internal(&s, &t1, "runtime", Some(report(4, "melted"))).await;
    r.assert_error(400, "CHECK_PARAM_ENUM");
    assert!(r.json["message"].as_str().unwrap().contains("machines.0.state"), "{}", r.text);
    let r = internal(&s, &t1, "runtime", Some(json!({"machines": [{"instance_id": id, "state": "running"}]}))).await;
    r.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    internal(&s, &t1, "runtime", Some(json!({}))).await.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    // A pull names what the agent holds as work items' keys.
    for held in [json!(5), json!([""]), json!([7]), json!(["a\u{1}b"]), json!(vec!["k"; 10_001])] {
        let r = internal(&s, &t1, "work", Some(json!({"wait_ms": 0, "held": held}))).await;
        r.assert_error(400, "CHECK_PARAM");
        assert!(r.json["message"].as_str().unwrap().contains("`held`"), "{}", r.text);
    }
    let r = internal(&s, &t1, "work", Some(json!({"wait_ms": 0, "held": ["nothing-delivered/1"]}))).await;
    r.ok_rows();

    // A host with instances is not removed; deleting the instance releases its reservation.
    s.wait_status(id, "active").await;
    let r = s.admin(Method::DELETE, "/admin/v1/hosts/p1", None).await;
    r.assert_error(409, "IN_USE");
    let del = s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
    openwinv_tests::lifecycle::accepted(&s, del).await;
    s.admin(Method::GET, &format!("/admin/v1/placements/{id}"), None).await.assert_error(404, "NOT_FOUND");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM instance_runtime").await, 0);
    s.admin(Method::DELETE, "/admin/v1/hosts/p1", None).await.ok_rows();
}

/// Placement through the operator API: least loaded first (equal hosts fill evenly), never onto
/// a disabled or draining host, idempotent per instance, and under concurrent requests never past
/// capacity × overcommit while any host still has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placement_spreads_and_never_overbooks() {
    let s = Server::start_with(&["--sim-delay", "0"], &[]).await;
    let mut agents = Vec::new();
    for name in ["a", "b", "c"] {
        let token = add_host(&s, name).await;
        agents.push(Agent::start(&s, name, &token, &[]).await);
    }
    wait_statuses(&s, &[("a", "alive"), ("b", "alive"), ("c", "alive")]).await;
    let ids = create_instances(&s, 12).await;

    // Bad requests name their field.
    let r = s.admin(Method::POST, "/admin/v1/placements", Some(json!({}))).await;
    r.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    let r = place(&s, "INSTANCE-nope").await;
    r.assert_error(400, "ID_INVALID");
    assert!(r.json["message"].as_str().unwrap().contains("`instance_id`"), "{}", r.text);
    let r = s.admin(Method::PUT, "/admin/v1/placements/overcommit", Some(json!({"vcpu": 0}))).await;
    r.assert_error(400, "CHECK_PARAM");

    // Spread: three placements one after another land on three different hosts.
    let mut first = Vec::new();
    for id in &ids[..3] {
        let p = place(&s, id).await;
        let row = &p.ok_rows()[0];
        assert_eq!(row["new"], true);
        assert_eq!(row["reserved"], json!({"vcpus": 1, "memory_mb": 1024, "disk_gb": 25}));
        first.push(row["host"].as_str().unwrap().to_owned());
    }
    first.sort();
    assert_eq!(first, ["a", "b", "c"]);
    // Placing again answers the same reservation.
    let again = place(&s, &ids[0]).await;
    assert_eq!(again.ok_rows()[0]["new"], false);

    // Disabled and draining hosts take nothing: everything goes to `a`.
    s.cli_run(&["admin", "hosts", "disable", "b"]).await.ok();
    s.cli_run(&["admin", "hosts", "drain", "c"]).await.ok();
    let p = place(&s, &ids[3]).await;
    assert_eq!(p.ok_rows()[0]["host"], "a");
    for name in ["b", "c"] {
        s.cli_run(&["admin", "hosts", "enable", name]).await.ok();
    }
    // Release ids[3] so every host holds one instance.
    let r = s.cli_run(&["admin", "placements", "release", &ids[3], "-o", "json"]).await.ok();
    assert_eq!(r.rows()[0]["host"], "a");

    // No overcommit of vCPUs: each host (2 vCPUs) takes one more 1-vCPU instance. Nine
    // concurrent requests: exactly three fit, the others are refused.
    let r = s.cli_run(&["admin", "placements", "overcommit", "--vcpu", "1", "-o", "json"]).await.ok();
    assert_eq!(r.rows()[0]["vcpu"], 1.0);
    let mut tasks = Vec::new();
    for id in &ids[3..] {
        let id = id.clone();
        let endpoint = s.endpoint.clone();
        let token = s.admin_token.clone();
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{endpoint}/admin/v1/placements"))
                .bearer_auth(token)
                .json(&json!({"instance_id": id}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut placed = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => placed += 1,
            503 => {
                assert_eq!(body["error_code"], "DEV_CHECK_RETURN", "{body}");
                assert!(body["message"].as_str().unwrap().contains("zone KR1-Z01"), "{body}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(placed, 3);
    for h in hosts(&s).await {
        assert_eq!(h["reserved"]["vcpus"], 2, "{h}");
        assert_eq!(h["instances"], 2, "{h}");
    }
    let all = s.admin(Method::GET, "/admin/v1/placements", None).await;
    assert_eq!(all.ok_rows().len(), 6);
    let on_a = s.admin(Method::GET, "/admin/v1/placements?host=a", None).await;
    assert_eq!(on_a.ok_rows().len(), 2);

    // Hosts and placements are in the stand-in's snapshots (hosts restored before the
    // placements that reference them), and a reset removes them.
    s.admin(Method::POST, "/admin/v1/snapshots", Some(json!({"name": "placed"}))).await.ok_rows();
    s.admin(Method::DELETE, &format!("/admin/v1/placements/{}", ids[0]), None).await.ok_rows();
    s.admin(Method::POST, "/admin/v1/snapshots/placed/restore", None).await.ok_rows();
    let all = s.admin(Method::GET, "/admin/v1/placements", None).await;
    assert_eq!(all.ok_rows().len(), 6);
    s.admin(Method::POST, "/admin/v1/reset", Some(json!({}))).await.ok_rows();
    assert!(hosts(&s).await.is_empty());
    assert!(s.admin(Method::GET, "/admin/v1/placements", None).await.ok_rows().is_empty());
}

/// With `serve --tls` the agent protocol is on the HTTPS listener, and an agent trusting the
/// control plane's local CA (`--ca-file`) registers and heartbeats over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_over_https_with_the_local_ca() {
    let s = Server::start_with(&["--tls"], &[]).await;
    assert!(s.endpoint.starts_with("https://"), "{}", s.endpoint);
    let ca = s.data_path("tls/ca.pem");
    let ca = ca.to_str().unwrap();
    let run = s.cli_run(&["--ca-file", ca, "admin", "hosts", "add", "tls1", "--zone", ZONE, "-o", "json"]).await.ok();
    let token = run.rows()[0]["token"].as_str().unwrap().to_owned();
    let _agent = Agent::start(&s, "tls1", &token, &["--ca-file", ca]).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let show = s.cli_run(&["--ca-file", ca, "admin", "hosts", "show", "tls1", "-o", "json"]).await.ok();
        let row = show.rows()[0].clone();
        if row["status"] == "alive" && row["driver"] == "sim" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "tls1 never alive: {row}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An agent that cannot verify the control plane's certificate (no `--ca-file`, or a CA file of
/// another CA) exits with status 1 and a message naming the problem and the CA file, instead of
/// retrying as it does when the control plane is away (`agent_outlives_an_absent_control_plane`).
#[tokio::test]
async fn an_agent_that_cannot_verify_the_certificate_exits() {
    let s = Server::start_with(&["--tls"], &[]).await;
    let ca = s.data_path("tls/ca.pem");
    let ca = ca.to_str().unwrap();
    let run = s.cli_run(&["--ca-file", ca, "admin", "hosts", "add", "tls2", "--zone", ZONE, "-o", "json"]).await.ok();
    let token = run.rows()[0]["token"].as_str().unwrap().to_owned();
    // Another data directory's CA: a valid certificate that did not sign the server's.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(binary()).args(["tls", "ca", "--data-dir"]).arg(other.path()).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let other_ca = other.path().join("other-ca.pem");
    std::fs::write(&other_ca, &out.stdout).unwrap();
    let other_ca = other_ca.to_str().unwrap().to_owned();

    for (extra, names) in [
        (vec![], vec!["without --ca-file", "openwinv tls ca"]),
        (vec!["--ca-file".to_owned(), other_ca.clone()], vec![other_ca.as_str(), "does not vouch for it"]),
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let agent = Agent::new(&s, "tls2", &token, &extra);
        // An agent that retried would never exit: the bound only turns that into a failure.
        let out = tokio::time::timeout(Duration::from_secs(30), agent.command().output())
            .await
            .expect("the agent exits instead of retrying")
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("TLS certificate failed verification"), "{stderr}");
        for n in names {
            assert!(stderr.contains(n), "{n}: {stderr}");
        }
    }
    // The host never registered.
    let show = s.cli_run(&["--ca-file", ca, "admin", "hosts", "show", "tls2", "-o", "json"]).await.ok();
    assert_eq!(show.rows()[0]["status"], "new", "{}", show.rows()[0]);
}

/// A TCP relay on a fixed local port to a server, which the test can take away and bring back:
/// the control plane "away" for an agent that keeps its URL.
struct Relay {
    port: u16,
    target: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(target: &str) -> Relay {
        let target = target.trim_start_matches("http://").to_owned();
        let mut r = Relay { port: 0, target, task: None };
        r.up().await;
        r
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.expect("bind the relay");
        self.port = listener.local_addr().unwrap().port();
        let target = self.target.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropped with the task: every relayed connection ends when the relay goes down.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    async fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The control plane away: the agent keeps retrying with backoff instead of exiting, its host
/// turns offline by the server clock, and once the control plane answers again the heartbeats
/// resume and the host is alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_outlives_an_absent_control_plane() {
    let s = Server::start().await;
    let token = add_host(&s, "far").await;
    let mut relay = Relay::start(&s.endpoint).await;
    let mut agent = Agent::start(&s, "far", &token, &[]).await;
    // Point the agent at the relay instead of the server.
    agent.kill9().await;
    agent.endpoint = relay.endpoint();
    agent.spawn().await;
    wait_statuses(&s, &[("far", "alive")]).await;

    relay.down().await;
    s.cli_run(&["admin", "clock", "advance", "21s"]).await.ok();
    wait_statuses(&s, &[("far", "offline")]).await;
    // Several heartbeats' worth of failures later the agent is still running.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let child = agent.child.as_mut().unwrap();
    assert!(child.try_wait().unwrap().is_none(), "the agent exited: {}", std::fs::read_to_string(agent.log()).unwrap());
    let log = std::fs::read_to_string(agent.log()).unwrap();
    assert!(log.contains("heartbeat failed"), "{log}");

    relay.up().await;
    wait_statuses(&s, &[("far", "alive")]).await;
    assert!(agent.child.as_mut().unwrap().try_wait().unwrap().is_none());
}
