//! The files behind catalog images: where they live (`<data>/images/<image_id>/`), how a saga turns
//! an image into the [`BootImage`] a real driver boots, and the operator's upload and listing
//! (`/admin/v1/images/{image_id}/files`) [ext].
//!
//! An upload streams each file to a hidden temporary in the image's directory (never whole in
//! memory), checks it, fsyncs it and renames it over the final name, then sets the image's boot
//! definition in the catalog (which every process on the database picks up). The files stay on
//! this host: with several server hosts the directory must be shared or filled on each.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::routing::get;
use openwinv_driver::BootImage;
use openwinv_wire::images::{DISK_FORMATS, ImageBoot, ImageFile, ImageFiles, KIND_DISK, KIND_KERNEL};
use openwinv_wire::{Envelope, ErrorCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::api::Reply;
use crate::catalog::{ImageDef, MAX_CMDLINE, check_boot};
use crate::error::{ApiError, ApiResult};
use crate::input::Path as UrlPath;

/// The largest upload accepted on the files route (every part together); the rest of the API
/// keeps the small default limit.
pub const MAX_UPLOAD_BYTES: u64 = 1 << 40;
/// Bytes gathered before each write of an uploaded file.
const WRITE_BUFFER: usize = 1 << 20;
/// How long `qemu-img info` may take to read a header before the upload is refused.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Upload temporaries older than this were left by a crash and are removed by the next upload.
const STALE_UPLOAD: Duration = Duration::from_secs(24 * 3600);
/// Hidden names in an image's directory: upload temporaries and the checksum cache.
const TEMP_PREFIX: &str = ".upload-";
const CHECKSUMS: &str = ".sha256.json";

/// The file parts of an upload, in the order listings show them.
const FILE_ROLES: [&str; 4] = ["kernel", "initrd", "root_disk", "disk"];

/// Where image files live, and which images this process is importing right now.
#[derive(Clone)]
pub struct ImageStore {
    /// `<data>/images`, absolute: drivers hand the paths to processes with another working dir.
    root: PathBuf,
    importing: Arc<Mutex<HashSet<String>>>,
}

impl ImageStore {
    pub fn new(data_dir: &Path) -> ImageStore {
        let data = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        ImageStore { root: data.join("images"), importing: Arc::default() }
    }

    /// The image's directory; `None` for an id that is not one plain name (the catalog refuses
    /// those, this keeps a damaged store from pointing outside the images directory).
    pub fn dir(&self, image_id: &str) -> Option<PathBuf> {
        let plain = !image_id.is_empty() && !image_id.starts_with('.') && !image_id.contains(['/', '\\', '\0']);
        plain.then(|| self.root.join(image_id))
    }

    /// What a driver boots for `image`: its boot definition with absolute paths, or `None` when it
    /// has none. Whether the files exist is the driver's to find out (they may be on a mount).
    pub fn boot_image(&self, image: &ImageDef) -> Option<BootImage> {
        let boot = image.boot.as_ref()?;
        let dir = self.dir(&image.id)?;
        if let Err(e) = check_boot(boot) {
            tracing::warn!(image = %image.id, error = %e, "ignoring a damaged boot definition");
            return None;
        }
        let at = |p: &Option<String>| p.as_deref().map(|p| dir.join(p));
        match boot.kind.as_str() {
            KIND_KERNEL => Some(BootImage::Kernel {
                kernel: at(&boot.kernel)?,
                initrd: at(&boot.initrd),
                cmdline: boot.cmdline.clone().unwrap_or_default(),
                root_disk: at(&boot.root_disk),
            }),
            KIND_DISK => Some(BootImage::Disk { path: at(&boot.path)?, format: boot.format.clone()? }),
            _ => None,
        }
    }

    /// Marks an import of `image_id` as running until the guard drops; `None` when one already is.
    fn begin_import(&self, image_id: &str) -> Option<ImportGuard> {
        let mut set = self.importing.lock().unwrap_or_else(PoisonError::into_inner);
        set.insert(image_id.to_owned()).then(|| ImportGuard { store: self.clone(), image_id: image_id.to_owned() })
    }
}

struct ImportGuard {
    store: ImageStore,
    image_id: String,
}

impl Drop for ImportGuard {
    fn drop(&mut self) {
        self.store.importing.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.image_id);
    }
}

