//! Instances as real QEMU virtual machines (`openwinv serve --driver qemu`), end to end: the real
//! binary, the public API and CLI, and the test guest of `scripts/build-test-image`, which reports
//! what it sees on its serial console (`docs/qemu.md`, "The test guest"). Each test imports the
//! image through `openwinv admin images import`, then reads `<data>/vms/<id>/serial.log`.
//!
//! Needs `OPENWINV_TEST_IMAGE=<dir>` (built by `scripts/build-test-image <dir>`),
//! `qemu-system-x86_64` and `qemu-img` on PATH, and for the console node, Chromium and
//! `npm ci` in tests/browser. A missing prerequisite fails the test; nothing is skipped.
//! Guests run under TCG unless `OPENWINV_TEST_ACCEL` says otherwise. These tests boot machines:
//! `.config/nextest.toml` runs them one at a time, and `scripts/test` only in its SQLite pass.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use openwinv_tests::browser::{BROWSER_TIMEOUT_SECS, console_mjs, require_browser_tools};
use openwinv_tests::guest::{
    BOOT, SerialLog, accel, import_test_image, kill_qemus, live_qemu, require_qemu, serial_log,
};
use openwinv_tests::{Body, Resp, Server};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use openwinv_tests::ED25519;
/// The images the tests boot (the default catalog's, given the test guest's files).
const IMAGES: [&str; 2] = ["IMG-ubuntu-2404", "IMG-debian-12"];
const GIB: u64 = 1 << 30;

/// A server on the QEMU driver. Dropping it (test passed or panicked) kills every QEMU it started:
/// they are daemons of their own, which outlive the server by design.
struct Qemu {
    s: Server,
}

impl std::ops::Deref for Qemu {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.s
    }
}

impl std::ops::DerefMut for Qemu {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.s
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        kill_qemus(&self.s);
    }
}

impl Qemu {
    async fn start() -> Qemu {
        require_qemu();
        let accel = accel();
        let mut s =
            Server::start_with(&["--driver", "qemu", "--accel", &accel, "--default-rate-limit", "0"], &[]).await;
        s.set_wait_timeout(BOOT);
        let q = Qemu { s };
        import_test_image(&q, &IMAGES).await;
        q
    }

    fn vm(&self, id: &str) -> PathBuf {
        self.data_path("vms").join(id)
    }

    fn serial(&self, id: &str) -> SerialLog {
        serial_log(self.vm(id).join("serial.log"))
    }

    fn pid(&self, id: &str) -> Option<i32> {
        live_qemu(&self.vm(id))
    }

    async fn create(&self, body: Value) -> (String, Value) {
        let r = self.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let row = r.result()[0].clone();
        let op = accepted(self, r).await;
        assert_eq!(op["status"], "succeeded", "create: {op}");
        let id = row["instance_id"].as_str().unwrap().to_owned();
        self.wait_status(&id, "active").await;
        (id, row)
    }

    async fn act(&self, id: &str, action: &str, body: Value) -> Value {
        let r = self.call(Method::POST, &format!("/v1/instances/{id}/{action}"), Some(Body::Json(body))).await;
        let op = accepted(self, r).await;
        assert_eq!(op["status"], "succeeded", "{action} {id}: {op}");
        op
    }

    async fn password(&self, id: &str) -> String {
        let r = self.get(&format!("/v1/instances/{id}?fields=128")).await;
        r.ok_rows()[0]["default_account"]["password"].as_str().expect("password").to_owned()
    }
}

