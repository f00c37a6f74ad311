//! Helpers for the tests that boot the test guest of `scripts/build-test-image` under the QEMU
//! driver (`tests/qemu.rs`, `tests/qemu_net.rs`): the image, QEMU's processes, the serial log read
//! forward, a shell on the serial console, and sockets opened inside a network namespace.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Server;

/// Longest wait for one line of the guest: a TCG boot on a loaded two-core machine.
pub const BOOT: Duration = Duration::from_secs(120);

/// The test guest's directory (`OPENWINV_TEST_IMAGE`); fails saying how to build it.
pub fn image_dir() -> PathBuf {
    match std::env::var_os("OPENWINV_TEST_IMAGE") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "OPENWINV_TEST_IMAGE is not set. These tests boot the test guest: build it with \
             `scripts/build-test-image target/test-image`, then run with \
             OPENWINV_TEST_IMAGE=$PWD/target/test-image (scripts/test does both)"
        ),
    }
}

/// The accelerator the guests run on (`OPENWINV_TEST_ACCEL`, default TCG).
pub fn accel() -> String {
    std::env::var("OPENWINV_TEST_ACCEL").unwrap_or_else(|_| "tcg".into())
}

/// Fails, naming the fix, unless QEMU and the test image are there.
pub fn require_qemu() {
    for (tool, package) in [("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils")] {
        let ok = std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(ok, "{tool} is missing: apt-get install -y {package}");
    }
    let dir = image_dir();
    for f in ["vmlinuz", "initrd.img", "root.raw", "cmdline"] {
        assert!(
            dir.join(f).is_file(),
            "{}/{f} is missing: run scripts/build-test-image {}",
            dir.display(),
            dir.display()
        );
    }
}

/// Imports the test guest as each of `images` (`openwinv admin images import`).
pub async fn import_test_image(s: &Server, images: &[&str]) {
    let dir = image_dir();
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).expect("cmdline");
    let path = |f: &str| dir.join(f).to_str().expect("UTF-8 path").to_owned();
    for image in images {
        let (code, out, err) = s
            .cli(&[
                "admin",
                "images",
                "import",
                image,
                "--kernel",
                &path("vmlinuz"),
                "--initrd",
                &path("initrd.img"),
                "--cmdline",
                cmdline.trim(),
                "--root-disk",
                &path("root.raw"),
            ])
            .await;
        assert_eq!(code, 0, "admin images import {image}: {out}{err}");
    }
}

