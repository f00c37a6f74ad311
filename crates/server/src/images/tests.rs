//! Image files: boot paths, probing, listing.

use openwinv_wire::images::ImageBoot;

use super::*;
use crate::catalog::{CatalogFile, DEFAULT_CATALOG};

fn image(boot: ImageBoot) -> ImageDef {
    let mut image = CatalogFile::parse(DEFAULT_CATALOG).unwrap().images.remove(0);
    image.boot = Some(boot);
    image
}

#[test]
fn boot_paths_are_absolute_under_the_image_directory() {
    let store = ImageStore::new(Path::new("relative-data"));
    let img = image(ImageBoot {
        kind: "kernel".into(),
        kernel: Some("vmlinuz".into()),
        initrd: Some("initrd.img".into()),
        cmdline: Some("console=ttyS0".into()),
        root_disk: Some("disks/root.raw".into()),
        ..ImageBoot::default()
    });
    let dir = std::env::current_dir().unwrap().join("relative-data/images").join(&img.id);
    let Some(BootImage::Kernel { kernel, initrd, cmdline, root_disk }) = store.boot_image(&img) else {
        panic!("not a kernel boot")
    };
    assert!(kernel.is_absolute());
    assert_eq!(kernel, dir.join("vmlinuz"));
    assert_eq!(initrd, Some(dir.join("initrd.img")));
    assert_eq!(root_disk, Some(dir.join("disks/root.raw")));
    assert_eq!(cmdline, "console=ttyS0");

    let disk = image(ImageBoot {
        kind: "disk".into(),
        path: Some("disk.qcow2".into()),
        format: Some("qcow2".into()),
        ..ImageBoot::default()
    });
    assert_eq!(store.boot_image(&disk), Some(BootImage::Disk { path: dir.join("disk.qcow2"), format: "qcow2".into() }));
    let mut none = disk.clone();
    none.boot = None;
    assert_eq!(store.boot_image(&none), None);
    let escaping = image(ImageBoot { path: Some("../x".into()), ..disk.boot.clone().unwrap() });
    assert_eq!(store.boot_image(&escaping), None);
    let mut dotted = disk;
    dotted.id = "..".into();
    assert_eq!(store.boot_image(&dotted), None);
}

#[test]
fn one_import_per_image_at_a_time() {
    let store = ImageStore::new(Path::new("data"));
    let first = store.begin_import("IMG-a");
    assert!(first.is_some());
    assert!(store.begin_import("IMG-a").is_none(), "a second import of the same image waits its turn");
    assert!(store.begin_import("IMG-b").is_some(), "other images are independent");
    drop(first);
    assert!(store.begin_import("IMG-a").is_some(), "the guard releases the image");
}

#[test]
fn headers_name_their_format() {
    let mut qcow2 = vec![0u8; 512];
    qcow2[..4].copy_from_slice(b"QFI\xfb");
    qcow2[7] = 3;
    assert_eq!(probe_header(&qcow2), Probe { format: "qcow2".into(), external: false });
    let mut backed = qcow2.clone();
    backed[15] = 0x80;
    assert!(probe_header(&backed).external);
    let mut data_file = qcow2.clone();
    data_file[79] = 4;
    assert!(probe_header(&data_file).external);
    assert_eq!(probe_header(b"KDMV....").format, "vmdk");
    assert_eq!(probe_header(&[0u8; 512]).format, "raw");
    assert_eq!(probe_header(b"").format, "raw");
}

#[test]
fn qemu_img_info_is_read() {
    let plain = br#"{"format": "qcow2", "virtual-size": 1, "format-specific": {"type": "qcow2", "data": {}}}"#;
    assert_eq!(parse_qemu_img_info(plain).unwrap(), Probe { format: "qcow2".into(), external: false });
    let backed = br#"{"format": "qcow2", "backing-filename": "/etc/shadow"}"#;
    assert!(parse_qemu_img_info(backed).unwrap().external);
    let data = br#"{"format": "qcow2", "format-specific": {"data": {"data-file": "x"}}}"#;
    assert!(parse_qemu_img_info(data).unwrap().external);
    assert!(parse_qemu_img_info(b"nope").is_err());
}
