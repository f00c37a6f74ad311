//! The files behind catalog images [ext, operator only]: what a real driver boots for an image.
//!
//! None of this is on the `/v1` wire: users see catalog images as iwinv shows them, and the boot
//! definition is the operator's business (`/admin/v1/images/{image_id}/files`, the catalog TOML).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Direct kernel boot: a kernel, an optional initrd and root disk.
pub const KIND_KERNEL: &str = "kernel";
/// A bootable disk image.
pub const KIND_DISK: &str = "disk";
/// The disk formats instances' overlays can be laid on.
pub const DISK_FORMATS: &[&str] = &["qcow2", "raw"];

/// How an image boots: the `[images.boot]` table of the catalog TOML. Paths are relative to the
/// image's directory (`<data>/images/<image_id>/`).
///
/// One flat table rather than one per kind, so that a wrong or missing field is reported by name
/// (`boot.kernel`) instead of as an unknown variant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageBoot {
    /// `kernel` or `disk`.
    pub kind: String,
    /// kind `kernel`: the kernel (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// kind `kernel`: the initial ramdisk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// kind `kernel`: the kernel command line (default empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// kind `kernel`: a disk instance root disks are overlays on (qcow2 or raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_disk: Option<String>,
    /// kind `disk`: the disk image (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// kind `disk`: `qcow2` or `raw` (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// One file of an image's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageFile {
    /// What the boot definition uses it as: `kernel`, `initrd`, `root_disk` or `disk`; null for a
    /// file it no longer names (kept: instances' disks may still be overlays on it).
    pub role: Option<String>,
    /// The path relative to the image's directory.
    pub name: String,
    /// False when the boot definition names a file this server's host does not have.
    pub present: bool,
    /// Bytes.
    pub size: Option<u64>,
    /// Hex SHA-256 of the content.
    pub sha256: Option<String>,
}

/// What is registered for an image: its boot definition and the files of its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageFiles {
    pub image_id: String,
    /// Null when the image has no boot definition (real drivers cannot boot it).
    pub boot: Option<ImageBoot>,
    /// Files the boot definition names first (in the order kernel, initrd, root_disk, disk), then
    /// the others by name.
    pub files: Vec<ImageFile>,
}

/// The multipart/form-data body of `POST /admin/v1/images/{image_id}/files` (documentation only:
/// the server streams the parts to disk). Text parts should come before file parts so that a
/// bad `kind` or `format` is refused before the files are sent.
#[derive(Debug, Clone, ToSchema)]
pub struct ImageUpload {
    /// `kernel` or `disk`.
    pub kind: String,
    /// kind `kernel`: the kernel command line.
    pub cmdline: Option<String>,
    /// kind `disk`: `qcow2` or `raw`; detected from the content when omitted.
    pub format: Option<String>,
    /// kind `kernel`: the kernel, stored as `vmlinuz`.
    #[schema(value_type = Option<String>, format = Binary)]
    pub kernel: Option<Vec<u8>>,
    /// kind `kernel`: the initrd, stored as `initrd.img`.
    #[schema(value_type = Option<String>, format = Binary)]
    pub initrd: Option<Vec<u8>>,
    /// kind `kernel`: the root disk (qcow2 or raw), stored as `root.<format>`.
    #[schema(value_type = Option<String>, format = Binary)]
    pub root_disk: Option<Vec<u8>>,
    /// kind `disk`: the disk image, stored as `disk.<format>`.
    #[schema(value_type = Option<String>, format = Binary)]
    pub disk: Option<Vec<u8>>,
}
