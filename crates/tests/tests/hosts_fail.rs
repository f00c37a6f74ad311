//! Host failure and the operator's moves, through the real binaries (issue 18; docs/hosts.md,
//! "Failure rules"): `evacuate` moves a host's stopped machines to other hosts and leaves the
//! running ones with the reason; an agent's full report after it registers again turns placed
//! machines it lacks into `error` and shows the machines no placement names as strays, destroyed
//! only by the operator; a partitioned agent (its traffic black-holed by a TCP proxy in the test)
//! behaves like a stopped one and is reconciled when the partition ends; two control planes on
//! one database share the agents, and one killed mid-operation leaves it to the other.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use openwinv_tests::hosts::SimAgent as Agent;
use openwinv_tests::hosts::{
    WAIT, ZONE, act, create, host, hosts_mode, instance, placements, wait_host, wait_host_status,
};
use openwinv_tests::{Server, binary};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// Creates an instance and waits for it to be active.
async fn created(s: &Server, name: &str) -> String {
    let (id, op) = create(s, name).await;
    let row = s.wait_operation(&op).await;
    assert_eq!(row["status"], "succeeded", "{row}");
    id
}

/// Three sim agents; three instances on A (B and C join after), two of them stopped. `evacuate
/// A` moves the two stopped ones to B or C (placement's choice, never A), each
/// exported on A, imported on its new host and destroyed on A; the running one is left with the
/// reason. The moved ones start on their new hosts. Once the third is stopped too, a second
/// evacuation leaves A with nothing.
#[tokio::test]
async fn evacuate_moves_stopped_machines_to_other_hosts() {
    let s = hosts_mode(&[]).await;
    let a = Agent::start(&s, "a", &[]).await;
    let ids = [created(&s, "one").await, created(&s, "two").await, created(&s, "three").await];
    let b = Agent::start(&s, "b", &[]).await;
    let c = Agent::start(&s, "c", &[]).await;
    assert!(placements(&s).await.values().all(|h| h == "a"));
    let [one, two, three] = &ids;
    act(&s, one, "shutdown").await;
    act(&s, two, "shutdown").await;
    s.cli_run(&["admin", "hosts", "drain", "a"]).await.ok();

    let ev = s.cli_run(&["admin", "hosts", "evacuate", "a", "-o", "json"]).await.ok().row();
    let moving: BTreeSet<&str> =
        ev["moving"].as_array().unwrap().iter().map(|m| m["instance_id"].as_str().unwrap()).collect();
    assert_eq!(moving, BTreeSet::from([one.as_str(), two.as_str()]), "{ev}");
    let left = ev["left"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{ev}");
    assert_eq!(left[0]["instance_id"], *three);
    assert!(left[0]["reason"].as_str().unwrap().contains("running"), "{ev}");
    for m in ev["moving"].as_array().unwrap() {
        let op = s.wait_operation(m["operation_id"].as_str().unwrap()).await;
        assert_eq!(op["status"], "succeeded", "{op}");
    }

    let placed = placements(&s).await;
    // The two moves run at once: on PostgreSQL both may choose the same least-loaded host
    // (docs/hosts.md, "Placement"), so each is on b or c, not necessarily one each.
    for id in [one, two] {
        assert!(placed[id] == "b" || placed[id] == "c", "{placed:?}");
    }
    assert_eq!(placed[three], "a");
    let agent = |name: &str| [&a, &b, &c].into_iter().find(|x| x.name == name).unwrap();
    for id in [one, two] {
        let row = instance(&s, id).await;
        assert_eq!((row["status"].as_str(), row["host_status"].as_str()), (Some("off"), Some("up")), "{row}");
        let target = agent(&placed[id]);
        assert_eq!((a.did("export", id), a.did("destroy", id)), (1, 1), "{id} left a: {:?}", a.done());
        assert_eq!(target.did("import", id), 1, "{id} imported on {}", target.name);
        assert_eq!(target.machines().get(id).map(String::as_str), Some("stopped"));
        assert!(!a.machines().contains_key(id), "{id} is gone from a");
        // The reservation moved: a holds only the running one; the target holds the moved one.
        let p = s.admin(Method::GET, &format!("/admin/v1/placements/{id}"), None).await.ok_rows()[0].clone();
        assert_eq!(p["reserved"]["vcpus"], 1, "{p}");
    }
    assert_eq!(host(&s, "a").await["instances"], 1);
    assert_eq!(s.db_count("SELECT COUNT(*) FROM placement_moves").await, 0, "no move left pending");

    // Started on the new hosts, on their agents only.
    for id in [one, two] {
        act(&s, id, "start").await;
        assert_eq!(agent(&placed[id]).did("start", id), 1);
        assert_eq!(a.did("start", id), 1, "only create's start ran on a");
        assert_eq!(agent(&placed[id]).machines().get(id).map(String::as_str), Some("running"));
    }

    // The running one, stopped, goes too; a is empty.
    act(&s, three, "shutdown").await;
    let ev = s.admin(Method::POST, "/admin/v1/hosts/a/evacuate", None).await.ok_rows()[0].clone();
    assert_eq!(ev["left"], json!([]), "{ev}");
    let op = s.wait_operation(ev["moving"][0]["operation_id"].as_str().unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert_eq!(host(&s, "a").await["instances"], 0);
    assert!(a.machines().is_empty(), "{:?}", a.machines());
    assert_ne!(placements(&s).await[three], "a");
    act(&s, three, "start").await;
    // Nothing left: a can be removed.
    s.cli_run(&["admin", "hosts", "remove", "a"]).await.ok();
}

/// Evacuation with nowhere to go unwinds: the instance stays stopped on its host, the reservation
/// it had there is intact and nothing is left on the agent; refused outside hosts mode.
#[tokio::test]
async fn evacuate_without_room_elsewhere_leaves_the_machine_where_it_was() {
    let s = hosts_mode(&[]).await;
    let a = Agent::start(&s, "a", &[]).await;
    let id = created(&s, "one").await;
    act(&s, &id, "shutdown").await;
    let ev = s.admin(Method::POST, "/admin/v1/hosts/a/evacuate", None).await.ok_rows()[0].clone();
    let op = s.wait_operation(ev["moving"][0]["operation_id"].as_str().unwrap()).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert!(op.to_string().contains("no other host of zone"), "{op}");
    let row = instance(&s, &id).await;
    assert_eq!((row["status"].as_str(), row["host_status"].as_str()), (Some("off"), Some("up")), "{row}");
    assert_eq!(placements(&s).await[&id], "a");
    assert_eq!(a.did("export", &id), 0);
    act(&s, &id, "start").await;
    let r = s.admin(Method::POST, "/admin/v1/hosts/nope/evacuate", None).await;
    r.assert_error(404, "NOT_FOUND");

    let embedded = Server::start().await;
    let r = embedded.admin(Method::POST, "/admin/v1/hosts", Some(json!({"name": "h", "zone": ZONE}))).await;
    r.ok_rows();
    let r = embedded.admin(Method::POST, "/admin/v1/hosts/h/evacuate", None).await;
    r.assert_error(409, "CHECK_PARAM");
    assert!(r.json["message"].as_str().unwrap().contains("--placement hosts"), "{}", r.text);
}

/// A move that fails before its switch (a fault at `switch`) unwinds: the target's copy is
/// destroyed, the instance is `off` on its source with its machine and reservation there; the
/// next evacuation moves it.
#[tokio::test]
async fn a_failed_move_unwinds_to_the_source() {
    let s = hosts_mode(&[]).await;
    let a = Agent::start(&s, "a", &[]).await;
    let id = created(&s, "one").await;
    let b = Agent::start(&s, "b", &[]).await;
    act(&s, &id, "shutdown").await;
    let fault = json!({"kind": "instance.evacuate", "step": "switch", "mode": "once"});
    s.admin(Method::POST, "/admin/v1/faults", Some(fault)).await.ok_rows();
    let ev = s.admin(Method::POST, "/admin/v1/hosts/a/evacuate", None).await.ok_rows()[0].clone();
    let op = s.wait_operation(ev["moving"][0]["operation_id"].as_str().unwrap()).await;
    assert_eq!(op["status"], "failed", "{op}");
    let row = instance(&s, &id).await;
    assert_eq!((row["status"].as_str(), row["host_status"].as_str()), (Some("off"), Some("up")), "{row}");
    assert_eq!(placements(&s).await[&id], "a");
    assert_eq!((a.did("export", &id), a.did("destroy", &id)), (1, 0));
    assert_eq!((b.did("import", &id), b.did("destroy", &id)), (1, 1), "the target's copy is undone");
    assert_eq!(a.machines().get(&id).map(String::as_str), Some("stopped"));
    assert!(!b.machines().contains_key(&id));
    assert_eq!(s.db_count("SELECT COUNT(*) FROM placement_moves").await, 0);
    assert_eq!(host(&s, "b").await["reserved"]["vcpus"], 0, "the target's room is given back");

    let ev = s.admin(Method::POST, "/admin/v1/hosts/a/evacuate", None).await.ok_rows()[0].clone();
    let op = s.wait_operation(ev["moving"][0]["operation_id"].as_str().unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert_eq!(placements(&s).await[&id], "b");
    act(&s, &id, "start").await;
    assert_eq!(b.did("start", &id), 1);
}

/// A call for a host already declared dead fails for good at once instead of waiting for the
/// host forever: an evacuation held before its export (a transient fault retries the step
/// without running it) whose source is then declared dead unwinds when it goes on, and nothing
/// is left queued for the dead host.
#[tokio::test]
async fn a_call_for_a_host_declared_dead_fails_at_once() {
    let s = hosts_mode(&[]).await;
    let mut a = Agent::start(&s, "a", &[]).await;
    let id = created(&s, "one").await;
    let _b = Agent::start(&s, "b", &[]).await;
    act(&s, &id, "shutdown").await;
    let fault = json!({"kind": "instance.evacuate", "step": "export", "mode": "sticky", "effect": "transient"});
    let fault_id = s.admin(Method::POST, "/admin/v1/faults", Some(fault)).await.ok_rows()[0]["fault_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ev = s.admin(Method::POST, "/admin/v1/hosts/a/evacuate", None).await.ok_rows()[0].clone();
    let op_id = ev["moving"][0]["operation_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + WAIT;
    while s.admin(Method::GET, "/admin/v1/faults", None).await.ok_rows()[0]["hits"].as_i64() < Some(1) {
        assert!(std::time::Instant::now() < deadline, "the fault never fired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    a.kill9().await;
    s.cli_run(&["admin", "clock", "advance", "21s"]).await.ok();
    wait_host(&s, "a", "offline").await;
    s.admin(Method::POST, "/admin/v1/hosts/a/declare-dead", None).await.ok_rows();
    s.admin(Method::DELETE, &format!("/admin/v1/faults/{fault_id}"), None).await;
    // The step's next try is due at once.
    s.cli_run(&["admin", "clock", "advance", "60s"]).await.ok();

    let op = s.wait_operation(&op_id).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert!(op.to_string().contains("the host a was declared dead: export was not sent to it"), "{op}");
    assert_eq!(
        s.db_count("SELECT COUNT(*) FROM host_work w JOIN hosts h ON h.host_id = w.host_id WHERE h.name = 'a' AND w.state <> 'done'")
            .await,
        0,
        "nothing waits for the dead host"
    );
    assert_eq!(instance(&s, &id).await["status"], "error");
}

/// After the agent registers again it reports every machine it has: a placed machine it lacks
/// becomes `error` with the reason, one no placement names is a stray in `hosts show` (and a log
/// line), left alone until the operator destroys it.
#[tokio::test]
async fn a_full_report_errors_missing_machines_and_reports_strays() {
    let s = hosts_mode(&[]).await;
    let mut a = Agent::start(&s, "h1", &[]).await;
    let kept = created(&s, "kept").await;
    let lost = created(&s, "lost").await;
    assert_eq!(host(&s, "h1").await["strays"], json!([]));

    // While the agent is down its host loses one machine and gains one nobody placed.
    a.kill9().await;
    let mut record: Value = serde_json::from_slice(&std::fs::read(a.machines_file()).unwrap()).unwrap();
    let machines = record["machines"].as_object_mut().unwrap();
    assert!(machines.remove(&lost).is_some(), "{record}");
    let stray = "INSTANCE-stray0001";
    record["machines"][stray] = json!({"state": "stopped", "generation": 1});
    std::fs::write(a.machines_file(), serde_json::to_vec(&record).unwrap()).unwrap();
    a.spawn().await;

    let row = s.wait_status(&lost, "error").await;
    assert_eq!(row["host_status"], "up", "{row}");
    let sql = format!(
        "SELECT COUNT(*) FROM instances WHERE instance_id = '{lost}' AND error_reason LIKE '%missing from its host h1%'"
    );
    assert_eq!(s.db_count(&sql).await, 1);
    assert_eq!(instance(&s, &kept).await["status"], "active", "a machine the host has is untouched");
    let shown = s.cli_run(&["admin", "hosts", "show", "h1", "-o", "json"]).await.ok().row();
    assert_eq!(shown["strays"], json!([stray]), "{shown}");
    let listed = s.cli_run(&["admin", "hosts", "list"]).await.ok();
    assert!(listed.stdout.contains("STRAYS"), "{}", listed.stdout);
    let log = std::fs::read_to_string(s.log_path()).unwrap();
    assert!(log.contains("strays") && log.contains(stray), "the control plane logs the stray");
    // Never destroyed automatically.
    assert_eq!(a.did("destroy", stray), 0);
    assert_eq!(a.machines().get(stray).map(String::as_str), Some("stopped"));

    // A placed machine is not a stray; an unknown one is not found.
    let r = s.admin(Method::POST, &format!("/admin/v1/hosts/h1/strays/{kept}/destroy"), None).await;
    r.assert_error(404, "NOT_FOUND");
    let done = s.cli_run(&["admin", "hosts", "destroy-stray", "h1", stray, "-o", "json"]).await.ok().row();
    assert_eq!(done["instance_id"], stray);
    assert_eq!(a.did("destroy", stray), 1);
    assert!(!a.machines().contains_key(stray));
    assert_eq!(host(&s, "h1").await["strays"], json!([]));
    // The lost one can be deleted (nothing to destroy there); the kept one works.
    let r = s.call(Method::DELETE, &format!("/v1/instances/{lost}"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(s.wait_operation(r.header("x-operation-id").unwrap()).await["status"], "succeeded");
    act(&s, &kept, "shutdown").await;
}

/// A TCP proxy between an agent and its control plane that can black-hole the traffic: every
/// connection open when the partition begins, or made during it, stays open and swallows what
/// it is sent for good (nothing forwarded, nothing answered, no reset: packets dropped, and the
/// connection state lost as when a NAT or firewall between them forgets it); connections made
/// after the partition ends are forwarded.
struct Partition {
    endpoint: String,
    blocked: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
}

impl Partition {
    async fn start(upstream: &str) -> Partition {
        let target = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let blocked = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicU64::new(0));
        let (b, e) = (blocked.clone(), epoch.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let born = e.load(Ordering::SeqCst);
                let dead = b.load(Ordering::SeqCst);
                let (b, e, target) = (b.clone(), e.clone(), target.clone());
                tokio::spawn(async move {
                    let cut = move || dead || e.load(Ordering::SeqCst) != born || b.load(Ordering::SeqCst);
                    if cut() {
                        return swallow(client).await;
                    }
                    let Ok(server) = TcpStream::connect(&target).await else { return };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let cut2 = cut.clone();
                    tokio::join!(pipe(cr, sw, cut), pipe(sr, cw, cut2));
                });
            }
        });
        Partition { endpoint, blocked, epoch }
    }

    fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn heal(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

/// Reads and drops everything until the peer closes.
async fn swallow(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Forwards until either side closes; once `cut` says so, drops what it reads instead.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: impl Fn() -> bool,
) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut() {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// An agent whose traffic is black-holed behaves like a stopped agent: its host goes offline
/// (server clock moved past 20 s), its instances are `unreachable` and actions on them refused
/// naming the host; the machine keeps running (nothing ran on the agent meanwhile). When the
/// partition ends the host is alive again, the instances `up`, and actions work.
#[tokio::test]
async fn a_partitioned_agent_is_offline_then_reconciled() {
    let s = hosts_mode(&[]).await;
    let proxy = Partition::start(&s.endpoint).await;
    let a = Agent::start_via(&s, &proxy.endpoint, "h1", &[]).await;
    let id = created(&s, "vm").await;
    assert_eq!(a.machines().get(&id).map(String::as_str), Some("running"));
    let runs_before = a.runs().len();

    proxy.block();
    s.cli_run(&["admin", "clock", "advance", "21s"]).await.ok();
    wait_host(&s, "h1", "offline").await;
    let row = wait_host_status(&s, &id, "unreachable").await;
    assert_eq!(row["status"], "active", "the machine keeps its last status: {row}");
    let r = s.call(Method::POST, &format!("/v1/instances/{id}/shutdown"), None).await;
    r.assert_error(409, "DELETED_OR_WORKING_INSTANCE");
    assert!(r.json["message"].as_str().unwrap().contains("`h1`"), "{}", r.text);
    // Still offline a few heartbeats later: the agent's calls do not get through.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(host(&s, "h1").await["status"], "offline");

    proxy.heal();
    wait_host(&s, "h1", "alive").await;
    wait_host_status(&s, &id, "up").await;
    assert_eq!(a.runs().len(), runs_before, "nothing ran on the host during the partition");
    assert_eq!(a.machines().get(&id).map(String::as_str), Some("running"), "the machine was untouched");
    assert_eq!(instance(&s, &id).await["status"], "active");
    // The long poll the agent had open when the partition began was held by the control plane
    // on a connection the partition took: an item handed to it is handed out again only at the
    // agent's next poll (`an_item_lost_with_its_long_poll_is_handed_out_again_at_the_next_poll`).
    // Once the agent has given that poll up (at most 25 s after it began) its next one gets the
    // work at once.
    let deadline = std::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(a.log()).unwrap().contains("work pull failed") {
        assert!(std::time::Instant::now() < deadline, "the agent never gave up its long poll");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    act(&s, &id, "shutdown").await;
    assert_eq!(a.did("stop", &id), 1);
}

/// An item handed to a long poll whose answer is lost (the partition took its connection) is
/// handed out again at the agent's next poll, which lists the items the agent holds, not 120 s
/// after its delivery (docs/hosts.md).
#[tokio::test]
async fn an_item_lost_with_its_long_poll_is_handed_out_again_at_the_next_poll() {
    let mut s = hosts_mode(&[]).await;
    let proxy = Partition::start(&s.endpoint).await;
    let a = Agent::start_via(&s, &proxy.endpoint, "h1", &[]).await;
    let id = created(&s, "vm").await;
    // The agent's next long poll is open at the control plane once the create is answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.block();
    let r = s.call(Method::POST, &format!("/v1/instances/{id}/shutdown"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.header("x-operation-id").unwrap().to_owned();
    // The open poll takes the stop; its answer goes nowhere.
    let delivered = "SELECT COUNT(*) FROM host_work WHERE call = 'stop' AND state = 'delivered' AND deliveries = 1";
    let deadline = std::time::Instant::now() + WAIT;
    while s.db_count(delivered).await != 1 {
        assert!(std::time::Instant::now() < deadline, "the stop was never handed to the open poll");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.heal();
    // The agent gives the lost poll up 25 s after it began; its next one gets the stop again.
    s.set_wait_timeout(Duration::from_secs(60));
    let done = s.wait_operation(&op).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(a.did("stop", &id), 1);
    assert_eq!(s.db_count("SELECT MAX(deliveries) FROM host_work WHERE call = 'stop'").await, 2, "handed out twice");
    assert!(std::fs::read_to_string(s.log_path()).unwrap().contains("handed out again"), "the control plane says why");
}

/// Two control planes on one database with the same agents (which talk to the first): creates
/// through either land on the agents and run; the second, killed while an operation it accepted
/// waits on an agent, leaves it to the first, which completes it, the call run once.
#[tokio::test]
async fn two_control_planes_share_the_agents_and_finish_each_others_operations() {
    let s1 = hosts_mode(&[]).await;
    let mut s2 = Server::start_sharing(&s1, &["--placement", "hosts"]).await;
    let a = Agent::start(&s1, "h1", &["--sim-delay", "2"]).await;
    let b = Agent::start(&s1, "h2", &["--sim-delay", "2"]).await;
    let x = created(&s1, "x").await;
    let y = created(&s2, "y").await;
    for id in [&x, &y] {
        assert_eq!(instance(&s1, id).await["status"], "active");
    }
    let placed = placements(&s1).await;
    assert_eq!(placed.len(), 2, "{placed:?}");

    // A shutdown accepted by the second process; killed while the agent runs the stop.
    let r = s2.call(Method::POST, &format!("/v1/instances/{y}/shutdown"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.header("x-operation-id").unwrap().to_owned();
    let agent = if placed[&y] == "h1" { &a } else { &b };
    let deadline = std::time::Instant::now() + WAIT;
    while !agent.runs().iter().any(|r| r["event"] == "start" && r["call"] == "stop" && r["instance_id"] == *y) {
        assert!(std::time::Instant::now() < deadline, "the agent never started the stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The second process holds the operation (it accepted it and woke its own workers at once).
    let owner = std::fs::read_to_string(s2.data_path("worker-id")).unwrap();
    let held =
        format!("SELECT COUNT(*) FROM operations WHERE operation_id = '{op}' AND lease_owner = '{}'", owner.trim());
    assert_eq!(s1.db_count(&held).await, 1, "the second control plane runs {op}");
    s2.kill9().await;
    let row = s1.wait_operation(&op).await;
    assert_eq!(row["status"], "succeeded", "{row}");
    assert_eq!(instance(&s1, &y).await["status"], "off");
    assert_eq!(agent.did("stop", &y), 1, "the stop ran once");
    let z = created(&s1, "z").await;
    assert_eq!(instance(&s1, &z).await["host_status"], "up");
}

/// The README's "A second host" block, run as written: its four commands, in a directory whose
/// `./openwinv-data` is the control plane's (serve --tls), with nothing of this process's
/// environment; only the placeholders are filled in: the control plane's address for
/// `https://cp:8443` and the token the first command printed for `owh_…`.
#[tokio::test]
async fn the_readmes_second_host_commands_work_as_written() {
    let s = Server::start_with(&["--tls", "--placement", "hosts"], &[]).await;
    let home = s.data_path("").parent().unwrap().to_owned();
    std::os::unix::fs::symlink(s.data_path(""), home.join("openwinv-data")).unwrap();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("\n## A second host\n").nth(1).expect("the README has `## A second host`");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("\n```").next()).expect("its sh block");
    let commands: Vec<String> = block
        .replace("\\\n", " ")
        .lines()
        .map(|l| l.split(" # ").next().unwrap().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 4, "four commands: {commands:?}");

    let mut token = String::new();
    let mut agent: Option<Child> = None;
    let mut listed = String::new();
    for command in &commands {
        let filled = command.replace("https://cp:8443", &s.endpoint).replace("owh_…", &token);
        let (words, into) = match filled.split_once(" > ") {
            Some((c, file)) => (c.to_owned(), Some(file.trim().to_owned())),
            None => (filled.clone(), None),
        };
        let mut words: Vec<&str> = words.split_whitespace().collect();
        assert_eq!(words.remove(0), "openwinv", "{command}");
        if words[0] == "agent" {
            let mut cmd = Command::new(binary());
            cmd.args(&words).current_dir(&home).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
            for (name, _) in std::env::vars() {
                if name.starts_with("IWINV_") || name.starts_with("OPENWINV_") {
                    cmd.env_remove(name);
                }
            }
            let mut child = cmd.spawn().unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let registered = tokio::time::timeout(WAIT, async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("registered with") {
                        return true;
                    }
                }
                false
            })
            .await;
            assert_eq!(registered, Ok(true), "{filled}");
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            agent = Some(child);
            continue;
        }
        let run = s.cli_run_bare(&words, &[]).await;
        assert_eq!(run.code, 0, "{filled}: {}", run.stderr);
        if let Some(file) = into {
            std::fs::write(home.join(file), &run.stdout).unwrap();
        }
        if let Some(t) = run.stdout.split_whitespace().find(|w| w.starts_with("owh_")) {
            token = t.to_owned();
        }
        listed = run.stdout;
    }
    assert!(agent.is_some() && token.starts_with("owh_"), "{commands:?}");
    let line = listed.lines().find(|l| l.starts_with("h2 ")).unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("alive"), "{line}");
}