pub fn routes() -> Router<AppState> {
    let limit = usize::try_from(MAX_UPLOAD_BYTES).unwrap_or(usize::MAX);
    Router::new().route(
        "/admin/v1/images/{image_id}/files",
        get(list_files).post(upload_files).layer(DefaultBodyLimit::max(limit)),
    )
}

/// The image's boot definition and the files of its directory, with sizes and SHA-256.
#[utoipa::path(get, path = "/admin/v1/images/{image_id}/files", tag = "operator", operation_id = "list_image_files", security(("admin_token" = [])),
    params(("image_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<ImageFiles>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list_files(State(state): State<AppState>, UrlPath(image_id): UrlPath<String>) -> Reply<ImageFiles> {
    let image = catalog_image(&state, &image_id).await?;
    Ok(Json(Envelope::rows(vec![listing(&state.images, &image).await?])))
}

/// Uploads an image's files and sets its boot definition (multipart/form-data, streamed to disk).
///
/// Parts: `kind` (`kernel` or `disk`); with `kernel`, the files `kernel` (required), `initrd` and
/// `root_disk` and the text `cmdline`; with `disk`, the file `disk` and the text `format` (`qcow2` or
/// `raw`, detected when omitted). Files are stored as `vmlinuz`, `initrd.img`, `root.<format>` and
/// `disk.<format>`; importing again replaces them (a file whose content is unchanged is kept as
/// it is). The image must be in the catalog: add it with a catalog import first.
#[utoipa::path(post, path = "/admin/v1/images/{image_id}/files", tag = "operator", operation_id = "import_image_files", security(("admin_token" = [])),
    params(("image_id" = String, Path)),
    request_body(content = openwinv_wire::images::ImageUpload, content_type = "multipart/form-data"),
    responses((status = 200, body = Envelope<Vec<ImageFiles>>), (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 409, body = openwinv_wire::ErrorEnvelope)))]
pub async fn upload_files(
    State(state): State<AppState>,
    UrlPath(image_id): UrlPath<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Reply<ImageFiles> {
    catalog_image(&state, &image_id).await?;
    let mut multipart = multipart.map_err(|e| ApiError::param(format!("The body must be multipart/form-data: {e}")))?;
    let dir = state.images.dir(&image_id).ok_or_else(|| ApiError::not_found(format!("The image `{image_id}`")))?;
    let _guard = state.images.begin_import(&image_id).ok_or_else(|| {
        ApiError::new(ErrorCode::InUse, format!("The image `{image_id}` is being imported by another request."))
    })?;
    tokio::fs::create_dir_all(&dir).await.map_err(io_failure)?;
    remove_stale_uploads(&dir).await;

    let mut upload = Upload::default();
    while let Some(field) = multipart.next_field().await.map_err(bad_multipart)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "kind" | "cmdline" | "format" => {
                let value = read_text(field, &name).await?;
                upload.set_text(&name, value)?;
            }
            other => {
                let Some(role) = FILE_ROLES.into_iter().find(|r| *r == other) else {
                    return Err(ApiError::param(format!(
                        "The part `{other}` is not one of kind, cmdline, format, {}.",
                        FILE_ROLES.join(", ")
                    )));
                };
                upload.check_role(role)?;
                let staged = stage(&dir, role, field).await?;
                upload.files.push(staged);
            }
        }
    }
    let (boot, staged) = upload.finish().await?;
    commit(&dir, staged).await?;
    set_boot(&state, &image_id, boot).await?;
    let image = catalog_image(&state, &image_id).await?;
    Ok(Json(Envelope::rows(vec![listing(&state.images, &image).await?])))
}

/// The catalog entry of `image_id`, from a catalog at least as new as the store's.
async fn catalog_image(state: &AppState, image_id: &str) -> ApiResult<ImageDef> {
    state.catalog.refresh(&state.store).await.map_err(ApiError::internal)?;
    state
        .catalog
        .get()
        .images
        .iter()
        .find(|i| i.id == image_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("The image `{image_id}`")))
}

/// A body that is not well-formed multipart, or larger than [`MAX_UPLOAD_BYTES`] (413).
fn bad_multipart(e: MultipartError) -> ApiError {
    ApiError::param(format!("The multipart body cannot be read: {}", e.body_text())).with_status(e.status())
}