/// The pid in `<vm>/qemu.pid` if that process lives and is this machine's QEMU (its command line
/// names the pidfile: a reused pid is not mistaken for it).
pub fn live_qemu(vm: &Path) -> Option<i32> {
    let pidfile = vm.join("qemu.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    // A zombie has an empty command line: it is gone.
    cmdline.contains(pidfile.to_str()?).then_some(pid)
}

/// Kills every QEMU of a server's data directory: they are daemons of their own, which outlive
/// the server by design. For a test's `Drop`.
pub fn kill_qemus(s: &Server) {
    kill_qemus_in(&s.data_path("vms"));
}

/// Kills every QEMU whose machine directory is in `vms` (a server's or an agent's `vms`
/// directory). For a test's `Drop`.
pub fn kill_qemus_in(vms: &Path) {
    let Ok(vms) = std::fs::read_dir(vms) else { return };
    for vm in vms.flatten() {
        if let Some(pid) = live_qemu(&vm.path()) {
            // SAFETY: kill(2) on a QEMU of this test's data directory (checked by live_qemu).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Polls `f` every 100 ms for at most `within`; whether it held.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A machine's serial console log, read forward: each wait looks only at what came after the
/// previous match.
pub struct SerialLog {
    pub path: PathBuf,
    pub seen: usize,
    pub since: Instant,
    /// What the last `boot` read, from its `boot <n>` line to `ready`.
    pub last_boot: String,
}

pub fn serial_log(path: PathBuf) -> SerialLog {
    SerialLog { path, seen: 0, since: Instant::now(), last_boot: String::new() }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl SerialLog {
    /// Waits for a line containing `needle`; returns it from the needle on (after a reset the
    /// first line may follow the shell's prompt), without `\r`.
    pub async fn wait(&mut self, needle: &str) -> String {
        self.wait_with_text(needle).await.1
    }

    /// Like `wait`, and also returns what came before the matching line since the last match.
    async fn wait_with_text(&mut self, needle: &str) -> (String, String) {
        let start = Instant::now();
        loop {
            let bytes = std::fs::read(&self.path).unwrap_or_default();
            if let Some(rest) = bytes.get(self.seen..)
                && let Some(at) = find(rest, needle.as_bytes())
            {
                let end = rest[at..].iter().position(|&b| b == b'\n').map_or(rest.len(), |i| at + i);
                let before = String::from_utf8_lossy(&rest[..at]).replace('\r', "");
                let line = String::from_utf8_lossy(&rest[at..end]).trim_end_matches('\r').to_owned();
                self.seen += end;
                return (before, line);
            }
            if start.elapsed() > BOOT {
                let tail = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(3000)..]).into_owned();
                panic!(
                    "no {needle:?} on the serial console ({}) within {BOOT:?}; it ends with:\n{tail}",
                    self.path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for `openwinv-guest: <what> ` and returns the rest of that line.
    pub async fn value(&mut self, what: &str) -> String {
        let prefix = format!("openwinv-guest: {what} ");
        let line = self.wait(&prefix).await;
        line[prefix.len()..].to_owned()
    }

    /// Waits for the next boot's `boot <n>` … `ready`; returns n (and keeps the lines in
    /// `last_boot`), and logs how long it took since the last `mark`.
    pub async fn boot(&mut self, what: &str) -> u32 {
        let n = self.value("boot").await.parse().expect("boot counter");
        let from = self.seen;
        self.wait("openwinv-guest: ready").await;
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        self.last_boot =
            String::from_utf8_lossy(&bytes[from.min(bytes.len())..self.seen.min(bytes.len())]).into_owned();
        eprintln!("{what}: boot {n} ready {:.1} s after the request", self.since.elapsed().as_secs_f64());
        n
    }

    /// Restarts the clock `boot` reports from.
    pub fn mark(&mut self) {
        self.since = Instant::now();
    }
}

/// A shell on a machine's serial console: the test connects to QEMU's serial socket
/// (`<vm>/serial.sock`, the one the browser console uses) and types, and reads the answers from
/// the serial log. Every command ends with a marker that only the shell's expansion can print,
/// so the typed line (echoed by the terminal) never matches it.
pub struct Console {
    socket: UnixStream,
    pub log: SerialLog,
    n: u32,
    name: String,
}

/// What a command printed and its exit status.
#[derive(Debug)]
pub struct Ran {
    pub status: i32,
    pub output: String,
}

impl Console {
    /// Connects to the serial socket of the machine in `vm` (its directory) once the guest is
    /// `ready`; `log` is its serial log, read forward by the caller so far.
    pub async fn open(name: &str, vm: &Path, mut log: SerialLog) -> Console {
        log.wait("openwinv-guest: ready").await;
        let socket = UnixStream::connect(vm.join("serial.sock"))
            .unwrap_or_else(|e| panic!("{name}: cannot connect to {}: {e}", vm.join("serial.sock").display()));
        // QEMU sends the guest's output to us as well as to the log, and holds the guest's UART
        // while we do not read: a thread reads and drops it (the log file has it all).
        let mut reader = socket.try_clone().expect("a second handle on the serial socket");
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            while matches!(reader.read(&mut sink), Ok(k) if k > 0) {}
        });
        let mut c = Console { socket, log, n: 0, name: name.to_owned() };
        let first = c.sh("true").await;
        assert_eq!(first.status, 0, "{name}: the console shell answers: {first:?}");
        c
    }

    /// Runs `cmd` in the guest's shell; what it printed (after the typed line) and its status.
    pub async fn sh(&mut self, cmd: &str) -> Ran {
        self.n += 1;
        let n = self.n;
        let line = format!("{cmd}; echo \"@@$(({n}+0))-rc-$?\"\r");
        self.socket
            .write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("{}: typing on the serial console: {e}", self.name));
        let needle = format!("@@{n}-rc-");
        let (before, marker) = self.log.wait_with_text(&needle).await;
        let status = marker[needle.len()..].trim().parse().unwrap_or(-1);
        // The output starts after the typed line's echo (which ends with our `\r`, now `\n`).
        let typed_end = "-rc-$?\"\n";
        let output = match before.find(typed_end) {
            Some(i) => before[i + typed_end.len()..].to_owned(),
            None => before,
        };
        Ran { status, output }
    }

    /// Runs `cmd`, which must succeed; its output.
    pub async fn ok(&mut self, cmd: &str) -> String {
        let r = self.sh(cmd).await;
        assert_eq!(r.status, 0, "{}: `{cmd}` failed:\n{}", self.name, r.output);
        r.output
    }
}

/// Runs `f` on a short-lived thread inside network namespace `/run/netns/<ns>`: a socket it
/// opens belongs to that namespace (and keeps working from any thread afterwards).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let path = Path::new("/run/netns").join(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)?;
        // SAFETY: setns(2) on an open namespace file; only this short-lived thread changes namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the thread panicked")))
}

/// Connects from namespace `ns` to `addr` (TCP, giving up after `timeout`) and reads what the
/// peer sends until it closes: `Err` when the connection is refused or never answered.
pub async fn tcp_from(ns: &str, addr: std::net::SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let ns = ns.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = in_netns(&ns, move || std::net::TcpStream::connect_timeout(&addr, timeout))?;
        stream.set_read_timeout(Some(timeout))?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })
    .await
    .expect("the connecting task")
}

/// A TCP listener in namespace `ns` on `addr` that answers `greeting` to every connection and
/// reports each peer's address on the returned channel.
pub fn tcp_server_in(
    ns: &str,
    addr: std::net::SocketAddr,
    greeting: &'static str,
) -> std::sync::mpsc::Receiver<std::net::SocketAddr> {
    let listener = in_netns(ns, move || std::net::TcpListener::bind(addr))
        .unwrap_or_else(|e| panic!("listening on {addr} in {ns}: {e}"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            if let Ok(peer) = conn.peer_addr() {
                let _ = conn.write_all(greeting.as_bytes());
                if tx.send(peer).is_err() {
                    return;
                }
            }
        }
    });
    rx
}
