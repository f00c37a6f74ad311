//! Setup shared by the hypervisor-host tests (`tests/hosts*.rs`, `tests/qemu_net.rs`): adding a
//! host through the operator CLI, starting an `openwinv agent` that must register (a restartable
//! simulated one: [`SimAgent`]), reading what an agent ran, the instance and host calls those
//! tests repeat, and the tools real networks need.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{Body, Resp, Server, binary};

/// The zone every host test places its hosts in.
pub const ZONE: &str = "KR1-Z01";

/// How long a poll for a state the control plane must reach may take (a loaded host is slow).
pub const WAIT: Duration = Duration::from_secs(90);

/// Adds host `name` in [`ZONE`] through `openwinv admin hosts add` and returns its row (with the
/// token, shown once).
pub async fn add_host_row(s: &Server, name: &str) -> serde_json::Value {
    let run = s.cli_run(&["admin", "hosts", "add", name, "--zone", ZONE, "-o", "json"]).await.ok();
    run.rows()[0].clone()
}

/// Adds host `name` in [`ZONE`] and returns its token.
pub async fn add_host(s: &Server, name: &str) -> String {
    add_host_row(s, name).await["token"].as_str().unwrap().to_owned()
}

/// Starts an agent from `cmd` (its arguments and environment set by the caller) with stdin
/// closed, stderr into `log` and killed on drop, and waits up to `wait` for the line saying it
/// registered, which it returns; fails with the agent's log when it does not come. Stdout is
/// read on after that, so the agent never blocks on a full pipe.
pub async fn spawn_agent(mut cmd: Command, name: &str, log: &Path, wait: Duration) -> (Child, String) {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(std::fs::File::create(log).unwrap()).kill_on_drop(true);
    let mut child = cmd.spawn().expect("start openwinv agent");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let registered = tokio::time::timeout(wait, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("registered with") {
                return Some(line);
            }
        }
        None
    })
    .await;
    let Ok(Some(line)) = registered else {
        panic!("agent {name} did not register; its log:\n{}", std::fs::read_to_string(log).unwrap_or_default())
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, line)
}

/// A control plane placing instances on hosts (`serve --placement hosts` and `extra`), with the
/// `dev` account's quota raised to 100 instances and 100 vCPUs.
pub async fn hosts_mode(extra: &[&str]) -> Server {
    let args: Vec<&str> = ["--placement", "hosts"].into_iter().chain(extra.iter().copied()).collect();
    let s = Server::start_with(&args, &[]).await;
    let quota = serde_json::json!({"instances": 100, "vcpu": 100});
    s.admin(reqwest::Method::PUT, "/admin/v1/accounts/dev/quota", Some(quota)).await.ok_rows();
    s
}

/// An `openwinv agent --driver sim` in a data directory of its own, which can be killed and
/// started again: it runs while `child` is set.
pub struct SimAgent {
    pub name: String,
    pub token: String,
    /// The control plane's URL the agent is given (the server's, a proxy's, another process's).
    pub endpoint: String,
    pub extra: Vec<String>,
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    /// How many times it was started; each start logs to its own file.
    pub starts: u32,
    /// `--vcpus`, `--memory-mb` and `--disk-gb`.
    pub capacity: [&'static str; 3],
    /// The agent's `RUST_LOG`.
    pub rust_log: &'static str,
}

impl SimAgent {
    /// An agent of host `name` with `token`, not started: room for 8 instances of `ss1.c1m1`
    /// (8 vCPUs, 8 GiB, 400 GiB), logging at `info`.
    pub fn new(endpoint: &str, name: &str, token: &str, extra: &[&str]) -> SimAgent {
        SimAgent {
            name: name.into(),
            token: token.into(),
            endpoint: endpoint.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            starts: 0,
            capacity: ["8", "8192", "400"],
            rust_log: "info",
        }
    }

    /// Adds host `name` to `s` and starts its agent; returns once it registered.
    pub async fn start(s: &Server, name: &str, extra: &[&str]) -> SimAgent {
        SimAgent::start_via(s, &s.endpoint, name, extra).await
    }

