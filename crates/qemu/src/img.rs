//! What `qemu-img info --output=json` says of a disk image: the one reader of its output, used by
//! this driver (root disks, volumes) and by the server's image upload (probing staged files).

use serde_json::Value;

/// The facts openwinv reads from `qemu-img info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `qcow2`, `raw`, …; `None` when qemu-img named none.
    pub format: Option<String>,
    /// The size the guest sees, in bytes (0 when not printed).
    pub virtual_size: u64,
    /// The image reads another file (a backing file or an external data file).
    pub external: bool,
}

/// Reads the JSON `qemu-img info --output=json` printed.
pub fn parse_info(json: &[u8]) -> Result<ImageInfo, String> {
    let info: Value = serde_json::from_slice(json).map_err(|e| format!("qemu-img info printed no JSON: {e}"))?;
    Ok(ImageInfo {
        format: info["format"].as_str().map(str::to_owned),
        virtual_size: info["virtual-size"].as_u64().unwrap_or(0),
        external: info.get("backing-filename").is_some()
            || info.get("full-backing-filename").is_some()
            || info["format-specific"]["data"].get("data-file").is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_img_info_is_read() {
        let plain = br#"{"format": "qcow2", "virtual-size": 1, "format-specific": {"type": "qcow2", "data": {}}}"#;
        assert_eq!(
            parse_info(plain).unwrap(),
            ImageInfo { format: Some("qcow2".into()), virtual_size: 1, external: false }
        );
        let backed = br#"{"format": "qcow2", "backing-filename": "/etc/shadow"}"#;
        assert!(parse_info(backed).unwrap().external);
        let full = br#"{"format": "qcow2", "full-backing-filename": "/etc/shadow"}"#;
        assert!(parse_info(full).unwrap().external);
        let data = br#"{"format": "qcow2", "format-specific": {"data": {"data-file": "x"}}}"#;
        assert!(parse_info(data).unwrap().external);
        assert_eq!(parse_info(b"{}").unwrap(), ImageInfo { format: None, virtual_size: 0, external: false });
        assert!(parse_info(b"nope").is_err());
    }
}