async fn accepted(s: &Server, r: Resp) -> Value {
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.header("x-operation-id").expect("X-Operation-Id").to_owned();
    s.wait_operation(&op).await
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// SHA-256 of the password as the seed's user-data carries it (JSON-escaped, between the quotes),
/// which is what the guest prints.
fn password_sha256(password: &str) -> String {
    let quoted = serde_json::to_string(password).unwrap();
    sha256_hex(&quoted[1..quoted.len() - 1])
}

/// `cpus <n> memory-kb <kb>`: n, and the memory in kB.
fn cpus_memory(line: &str) -> (u32, u64) {
    let parts: Vec<&str> = line.split(' ').collect();
    assert!(parts.len() == 3 && parts[1] == "memory-kb", "cpus line: {line}");
    (parts[0].parse().expect("cpus"), parts[2].parse().expect("memory-kb"))
}

async fn wait_gone(s: &Qemu, id: &str, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.pid(id) == Some(pid) {
        assert!(Instant::now() < deadline, "QEMU {pid} of {id} still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Create with an SSH key and a user script, reboots, a volume hot-plugged and unplugged, shutdown
/// and start, resize, rebuild, delete: what the API did, the guest saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_sees_what_the_api_does() {
    let s = Qemu::start().await;
    let body = json!({"name": "e2e", "public_key": ED25519});
    let key = s.call(Method::POST, "/v1/auth/ssh_key", Some(Body::Json(body))).await.ok_rows()[0].clone();
    let script = "#!/bin/sh\necho \"hello from the user script on $(hostname)\"\nopenwinv-marker set-by-script\n";
    let body = json!({"name": "e2e", "content": script});
    let sc = s.call(Method::POST, "/v1/instance/script", Some(Body::Json(body))).await;
    let script_id = sc.ok_rows()[0]["user_script_id"].as_str().expect("user_script_id").to_owned();

    let started = Instant::now();
    let (id, receipt) = s
        .create(json!({
            "zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "서울 웹 01",
            "ssh_key_id": key["ssh_key_id"], "user_script_id": script_id,
        }))
        .await;
    eprintln!("create: active {:.1} s after the request", started.elapsed().as_secs_f64());
    let mut log = s.serial(&id);
    log.since = started;
    let password = s.password(&id).await;
    assert_eq!(receipt["default_account"]["password"], password.as_str());

    // First boot: everything the seed carries.
    assert_eq!(log.value("boot").await, "1");
    let instance_id = log.value("instance-id").await;
    assert!(instance_id.starts_with(&format!("{id}-")), "{instance_id}");
    assert_eq!(log.value("hostname").await, "seoul-wep-01");
    let (cpus, kb) = cpus_memory(&log.value("cpus").await);
    assert_eq!(cpus, 1);
    assert!((800_000..=1_048_576).contains(&kb), "about 1 GiB: {kb} kB");
    assert_eq!(log.value("ssh-key").await, key["fingerprint"].as_str().expect("fingerprint"));
    assert_eq!(log.value("password-sha256").await, password_sha256(&password));
    log.wait("openwinv-guest: first-boot").await;
    log.wait("hello from the user script on seoul-wep-01").await;
    assert_eq!(log.value("script-exit").await, "0");
    assert_eq!(log.value("disks").await, format!("vda:{}", 25 * GIB), "the flavor's 25 GB root disk");
    log.wait("openwinv-guest: ready").await;
    eprintln!("create: first boot ready {:.1} s after the request", started.elapsed().as_secs_f64());
    let first_pid = s.pid(&id).expect("QEMU runs");

    // Reboots: SOFT (ACPI power button, then reset) and HARD (reset), same QEMU; the disk persists.
    for (kind, n) in [("SOFT", 2), ("HARD", 3)] {
        log.mark();
        s.act(&id, "reboot", json!({"type": kind})).await;
        assert_eq!(log.boot(&format!("reboot {kind}")).await, n);
        assert!(!log.last_boot.contains("first-boot"), "same seed, no first boot:\n{}", log.last_boot);
        assert!(log.last_boot.contains("openwinv-guest: marker set-by-script"), "{}", log.last_boot);
        assert_eq!(s.pid(&id), Some(first_pid), "a reboot keeps the QEMU process");
    }

    // A volume made for the instance is hot-plugged; detached, it is unplugged.
    let v = s
        .call(
            Method::POST,
            "/v1/block-storages",
            Some(Body::Json(json!({"instance_id": id, "type": "ssd", "size": 10, "name": "data"}))),
        )
        .await;
    let volume = v.result().first().map(|r| r["block_storage_id"].as_str().unwrap_or_default().to_owned());
    let op = accepted(&s, v).await;
    assert_eq!(op["status"], "succeeded", "volume create: {op}");
    let volume = volume.expect("block_storage_id");
    assert_eq!(log.value("disk-added").await, format!("vdb {}", 10 * GIB));
    let row = s.get(&format!("/v1/block-storages/{volume}")).await.ok_rows()[0].clone();
    assert_eq!((row["status"].as_str(), row["instance_id"].as_str()), (Some("in-use"), Some(id.as_str())));
    let r = s.call(Method::POST, &format!("/v1/block-storages/{volume}/detach"), None).await;
    assert_eq!(accepted(&s, r).await["status"], "succeeded");
    assert_eq!(log.value("disk-removed").await, "vdb");

    // Shutdown: QEMU goes, the instance is off. Resize while off, then start: the new size boots.
    s.act(&id, "shutdown", json!({})).await;
    assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["status"], "off");
    wait_gone(&s, &id, first_pid).await;
    assert_eq!(s.pid(&id), None);
    s.act(&id, "resize", json!({"flavor_id": "ss1.c2m4"})).await;
    assert_eq!(s.pid(&id), None, "resize keeps an off machine off");
    log.mark();
    s.act(&id, "start", json!({})).await;
    s.wait_status(&id, "active").await;
    assert_eq!(log.value("boot").await, "4");
    let (cpus, kb) = cpus_memory(&log.value("cpus").await);
    assert_eq!(cpus, 2, "the new flavor's vCPUs");
    assert!((3_500_000..=4_194_304).contains(&kb), "about 4 GiB: {kb} kB");
    assert_eq!(log.value("marker").await, "set-by-script", "the root disk persists");
    assert_eq!(log.value("disks").await, format!("vda:{}", 50 * GIB), "the new flavor's 50 GB root disk");
    log.wait("openwinv-guest: ready").await;
    eprintln!("start after resize: ready {:.1} s after the request", log.since.elapsed().as_secs_f64());

    // Rebuild: a fresh root disk (boot counter 1, first boot again) and a new password.
    log.mark();
    s.act(&id, "rebuild", json!({"image_id": "IMG-ubuntu-2404"})).await;
    let new_password = s.password(&id).await;
    assert_ne!(new_password, password, "rebuild gives a new password");
    assert_eq!(log.value("boot").await, "1", "a fresh root disk");
    let new_iid = log.value("instance-id").await;
    assert_ne!(new_iid, instance_id, "a new seed");
    assert_eq!(log.value("password-sha256").await, password_sha256(&new_password));
    log.wait("openwinv-guest: first-boot").await;
    log.wait("openwinv-guest: ready").await;
    eprintln!("rebuild: ready {:.1} s after the request", log.since.elapsed().as_secs_f64());

    // Delete: the machine and its directory go; the volume stays, and can be deleted.
    let pid = s.pid(&id).expect("QEMU runs");
    let r = s.call(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
    assert_eq!(accepted(&s, r).await["status"], "succeeded");
    wait_gone(&s, &id, pid).await;
    assert!(!s.vm(&id).exists(), "the machine's directory is removed");
    let r = s.call(Method::DELETE, &format!("/v1/block-storages/{volume}"), None).await;
    assert_eq!(accepted(&s, r).await["status"], "succeeded");
    eprintln!("the_guest_sees_what_the_api_does: {:.1} s", started.elapsed().as_secs_f64());
}

/// The forwarded SSH port, the browser console on a real serial console, a server restart under a
/// running machine, and a QEMU killed behind the server's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_outlive_the_server_and_show_their_console() {
    require_browser_tools();
    let mut s = Qemu::start().await;
    let started = Instant::now();
    let (id, _) = s
        .create(
            json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "console"}),
        )
        .await;
    let mut log = s.serial(&id);
    log.since = started;
    assert_eq!(log.boot("create").await, 1);
    let pid = s.pid(&id).expect("QEMU runs");

    // SSH: the view shows the forwarded port (with the ip bit), and it accepts connections.
    let row = s.get(&format!("/v1/instances/{id}?fields=256")).await.ok_rows()[0].clone();
    assert_eq!(row["ssh"]["host"], "127.0.0.1", "{row}");
    let port = row["ssh"]["port"].as_u64().unwrap_or_else(|| panic!("no ssh.port: {row}"));
    tokio::net::TcpStream::connect(("127.0.0.1", port as u16))
        .await
        .expect("the forwarded SSH port accepts connections");
    let no_ip = s.get(&format!("/v1/instances/{id}?fields=1")).await.ok_rows()[0].clone();
    assert!(no_ip.get("ssh").is_none(), "ssh comes with the ip bit: {no_ip}");
    let (code, out, err) = s.cli(&["instances", "show", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines().any(|l| l.contains(&port.to_string()) && l.contains("127.0.0.1")),
        "`instances show` prints the SSH host and port 127.0.0.1:{port}:\n{out}"
    );

    // The browser console: the replayed log, then the guest's shell answers what is typed.
    let link = s.get(&format!("/v1/instances/{id}/remote-console")).await.ok_rows()[0]["link"]
        .as_str()
        .expect("link")
        .to_owned();
    let timeout = BROWSER_TIMEOUT_SECS.to_string();
    let (ok, out) = console_mjs(
        &link,
        &["openwinv-guest: ready", &timeout, "--type", "echo console-$((6*7))\\r", "--then", "console-42"],
    )
    .await;
    assert!(ok, "the console page did not show the guest's serial console:\n{out}");
    log.wait("console-42").await;

    // The server restarts: the machine runs on, same QEMU, still active, and actions work.
    s.restart().await;
    tokio::time::sleep(Duration::from_secs(5)).await; // a few reconcile rounds
    assert_eq!(s.pid(&id), Some(pid), "the same QEMU process");
    assert_eq!(s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0]["status"], "active");
    log.mark();
    s.act(&id, "reboot", json!({"type": "HARD"})).await;
    assert_eq!(log.boot("reboot HARD after a server restart").await, 2);
    assert_eq!(s.pid(&id), Some(pid));

    // QEMU killed behind the server's back: reconciled to off.
    // SAFETY: kill(2) on this test's QEMU (live_qemu checked it).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let killed = Instant::now();
    s.wait_status(&id, "off").await;
    eprintln!("killed QEMU: off after {:.1} s", killed.elapsed().as_secs_f64());
    assert!(killed.elapsed() < Duration::from_secs(30), "reconciled within seconds");
    eprintln!("machines_outlive_the_server_and_show_their_console: {:.1} s", started.elapsed().as_secs_f64());
}

/// The simulated driver's lifecycle test (`instances.rs`), on real machines: after each power-on the
/// guest must boot to `ready` (and SOFT reboots need a guest that listens to the power button).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_lifecycle_on_qemu() {
    let s = Qemu::start().await;
    let started = Instant::now();
    let data = s.data_path("vms");
    let mut log: Option<SerialLog> = None;
    let mut boots = Vec::new();
    openwinv_tests::lifecycle::a_whole_lifecycle(&s, async |id: &str| {
        let log = log.get_or_insert_with(|| serial_log(data.join(id).join("serial.log")));
        boots.push(log.boot("lifecycle").await);
        log.mark();
    })
    .await;
    // create, start, reboot SOFT, reboot HARD, then rebuild: a fresh root disk.
    assert_eq!(boots, [1, 2, 3, 4, 1]);
    eprintln!("a_whole_lifecycle_on_qemu: {:.1} s", started.elapsed().as_secs_f64());
}