/// Our own failure writing the image directory; a full disk is said as such since the operator
/// can act on it.
fn io_failure(e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        tracing::error!(error = %e, "image upload: no space left");
        return ApiError::new(ErrorCode::DevCheckReturn, "The server's image directory is out of space.")
            .with_status(StatusCode::INSUFFICIENT_STORAGE);
    }
    ApiError::internal(format!("image files: {e}"))
}

async fn read_text(mut field: Field<'_>, name: &str) -> ApiResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_multipart)? {
        if bytes.len() + chunk.len() > MAX_CMDLINE {
            return Err(ApiError::new(
                ErrorCode::CheckLength,
                format!("The field `{name}` must be at most {MAX_CMDLINE} bytes."),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| ApiError::param(format!("The field `{name}` must be UTF-8 text.")))
}

/// A file part written to a temporary in the image's directory; removed on drop unless committed.
struct Staged {
    role: &'static str,
    tmp: PathBuf,
    size: u64,
    sha256: String,
    committed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

async fn stage(dir: &Path, role: &'static str, mut field: Field<'_>) -> ApiResult<Staged> {
    let tmp = dir.join(format!("{TEMP_PREFIX}{}-{role}", openwinv_store::ids::random_base62(16)));
    let mut staged = Staged { role, tmp, size: 0, sha256: String::new(), committed: false };
    let file = tokio::fs::File::create(&staged.tmp).await.map_err(io_failure)?;
    // Parts arrive in small chunks; each write to a tokio file is a trip to the blocking pool.
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut hash = Sha256::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_multipart)? {
        hash.update(&chunk);
        out.write_all(&chunk).await.map_err(io_failure)?;
        staged.size += chunk.len() as u64;
    }
    out.flush().await.map_err(io_failure)?;
    // Durable before the rename makes it visible: a crash then leaves the old file or the new one.
    out.into_inner().sync_all().await.map_err(io_failure)?;
    if staged.size == 0 {
        return Err(ApiError::param(format!("The file `{role}` is empty.")));
    }
    staged.sha256 = hex::encode(hash.finalize());
    Ok(staged)
}

/// What an upload carried, checked as it arrives where it can be (so a bad `kind` is refused
/// before gigabytes follow) and as a whole at the end.
#[derive(Default)]
struct Upload {
    kind: Option<String>,
    cmdline: Option<String>,
    format: Option<String>,
    files: Vec<Staged>,
}

impl Upload {
    fn set_text(&mut self, name: &str, value: String) -> ApiResult<()> {
        let slot = match name {
            "kind" => {
                if value != KIND_KERNEL && value != KIND_DISK {
                    return Err(ApiError::new(
                        ErrorCode::CheckParamEnum,
                        format!("The field `kind` must be {KIND_KERNEL} or {KIND_DISK}, not `{value}`."),
                    ));
                }
                &mut self.kind
            }
            "format" => {
                if !DISK_FORMATS.contains(&value.as_str()) {
                    return Err(ApiError::new(
                        ErrorCode::CheckParamEnum,
                        format!("The field `format` must be {}, not `{value}`.", DISK_FORMATS.join(" or ")),
                    ));
                }
                &mut self.format
            }
            _ => {
                if value.chars().any(char::is_control) {
                    return Err(ApiError::param("The field `cmdline` must be one line."));
                }
                &mut self.cmdline
            }
        };
        if slot.is_some() {
            return Err(ApiError::param(format!("The field `{name}` is given twice.")));
        }
        *slot = Some(value);
        self.check_kind()
    }

    fn check_role(&self, role: &str) -> ApiResult<()> {
        if self.files.iter().any(|f| f.role == role) {
            return Err(ApiError::param(format!("The file `{role}` is given twice.")));
        }
        self.check_kind_with(Some(role))
    }

    fn check_kind(&self) -> ApiResult<()> {
        self.check_kind_with(None)
    }

    /// Refuses parts that do not go with the kind given (once it is known).
    fn check_kind_with(&self, incoming: Option<&str>) -> ApiResult<()> {
        let Some(kind) = self.kind.as_deref() else { return Ok(()) };
        let foreign: &[&str] =
            if kind == KIND_KERNEL { &["disk", "format"] } else { &["kernel", "initrd", "root_disk", "cmdline"] };
        let given = self
            .files
            .iter()
            .map(|f| f.role)
            .chain(incoming)
            .chain(self.cmdline.as_ref().map(|_| "cmdline"))
            .chain(self.format.as_ref().map(|_| "format"));
        for part in given {
            if foreign.contains(&part) {
                return Err(ApiError::param(format!("The field `{part}` does not go with kind {kind}.")));
            }
        }
        Ok(())
    }

    /// The boot definition and the staged files with their final names, after the disks' formats
    /// are checked.
    async fn finish(mut self) -> ApiResult<(ImageBoot, Vec<(Staged, String)>)> {
        let kind = self.kind.clone().ok_or_else(|| ApiError::missing_body("kind"))?;
        self.check_kind()?;
        let mut take = |role: &str| self.files.iter().position(|f| f.role == role).map(|i| self.files.swap_remove(i));
        let mut out = Vec::new();
        let boot = if kind == KIND_KERNEL {
            let kernel = take("kernel").ok_or_else(|| ApiError::missing_body("kernel"))?;
            let initrd = take("initrd");
            let root = take("root_disk");
            let root_name = match &root {
                Some(r) => Some(format!("root.{}", checked_format(r, None).await?)),
                None => None,
            };
            let boot = ImageBoot {
                kind,
                kernel: Some("vmlinuz".into()),
                initrd: initrd.as_ref().map(|_| "initrd.img".into()),
                cmdline: Some(self.cmdline.clone().unwrap_or_default()),
                root_disk: root_name.clone(),
                ..ImageBoot::default()
            };
            out.push((kernel, "vmlinuz".to_owned()));
            if let Some(i) = initrd {
                out.push((i, "initrd.img".to_owned()));
            }
            if let (Some(r), Some(name)) = (root, root_name) {
                out.push((r, name));
            }
            boot
        } else {
            let disk = take("disk").ok_or_else(|| ApiError::missing_body("disk"))?;
            let format = checked_format(&disk, self.format.as_deref()).await?;
            let name = format!("disk.{format}");
            out.push((disk, name.clone()));
            ImageBoot { kind, path: Some(name), format: Some(format), ..ImageBoot::default() }
        };
        check_boot(&boot).map_err(ApiError::param)?;
        Ok((boot, out))
    }
}

/// What a disk file is, as `qemu-img info` (or, without it, the header's magic) says.
#[derive(Debug, PartialEq, Eq)]
struct Probe {
    format: String,
    /// The image reads another file (a backing file or an external data file): refused, since
    /// the guest would see whatever that path on this host holds.
    external: bool,
}

/// The disk's format, checked against the one claimed: qcow2 or raw, self-contained.
async fn checked_format(staged: &Staged, claimed: Option<&str>) -> ApiResult<String> {
    let role = staged.role;
    let probe = probe(&staged.tmp).await.map_err(|e| {
        ApiError::param(format!(
            "The file `{role}` is not a readable disk image: {}",
            e.replace(&*staged.tmp.to_string_lossy(), role)
        ))
    })?;
    if !DISK_FORMATS.contains(&probe.format.as_str()) {
        return Err(ApiError::param(format!(
            "The file `{role}` is a {} image; convert it to qcow2 or raw (qemu-img convert -O qcow2).",
            probe.format
        )));
    }
    if probe.external {
        return Err(ApiError::param(format!(
            "The file `{role}` refers to a backing or data file; flatten it first (qemu-img convert -O qcow2)."
        )));
    }
    if let Some(claimed) = claimed
        && claimed != probe.format
    {
        return Err(ApiError::param(format!(
            "The field `format` says {claimed}, but the file `{role}` is a {} image.",
            probe.format
        )));
    }
    Ok(probe.format)
}

async fn probe(path: &Path) -> Result<Probe, String> {
    let run = tokio::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Err(_) => Err("qemu-img info took too long".into()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || probe_magic(&path))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }
        Ok(Err(e)) => Err(format!("qemu-img cannot run: {e}")),
        Ok(Ok(out)) if !out.status.success() => {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err.lines().find(|l| !l.trim().is_empty()).unwrap_or("qemu-img info failed").trim().to_owned())
        }
        Ok(Ok(out)) => parse_qemu_img_info(&out.stdout),
    }
}

