//! Export and import of a stopped machine's root disk, and of a detached volume, for moves
//! between hosts.

use super::*;

impl QemuDriver {
    // ---- evacuation ----------------------------------------------------------------------

    /// Writes the stopped machine's root disk to `out` as one qcow2 file, its backing image
    /// merged in (`qemu-img convert`), so that another host needs nothing else to boot it.
    /// Refused for good while the machine runs: only a stopped machine is moved.
    pub async fn export_disk(&self, id: &str, out: &Path) -> Result<(), DriverError> {
        let paths = self.vm(id)?;
        let _guard = self.lock(id).await;
        self.require(id, &paths)?;
        if self.is_running(&paths).await {
            return Err(perm(format!("instance {id} runs: only a stopped machine is exported")));
        }
        self.convert(&paths.root_disk(), out).await?;
        tracing::info!(instance = %id, to = %out.display(), "machine disk exported");
        Ok(())
    }

    /// Creates the machine of `spec`, stopped, with `disk` (a qcow2 file another host exported)
    /// as its root disk instead of a fresh overlay; the file is moved into the machine's
    /// directory. A machine already here is left as it is (a repeated call).
    pub async fn import_disk(&self, spec: &MachineSpec, disk: &Path) -> Result<MachineState, DriverError> {
        let paths = self.vm(&spec.instance_id)?;
        let _guard = self.lock(&spec.instance_id).await;
        if let Some(rec) = self.load(&spec.instance_id, &paths)? {
            return Ok(rec.state());
        }
        if spec.boot.is_none() {
            return Err(no_boot(spec));
        }
        let (format, _) = self.image_info(disk).await?;
        if format != "qcow2" {
            return Err(perm(format!("the imported disk {} is {format}, not qcow2", disk.display())));
        }
        create_private_dir(&paths.dir)?;
        std::fs::rename(disk, paths.root_disk())
            .or_else(|_| std::fs::copy(disk, paths.root_disk()).map(|_| ()))
            .map_err(|e| trans(format!("cannot move {} into {}: {e}", disk.display(), paths.dir.display())))?;
        let seed = self.write_seed(&paths, spec)?;
        let rec = VmRecord::new_stopped(spec, self.pick_port()?, seed.instance_id);
        self.save(&paths, &rec)?;
        tracing::info!(instance = %spec.instance_id, ssh_port = rec.ssh_port, "machine imported");
        Ok(rec.state())
    }

    // ---- volumes moving between hosts ------------------------------------------------------

    /// Writes a detached volume to `out` as one qcow2 file (`qemu-img convert`, a consistent
    /// copy). Refused for good while a machine of this host has it attached, and when this host
    /// keeps no storage for it.
    pub async fn export_volume(&self, volume_id: &str, out: &Path) -> Result<(), DriverError> {
        let path = self.check_volume(volume_id)?;
        let _guard = self.attachments.lock().await;
        if let Some(m) = self.attachment_of(volume_id)? {
            return Err(perm(format!("volume {volume_id} is attached to instance {m}: only a detached volume moves")));
        }
        if !path.is_file() {
            return Err(perm(format!("volume {volume_id} has no storage on this host to move")));
        }
        self.convert(&path, out).await?;
        tracing::info!(volume = %volume_id, to = %out.display(), "volume exported");
        Ok(())
    }

    /// Makes `disk` (a qcow2 file another host exported) the storage of the volume of `spec`;
    /// the file is moved into place. Storage already here is kept (a repeated call).
    pub async fn import_volume(&self, spec: &VolumeSpec, disk: &Path) -> Result<(), DriverError> {
        let path = self.check_volume(&spec.volume_id)?;
        let _guard = self.attachments.lock().await;
        if path.is_file() {
            return Ok(());
        }
        let (format, _) = self.image_info(disk).await?;
        if format != "qcow2" {
            return Err(perm(format!("the imported volume {} is {format}, not qcow2", disk.display())));
        }
        std::fs::create_dir_all(self.data.volumes())
            .map_err(|e| trans(format!("cannot create {}: {e}", self.data.volumes().display())))?;
        std::fs::rename(disk, &path)
            .or_else(|_| std::fs::copy(disk, &path).map(|_| ()))
            .map_err(|e| trans(format!("cannot move {} into {}: {e}", disk.display(), path.display())))?;
        tracing::info!(volume = %spec.volume_id, "volume imported");
        Ok(())
    }

    /// Writes `disk` to `out` as one standalone qcow2 file (`qemu-img convert`, any backing
    /// image merged in), through a temporary file, so `out` is whole or absent.
    async fn convert(&self, disk: &Path, out: &Path) -> Result<(), DriverError> {
        let tmp = out.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        self.qemu_img(&[
            "convert".into(),
            "-q".into(),
            "-O".into(),
            "qcow2".into(),
            disk.as_os_str().to_owned(),
            tmp.clone().into_os_string(),
        ])
        .await?;
        std::fs::rename(&tmp, out).map_err(|e| trans(format!("cannot move {} into place: {e}", tmp.display())))
    }
}
