//! QEMU hosts behind agents (issue 18), what a QEMU agent does beyond running work items: it
//! reports machines that changed on their own (a guest powered off from inside, a QEMU process
//! killed), an agent killed and started again leaves its running guests untouched, and
//! `evacuate` moves a stopped QEMU machine to another QEMU host with its disk and its volumes
//! (docs/hosts.md).
//!
//! Needs `OPENWINV_TEST_IMAGE=<dir>` (built by `scripts/build-test-image <dir>`) and QEMU; a
//! missing prerequisite fails the test, nothing is skipped. Guests run under TCG unless
//! `OPENWINV_TEST_ACCEL` says otherwise. `.config/nextest.toml` runs it with the other QEMU
//! tests, one at a time; `scripts/test` only in its SQLite pass.

use std::path::PathBuf;
use std::time::Duration;

use openwinv_tests::guest::{
    BOOT, accel, eventually, import_test_image, kill_qemus_in, live_qemu, require_qemu, serial_log,
};
use openwinv_tests::hosts::{self, ZONE, add_host, create_succeeded, hosts_mode, spawn_agent};
use openwinv_tests::{Body, Server, binary, console};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::process::{Child, Command};

/// A `openwinv agent --driver qemu` that can be killed and started again on its data directory.
/// Dropping it kills the QEMUs it started: they are daemons of their own, which outlive the
/// agent by design.
struct Agent {
    name: String,
    token: String,
    endpoint: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Drop for Agent {
    fn drop(&mut self) {
        kill_qemus_in(&self.data().join("vms"));
    }
}

impl Agent {
    async fn start(s: &Server, name: &str) -> Agent {
        let token = add_host(s, name).await;
        let mut a = Agent {
            name: name.into(),
            token,
            endpoint: s.endpoint.clone(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            starts: 0,
        };
        a.spawn().await;
        a
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("agent-{}.log", self.starts))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let mut cmd = Command::new(binary());
        cmd.args(["agent", "--control-plane", &self.endpoint, "--host-token", &self.token, "--zone", ZONE])
            .args(["--vcpus", "8", "--memory-mb", "8192", "--disk-gb", "400", "--driver", "qemu"])
            .args(["--accel", &accel(), "--data-dir"])
            .arg(self.data())
            .env("RUST_LOG", "info");
        let (child, _) = spawn_agent(cmd, &self.name, &self.log_path(), BOOT).await;
        self.child = Some(child);
    }

    /// SIGKILL to the agent alone (its QEMUs are daemons in sessions of their own).
    async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn vm(&self, id: &str) -> PathBuf {
        self.data().join("vms").join(id)
    }

    /// (call, instance) of every run this agent finished.
    fn done(&self) -> Vec<(String, String)> {
        hosts::done(&self.data())
    }

