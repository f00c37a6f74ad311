//! A QEMU host behind an agent (issue 18: images by content): a control plane in hosts mode
//! (`serve --placement hosts`), one `openwinv agent --driver qemu` and one `--driver sim`, each
//! in its own data directory. A create placed on the QEMU host boots the test guest there, from
//! boot files the agent fetched from the control plane by SHA-256 (`GET
//! /internal/v1/images/{sha256}`), verified and cached once per host; stop, start, rebuild and
//! delete go through the agent; a damaged cached copy is refused and fetched again; copies no
//! machine uses are removed after `--image-cache-ttl` (docs/hosts.md). The guest's serial console
//! and screen are read through the control plane's console sockets, proxied by the agent.
//!
//! Needs `OPENWINV_TEST_IMAGE=<dir>` (built by `scripts/build-test-image <dir>`) and QEMU; a
//! missing prerequisite fails the test, nothing is skipped. Guests run under TCG unless
//! `OPENWINV_TEST_ACCEL` says otherwise. `.config/nextest.toml` runs it with the other QEMU
//! tests, one at a time; `scripts/test` only in its SQLite pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openwinv_tests::guest::{
    BOOT, accel, eventually, image_dir, import_test_image, kill_qemus_in, live_qemu, require_qemu, serial_log,
};
use openwinv_tests::hosts::{self, ZONE, add_host, hosts_mode, spawn_agent};
use openwinv_tests::{Body, Server, binary, console};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

/// Short, so that the test sees unused copies go (a sweep every second).
const TTL_SECS: u64 = 2;

/// A running `openwinv agent`. Dropping it kills the QEMUs it started: they are daemons of their
/// own, which outlive the agent by design.
struct Agent {
    name: String,
    dir: tempfile::TempDir,
    _child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        kill_qemus_in(&self.data().join("vms"));
    }
}

