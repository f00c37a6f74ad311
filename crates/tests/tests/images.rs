//! Image files (`/admin/v1/images/{image_id}/files`, `openwinv admin images`): uploads streamed to
//! `<data>/images/<image_id>/`, the boot definition kept in the catalog (and its TOML export) but
//! never on the `/v1` wire, refusals that name the field, and re-imports that replace files.

use std::path::{Path, PathBuf};

use openwinv_tests::{CliRun, Resp, Server};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

const KERNEL_IMAGE: &str = "IMG-debian-12";
const DISK_IMAGE: &str = "IMG-ubuntu-2404";

/// One multipart part: text, or a file's bytes.
enum P {
    Text(&'static str, String),
    File(&'static str, Vec<u8>),
}

fn text(name: &'static str, value: &str) -> P {
    P::Text(name, value.to_owned())
}

/// A multipart upload to the files route (or any admin path), with the operator token.
async fn upload(s: &Server, path: &str, parts: Vec<P>) -> Resp {
    let mut form = Form::new();
    for p in parts {
        form = match p {
            P::Text(name, value) => form.text(name, value),
            P::File(name, bytes) => form.part(name, Part::bytes(bytes).file_name(format!("{name}.bin"))),
        };
    }
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", s.endpoint))
        .bearer_auth(&s.admin_token)
        .multipart(form)
        .send()
        .await
        .expect("upload to openwinv");
    into_resp(resp).await
}

async fn into_resp(resp: reqwest::Response) -> Resp {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, text, json }
}

fn files_path(image_id: &str) -> String {
    format!("/admin/v1/images/{image_id}/files")
}

/// Distinct, recognisable content of `len` bytes.
fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn sha256(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, bytes).unwrap();
    sha256_file(&path)
}

fn sha256_file(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

fn qemu_img() -> bool {
    std::process::Command::new("qemu-img").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// A small qcow2 image: made by qemu-img where it exists, else a bare header (which the server,
/// without qemu-img, recognises by its magic).
fn qcow2(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    if qemu_img() {
        let ok = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&path)
            .arg("4M")
            .status()
            .unwrap()
            .success();
        assert!(ok, "qemu-img create");
        return std::fs::read(&path).unwrap();
    }
    let mut header = vec![0u8; 65536];
    header[..4].copy_from_slice(b"QFI\xfb");
    header[7] = 3;
    header
}

fn image_dir(s: &Server, image_id: &str) -> PathBuf {
    s.data_dir.join("images").join(image_id)
}

/// Names of the upload temporaries left in an image's directory.
fn leftovers(s: &Server, image_id: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(image_dir(s, image_id)) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload-"))
        .collect()
}

fn file_row<'a>(row: &'a Value, role: &str) -> &'a Value {
    row["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["role"] == role))
        .unwrap_or_else(|| panic!("no {role} file in {row}"))
}

fn kernel_parts(kernel: &[u8], initrd: &[u8], root: &[u8]) -> Vec<P> {
    vec![
        text("kind", "kernel"),
        text("cmdline", "console=ttyS0 quiet"),
        P::File("kernel", kernel.to_vec()),
        P::File("initrd", initrd.to_vec()),
        P::File("root_disk", root.to_vec()),
    ]
}

