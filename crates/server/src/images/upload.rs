//! An upload's files: read, staged to temporaries, checked, committed; the boot definition set.

use std::path::{Path, PathBuf};

use axum::extract::multipart::Field;
use openwinv_wire::ErrorCode;
use openwinv_wire::images::{DISK_FORMATS, ImageBoot, KIND_DISK, KIND_KERNEL};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::catalog::{ImageDef, MAX_CMDLINE, check_boot};
use crate::error::{ApiError, ApiResult};

use super::*;

pub(super) async fn read_text(mut field: Field<'_>, name: &str) -> ApiResult<String> {
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
pub(super) struct Staged {
    pub(super) role: &'static str,
    pub(super) tmp: PathBuf,
    pub(super) size: u64,
    pub(super) sha256: String,
    pub(super) committed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

pub(super) async fn stage(dir: &Path, role: &'static str, mut field: Field<'_>) -> ApiResult<Staged> {
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
pub(super) struct Upload {
    kind: Option<String>,
    cmdline: Option<String>,
    format: Option<String>,
    pub(super) files: Vec<Staged>,
}

impl Upload {
    pub(super) fn set_text(&mut self, name: &str, value: String) -> ApiResult<()> {
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

    pub(super) fn check_role(&self, role: &str) -> ApiResult<()> {
        if self.files.iter().any(|f| f.role == role) {
            return Err(ApiError::param(format!("The file `{role}` is given twice.")));
        }
        self.check_kind_with(Some(role))
    }

    pub(super) fn check_kind(&self) -> ApiResult<()> {
        self.check_kind_with(None)
    }

    /// Refuses parts that do not go with the kind given (once it is known).
    pub(super) fn check_kind_with(&self, incoming: Option<&str>) -> ApiResult<()> {
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
    pub(super) async fn finish(mut self) -> ApiResult<(ImageBoot, Vec<(Staged, String)>)> {
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

/// Moves the staged files to their names. A file whose content is already there is left alone,
/// so importing the same files again changes nothing on disk.
pub(super) async fn commit(dir: &Path, staged: Vec<(Staged, String)>) -> ApiResult<()> {
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

pub(super) async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all()).await.map_err(std::io::Error::other)?
}

/// Removes upload temporaries a crash left behind (old enough not to be another upload's).
pub(super) async fn remove_stale_uploads(dir: &Path) {
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
pub(super) async fn set_boot(state: &AppState, image_id: &str, boot: ImageBoot) -> ApiResult<()> {
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
