//! Running the programs the networks need (`ip`, `nft`, `bridge`, `dnsmasq`, …), in a namespace
//! or in this process's own.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{NetError, Result};

/// The programs the networks need, with their Debian packages.
pub const TOOLS: [(&str, &str); 5] = [
    ("ip", "iproute2"),
    ("bridge", "iproute2"),
    ("nft", "nftables"),
    ("dnsmasq", "dnsmasq-base"),
    ("conntrack", "conntrack"),
];

fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Fails, naming the package, when a program the networks run is missing.
pub fn check_tools() -> Result<()> {
    for (program, package) in TOOLS {
        if find_program(program).is_none() {
            return Err(NetError::Missing { program, package });
        }
    }
    Ok(())
}

async fn run(program: &str, args: &[String], stdin: Option<&str>) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| NetError::Io { context: format!("starting `{command}`"), source: e })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| NetError::Io { context: format!("writing to `{command}`"), source: e })?;
    }
    let out = child.wait_with_output().await.map_err(|e| NetError::Io { context: command.clone(), source: e })?;
    if !out.status.success() {
        return Err(NetError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `ip` in namespace `ns` (`None`: this process's own).
pub(super) async fn ip_in(ns: Option<&str>, args: &[&str]) -> Result<String> {
    let mut a = match ns {
        Some(ns) => strings(&["-n", ns]),
        None => Vec::new(),
    };
    a.extend(strings(args));
    run("ip", &a, None).await
}

/// Another program in namespace `ns`.
pub(super) async fn exec_in(ns: Option<&str>, program: &str, args: &[String], stdin: Option<&str>) -> Result<String> {
    match ns {
        Some(ns) => {
            let mut a = strings(&["netns", "exec", ns, program]);
            a.extend(args.iter().cloned());
            run("ip", &a, stdin).await
        }
        None => run(program, args, stdin).await,
    }
}

/// `bridge` (iproute2) in namespace `ns`.
pub(super) async fn bridge_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut a = strings(&["-n", ns]);
    a.extend(strings(args));
    run("bridge", &a, None).await
}

pub(super) async fn nft_apply(ns: Option<&str>, text: &str) -> Result<()> {
    exec_in(ns, "nft", &strings(&["-f", "-"]), Some(text)).await.map(|_| ())
}

pub(super) async fn link_exists(ns: Option<&str>, dev: &str) -> bool {
    ip_in(ns, &["link", "show", "dev", dev]).await.is_ok()
}

pub(super) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let context = context.into();
    move |source| NetError::Io { context, source }
}

pub(super) fn dnsmasq_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("dnsmasq.pid")).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dnsmasq").then_some(pid)
}

pub(super) fn stop_dnsmasq(dir: &Path) {
    if let Some(pid) = dnsmasq_pid(dir) {
        // SAFETY: kill(2) on a pid we checked is our dnsmasq.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}