/// The probe from `qemu-img info` output, read by the QEMU driver's one parser.
fn parse_qemu_img_info(json: &[u8]) -> Result<Probe, String> {
    let info = openwinv_qemu::img::parse_info(json)?;
    let format = info.format.ok_or("qemu-img info names no format")?;
    Ok(Probe { format, external: info.external })
}

/// The format from the header alone, for hosts without qemu-img: qcow2 starts with `QFI\xfb`;
/// a few other formats are named so they are refused rather than taken for raw.
fn probe_magic(path: &Path) -> std::io::Result<Probe> {
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)?.take(512).read_to_end(&mut head)?;
    Ok(probe_header(&head))
}

fn probe_header(head: &[u8]) -> Probe {
    let be64 = |at: usize| head.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
    let be32 = |at: usize| head.get(at..at + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes);
    let format = if head.starts_with(b"QFI\xfb") {
        // Header: version at 4, backing_file_offset at 8; from version 3, incompatible_features
        // at 72, whose bit 2 is an external data file.
        let external = be64(8) != 0 || (be32(4) >= 3 && be64(72) & 4 != 0);
        return Probe { format: "qcow2".into(), external };
    } else if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        "vmdk"
    } else if head.starts_with(b"vhdxfile") {
        "vhdx"
    } else if head.starts_with(b"conectix") {
        "vpc"
    } else if head.get(64..68) == Some(&[0x7f, 0x10, 0xda, 0xbe]) {
        "vdi"
    } else {
        "raw"
    };
    Probe { format: format.into(), external: false }
}

