//! Disks: the root disk (`qemu-img`), the seed, and volumes (attachment records, hot plug).

use super::*;

impl QemuDriver {
    pub(super) fn attached(&self, paths: &VmPaths) -> Result<Vec<VolumeSpec>, DriverError> {
        match std::fs::read(paths.volumes()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| perm(format!("{} is damaged ({e}); fix or remove it", paths.volumes().display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(trans(format!("cannot read {}: {e}", paths.volumes().display()))),
        }
    }

    pub(super) fn save_attached(&self, paths: &VmPaths, vols: &[VolumeSpec]) -> Result<(), DriverError> {
        let bytes = serde_json::to_vec_pretty(vols).map_err(|e| perm(format!("cannot encode volumes.json: {e}")))?;
        write_private(&paths.volumes(), &bytes)
    }

    /// The machine `volume_id` is attached to, from every machine's records.
    pub(super) fn attachment_of(&self, volume_id: &str) -> Result<Option<String>, DriverError> {
        let dir = match std::fs::read_dir(self.data.vms()) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(trans(format!("cannot list {}: {e}", self.data.vms().display()))),
        };
        for entry in dir.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if self.attached(&VmPaths::new(entry.path()))?.iter().any(|v| v.volume_id == volume_id) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    // ---- qemu-img ------------------------------------------------------------------------

    pub(super) async fn qemu_img(&self, args: &[OsString]) -> Result<String, DriverError> {
        let run =
            tokio::process::Command::new(&self.qemu_img).args(args).stdin(Stdio::null()).kill_on_drop(true).output();
        let shown = || {
            let mut s = self.qemu_img.display().to_string();
            for a in args {
                s.push(' ');
                s.push_str(&a.to_string_lossy());
            }
            s
        };
        let out = tokio::time::timeout(self.timeouts.qemu_img, run)
            .await
            .map_err(|_| trans(format!("`{}` did not finish within {:?}", shown(), self.timeouts.qemu_img)))?
            .map_err(|e| perm(format!("cannot run {} ({e}): install qemu-utils", self.qemu_img.display())))?;
        if !out.status.success() {
            return Err(perm(format!("`{}` failed: {}", shown(), String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `qemu-img info` of `path`: (format, virtual size in bytes). `-U` reads images a running
    /// QEMU holds.
    pub(super) async fn image_info(&self, path: &Path) -> Result<(String, u64), DriverError> {
        let out =
            self.qemu_img(&["info".into(), "-U".into(), "--output=json".into(), path.as_os_str().to_owned()]).await?;
        let info = crate::img::parse_info(out.as_bytes()).map_err(|e| perm(format!("{} ({e})", path.display())))?;
        Ok((info.format.unwrap_or_else(|| "raw".into()), info.virtual_size))
    }

    /// (Re)makes `root.qcow2`: an overlay on the image's disk (or root disk), at least the
    /// flavor's size, or a blank disk for a kernel image without one.
    pub(super) async fn make_root_disk(&self, paths: &VmPaths, spec: &MachineSpec) -> Result<(), DriverError> {
        let backing = match &spec.boot {
            None => return Err(no_boot(spec)),
            Some(BootImage::Disk { path, format }) => {
                if format != "qcow2" && format != "raw" {
                    return Err(perm(format!(
                        "image {} is registered with format {format:?}; re-import it as qcow2 or raw with `openwinv \
                         admin images import`",
                        spec.image_id
                    )));
                }
                Some((path.clone(), Some(format.clone())))
            }
            Some(BootImage::Kernel { root_disk, .. }) => root_disk.clone().map(|p| (p, None)),
        };
        let want = u64::from(spec.disk) * GIB;
        let tmp = paths.dir.join("root.qcow2.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut args: Vec<OsString> = vec!["create".into(), "-q".into(), "-f".into(), "qcow2".into()];
        let size = match backing {
            Some((path, format)) => {
                let path = std::path::absolute(&path).unwrap_or(path);
                if !path.is_file() {
                    return Err(missing_file(spec, &path));
                }
                let (probed, backing_size) = self.image_info(&path).await?;
                args.extend(["-F".into(), format.unwrap_or(probed).into(), "-b".into(), path.into_os_string()]);
                // Never smaller than the image: that would cut off its file system.
                want.max(backing_size)
            }
            None => want,
        };
        args.extend([tmp.clone().into_os_string(), size.to_string().into()]);
        self.qemu_img(&args).await?;
        std::fs::rename(&tmp, paths.root_disk())
            .map_err(|e| trans(format!("cannot move {} into place: {e}", tmp.display())))?;
        Ok(())
    }

    pub(super) fn write_seed(&self, paths: &VmPaths, spec: &MachineSpec) -> Result<Seed, DriverError> {
        let seed = Seed::render(spec).map_err(|e| perm(format!("instance {}: {e}", spec.instance_id)))?;
        let iso = seed.iso().map_err(perm)?;
        write_private(&paths.seed(), &iso)?;
        Ok(seed)
    }

    // ---- volumes -------------------------------------------------------------------------

    /// Plugs `v` into the running machine (each half only if missing) and checks it is there.
    pub(super) async fn hot_plug(&self, id: &str, q: &mut Qmp, v: &VolumeAttachment) -> Result<(), DriverError> {
        let e = |e| qmp_err(id, e);
        if !node_exists(q, &v.node_name()).await.map_err(e)? {
            q.execute("blockdev-add", Some(cmdline::volume_blockdev_qmp(v))).await.map_err(e)?;
        }
        if !device_exists(q, &v.device_id()).await.map_err(e)?
            && let Err(err) = q.execute("device_add", Some(cmdline::volume_device_qmp(v))).await
        {
            let _ = q.execute("blockdev-del", Some(json!({ "node-name": v.node_name() }))).await;
            return Err(qmp_err(id, err));
        }
        let blocks = q.execute("query-block", None).await.map_err(e)?;
        let plugged = blocks.as_array().is_some_and(|bs| {
            bs.iter().any(|b| {
                b["inserted"]["node-name"] == v.node_name()
                    && b["qdev"].as_str().is_some_and(|d| d.contains(&format!("/{}/", v.device_id())))
            })
        });
        if !plugged {
            return Err(trans(format!("instance {id}: volume {} was added but QEMU does not show it", v.volume_id)));
        }
        Ok(())
    }

    /// Unplugs `v` from the running machine: `device_del`, wait for the guest to let go, then
    /// `blockdev-del`.
    pub(super) async fn hot_unplug(&self, id: &str, q: &mut Qmp, v: &VolumeAttachment) -> Result<(), DriverError> {
        let e = |e| qmp_err(id, e);
        let dev = v.device_id();
        if device_exists(q, &dev).await.map_err(e)? {
            q.clear_events();
            if let Err(err) = q.execute("device_del", Some(json!({ "id": dev }))).await {
                // A second request while the first is pending is refused; wait for the first.
                tracing::debug!(instance = %id, error = %err, "device_del refused");
            }
            let deadline = tokio::time::Instant::now() + self.timeouts.detach;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let ev = q
                    .wait_event(left.min(Duration::from_secs(1)), |ev| {
                        ev.name == "DEVICE_DELETED" && ev.data["device"] == dev.as_str()
                    })
                    .await
                    .map_err(e)?;
                if ev.is_some() || !device_exists(q, &dev).await.map_err(e)? {
                    break;
                }
                if left.is_zero() {
                    return Err(trans(format!(
                        "instance {id}: the guest did not release volume {} within {} s (is it still booting, or \
                         is the disk in use?); try again, or stop the instance and detach it then",
                        v.volume_id,
                        self.timeouts.detach.as_secs()
                    )));
                }
            }
        }
        if node_exists(q, &v.node_name()).await.map_err(e)? {
            q.execute("blockdev-del", Some(json!({ "node-name": v.node_name() }))).await.map_err(e)?;
        }
        Ok(())
    }

    pub(super) fn check_volume(&self, volume_id: &str) -> Result<PathBuf, DriverError> {
        check_id("volume", volume_id, MAX_VOLUME_ID).map_err(perm)?;
        Ok(self.data.volume(volume_id))
    }
}

pub(super) fn no_boot(spec: &MachineSpec) -> DriverError {
    perm(format!(
        "image {} has no bootable file in this cloud: an operator must import it with `openwinv admin images import`",
        spec.image_id
    ))
}

pub(super) fn missing_file(spec: &MachineSpec, path: &Path) -> DriverError {
    perm(format!(
        "image {} points at {}, which is missing: re-import it with `openwinv admin images import`",
        spec.image_id,
        path.display()
    ))
}

async fn node_exists(q: &mut Qmp, node: &str) -> Result<bool, QmpError> {
    let nodes = q.execute("query-named-block-nodes", Some(json!({ "flat": true }))).await?;
    Ok(nodes.as_array().is_some_and(|ns| ns.iter().any(|n| n["node-name"] == node)))
}

async fn device_exists(q: &mut Qmp, id: &str) -> Result<bool, QmpError> {
    let list = q.execute("qom-list", Some(json!({ "path": "/machine/peripheral" }))).await?;
    Ok(list.as_array().is_some_and(|ps| ps.iter().any(|p| p["name"] == id)))
}
