//! The console port of the driver.

use super::*;

/// The console port: the sockets QEMU serves, and the SSH forward and stop reason of the view.
#[async_trait::async_trait]
impl ConsoleBroker for QemuDriver {
    /// The machine's serial socket, serial log and VNC socket, once the machine exists.
    async fn console(&self, id: &str) -> Option<ConsoleAccess> {
        let paths = self.vm(id).ok()?;
        if !paths.dir.exists() {
            return None;
        }
        Some(ConsoleAccess::Sockets(ConsoleEndpoints {
            serial: Some(paths.serial()),
            serial_log: Some(paths.serial_log()),
            vnc: Some(paths.vnc()),
        }))
    }

    async fn info(&self, id: &str) -> MachineInfo {
        let Ok(paths) = self.vm(id) else {
            return MachineInfo::default();
        };
        let Ok(Some(rec)) = self.load(id, &paths) else {
            return MachineInfo::default();
        };
        // On a real network the machine is reached at its addresses, not a forwarded port.
        let ssh_port = if self.networks.is_some() && rec.spec.network.is_some() { None } else { Some(rec.ssh_port) };
        let mut info = MachineInfo { ssh_port, error: None };
        // Without waiting behind a long call (a soft reboot).
        if let Ok(_guard) = self.lock_of(id).try_lock_owned()
            && let Some((_, Some(status))) = self.observe(&paths).await
        {
            info.error = match status.as_str() {
                "guest-panicked" => Some("the guest operating system crashed (kernel panic); reboot it".into()),
                "internal-error" => Some("QEMU stopped the machine on an internal error; reboot it".into()),
                "io-error" => Some("the machine is paused on a disk I/O error (is the host disk full?)".into()),
                _ => None,
            };
        }
        info
    }
}