impl Agent {
    async fn start(s: &Server, name: &str, args: &[&str]) -> Agent {
        let token = add_host(s, name).await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let mut cmd = Command::new(binary());
        cmd.args(["agent", "--control-plane", &s.endpoint, "--host-token", &token, "--zone", ZONE])
            .args(["--vcpus", "8", "--memory-mb", "8192", "--disk-gb", "400", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .env("RUST_LOG", "info");
        let (child, _) = spawn_agent(cmd, name, &log, BOOT).await;
        Agent { name: name.into(), dir, _child: child }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    fn vm(&self, id: &str) -> PathBuf {
        self.data().join("vms").join(id)
    }

    /// The image cache's events (`fetched`, `verified`, `corrupt`, `removed`).
    fn image_events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.data().join("images/events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// How many `event`s each digest had.
    fn count(&self, event: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for e in self.image_events().iter().filter(|e| e["event"] == event) {
            *out.entry(e["sha256"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        out
    }

    /// The cached copies: file names of the cache directory that are digests.
    fn cached(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.data().join("images"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.retain(|n| n.len() == 64);
        names.sort();
        names
    }

    /// (call, instance) of every run this agent finished.
    fn done(&self) -> Vec<(String, String)> {
        hosts::done(&self.data())
    }
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

async fn create(s: &Server, name: &str, image: &str) -> String {
    let id = hosts::create_succeeded(s, name, image).await;
    s.wait_status(&id, "active").await;
    id
}

async fn act(s: &Server, id: &str, what: &str, body: Value) {
    let r = s.call(Method::POST, &format!("/v1/instances/{id}/{what}"), Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{what} {id}: {}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{what} {id}: {op}");
}

async fn delete(s: &Server, id: &str) {
    let r = s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
    assert_eq!(r.status, 202, "delete {id}: {}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "succeeded", "delete {id}: {op}");
}

async fn host_action(s: &Server, name: &str, what: &str) {
    s.admin(Method::POST, &format!("/admin/v1/hosts/{name}/{what}"), None).await.ok_rows();
}

async fn placed_on(s: &Server, id: &str) -> String {
    let rows = s.admin(Method::GET, &format!("/admin/v1/placements/{id}"), None).await.ok_rows().clone();
    rows[0]["host"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qemu_agent_boots_machines_from_images_fetched_by_content() {
    require_qemu();
    let mut s = hosts_mode(&["--default-rate-limit", "0"]).await;
    s.set_wait_timeout(BOOT);
    // Two catalog images with the same files: the same digests.
    import_test_image(&s, &["IMG-ubuntu-2404", "IMG-debian-12"]).await;
    let digests: BTreeMap<String, &str> =
        ["vmlinuz", "initrd.img", "root.raw"].into_iter().map(|f| (sha256_file(&image_dir().join(f)), f)).collect();
    assert_eq!(digests.len(), 3);
    let digest_of = |f: &str| digests.iter().find(|(_, n)| **n == f).unwrap().0.clone();

    let sim = Agent::start(&s, "hs", &["--driver", "sim"]).await;
    let ttl = format!("{TTL_SECS}s");
    let qemu = Agent::start(&s, "hq", &["--driver", "qemu", "--accel", &accel(), "--image-cache-ttl", &ttl]).await;

    // The image route: a host's token, a digest the control plane has, ranges.
    let http = reqwest::Client::new();
    let url = |d: &str| format!("{}/internal/v1/images/{d}", s.endpoint);
    let initrd = digest_of("initrd.img");
    let r = http.get(url(&initrd)).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token");
    let token =
        s.cli_run(&["admin", "hosts", "add", "probe", "--zone", ZONE, "-o", "json"]).await.ok().rows()[0]["token"]
            .as_str()
            .unwrap()
            .to_owned();
    let r = http.get(url(&"0".repeat(64))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_code"], "NOT_FOUND", "{body}");
    let r = http.get(url("not-a-digest")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http.get(url(&initrd)).bearer_auth(&token).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(r.status(), 206);
    let bytes = std::fs::read(image_dir().join("initrd.img")).unwrap();
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes 10-19/{}", bytes.len()),
        "the range and the file's size"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[10..20]);
    let r = http.get(url(&initrd)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hex::encode(Sha256::digest(r.bytes().await.unwrap())), initrd);
    s.admin(Method::DELETE, "/admin/v1/hosts/probe", None).await.ok_rows();

    // A create on the sim host (the QEMU host kept out): the sim agent runs it, nothing fetched.
    host_action(&s, "hq", "disable").await;
    let on_sim = create(&s, "sim-1", "IMG-ubuntu-2404").await;
    assert_eq!(placed_on(&s, &on_sim).await, "hs");
    assert!(sim.done().contains(&("create".into(), on_sim.clone())), "{:?}", sim.done());
    host_action(&s, "hq", "enable").await;
    host_action(&s, "hs", "disable").await;

    // Two creates on the QEMU host, from two images with the same files: each boots the guest;
    // each file is fetched once, then verified from the cache.
    let a = create(&s, "qemu-a", "IMG-ubuntu-2404").await;
    assert_eq!(placed_on(&s, &a).await, qemu.name);
    let mut log_a = serial_log(qemu.vm(&a).join("serial.log"));
    assert_eq!(log_a.boot("create a").await, 1);
    let b = create(&s, "qemu-b", "IMG-debian-12").await;
    assert_eq!(placed_on(&s, &b).await, "hq");
    let mut log_b = serial_log(qemu.vm(&b).join("serial.log"));
    assert_eq!(log_b.boot("create b").await, 1);
    let once: BTreeMap<String, usize> = digests.keys().map(|d| (d.clone(), 1)).collect();
    assert_eq!(qemu.count("fetched"), once, "each file fetched once for two creates: {:?}", qemu.image_events());
    assert_eq!(qemu.count("verified"), once, "the second create used the cached copies");
    assert_eq!(qemu.cached(), digests.keys().cloned().collect::<Vec<_>>());
    for (d, f) in &digests {
        assert_eq!(&sha256_file(&qemu.data().join("images").join(d)), d, "the copy of {f} is its content");
    }
    // The machine boots the host's copies, not the control plane's paths.
    let spec = std::fs::read_to_string(qemu.vm(&a).join("spec.json")).unwrap();
    assert!(spec.contains(&qemu.data().join("images").join(digest_of("vmlinuz")).display().to_string()), "{spec}");
    assert!(!spec.contains(&s.data_path("images").display().to_string()), "{spec}");
    assert!(sim.done().iter().all(|(_, id)| *id != a && *id != b), "the sim agent ran nothing of the QEMU host's");
    // Used by machines, older than the ttl: kept.
    tokio::time::sleep(Duration::from_secs(TTL_SECS * 2)).await;
    assert_eq!(qemu.cached().len(), 3, "copies in use are kept: {:?}", qemu.image_events());

    // Stop and start through the agent: QEMU goes, then the guest boots again from the copies.
    let pid = live_qemu(&qemu.vm(&a)).expect("QEMU runs");
    act(&s, &a, "shutdown", json!({})).await;
    assert!(eventually(Duration::from_secs(30), || live_qemu(&qemu.vm(&a)).is_none()).await, "QEMU {pid} still runs");
    act(&s, &a, "start", json!({})).await;
    s.wait_status(&a, "active").await;
    assert_eq!(log_a.boot("start a").await, 2);

    // The guest's consoles through the control plane: it hands the QEMU agent a session, the
    // agent dials back and splices the machine's serial socket (the log replayed, then a command
    // typed and answered by the guest's shell) and its VNC socket (the RFB greeting).
    let mut serial = console::open(&s, &a, "serial").await;
    let read = console::read_until(&mut serial, b"openwinv-guest: ready", BOOT).await;
    assert!(read.text().contains("openwinv-guest: ready"), "{read:?}\nagent log:\n{}", qemu.log());
    console::send(&mut serial, b"echo console-$((6*7))\r").await;
    let read = console::read_until(&mut serial, b"console-42", BOOT).await;
    assert!(read.text().contains("console-42"), "the guest's answer: {read:?}");
    log_a.wait("console-42").await;
    drop(serial);
    let mut screen = console::open(&s, &a, "vnc").await;
    let read = console::read_until(&mut screen, b"RFB 003.008\n", BOOT).await;
    assert!(read.bytes.starts_with(b"RFB 003.008\n"), "the RFB greeting through the proxy: {read:?}");
    drop(screen);
    assert!(qemu.log().contains("console session open"), "{}", qemu.log());

    // A damaged copy is refused and fetched again: the next rebuild verifies before it boots.
    delete(&s, &b).await;
    assert!(!qemu.vm(&b).exists(), "the agent removed the machine's directory");
    let copy = qemu.data().join("images").join(&initrd);
    let mut damaged = std::fs::read(&copy).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(&copy, &damaged).unwrap();
    act(&s, &a, "rebuild", json!({"image_id": "IMG-debian-12"})).await;
    s.wait_status(&a, "active").await;
    assert_eq!(log_a.boot("rebuild a").await, 1, "a fresh root disk");
    let corrupt = qemu.count("corrupt");
    assert_eq!(corrupt, BTreeMap::from([(initrd.clone(), 1)]), "{:?}", qemu.image_events());
    assert_eq!(qemu.count("fetched")[&initrd], 2, "the damaged copy fetched again");
    assert_eq!(sha256_file(&copy), initrd, "the copy is whole again");

    // Delete the last machine: the copies, unused now, go after the ttl.
    delete(&s, &a).await;
    assert!(
        eventually(Duration::from_secs(TTL_SECS * 10), || qemu.cached().is_empty()).await,
        "unused copies stay: {:?}; events {:?}\nagent log:\n{}",
        qemu.cached(),
        qemu.image_events(),
        qemu.log()
    );
    assert_eq!(qemu.count("removed"), once);
    let calls: Vec<String> = qemu.done().into_iter().map(|(c, _)| c).collect();
    for call in ["create", "start", "stop", "rebuild", "destroy"] {
        assert!(calls.iter().any(|c| c == call), "the QEMU agent ran no {call}: {calls:?}");
    }
}
