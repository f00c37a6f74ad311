//! KVM or TCG.
//!
//! `/dev/kvm` existing is no proof that KVM guests run: under some nested setups QEMU starts,
//! and the guest then crawls (every exit costs milliseconds, a Linux kernel never reaches its
//! console) or, with `-cpu host`, QEMU aborts on an MSR it cannot set. So [`Accel::Auto`] boots a
//! 512-byte probe under KVM once per process: the probe switches the CPU to 64-bit long mode (the
//! point where the broken setups stall) and asks QEMU to exit with a known status. If that does
//! not happen within [`PROBE_DEADLINE`], every machine of this process runs under TCG, and the
//! reason is logged.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// KVM when a probe guest runs well under it, else TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl FromStr for Accel {
    type Err = String;

    fn from_str(s: &str) -> Result<Accel, String> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!("unknown accelerator {other:?}: use auto, kvm or tcg")),
        }
    }
}

/// The accelerator machines actually run with (`-accel <name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    Kvm,
    Tcg,
}

impl Accelerator {
    pub fn name(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

/// How long the probe may take under KVM. A working KVM runs it in well under a second (TCG
/// takes about 0.2 s); the broken nested setup seen in development took 5.5 s.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(3);

/// The exit status QEMU reports when the probe writes 0x2a to the `isa-debug-exit` port 0xf4:
/// `(0x2a << 1) | 1`.
const PROBE_EXIT_STATUS: i32 = 85;

/// The probe's boot sector before the zero padding and the `55 aa` signature. Assembled with
/// `as --32 probe.S && ld -m elf_i386 -Ttext 0x7c00 --oformat binary` from:
///
/// ```text
///     .code16                      # SeaBIOS jumps here, real mode, at 0x7c00
///     cli
///     xorw %ax, %ax ; movw %ax, %ds ; movw %ax, %es ; movw %ax, %ss ; movw $0x7c00, %sp
///     cld ; movw $0x1000, %di ; movw $0x1800, %cx ; rep stosw      # zero 0x1000..0x3fff
///     movw $0x2003, 0x1000         # PML4[0] -> PDPT at 0x2000
///     movw $0x3003, 0x2000         # PDPT[0] -> PD at 0x3000
///     movw $0x0083, 0x3000         # PD[0]: the first 2 MiB, identity mapped
///     inb $0x92, %al ; orb $2, %al ; outb %al, $0x92                  # A20
///     movl $0x20, %eax ; movl %eax, %cr4                             # PAE
///     movl $0x1000, %eax ; movl %eax, %cr3
///     movl $0xC0000080, %ecx ; rdmsr ; orl $0x100, %eax ; wrmsr       # EFER.LME
///     lgdtl gdtr
///     movl %cr0, %eax ; orl $0x80000001, %eax ; movl %eax, %cr0      # PG + PE
///     ljmpl $0x08, $long_mode
///     .code64
/// long_mode:
///     movw $0x10, %ax ; movw %ax, %ds ; movw %ax, %ss
///     movb $0x2a, %al ; outb %al, $0xf4                              # isa-debug-exit
/// 1:  hlt ; jmp 1b
///     .align 8
/// gdt: .quad 0, 0x00209A0000000000, 0x0000920000000000
/// gdtr: .word gdtr - gdt - 1 ; .long gdt
/// ```
const PROBE_CODE: [u8; 148] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xfc, 0xbf, 0x00, 0x10, 0xb9, 0x00, 0x18,
    0xf3, 0xab, 0xc7, 0x06, 0x00, 0x10, 0x03, 0x20, 0xc7, 0x06, 0x00, 0x20, 0x03, 0x30, 0xc7, 0x06, 0x00, 0x30, 0x83,
    0x00, 0xe4, 0x92, 0x0c, 0x02, 0xe6, 0x92, 0x66, 0xb8, 0x20, 0x00, 0x00, 0x00, 0x0f, 0x22, 0xe0, 0x66, 0xb8, 0x00,
    0x10, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x66, 0x0d, 0x00, 0x01, 0x00,
    0x00, 0x0f, 0x30, 0x66, 0x0f, 0x01, 0x16, 0x90, 0x7c, 0x0f, 0x20, 0xc0, 0x66, 0x0d, 0x01, 0x00, 0x00, 0x80, 0x0f,
    0x22, 0xc0, 0x66, 0xea, 0x69, 0x7c, 0x00, 0x00, 0x08, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xd0, 0xb0,
    0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x9a, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x92, 0x00, 0x00, 0x17, 0x00, 0x78, 0x7c,
];

/// The probe as a one-sector raw disk.
pub fn probe_disk() -> [u8; 512] {
    let mut sector = [0u8; 512];
    sector[..PROBE_CODE.len()].copy_from_slice(&PROBE_CODE);
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

/// The argv (after the binary) that boots the probe disk under `accel`.
pub fn probe_args(disk: &Path, accel: Accelerator) -> Vec<String> {
    let disk = crate::paths::opt_path(disk);
    [
        "-machine",
        "pc",
        "-accel",
        accel.name(),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-m",
        "16",
        "-drive",
        &format!("file={disk},format=raw,if=ide"),
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

static AUTO: OnceCell<Accelerator> = OnceCell::const_new();

impl Accel {
    /// The accelerator to run machines with. `Auto` probes once per process (the first caller
    /// waits up to [`PROBE_DEADLINE`]), later calls return the cached answer.
    pub async fn resolve(self, qemu_binary: &Path) -> Accelerator {
        match self {
            Accel::Kvm => Accelerator::Kvm,
            Accel::Tcg => Accelerator::Tcg,
            Accel::Auto => {
                *AUTO
                    .get_or_init(|| async {
                        match probe_kvm(qemu_binary).await {
                            Ok(elapsed) => {
                                tracing::info!(
                                    elapsed_ms = elapsed.as_millis() as u64,
                                    "KVM works; machines run under KVM"
                                );
                                Accelerator::Kvm
                            }
                            Err(why) => {
                                tracing::warn!(reason = %why, "machines run under TCG (software emulation, slower)");
                                Accelerator::Tcg
                            }
                        }
                    })
                    .await
            }
        }
    }
}

/// Boots the probe under KVM; `Ok` with the time it took, or why KVM is not usable.
pub async fn probe_kvm(qemu_binary: &Path) -> Result<Duration, String> {
    let kvm = Path::new("/dev/kvm");
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(kvm) {
        return Err(format!("/dev/kvm cannot be opened ({e})"));
    }
    let disk = ProbeDisk::write().map_err(|e| format!("could not write the KVM probe disk: {e}"))?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(qemu_binary)
        .args(probe_args(&disk.0, Accelerator::Kvm))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", qemu_binary.display()))?;
    let mut stderr = child.stderr.take();
    let status = match tokio::time::timeout(PROBE_DEADLINE, child.wait()).await {
        Ok(status) => status.map_err(|e| format!("could not wait for the KVM probe: {e}"))?,
        Err(_) => {
            let _ = child.kill().await;
            return Err(format!(
                "a KVM guest did not reach 64-bit mode within {} s (nested virtualization that cannot run guests \
                 at speed?)",
                PROBE_DEADLINE.as_secs()
            ));
        }
    };
    let elapsed = started.elapsed();
    if status.code() == Some(PROBE_EXIT_STATUS) {
        return Ok(elapsed);
    }
    let mut text = String::new();
    if let Some(err) = stderr.as_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(1), err.read_to_string(&mut text)).await;
    }
    let text = text.trim().lines().last().unwrap_or("no message").to_owned();
    Err(format!("the KVM probe guest failed ({status}): {text}"))
}

/// The probe's disk file, removed when dropped.
struct ProbeDisk(PathBuf);

impl ProbeDisk {
    fn write() -> std::io::Result<ProbeDisk> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("openwinv-kvm-probe-{}-{n}.img", std::process::id()));
        std::fs::write(&path, probe_disk())?;
        Ok(ProbeDisk(path))
    }
}