#[tokio::test]
async fn kernel_and_disk_imports_set_the_boot_definition_off_the_v1_wire() {
    let s = Server::start().await;
    let v1_list = s.get("/v1/images").await;
    let v1_one = s.get(&format!("/v1/images/{KERNEL_IMAGE}")).await;
    v1_list.ok_rows();

    // Nothing registered yet.
    let empty = s.admin(Method::GET, &files_path(KERNEL_IMAGE), None).await;
    assert_eq!(empty.ok_rows()[0], json!({"image_id": KERNEL_IMAGE, "boot": null, "files": []}));

    // Direct kernel boot; larger than the 1 MiB limit of the rest of the API.
    let (kernel, initrd, root) = (content(1, 1_500_000), content(2, 70_000), vec![0u8; 1 << 20]);
    let r = upload(&s, &files_path(KERNEL_IMAGE), kernel_parts(&kernel, &initrd, &root)).await;
    let row = r.ok_rows()[0].clone();
    assert_eq!(
        row["boot"],
        json!({"kind": "kernel", "kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": "console=ttyS0 quiet",
               "root_disk": "root.raw"})
    );
    let dir = image_dir(&s, KERNEL_IMAGE);
    for (role, name, bytes) in
        [("kernel", "vmlinuz", &kernel), ("initrd", "initrd.img", &initrd), ("root_disk", "root.raw", &root)]
    {
        let f = file_row(&row, role);
        assert_eq!((f["name"].as_str(), f["present"].as_bool()), (Some(name), Some(true)), "{f}");
        assert_eq!(f["size"], bytes.len() as u64, "{f}");
        assert_eq!(f["sha256"], sha256(bytes), "{f}");
        assert_eq!(&std::fs::read(dir.join(name)).unwrap(), bytes, "{name} on disk");
    }
    assert_eq!(s.admin(Method::GET, &files_path(KERNEL_IMAGE), None).await.ok_rows()[0], row, "the listing");

    // A bootable disk; the format is detected when not given.
    let tmp = tempfile::tempdir().unwrap();
    let disk = qcow2(tmp.path(), "d.qcow2");
    let r = upload(&s, &files_path(DISK_IMAGE), vec![text("kind", "disk"), P::File("disk", disk.clone())]).await;
    let row = r.ok_rows()[0].clone();
    assert_eq!(row["boot"], json!({"kind": "disk", "path": "disk.qcow2", "format": "qcow2"}));
    assert_eq!(file_row(&row, "disk")["sha256"], sha256(&disk));
    // A raw disk, its format given.
    let raw = content(3, 300_000);
    let r = upload(
        &s,
        &files_path("IMG-rocky-9"),
        vec![text("kind", "disk"), text("format", "raw"), P::File("disk", raw.clone())],
    )
    .await;
    assert_eq!(r.ok_rows()[0]["boot"], json!({"kind": "disk", "path": "disk.raw", "format": "raw"}));

    // The export carries the boot tables, and importing it back keeps them.
    let export = s.admin(Method::GET, "/admin/v1/catalog", None).await;
    assert_eq!(export.status, 200);
    for needle in [
        "[images.boot]",
        "kind = \"kernel\"",
        "kernel = \"vmlinuz\"",
        "cmdline = \"console=ttyS0 quiet\"",
        "root_disk = \"root.raw\"",
        "path = \"disk.qcow2\"",
        "format = \"qcow2\"",
    ] {
        assert!(export.text.contains(needle), "`{needle}` not in the export:\n{}", export.text);
    }
    let back = toml_put(&s, &export.text).await;
    back.ok_rows();
    assert_eq!(s.admin(Method::GET, "/admin/v1/catalog", None).await.text, export.text);
    assert_eq!(s.admin(Method::GET, &files_path(DISK_IMAGE), None).await.ok_rows()[0], row);

    // Users see the images exactly as before.
    assert_eq!(s.get("/v1/images").await.text, v1_list.text);
    assert_eq!(s.get(&format!("/v1/images/{KERNEL_IMAGE}")).await.text, v1_one.text);
    assert!(!v1_list.text.contains("vmlinuz") && !v1_list.text.contains("\"boot\""));
    assert!(leftovers(&s, KERNEL_IMAGE).is_empty() && leftovers(&s, DISK_IMAGE).is_empty());
}

async fn toml_put(s: &Server, toml: &str) -> Resp {
    let resp = reqwest::Client::new()
        .put(format!("{}/admin/v1/catalog", s.endpoint))
        .bearer_auth(&s.admin_token)
        .header("content-type", "application/toml")
        .body(toml.to_owned())
        .send()
        .await
        .unwrap();
    into_resp(resp).await
}

