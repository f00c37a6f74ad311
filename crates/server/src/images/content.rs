//! Image files by content (issue 18): the SHA-256 and size of a boot file, for the work items a
//! remote host receives, and the file behind a digest, for `GET /internal/v1/images/{sha256}`.
//! Both read the `.sha256.json` cache of the image's directory, so a digest costs one read of
//! the file the first time and a `stat` afterwards.

use std::path::{Path, PathBuf};

use super::*;

/// The SHA-256 (lowercase hex) and size of `path`, a file of an image directory, through that
/// directory's checksum cache.
pub async fn file_digest(path: &Path) -> std::io::Result<(String, u64)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let dir = path.parent().ok_or_else(|| std::io::Error::other("a boot file has no directory"))?;
        let name = path.file_name().ok_or_else(|| std::io::Error::other("a boot file has no name"))?;
        let name = name.to_string_lossy();
        let meta = std::fs::metadata(&path)?;
        if !meta.is_file() {
            return Err(std::io::Error::other(format!("{} is not a file", path.display())));
        }
        let mut sums = Checksums::load_blocking(dir);
        let sum = match sums.get(&name, &meta) {
            Some(sum) => sum,
            None => {
                let sum = sha256_file(&path)?;
                sums.put(&name, &meta, &sum);
                sums.save_blocking(dir);
                sum
            }
        };
        Ok((sum, meta.len()))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Whether `s` is a SHA-256 as the routes name it: 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ImageStore {
    /// A file of some image directory whose content has the SHA-256 `sha256`, with its size;
    /// `None` when no image file has it. Reads each directory's checksum cache (hashing only the
    /// files it does not cover yet).
    pub async fn find_by_digest(&self, sha256: &str) -> std::io::Result<Option<(PathBuf, u64)>> {
        let root = self.root.clone();
        let sha256 = sha256.to_owned();
        tokio::task::spawn_blocking(move || {
            let entries = match std::fs::read_dir(&root) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let dir = e.path();
                for f in list_dir(&dir, &[])? {
                    if f.sha256.as_deref() == Some(sha256.as_str()) {
                        return Ok(Some((dir.join(&f.name), f.size.unwrap_or(0))));
                    }
                }
            }
            Ok(None)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}