impl Drop for ProbeDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!("auto".parse::<Accel>(), Ok(Accel::Auto));
        assert_eq!("kvm".parse::<Accel>(), Ok(Accel::Kvm));
        assert_eq!("tcg".parse::<Accel>(), Ok(Accel::Tcg));
        assert!("xen".parse::<Accel>().is_err());
    }

    #[test]
    fn probe_is_a_boot_sector() {
        let d = probe_disk();
        assert_eq!(&d[510..], &[0x55, 0xaa]);
        assert_eq!(d[0], 0xfa, "starts with cli");
    }

    /// Whatever the host, `Auto` decides within the probe's deadline and then answers from
    /// its cache.
    #[tokio::test]
    async fn auto_decides_once() {
        let qemu = Path::new("qemu-system-x86_64");
        let started = Instant::now();
        let first = Accel::Auto.resolve(qemu).await;
        assert!(started.elapsed() < PROBE_DEADLINE + Duration::from_secs(2), "{:?}", started.elapsed());
        let again = Instant::now();
        assert_eq!(Accel::Auto.resolve(qemu).await, first);
        assert!(again.elapsed() < Duration::from_millis(100), "cached");
        assert_eq!(Accel::Tcg.resolve(qemu).await, Accelerator::Tcg);
    }

    /// The probe itself, under TCG: proves the payload reaches long mode and exits as expected,
    /// wherever QEMU is installed.
    #[tokio::test]
    async fn probe_runs_under_tcg() {
        let qemu = Path::new("qemu-system-x86_64");
        if std::process::Command::new(qemu).arg("--version").output().is_err() {
            panic!("qemu-system-x86_64 is not installed: apt-get install qemu-system-x86");
        }
        let disk = ProbeDisk::write().expect("probe disk");
        let out = tokio::process::Command::new(qemu)
            .args(probe_args(&disk.0, Accelerator::Tcg))
            .output()
            .await
            .expect("run qemu");
        assert_eq!(out.status.code(), Some(PROBE_EXIT_STATUS), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