#[tokio::test]
async fn importing_again_replaces_changed_files_and_keeps_unchanged_ones() {
    use std::os::unix::fs::MetadataExt;
    let s = Server::start().await;
    let path = files_path(KERNEL_IMAGE);
    let dir = image_dir(&s, KERNEL_IMAGE);
    let (kernel, initrd, root) = (content(1, 4000), content(2, 3000), content(3, 2000));
    let first = upload(&s, &path, kernel_parts(&kernel, &initrd, &root)).await.ok_rows()[0].clone();
    let inode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().ino();
    let before = (inode("vmlinuz"), inode("initrd.img"), inode("root.raw"));

    // The same files: the same answer, and the files on disk are left as they were.
    let again = upload(&s, &path, kernel_parts(&kernel, &initrd, &root)).await.ok_rows()[0].clone();
    assert_eq!(again, first);
    assert_eq!((inode("vmlinuz"), inode("initrd.img"), inode("root.raw")), before);

    // A new kernel and no root disk: the kernel is replaced, the root disk is no longer named but
    // kept (instance disks may still be overlays on it).
    let new_kernel = content(9, 5000);
    let r = upload(
        &s,
        &path,
        vec![text("kind", "kernel"), text("cmdline", "console=ttyS0"), P::File("kernel", new_kernel.clone())],
    )
    .await;
    let row = r.ok_rows()[0].clone();
    assert_eq!(row["boot"], json!({"kind": "kernel", "kernel": "vmlinuz", "cmdline": "console=ttyS0"}));
    assert_eq!(std::fs::read(dir.join("vmlinuz")).unwrap(), new_kernel);
    assert_eq!(file_row(&row, "kernel")["sha256"], sha256(&new_kernel));
    let unused: Vec<&Value> = row["files"].as_array().unwrap().iter().filter(|f| f["role"].is_null()).collect();
    let names: Vec<&str> = unused.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["initrd.img", "root.raw"], "{row}");

    // From kernel to disk.
    let tmp = tempfile::tempdir().unwrap();
    let disk = qcow2(tmp.path(), "d.qcow2");
    let r = upload(&s, &path, vec![text("kind", "disk"), text("format", "qcow2"), P::File("disk", disk)]).await;
    assert_eq!(r.ok_rows()[0]["boot"], json!({"kind": "disk", "path": "disk.qcow2", "format": "qcow2"}));
    assert!(leftovers(&s, KERNEL_IMAGE).is_empty());
}

