//! Setup shared by the hypervisor-host tests (`tests/hosts*.rs`, `tests/qemu_net.rs`): adding a
//! host through the operator CLI and starting an `openwinv agent` that must register.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Server;

/// The zone every host test places its hosts in.
pub const ZONE: &str = "KR1-Z01";

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