/// Moves the staged files to their names. A file whose content is already there is left alone,
/// so importing the same files again changes nothing on disk.
async fn commit(dir: &Path, staged: Vec<(Staged, String)>) -> ApiResult<()> {
    let mut sums = Checksums::load(dir).await;
    for (mut file, name) in staged {
        let target = dir.join(&name);
        let same = match tokio::fs::metadata(&target).await {
            Ok(meta) if meta.is_file() && meta.len() == file.size => {
                let known = sums.get(&name, &meta);
                let current = match known {
                    Some(sum) => Some(sum),
                    None => sha256_of(&target).await.ok(),
                };
                current.as_deref() == Some(file.sha256.as_str())
            }
            _ => false,
        };
        if !same {
            tokio::fs::rename(&file.tmp, &target).await.map_err(io_failure)?;
            file.committed = true;
        }
        if let Ok(meta) = tokio::fs::metadata(&target).await {
            sums.put(&name, &meta, &file.sha256);
        }
    }
    sync_dir(dir).await.map_err(io_failure)?;
    sums.save(dir).await;
    Ok(())
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all()).await.map_err(std::io::Error::other)?
}

/// Removes upload temporaries a crash left behind (old enough not to be another upload's).
async fn remove_stale_uploads(dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else { return };
    while let Ok(Some(e)) = entries.next_entry().await {
        let stale = e
            .metadata()
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_UPLOAD);
        if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) && stale {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
    }
}

/// Sets the image's boot definition in the stored catalog, compare-and-swap on the entry so a
/// catalog import running meanwhile is never written over.
async fn set_boot(state: &AppState, image_id: &str, boot: ImageBoot) -> ApiResult<()> {
    for _ in 0..5 {
        let entries = state.store.catalog().await?;
        let entry = entries
            .iter()
            .find(|e| e.kind == "image" && e.id == image_id)
            .ok_or_else(|| ApiError::not_found(format!("The image `{image_id}`")))?;
        let mut image: ImageDef = serde_json::from_str(&entry.body).map_err(ApiError::internal)?;
        image.boot = Some(boot.clone());
        let body = serde_json::to_string(&image).map_err(ApiError::internal)?;
        if state.store.update_catalog_entry("image", image_id, &entry.body, &body).await? {
            state.catalog.refresh(&state.store).await.map_err(ApiError::internal)?;
            return Ok(());
        }
    }
    Err(ApiError::new(ErrorCode::InUse, "The catalog kept changing during the import; import the files again."))
}