    fn did(&self, call: &str, id: &str) -> usize {
        self.done().iter().filter(|(c, i)| c == call && i == id).count()
    }
}

async fn hosts_server() -> Server {
    require_qemu();
    let mut s = hosts_mode(&["--default-rate-limit", "0"]).await;
    s.set_wait_timeout(BOOT);
    import_test_image(&s, &["IMG-ubuntu-2404"]).await;
    s
}

async fn create(s: &Server, name: &str) -> String {
    let id = create_succeeded(s, name, "IMG-ubuntu-2404").await;
    s.wait_status(&id, "active").await;
    id
}

async fn act(s: &Server, id: &str, what: &str) {
    let r = s.call(Method::POST, &format!("/v1/instances/{id}/{what}"), Some(Body::Json(json!({})))).await;
    assert_eq!(r.status, 202, "{what} {id}: {}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{what} {id}: {op}");
}

async fn status(s: &Server, id: &str) -> String {
    let r = s.get(&format!("/v1/instances/{id}")).await;
    r.ok_rows()[0]["status"].as_str().unwrap().to_owned()
}

async fn placed_on(s: &Server, id: &str) -> String {
    let rows = s.admin(Method::GET, &format!("/admin/v1/placements/{id}"), None).await.ok_rows().clone();
    rows[0]["host"].as_str().unwrap().to_owned()
}

/// Creates an instance on host `on` (`other`, the only other host, disabled meanwhile).
async fn create_on(s: &Server, name: &str, on: &str, other: &str) -> String {
    s.admin(Method::POST, &format!("/admin/v1/hosts/{other}/disable"), None).await.ok_rows();
    let id = create(s, name).await;
    assert_eq!(placed_on(s, &id).await, on);
    s.admin(Method::POST, &format!("/admin/v1/hosts/{other}/enable"), None).await.ok_rows();
    id
}

/// Asks for a 10 GB volume attached to `id` (a machine on `agent`) and waits for it; its id.
async fn new_volume(s: &Server, id: &str, agent: &Agent) -> String {
    let body = json!({"instance_id": id, "type": "ssd", "size": 10, "name": "data"});
    let r = s.call(Method::POST, "/v1/block-storages", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "succeeded", "volume create: {op}\nagent:\n{}", agent.log());
    r.result()[0]["block_storage_id"].as_str().unwrap().to_owned()
}

/// Types `line` on the instance's serial console through the control plane and reads until
/// `answer` appears; panics with what was read otherwise.
async fn type_on_console(s: &Server, id: &str, line: &str, answer: &str) {
    let mut serial = console::open(s, id, "serial").await;
    let read = console::read_until(&mut serial, b"openwinv-guest: ready", BOOT).await;
    assert!(read.text().contains("openwinv-guest: ready"), "the console of {id}: {read:?}");
    console::send(&mut serial, format!("{line}\r").as_bytes()).await;
    let read = console::read_until(&mut serial, answer.as_bytes(), BOOT).await;
    assert!(read.text().contains(answer), "`{line}` on {id}'s console: {read:?}");
}

/// One QEMU agent: a guest powered off from inside becomes `off`; the agent killed (-9) and
/// started again leaves the running guest alone (same QEMU pid, `active` throughout, never
/// `error`) and its console answers; a QEMU process killed under the agent becomes `off`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qemu_agent_reports_machines_that_change_on_their_own_and_survives_a_restart() {
    let s = hosts_server().await;
    let mut a = Agent::start(&s, "qa").await;
    let id = create(&s, "own-changes").await;
    let mut log = serial_log(a.vm(&id).join("serial.log"));
    assert_eq!(log.boot("create").await, 1);

    // `poweroff` typed in the guest: QEMU stays (-no-shutdown), the agent's poll sees the guest
    // shut down, ends QEMU and reports the machine stopped; the control plane moves it to `off`.
    type_on_console(&s, &id, "echo powering-$((2*21)); sync; poweroff -f", "powering-42").await;
    s.wait_status(&id, "off").await;
    assert!(eventually(Duration::from_secs(30), || live_qemu(&a.vm(&id)).is_none()).await, "QEMU is gone");
    assert!(a.log().contains("a machine changed on its own"), "{}", a.log());

