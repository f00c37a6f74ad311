//! An image directory's files with sizes and cached SHA-256.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use openwinv_wire::images::{ImageFile, ImageFiles};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::ImageDef;
use crate::error::{ApiError, ApiResult};

use super::*;

pub(super) async fn listing(images: &ImageStore, image: &ImageDef) -> ApiResult<ImageFiles> {
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
pub(super) fn list_dir(dir: &Path, referenced: &[(&'static str, String)]) -> std::io::Result<Vec<ImageFile>> {
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
pub(super) fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) -> std::io::Result<()> {
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

pub(super) async fn sha256_of(path: &Path) -> std::io::Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || sha256_file(&path)).await.map_err(std::io::Error::other)?
}

pub(super) fn sha256_file(path: &Path) -> std::io::Result<String> {
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
pub(super) struct Checksums {
    entries: BTreeMap<String, Checksum>,
    changed: bool,
}

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Checksum {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

pub(super) fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
}

impl Checksums {
    pub(super) fn load_blocking(dir: &Path) -> Checksums {
        let entries = std::fs::read(dir.join(CHECKSUMS))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Checksums { entries, changed: false }
    }

    pub(super) async fn load(dir: &Path) -> Checksums {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || Checksums::load_blocking(&dir)).await.unwrap_or_default()
    }

    pub(super) fn get(&self, name: &str, meta: &std::fs::Metadata) -> Option<String> {
        self.entries
            .get(name)
            .filter(|c| c.size == meta.len() && c.mtime_ns == mtime_ns(meta))
            .map(|c| c.sha256.clone())
    }

    pub(super) fn put(&mut self, name: &str, meta: &std::fs::Metadata, sha256: &str) {
        let entry = Checksum { size: meta.len(), mtime_ns: mtime_ns(meta), sha256: sha256.to_owned() };
        self.entries.insert(name.to_owned(), entry);
        self.changed = true;
    }

    /// Best effort: a cache that cannot be written is recomputed next time.
    pub(super) fn save_blocking(&self, dir: &Path) {
        let Ok(json) = serde_json::to_vec_pretty(&self.entries) else { return };
        let tmp = dir.join(format!("{TEMP_PREFIX}{}-sums", openwinv_store::ids::random_base62(16)));
        if std::fs::write(&tmp, json).is_err() || std::fs::rename(&tmp, dir.join(CHECKSUMS)).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    pub(super) async fn save(self, dir: &Path) {
        let dir = dir.to_owned();
        let _ = tokio::task::spawn_blocking(move || self.save_blocking(&dir)).await;
    }
}