async fn listing(images: &ImageStore, image: &ImageDef) -> ApiResult<ImageFiles> {
    let dir = images.dir(&image.id).ok_or_else(|| ApiError::not_found(format!("The image `{}`", image.id)))?;
    let boot = image.boot.clone();
    let referenced: Vec<(&'static str, String)> = match &boot {
        None => Vec::new(),
        Some(b) => [("kernel", &b.kernel), ("initrd", &b.initrd), ("root_disk", &b.root_disk), ("disk", &b.path)]
            .into_iter()
            .filter_map(|(role, p)| p.clone().map(|p| (role, p)))
            .collect(),
    };
    let files = tokio::task::spawn_blocking(move || list_dir(&dir, &referenced))
        .await
        .map_err(ApiError::internal)?
        .map_err(io_failure)?;
    Ok(ImageFiles { image_id: image.id.clone(), boot, files })
}

/// The referenced files (present or not), then every other plain file under `dir`.
fn list_dir(dir: &Path, referenced: &[(&'static str, String)]) -> std::io::Result<Vec<ImageFile>> {
    let mut sums = Checksums::load_blocking(dir);
    let mut others = Vec::new();
    walk(dir, "", 0, &mut others)?;
    others.retain(|name| !referenced.iter().any(|(_, r)| r == name));
    others.sort();
    let mut out = Vec::new();
    let entries =
        referenced.iter().map(|(role, name)| (Some(*role), name.clone())).chain(others.into_iter().map(|n| (None, n)));
    for (role, name) in entries {
        let path = dir.join(&name);
        let file = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {
                let sha256 = match sums.get(&name, &meta) {
                    Some(sum) => sum,
                    None => {
                        let sum = sha256_file(&path)?;
                        sums.put(&name, &meta, &sum);
                        sum
                    }
                };
                ImageFile {
                    role: role.map(Into::into),
                    name,
                    present: true,
                    size: Some(meta.len()),
                    sha256: Some(sha256),
                }
            }
            _ => ImageFile { role: role.map(Into::into), name, present: false, size: None, sha256: None },
        };
        out.push(file);
    }
    if sums.changed {
        sums.save_blocking(dir);
    }
    Ok(out)
}

/// Relative names of the plain files under `dir`, hidden names skipped; an absent dir is empty.
fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let kind = e.file_type()?;
        if kind.is_dir() && depth < 8 {
            walk(&e.path(), &rel, depth + 1, out)?;
        } else if kind.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}

async fn sha256_of(path: &Path) -> std::io::Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || sha256_file(&path)).await.map_err(std::io::Error::other)?
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hash.finalize()));
        }
        hash.update(&buf[..n]);
    }
}

/// SHA-256 of the image's files, cached in `.sha256.json` by size and modification time, so a
/// listing does not read gigabytes each time. Losing it only costs a recomputation.
#[derive(Default)]
struct Checksums {
    entries: BTreeMap<String, Checksum>,
    changed: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct Checksum {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
}

impl Checksums {
    fn load_blocking(dir: &Path) -> Checksums {
        let entries = std::fs::read(dir.join(CHECKSUMS))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Checksums { entries, changed: false }
    }

    async fn load(dir: &Path) -> Checksums {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || Checksums::load_blocking(&dir)).await.unwrap_or_default()
    }

    fn get(&self, name: &str, meta: &std::fs::Metadata) -> Option<String> {
        self.entries
            .get(name)
            .filter(|c| c.size == meta.len() && c.mtime_ns == mtime_ns(meta))
            .map(|c| c.sha256.clone())
    }

    fn put(&mut self, name: &str, meta: &std::fs::Metadata, sha256: &str) {
        let entry = Checksum { size: meta.len(), mtime_ns: mtime_ns(meta), sha256: sha256.to_owned() };
        self.entries.insert(name.to_owned(), entry);
        self.changed = true;
    }

    /// Best effort: a cache that cannot be written is recomputed next time.
    fn save_blocking(&self, dir: &Path) {
        let Ok(json) = serde_json::to_vec_pretty(&self.entries) else { return };
        let tmp = dir.join(format!("{TEMP_PREFIX}{}-sums", openwinv_store::ids::random_base62(16)));
        if std::fs::write(&tmp, json).is_err() || std::fs::rename(&tmp, dir.join(CHECKSUMS)).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    async fn save(self, dir: &Path) {
        let dir = dir.to_owned();
        let _ = tokio::task::spawn_blocking(move || self.save_blocking(&dir)).await;
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            store.boot_image(&disk),
            Some(BootImage::Disk { path: dir.join("disk.qcow2"), format: "qcow2".into() })
        );
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
}
