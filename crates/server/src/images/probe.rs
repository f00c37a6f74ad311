//! What a disk file is: `qemu-img info` through the QEMU driver's parser, or the header's magic.

use std::io::Read;
use std::path::Path;

use openwinv_wire::images::DISK_FORMATS;

use crate::error::{ApiError, ApiResult};

use super::*;

/// What a disk file is, as `qemu-img info` (or, without it, the header's magic) says.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Probe {
    pub(super) format: String,
    /// The image reads another file (a backing file or an external data file): refused, since
    /// the guest would see whatever that path on this host holds.
    pub(super) external: bool,
}

/// The disk's format, checked against the one claimed: qcow2 or raw, self-contained.
pub(super) async fn checked_format(staged: &Staged, claimed: Option<&str>) -> ApiResult<String> {
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

pub(super) async fn probe(path: &Path) -> Result<Probe, String> {
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
pub(super) fn parse_qemu_img_info(json: &[u8]) -> Result<Probe, String> {
    let info = openwinv_qemu::img::parse_info(json)?;
    let format = info.format.ok_or("qemu-img info names no format")?;
    Ok(Probe { format, external: info.external })
}

/// The format from the header alone, for hosts without qemu-img: qcow2 starts with `QFI\xfb`;
/// a few other formats are named so they are refused rather than taken for raw.
pub(super) fn probe_magic(path: &Path) -> std::io::Result<Probe> {
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)?.take(512).read_to_end(&mut head)?;
    Ok(probe_header(&head))
}

pub(super) fn probe_header(head: &[u8]) -> Probe {
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
