//! The console broker: the one port through which the HTTP layer reaches a machine (its serial
//! console and screen, and the facts shown as extensions of the instance view). Handlers never
//! call a [`ComputeDriver`](crate::ComputeDriver); they ask this port, which the simulated and the
//! QEMU drivers implement.
//!
//! A real machine's consoles are Unix sockets the server proxies ([`ConsoleAccess::Sockets`]). A
//! simulated machine has none: its serial console is played by [`SimulatedSerial`] from the facts
//! the control plane records of the instance ([`MachineFacts`]), so the same page works everywhere.
//!
//! [`serial`] proxies them to a viewer, the same for the server's browser console and the agent's
//! console sessions: one shared serial connection per machine ([`SerialHub`]), the screen's byte
//! pipe and the simulated console played.

use serde::{Deserialize, Serialize};

pub mod serial;

pub use serial::{ConsoleSocket, SerialHub};

/// Where a machine's consoles are, for the server's browser console to proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleEndpoints {
    /// A Unix stream socket carrying the serial console (raw bytes both ways).
    pub serial: Option<std::path::PathBuf>,
    /// A file with everything the serial console printed so far.
    pub serial_log: Option<std::path::PathBuf>,
    /// A Unix stream socket speaking RFB (VNC) for the screen.
    pub vnc: Option<std::path::PathBuf>,
}

/// Facts about a machine a user sees as extensions of the instance view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// The host port forwarded to the guest's SSH port (user-mode networking).
    pub ssh_port: Option<u16>,
    /// Why the machine is in error, when the driver knows.
    pub error: Option<String>,
}

/// How a machine's consoles are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleAccess {
    /// Proxy these sockets (a real machine).
    Sockets(ConsoleEndpoints),
    /// A simulated machine: its serial console is played, it has no screen.
    Simulated(SimulatedSerial),
}

impl ConsoleAccess {
    /// Whether the machine has a screen to show.
    pub fn has_screen(&self) -> bool {
        matches!(self, ConsoleAccess::Sockets(e) if e.vnc.is_some())
    }
}

/// What the control plane records of an instance, as the simulated serial console prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineFacts {
    pub instance_id: String,
    pub hostname: String,
    /// The image's catalog name (its id when the catalog no longer has it).
    pub image: String,
    pub flavor_id: String,
    /// `(fingerprint, name)` of each authorized SSH key.
    pub ssh_keys: Vec<(String, String)>,
    /// The user script's name (its id when the script is gone).
    pub user_script: Option<String>,
    pub private_ip: Option<String>,
    /// The compiled firewall rule set as text, when a firewall is attached.
    pub firewall: Option<String>,
}

/// The simulated machine's serial console: a boot log, then what is typed, echoed as a terminal
/// in cooked mode would.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulatedSerial;

impl SimulatedSerial {
    /// The serial output of the simulated machine: boot lines, its keys, its user script, its
    /// address and firewall, and a login prompt. Lines end with `\n`.
    pub fn log(&self, m: &MachineFacts) -> String {
        let mut lines = vec![
            "[    0.000000] Linux version 6.1.0-sim (openwinv simulated hypervisor)".to_owned(),
            format!("[    0.412000] Booting {} on {}", m.image, m.flavor_id),
            format!("[    1.020000] cloud-init: instance-id {}", m.instance_id),
            format!("[    1.021000] cloud-init: hostname {}", m.hostname),
        ];
        for (fingerprint, name) in &m.ssh_keys {
            lines.push(format!("[    1.100000] cloud-init: authorized key {fingerprint} ({name})"));
        }
        if let Some(name) = &m.user_script {
            lines.push(format!("[    1.200000] cloud-init: running user script {name}"));
        }
        if let Some(ip) = &m.private_ip {
            lines.push(format!("[    1.300000] eth0: {ip}/16"));
        }
        if let Some(t) = &m.firewall {
            lines.extend(t.lines().map(|l| format!("[    1.400000] firewall: {l}")));
        }
        lines.push(format!("{} login:", m.hostname));
        lines.join("\n")
    }

    /// What a terminal in cooked mode shows for typed bytes: Enter starts a line, Backspace erases.
    pub fn echo(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        for b in input {
            match b {
                b'\r' => out.extend_from_slice(b"\r\n"),
                0x7f => out.extend_from_slice(b"\x08 \x08"),
                _ => out.push(*b),
            }
        }
        out
    }
}

/// The port between the HTTP layer and the machines: consoles and view extensions. Read-only:
/// nothing here changes a machine (changes are operations, run by saga steps).
#[async_trait::async_trait]
pub trait ConsoleBroker: Send + Sync + 'static {
    /// How to reach the machine's consoles now; `None` when it has none (not running).
    async fn console(&self, instance_id: &str) -> Option<ConsoleAccess>;
    /// Extension facts for the instance view.
    async fn info(&self, instance_id: &str) -> MachineInfo {
        let _ = instance_id;
        MachineInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_cooks_input() {
        assert_eq!(SimulatedSerial.echo(b"ls\r"), b"ls\r\n");
        assert_eq!(SimulatedSerial.echo(b"a\x7f"), b"a\x08 \x08");
    }

    #[test]
    fn the_log_names_what_the_instance_records() {
        let facts = MachineFacts {
            instance_id: "INSTANCE-1".into(),
            hostname: "web".into(),
            image: "Ubuntu 24.04".into(),
            flavor_id: "FLV-1".into(),
            ssh_keys: vec![("SHA256:abc".into(), "laptop".into())],
            user_script: Some("hello".into()),
            private_ip: Some("10.16.0.5".into()),
            firewall: Some("chain in {\n  drop\n}".into()),
        };
        let log = SimulatedSerial.log(&facts);
        assert!(log.starts_with("[    0.000000] Linux version 6.1.0-sim"), "{log}");
        for want in [
            "Booting Ubuntu 24.04 on FLV-1",
            "authorized key SHA256:abc (laptop)",
            "running user script hello",
            "eth0: 10.16.0.5/16",
            "firewall:   drop",
        ] {
            assert!(log.contains(want), "{want} missing from {log}");
        }
        assert!(log.ends_with("web login:"), "{log}");
    }
}
