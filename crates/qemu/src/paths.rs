//! Where things live under the data directory (the layout in `docs/qemu.md`), and the check that
//! keeps ids from escaping it.

use std::path::{Path, PathBuf};

/// The files of one machine, under `<data>/vms/<instance_id>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPaths {
    pub dir: PathBuf,
}

impl VmPaths {
    pub fn new(dir: impl Into<PathBuf>) -> VmPaths {
        VmPaths { dir: dir.into() }
    }

    pub fn spec(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    pub fn root_disk(&self) -> PathBuf {
        self.dir.join("root.qcow2")
    }
    pub fn seed(&self) -> PathBuf {
        self.dir.join("seed.iso")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn serial(&self) -> PathBuf {
        self.dir.join("serial.sock")
    }
    pub fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    pub fn vnc(&self) -> PathBuf {
        self.dir.join("vnc.sock")
    }
    /// The volumes attached to the machine, in attach order (see `driver`).
    pub fn volumes(&self) -> PathBuf {
        self.dir.join("volumes.json")
    }
}

/// The data directory of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn vms(&self) -> PathBuf {
        self.root.join("vms")
    }

    pub fn vm(&self, instance_id: &str) -> VmPaths {
        VmPaths::new(self.vms().join(instance_id))
    }

    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    pub fn volume(&self, volume_id: &str) -> PathBuf {
        self.volumes().join(format!("{volume_id}.qcow2"))
    }
}

/// The longest instance id: it only names a directory and QEMU's `-name`.
pub const MAX_INSTANCE_ID: usize = 64;
/// The longest volume id: QEMU caps node names at 31 bytes, and a volume's is `vol-<id>`.
pub const MAX_VOLUME_ID: usize = 27;

/// Ids become file names, QEMU node names and device ids, so only plain ids are accepted:
/// ASCII letters, digits, `-` and `_`, starting with a letter, at most `max` characters. The
/// store's ids (`INSTANCE-…`, `BS-…`, 22 base62 characters after the prefix) fit.
pub fn check_id(what: &str, id: &str, max: usize) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= max
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} id {id:?} cannot name a QEMU machine: use ASCII letters, digits, '-' and '_', starting with a \
             letter, at most {max} characters"
        ))
    }
}

/// A path as text for QEMU's `key=value,...` options, where a comma is written twice.
pub fn opt_path(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("instance", "INSTANCE-0Q3fZ1kd8Jx0abcdefghij", MAX_INSTANCE_ID).is_ok());
        assert!(check_id("volume", "BS-0Q3fZ1kd8Jx0abcdefghijkl", MAX_VOLUME_ID).is_ok());
        assert!(check_id("volume", "BSX-0Q3fZ1kd8Jx0abcdefghijkl", MAX_VOLUME_ID).is_err(), "28 is too long");
        for bad in ["../etc", "a/b", "", "1abc", "a b", "a,b", "가나"] {
            assert!(check_id("instance", bad, MAX_INSTANCE_ID).is_err(), "{bad:?}");
        }
        assert!(check_id("instance", "vm_1-a", MAX_INSTANCE_ID).is_ok());
    }

    #[test]
    fn commas_are_doubled() {
        assert_eq!(opt_path(Path::new("/a,b/c")), "/a,,b/c");
    }
}