#[tokio::test]
async fn refusals_name_the_field_and_leave_nothing_behind() {
    let s = Server::start().await;
    let path = files_path(KERNEL_IMAGE);
    let small = || content(5, 1000);

    // Unknown image: 404 in the envelope, for both methods.
    upload(&s, &files_path("IMG-nope"), kernel_parts(&small(), &small(), &small()))
        .await
        .assert_error(404, "NOT_FOUND");
    s.admin(Method::GET, &files_path("IMG-nope"), None).await.assert_error(404, "NOT_FOUND");
    assert!(!s.data_dir.join("images/IMG-nope").exists());

    let refused = |r: Resp, status: u16, code: &str, needle: &str| {
        r.assert_error(status, code);
        let message = r.json["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    };
    refused(
        upload(&s, &path, vec![text("kind", "iso"), P::File("kernel", small())]).await,
        400,
        "CHECK_PARAM_ENUM",
        "`kind`",
    );
    refused(upload(&s, &path, vec![P::File("kernel", small())]).await, 400, "REQUIRED_POST_PARAM_MISSING", "`kind`");
    refused(
        upload(&s, &path, vec![text("kind", "kernel"), P::File("initrd", small())]).await,
        400,
        "REQUIRED_POST_PARAM_MISSING",
        "`kernel`",
    );
    refused(
        upload(&s, &path, vec![text("kind", "kernel"), P::File("kernel", Vec::new())]).await,
        400,
        "CHECK_PARAM",
        "`kernel`",
    );
    refused(
        upload(&s, &path, vec![text("kind", "kernel"), P::File("kernel", small()), P::File("disk", small())]).await,
        400,
        "CHECK_PARAM",
        "`disk`",
    );
    refused(
        upload(&s, &path, vec![text("kind", "disk"), text("format", "vmdk"), P::File("disk", small())]).await,
        400,
        "CHECK_PARAM_ENUM",
        "`format`",
    );
    // Raw content said to be qcow2, and a qcow2 said to be raw.
    refused(
        upload(&s, &path, vec![text("kind", "disk"), text("format", "qcow2"), P::File("disk", small())]).await,
        400,
        "CHECK_PARAM",
        "`format`",
    );
    let tmp = tempfile::tempdir().unwrap();
    let q = qcow2(tmp.path(), "q.qcow2");
    refused(
        upload(&s, &path, vec![text("kind", "disk"), text("format", "raw"), P::File("disk", q)]).await,
        400,
        "CHECK_PARAM",
        "`format`",
    );
    refused(
        upload(&s, &path, vec![text("kind", "kernel"), P::File("vmlinuz", small())]).await,
        400,
        "CHECK_PARAM",
        "`vmlinuz`",
    );
    if qemu_img() {
        // An overlay would read its backing file from this host's disk: refused.
        let base = tmp.path().join("base.qcow2");
        let overlay = tmp.path().join("overlay.qcow2");
        let run =
            |args: &[&str]| assert!(std::process::Command::new("qemu-img").args(args).status().unwrap().success());
        run(&["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "1M"]);
        run(&["create", "-q", "-f", "qcow2", "-b", base.to_str().unwrap(), "-F", "qcow2", overlay.to_str().unwrap()]);
        let bytes = std::fs::read(&overlay).unwrap();
        refused(
            upload(&s, &path, vec![text("kind", "disk"), P::File("disk", bytes)]).await,
            400,
            "CHECK_PARAM",
            "backing",
        );
    }
    // Not multipart at all.
    s.admin(Method::POST, &path, Some(json!({"kind": "disk"}))).await.assert_error(400, "CHECK_PARAM");
    // Without the operator token.
    let anonymous = reqwest::Client::new()
        .post(format!("{}{path}", s.endpoint))
        .multipart(Form::new().text("kind", "disk"))
        .send()
        .await
        .unwrap();
    into_resp(anonymous).await.assert_error(401, "CHECK_CREDENTIAL");

    // Nothing was registered or left behind.
    assert!(s.admin(Method::GET, &path, None).await.ok_rows()[0]["boot"].is_null());
    assert!(leftovers(&s, KERNEL_IMAGE).is_empty(), "{:?}", leftovers(&s, KERNEL_IMAGE));
    let on_disk: Vec<_> = std::fs::read_dir(image_dir(&s, KERNEL_IMAGE))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(on_disk.is_empty(), "{on_disk:?}");
}

#[tokio::test]
async fn catalog_imports_refuse_boot_paths_outside_the_image_directory() {
    let s = Server::start().await;
    let export = s.admin(Method::GET, "/admin/v1/catalog", None).await.text;
    let with_boot = |table: &str| {
        // The boot table of the first image: right after its `[[images]]` entry's plain values.
        let at = export.find("[[images]]").unwrap();
        let next = export[at + 1..].find("[[").map_or(export.len(), |i| at + 1 + i);
        format!("{}\n[images.boot]\n{table}\n{}", &export[..next], &export[next..])
    };
    for (table, needle) in [
        ("kind = \"kernel\"\nkernel = \"../../admin-token\"", "boot.kernel"),
        ("kind = \"kernel\"\nkernel = \"/boot/vmlinuz\"", "boot.kernel"),
        ("kind = \"disk\"\npath = \"a/../../b\"\nformat = \"raw\"", "boot.path"),
        ("kind = \"disk\"\npath = \"disk.img\"\nformat = \"vmdk\"", "boot.format"),
        ("kind = \"disk\"\npath = \"disk.img\"", "boot.format"),
        ("kind = \"kernel\"\ninitrd = \"initrd.img\"", "boot.kernel"),
        ("kind = \"iso\"", "boot.kind"),
    ] {
        let r = toml_put(&s, &with_boot(table)).await;
        r.assert_error(400, "CHECK_PARAM");
        assert!(r.text.contains(needle), "`{needle}` not in {}", r.text);
    }
    assert_eq!(s.admin(Method::GET, "/admin/v1/catalog", None).await.text, export, "the catalog is unchanged");

    // A valid hand-written table: the listing shows the files it names as missing on this host.
    toml_put(&s, &with_boot("kind = \"kernel\"\nkernel = \"boot/vmlinuz\"\ncmdline = \"console=ttyS0\""))
        .await
        .ok_rows();
    let at = export.find("[[images]]").unwrap();
    let first = export[at..].split("id = \"").nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_owned();
    let listed = s.admin(Method::GET, &files_path(&first), None).await;
    let row = &listed.ok_rows()[0];
    assert_eq!(
        row["files"],
        json!([{"role": "kernel", "name": "boot/vmlinuz", "present": false, "size": null, "sha256": null}]),
        "{row}"
    );
}

#[tokio::test]
async fn a_second_process_sees_the_boot_definition_but_has_its_own_files() {
    let a = Server::start().await;
    let b = Server::start_sharing(&a, &[]).await;
    let kernel = content(7, 2000);
    upload(&a, &files_path(KERNEL_IMAGE), vec![text("kind", "kernel"), P::File("kernel", kernel)]).await.ok_rows();
    // The catalog is shared through the database; the files are on a's host only.
    let row = b.admin(Method::GET, &files_path(KERNEL_IMAGE), None).await.ok_rows()[0].clone();
    assert_eq!(row["boot"]["kernel"], "vmlinuz");
    assert_eq!(file_row(&row, "kernel")["present"], false, "{row}");
}

async fn cli(s: &Server, args: &[&str]) -> CliRun {
    s.cli_run(args).await
}

#[tokio::test]
async fn cli_imports_and_lists_image_files() {
    let s = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let kernel = file("bzImage", &content(1, 3000));
    let initrd = file("initramfs.cpio.gz", &content(2, 2000));
    let root = file("root.img", &vec![0u8; 65536]);
    let row = cli(
        &s,
        &[
            "admin",
            "images",
            "import",
            KERNEL_IMAGE,
            "--kernel",
            &kernel,
            "--initrd",
            &initrd,
            "--cmdline",
            "console=ttyS0 -- init=/init",
            "--root-disk",
            &root,
            "--json",
        ],
    )
    .await
    .ok()
    .row();
    assert_eq!(row["boot"]["cmdline"], "console=ttyS0 -- init=/init");
    assert_eq!(row["boot"]["root_disk"], "root.raw");
    assert_eq!(file_row(&row, "kernel")["sha256"], sha256_file(Path::new(&kernel)));
    assert_eq!(row, s.admin(Method::GET, &files_path(KERNEL_IMAGE), None).await.ok_rows()[0], "the server's row");

    let disk_path = tmp.path().join("disk.qcow2");
    std::fs::write(&disk_path, qcow2(tmp.path(), "made.qcow2")).unwrap();
    let disk = disk_path.to_str().unwrap();
    let table = cli(&s, &["admin", "images", "import", DISK_IMAGE, "--disk", disk, "--format", "qcow2"]).await.ok();
    assert!(table.stdout.contains("disk.qcow2") && table.stdout.contains("FORMAT"), "{}", table.stdout);
    let listed = cli(&s, &["admin", "images", "files", KERNEL_IMAGE]).await.ok();
    for needle in ["KERNEL", "vmlinuz", "INITRD", "ROOT DISK", "console=ttyS0", &sha256_file(Path::new(&kernel))] {
        assert!(listed.stdout.contains(needle), "`{needle}` not in:\n{}", listed.stdout);
    }

    let wrong = cli(&s, &["admin", "images", "import", DISK_IMAGE, "--disk", disk, "--format", "raw"]).await;
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("CHECK_PARAM") && wrong.stderr.contains("`format`"), "{}", wrong.stderr);
    let unknown = cli(&s, &["admin", "images", "files", "IMG-nope"]).await;
    assert_eq!(unknown.code, 1);
    assert!(unknown.stderr.contains("NOT_FOUND"), "{}", unknown.stderr);
    let missing = cli(&s, &["admin", "images", "import", DISK_IMAGE, "--disk", "/nonexistent/disk.img"]).await;
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("/nonexistent/disk.img"), "{}", missing.stderr);
    // Usage errors are clap's (status 2): no source, both sources, a kernel option with a disk.
    for args in [
        &["admin", "images", "import", DISK_IMAGE][..],
        &["admin", "images", "import", DISK_IMAGE, "--disk", disk, "--kernel", &kernel],
        &["admin", "images", "import", DISK_IMAGE, "--disk", disk, "--cmdline", "x"],
        &["admin", "images", "import", DISK_IMAGE, "--disk", disk, "--initrd", &initrd],
        &["admin", "images", "import", DISK_IMAGE, "--kernel", &kernel, "--format", "raw"],
        &["admin", "images", "import", DISK_IMAGE, "--disk", disk, "--format", "vmdk"],
    ] {
        assert_eq!(cli(&s, args).await.code, 2, "{args:?}");
    }
}