    // Started again through the API; then the agent is killed and started again.
    act(&s, &id, "start").await;
    s.wait_status(&id, "active").await;
    assert_eq!(log.boot("start").await, 2);
    let pid = live_qemu(&a.vm(&id)).expect("QEMU runs");
    let runs = a.done().len();
    a.kill9().await;
    // While it is away (not long enough to be offline) and after it is back: `active`.
    for _ in 0..3 {
        assert_eq!(status(&s, &id).await, "active");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(live_qemu(&a.vm(&id)), Some(pid), "the guest outlives its agent");
    a.spawn().await;
    // A few polls of the restarted agent (every 2 s) and its full report: nothing changes.
    for _ in 0..6 {
        assert_eq!(status(&s, &id).await, "active", "agent log:\n{}", a.log());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(live_qemu(&a.vm(&id)), Some(pid), "the restarted agent left the guest's QEMU alone");
    assert_eq!(a.done().len(), runs, "nothing ran again: {:?}", a.done());
    assert!(!a.log().contains("a machine changed on its own"), "{}", a.log());
    // The console still answers, through the restarted agent.
    type_on_console(&s, &id, "echo still-$((6*7))", "still-42").await;
    assert_eq!(live_qemu(&a.vm(&id)), Some(pid), "the same QEMU answered");

    // QEMU killed behind the agent's back: the machine is stopped, the instance `off`.
    // SAFETY: kill(2) on this machine's QEMU (checked by live_qemu).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    s.wait_status(&id, "off").await;
    act(&s, &id, "start").await;
    s.wait_status(&id, "active").await;
    let r = s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{op}");
}

/// Two QEMU agents: a machine on A with a marker written on its disk through the serial
/// console, and a volume hot-plugged into it and written by the guest, stopped and evacuated: A
/// flattens its disk and hands it to the control plane by SHA-256, B fetches it by that digest
/// and creates the machine from it, and the volume moves the same way and is attached there; the
/// control plane removes its copies; started on B, the guest reads the marker from its disk and
/// what it wrote on the volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuate_moves_a_qemu_machine_with_its_disk() {
    let s = hosts_server().await;
    let a = Agent::start(&s, "qa").await;
    let b = Agent::start(&s, "qb").await;
    let id = create_on(&s, "moving", "qa", "qb").await;
    // `openwinv-marker` writes the marker on the root disk; the guest prints it at each boot.
    type_on_console(&s, &id, "openwinv-marker moved-with-its-disk && echo marked-$((40+2))", "marked-42").await;
    // A volume hot-plugged into it, written by the guest: it moves with the machine.
    let mut log_a = serial_log(a.vm(&id).join("serial.log"));
    log_a.boot("moving").await;
    let v = new_volume(&s, &id, &a).await;
    assert_eq!(log_a.value("disk-added").await, format!("vdb {}", 10u64 << 30));
    type_on_console(&s, &id, "echo volume-data-$((40+2)) > /dev/vdb && sync && echo written-$((40+2))", "written-42")
        .await;
    act(&s, &id, "shutdown").await;
    s.admin(Method::POST, "/admin/v1/hosts/qa/drain", None).await.ok_rows();

    let ev = s.admin(Method::POST, "/admin/v1/hosts/qa/evacuate", None).await.ok_rows()[0].clone();
    assert_eq!(ev["moving"].as_array().map(Vec::len), Some(1), "{ev}");
    let op = s.wait_operation(ev["moving"][0]["operation_id"].as_str().unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{op}\nA:\n{}\nB:\n{}", a.log(), b.log());
    assert_eq!(placed_on(&s, &id).await, "qb");
    assert_eq!(status(&s, &id).await, "off");
    assert_eq!((a.did("export", &id), a.did("destroy", &id), b.did("import", &id)), (1, 1, 1));
    assert!(!a.vm(&id).exists(), "the machine is gone from A");
    // The disk went through the control plane and is gone from it after the switch.
    let disks = s.data_path("disks");
    let left: Vec<_> = std::fs::read_dir(&disks).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap();
    assert!(left.is_empty(), "transferred disks left on the control plane: {left:?}");
    assert!(a.log().contains("machine disk exported"), "{}", a.log());
    let fetched: Vec<Value> = std::fs::read_to_string(b.data().join("images/events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "fetched" && e["kind"] == "disk")
        .collect();
    assert_eq!(fetched.len(), 2, "B fetched the machine's disk and the volume once, by digest: {fetched:?}");
    assert_ne!(fetched[0]["sha256"], fetched[1]["sha256"], "{fetched:?}");
    // The volume went with it: its storage is on B, gone from A, and the row names B.
    let volume_file = |g: &Agent| g.data().join("volumes").join(format!("{v}.qcow2"));
    assert!(!volume_file(&a).exists() && volume_file(&b).is_file(), "the volume's storage moved to B");
    let kept_on_b = format!(
        "SELECT COUNT(*) FROM volumes v JOIN hosts h ON h.host_id = v.host_id \
         WHERE v.block_storage_id = '{v}' AND h.name = 'qb' AND v.instance_id = '{id}' AND v.status = 'in-use'"
    );
    assert_eq!(s.db_count(&kept_on_b).await, 1, "the volume is kept on B, still attached");
    let calls = |g: &Agent| g.done().into_iter().map(|(c, _)| c).filter(|c| c.ends_with("_volume")).collect::<Vec<_>>();
    assert_eq!(calls(&a), ["create_volume", "attach_volume", "detach_volume", "export_volume", "delete_volume"]);
    assert_eq!(calls(&b), ["import_volume", "attach_volume"]);

    // The disks route itself: a host's token, a body that is what its digest says.
    // A connection per request: an answer given before the body was read (401, 400) may close
    // its connection, and a pooled client could send the next request on it as it closes.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let url = |d: &str| format!("{}/internal/v1/disks/{d}", s.endpoint);
    // Larger than the API's body limit (2 MiB): a disk is streamed, never bounded by it.
    let body: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = hex::encode(sha2::Sha256::digest(&body));
    let r = http.put(url(&digest)).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = http.put(url(&"0".repeat(64))).bearer_auth(&a.token).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 400, "a body with another digest");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error_code"], "CHECK_PARAM", "{e}");
    assert!(e["message"].as_str().unwrap().contains(&digest), "the message names the body's digest: {e}");
    let r = http.put(url("not-a-digest")).bearer_auth(&a.token).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http.put(url(&digest)).bearer_auth(&a.token).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let stored: Value = r.json().await.unwrap();
    assert_eq!(stored["result"][0], json!({"sha256": digest, "size": body.len()}), "{stored}");
    let r = http.get(url(&digest)).bearer_auth(&b.token).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.bytes().await.unwrap().to_vec()), (200, body));
    let r = http.get(url(&"0".repeat(64))).bearer_auth(&b.token).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(!std::fs::read_dir(&disks).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with('.')));

