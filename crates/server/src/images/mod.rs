//! The files behind catalog images: where they live (`<data>/images/<image_id>/`), how a saga turns
//! an image into the [`BootImage`] a real driver boots, and the operator's upload and listing
//! (`/admin/v1/images/{image_id}/files`) [ext].
//!
//! An upload streams each file to a hidden temporary in the image's directory (never whole in
//! memory), checks it, fsyncs it and renames it over the final name, then sets the image's boot
//! definition in the catalog (which every process on the database picks up). The files stay on
//! this host: with several server hosts the directory must be shared or filled on each.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::routing::get;
use openwinv_driver::BootImage;
use openwinv_wire::images::{ImageFiles, KIND_DISK, KIND_KERNEL};
use openwinv_wire::{Envelope, ErrorCode};

use crate::AppState;
use crate::api::Reply;
use crate::catalog::{ImageDef, check_boot};
use crate::error::{ApiError, ApiResult};
use crate::input::Path as UrlPath;

mod content;
mod listing;
mod probe;
#[cfg(test)]
mod tests;
mod upload;

pub use content::{file_digest, is_sha256};
use listing::*;
use probe::*;
use upload::*;

/// The largest upload accepted on the files route (every part together); the rest of the API
/// keeps the small default limit.
pub const MAX_UPLOAD_BYTES: u64 = 1 << 40;
/// Bytes gathered before each write of an uploaded file.
pub(super) const WRITE_BUFFER: usize = 1 << 20;
/// How long `qemu-img info` may take to read a header before the upload is refused.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Upload temporaries older than this were left by a crash and are removed by the next upload.
pub(super) const STALE_UPLOAD: Duration = Duration::from_secs(24 * 3600);
/// Hidden names in an image's directory: upload temporaries and the checksum cache.
pub(super) const TEMP_PREFIX: &str = ".upload-";
pub(super) const CHECKSUMS: &str = ".sha256.json";

/// The file parts of an upload, in the order listings show them.
pub(super) const FILE_ROLES: [&str; 4] = ["kernel", "initrd", "root_disk", "disk"];

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

    /// `<data>/disks`: machine disks in transit between hosts (`instance.evacuate`).
    pub fn disks_dir(&self) -> PathBuf {
        self.root.with_file_name("disks")
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

pub(super) struct ImportGuard {
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
pub(super) async fn catalog_image(state: &AppState, image_id: &str) -> ApiResult<ImageDef> {
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
pub(super) fn bad_multipart(e: MultipartError) -> ApiError {
    ApiError::param(format!("The multipart body cannot be read: {}", e.body_text())).with_status(e.status())
}

/// Our own failure writing the image directory; a full disk is said as such since the operator
/// can act on it.
pub(super) fn io_failure(e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        tracing::error!(error = %e, "image upload: no space left");
        return ApiError::new(ErrorCode::DevCheckReturn, "The server's image directory is out of space.")
            .with_status(StatusCode::INSUFFICIENT_STORAGE);
    }
    ApiError::internal(format!("image files: {e}"))
}
