//! The QEMU command line, byte for byte: every change to what guests see shows up as a diff of
//! `tests/golden/*.txt`. After an intended change, rewrite them with
//! `OPENWINV_UPDATE_GOLDEN=1 cargo test -p openwinv-qemu --test golden` and review the diff.

use std::path::{Path, PathBuf};

use openwinv_qemu::Accelerator;
use openwinv_qemu::cmdline::{self, KernelBoot, VmConfig, VolumeAttachment};
use openwinv_qemu::paths::DataDir;

fn data() -> DataDir {
    DataDir::new("/var/lib/openwinv")
}

fn base(id: &str) -> VmConfig {
    VmConfig {
        instance_id: id.into(),
        paths: data().vm(id),
        vcpu: 2,
        memory_mb: 2048,
        accel: Accelerator::Kvm,
        kernel: None,
        ssh_port: 40022,
        tap: None,
        volumes: vec![],
    }
}

fn check(name: &str, config: &VmConfig) {
    let text = cmdline::render("qemu-system-x86_64", &cmdline::argv(config));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.txt"));
    if std::env::var_os("OPENWINV_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}); create it with OPENWINV_UPDATE_GOLDEN=1", path.display()));
    assert!(
        text == want,
        "{name}: the command line changed.\n--- want ({})\n{want}\n--- got\n{text}\nIf intended, rerun with \
         OPENWINV_UPDATE_GOLDEN=1 and review the diff.",
        path.display()
    );
}

#[test]
fn disk_image() {
    check("disk_image", &base("INSTANCE-0Q3fZ1kd8Jx0aaaaaaaaaaaa"));
}

#[test]
fn kernel_tcg() {
    let mut c = base("INSTANCE-0Q3fZ1kd8Jx0bbbbbbbbbbbb");
    c.accel = Accelerator::Tcg;
    c.vcpu = 1;
    c.memory_mb = 1024;
    c.kernel = Some(KernelBoot {
        kernel: "/var/lib/openwinv/images/IMG-test/vmlinuz".into(),
        initrd: Some("/var/lib/openwinv/images/IMG-test/initrd.img".into()),
        cmdline: "console=ttyS0 panic=-1 quiet".into(),
    });
    check("kernel_tcg", &c);
}

#[test]
fn kernel_without_initrd_and_volumes() {
    let mut c = base("INSTANCE-0Q3fZ1kd8Jx0cccccccccccc");
    c.kernel = Some(KernelBoot { kernel: "/boot/vmlinuz".into(), initrd: None, cmdline: "console=ttyS0".into() });
    c.volumes = ["BS-0Q3fZ1kd8Jx0dddddddddddd", "BS-0Q3fZ1kd8Jx0eeeeeeeeeeee"]
        .iter()
        .map(|v| VolumeAttachment { volume_id: v.to_string(), path: data().volume(v) })
        .collect();
    check("kernel_volumes", &c);
}

#[test]
fn commas_in_paths_are_escaped() {
    let mut c = base("INSTANCE-x");
    c.paths = DataDir::new(PathBuf::from("/srv/a,b")).vm("INSTANCE-x");
    check("commas", &c);
}

#[test]
fn tap_on_a_real_network() {
    let mut c = base("INSTANCE-0Q3fZ1kd8Jx0tttttttttttt");
    c.tap = Some(cmdline::TapNic { fd: 3, mac: "02:aa:bb:cc:dd:ee".into() });
    check("tap_on_a_real_network", &c);
}