    act(&s, &id, "start").await;
    s.wait_status(&id, "active").await;
    let mut log = serial_log(b.vm(&id).join("serial.log"));
    // The disk's own boot counter goes on (boot 1 was on A), and the marker is there.
    assert_eq!(log.value("boot").await, "2", "the disk booted on A, then on B");
    assert_eq!(log.value("marker").await, "moved-with-its-disk", "the marker written on A, read on B");
    assert_eq!(b.did("start", &id), 1);
    // The volume is attached at boot on B, with what the guest wrote on A.
    type_on_console(&s, &id, "head -c 15 /dev/vdb; echo", "volume-data-42").await;
}

/// A volume's storage follows the instance it is attached to (docs/hosts.md "Volumes"): made on
/// the QEMU host of its first instance and hot-plugged there; written by that guest; detached and
/// attached to an instance on the other QEMU host, it moves there (export, import by content,
/// delete on the first host) and the second guest reads what the first one wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_moves_to_the_host_of_its_next_instance_with_its_data() {
    let s = hosts_server().await;
    let a = Agent::start(&s, "qa").await;
    let b = Agent::start(&s, "qb").await;
    let x = create_on(&s, "x", "qa", "qb").await;
    s.admin(Method::POST, "/admin/v1/hosts/qa/disable", None).await.ok_rows();
    let y = create(&s, "y").await;
    assert_eq!((placed_on(&s, &x).await, placed_on(&s, &y).await), ("qa".to_owned(), "qb".to_owned()));

    // Each guest up (its hot-plug watcher running) before a disk is plugged into it.
    let mut log_x = serial_log(a.vm(&x).join("serial.log"));
    log_x.boot("x").await;
    let mut log_y = serial_log(b.vm(&y).join("serial.log"));
    log_y.boot("y").await;
    let v = new_volume(&s, &x, &a).await;
    assert_eq!(log_x.value("disk-added").await, format!("vdb {}", 10u64 << 30));
    let on_a = a.data().join("volumes").join(format!("{v}.qcow2"));
    assert!(on_a.is_file(), "the storage is made on the instance's host");
    assert!(!b.data().join("volumes").join(format!("{v}.qcow2")).exists());
    type_on_console(&s, &x, "echo volume-data-$((40+2)) > /dev/vdb && sync && echo written-$((40+2))", "written-42")
        .await;

    let r = s.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(s.wait_operation(r.header("x-operation-id").unwrap()).await["status"], "succeeded");
    assert_eq!(log_x.value("disk-removed").await, "vdb");
    let r = s.call(Method::POST, &format!("/v1/block-storages/{v}/attach/{y}"), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "succeeded", "attach on the other host: {op}\nA:\n{}\nB:\n{}", a.log(), b.log());
    assert_eq!(log_y.value("disk-added").await, format!("vdb {}", 10u64 << 30));
    assert!(!on_a.exists(), "the storage left the first host");
    assert!(b.data().join("volumes").join(format!("{v}.qcow2")).is_file(), "the storage is on the second host");
    type_on_console(&s, &y, "head -c 15 /dev/vdb; echo", "volume-data-42").await;
    // Passed through the control plane, and gone from it once moved.
    let disks: Vec<_> = std::fs::read_dir(s.data_path("disks"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(disks.is_empty(), "a moved volume left on the control plane: {disks:?}");
    let calls = |g: &Agent| g.done().into_iter().map(|(c, _)| c).filter(|c| c.ends_with("_volume")).collect::<Vec<_>>();
    assert_eq!(calls(&a), ["create_volume", "attach_volume", "detach_volume", "export_volume", "delete_volume"]);
    assert_eq!(calls(&b), ["import_volume", "attach_volume"]);
}