    /// An agent of `s` that reaches it at `endpoint` (a proxy, or another control plane).
    pub async fn start_via(s: &Server, endpoint: &str, name: &str, extra: &[&str]) -> SimAgent {
        let token = add_host(s, name).await;
        let mut a = SimAgent::new(endpoint, name, &token, extra);
        a.spawn().await;
        a
    }

    /// The log of the current (latest) start.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join(format!("agent-{}.log", self.starts))
    }

    /// The agent's command line, stdin closed and killed on drop.
    pub fn command(&self) -> Command {
        let [vcpus, memory_mb, disk_gb] = self.capacity;
        let mut cmd = Command::new(binary());
        cmd.args(["agent", "--control-plane", &self.endpoint, "--host-token", &self.token, "--driver", "sim"])
            .args(["--zone", ZONE, "--vcpus", vcpus, "--memory-mb", memory_mb, "--disk-gb", disk_gb, "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(&self.extra)
            .env("RUST_LOG", self.rust_log)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Starts the agent (again) and waits until it registered; the line saying so.
    pub async fn spawn(&mut self) -> String {
        self.starts += 1;
        let (child, line) = spawn_agent(self.command(), &self.name, &self.log(), WAIT).await;
        self.child = Some(child);
        line
    }

    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    /// The agent's record of its machines.
    pub fn machines_file(&self) -> PathBuf {
        self.dir.path().join("data/machines.json")
    }

    /// instance id → state, as the agent keeps them.
    pub fn machines(&self) -> BTreeMap<String, String> {
        let v: Value = std::fs::read(self.machines_file())
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or(json!({"machines": {}}));
        v["machines"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, m)| (k.clone(), m["state"].as_str().unwrap().to_owned()))
            .collect()
    }

    /// The agent's run log: one object per run start, run end and answer from its record.
    pub fn runs(&self) -> Vec<Value> {
        runs(&self.dir.path().join("data"))
    }

    /// (call, instance) of every run this agent finished.
    pub fn done(&self) -> Vec<(String, String)> {
        done(&self.dir.path().join("data"))
    }

    /// How many runs of `call` on instance `id` this agent finished with `ok`.
    pub fn did(&self, call: &str, id: &str) -> usize {
        let ok = |r: &&Value| r["event"] == "done" && r["outcome"] == "ok" && r["call"] == call;
        self.runs().iter().filter(ok).filter(|r| r["instance_id"].as_str().unwrap_or("") == id).count()
    }
}

/// The run log of the agent with data directory `data`: one object per run start, run end and
/// answer from its record.
pub fn runs(data: &Path) -> Vec<Value> {
    std::fs::read_to_string(data.join("work/runs.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (call, instance) of every run the agent with data directory `data` finished.
pub fn done(data: &Path) -> Vec<(String, String)> {
    runs(data)
        .iter()
        .filter(|r| r["event"] == "done")
        .map(|r| (r["call"].as_str().unwrap().to_owned(), r["instance_id"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// Asks for an instance of `ss1.c1m1` named `name` from Ubuntu 24.04; its id and the create's
/// operation id.
pub async fn create(s: &Server, name: &str) -> (String, String) {
    create_from(s, name, "IMG-ubuntu-2404").await
}

/// Asks for an instance of `ss1.c1m1` named `name` from `image`; its id and the create's
/// operation id.
pub async fn create_from(s: &Server, name: &str, image: &str) -> (String, String) {
    let body = json!({"zone_id": ZONE, "image_id": image, "flavor_id": "ss1.c1m1", "name": name});
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    (id, r.header("x-operation-id").unwrap().to_owned())
}

/// Creates an instance from `image` and waits for its create to succeed; its id.
pub async fn create_succeeded(s: &Server, name: &str, image: &str) -> String {
    let (id, op) = create_from(s, name, image).await;
    let op = s.wait_operation(&op).await;
    assert_eq!(op["status"], "succeeded", "create {name}: {op}");
    id
}

/// Calls as the bootstrap account (`None`) or another account's key.
pub async fn call(s: &Server, who: Option<&(String, String)>, method: Method, path: &str, body: Option<Value>) -> Resp {
    let body = body.map(Body::Json);
    match who {
        None => s.call(method, path, body).await,
        Some((key, secret)) => s.call_as(key, secret, method, path, body).await,
    }
}

/// Waits up to `timeout` for the operation the answer `r` names, as the account that started it
/// (`who`, as for [`call`]); it must succeed. Its row.
pub async fn operation_succeeded(s: &Server, who: Option<&(String, String)>, r: &Resp, timeout: Duration) -> Value {
    let op = r.header("x-operation-id").expect("X-Operation-Id").to_owned();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let row = call(s, who, Method::GET, &format!("/v1/operations/{op}"), None).await.ok_rows()[0].clone();
        if row["status"] != "running" {
            assert_eq!(row["status"], "succeeded", "{row}");
            return row;
        }
        assert!(std::time::Instant::now() < deadline, "operation {op} still running: {row}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts an action and waits for its operation to succeed.
pub async fn act(s: &Server, id: &str, what: &str) {
    let r = s.call(Method::POST, &format!("/v1/instances/{id}/{what}"), None).await;
    assert_eq!(r.status, 202, "{what} {id}: {}", r.text);
    let op = s.wait_operation(r.header("x-operation-id").unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{what} {id}: {op}");
}

/// instance id → host name.
pub async fn placements(s: &Server) -> BTreeMap<String, String> {
    let rows = s.admin(Method::GET, "/admin/v1/placements", None).await.ok_rows().clone();
    rows.iter()
        .map(|p| (p["instance_id"].as_str().unwrap().to_owned(), p["host"].as_str().unwrap().to_owned()))
        .collect()
}

pub async fn instance(s: &Server, id: &str) -> Value {
    s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0].clone()
}

/// The operator's row of host `name`.
pub async fn host(s: &Server, name: &str) -> Value {
    s.admin(Method::GET, &format!("/admin/v1/hosts/{name}"), None).await.ok_rows()[0].clone()
}

/// Polls until host `name` has `status`.
pub async fn wait_host(s: &Server, name: &str, status: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let h = host(s, name).await;
        if h["status"] == status {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "host {name} never {status}: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until instance `id` shows `host_status` `want`; its row.
pub async fn wait_host_status(s: &Server, id: &str, want: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let row = instance(s, id).await;
        if row["host_status"] == want {
            return row;
        }
        assert!(std::time::Instant::now() < deadline, "{id} never had host_status {want}: {row}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fails unless this runs as root with what real networks need (iproute2, nftables, dnsmasq,
/// conntrack, QEMU), and `more` tools (`(tool, version flag, package)`).
pub fn require_network_tools(more: &[(&str, &str, &str)]) {
    // SAFETY: getuid(2) has no preconditions.
    assert_eq!(unsafe { libc::getuid() }, 0, "real networks need root (namespaces, nftables, taps)");
    let base = [
        ("ip", "-V", "iproute2"),
        ("nft", "--version", "nftables"),
        ("dnsmasq", "--version", "dnsmasq-base"),
        ("conntrack", "--version", "conntrack"),
    ];
    for (tool, arg, package) in base.iter().chain(more) {
        let ok = std::process::Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success());
        assert!(ok, "{tool} is missing: apt-get install -y {package}");
    }
    crate::guest::require_qemu();
}

/// Runs `program` and returns its output; fails with its errors when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops the dnsmasq of each real network whose run directory under `run_dir` starts with
/// `prefix` (the networks of one test) and removes the directory.
pub fn remove_networks(run_dir: &str, prefix: &str) {
    let Ok(dirs) = std::fs::read_dir(run_dir) else { return };
    for d in dirs.flatten().filter(|d| d.file_name().to_string_lossy().starts_with(prefix)) {
        if let Ok(pid) = std::fs::read_to_string(d.path().join("dnsmasq.pid")) {
            let pid: i32 = pid.trim().parse().unwrap_or(0);
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if pid > 0 && comm.trim() == "dnsmasq" {
                // SAFETY: kill(2) on the dnsmasq of this test's network.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let _ = std::fs::remove_dir_all(d.path());
    }
}

/// Deletes the network namespaces `doomed` picks by name.
pub fn remove_namespaces(doomed: impl Fn(&str) -> bool) {
    let list = std::process::Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    for line in String::from_utf8_lossy(&list).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if doomed(name) {
            let _ = std::process::Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
