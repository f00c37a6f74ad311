//! `admin images`: the files a real driver boots for a catalog image (kernel, initrd and root disk,
//! or one disk image), uploaded to the server's `<data>/images/<image_id>/`.

use std::path::PathBuf;

use clap::{ArgGroup, Subcommand};
use openwinv_sdk::wire::images::{ImageFile, ImageFiles};
use openwinv_sdk::{AdminClient, ImageImport};

use crate::output::{Column, Output, Tabular, number, or_dash, text};

#[derive(Debug, Subcommand)]
pub enum ImageAction {
    /// Upload an image's files and set its boot definition; importing again replaces them
    /// (the image must already be in the catalog: `admin catalog import`)
    #[command(group(ArgGroup::new("source").required(true).args(["kernel", "disk"])))]
    Import {
        #[arg(value_name = "IMAGE_ID")]
        image_id: String,
        /// Direct kernel boot: the kernel
        #[arg(long, value_name = "FILE")]
        kernel: Option<PathBuf>,
        /// The initial ramdisk (with --kernel)
        #[arg(long, value_name = "FILE", conflicts_with = "disk")]
        initrd: Option<PathBuf>,
        /// The kernel command line (with --kernel), e.g. "console=ttyS0 root=/dev/vda"
        #[arg(long, value_name = "CMDLINE", conflicts_with = "disk", allow_hyphen_values = true)]
        cmdline: Option<String>,
        /// A root disk (qcow2 or raw) that instance root disks are overlays on (with --kernel)
        #[arg(long, value_name = "FILE", conflicts_with = "disk")]
        root_disk: Option<PathBuf>,
        /// A bootable disk image (qcow2 or raw)
        #[arg(long, value_name = "FILE")]
        disk: Option<PathBuf>,
        /// The disk image's format (with --disk) [default: detected by the server]
        #[arg(long, value_name = "FORMAT", value_parser = ["qcow2", "raw"], conflicts_with = "kernel")]
        format: Option<String>,
    },
    /// Show an image's boot definition and the files the server has for it (size, SHA-256)
    Files {
        #[arg(value_name = "IMAGE_ID")]
        image_id: String,
    },
}

pub async fn run(admin: &AdminClient, action: ImageAction, out: Output) -> anyhow::Result<()> {
    match action {
        ImageAction::Import { image_id, kernel, initrd, cmdline, root_disk, disk, format } => {
            let import = match (kernel, disk) {
                (Some(kernel), _) => {
                    ImageImport::Kernel { kernel, initrd, cmdline: cmdline.unwrap_or_default(), root_disk }
                }
                (None, Some(disk)) => ImageImport::Disk { disk, format },
                // clap's `source` group requires one of them.
                (None, None) => anyhow::bail!("give --kernel or --disk"),
            };
            out.record(&admin.import_image_files(&image_id, &import).await?)
        }
        ImageAction::Files { image_id } => out.record(&admin.image_files(&image_id).await?),
    }
}

impl Tabular for ImageFiles {
    const COLUMNS: &'static [Column] = &[text("IMAGE"), text("KIND"), number("FILES")];

    fn cells(&self) -> Vec<String> {
        vec![self.image_id.clone(), or_dash(self.boot.as_ref().map(|b| b.kind.clone())), self.files.len().to_string()]
    }

    /// The boot definition, then one line per file.
    fn details(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![("IMAGE", self.image_id.clone())];
        match &self.boot {
            None => rows.push(("KIND", "- (no boot definition: real drivers cannot boot this image)".into())),
            Some(boot) => {
                rows.push(("KIND", boot.kind.clone()));
                if let Some(cmdline) = &boot.cmdline {
                    rows.push(("CMDLINE", cmdline.clone()));
                }
                if let Some(format) = &boot.format {
                    rows.push(("FORMAT", format.clone()));
                }
            }
        }
        rows.extend(self.files.iter().map(|f| (role_label(f), file_line(f))));
        rows
    }
}

fn role_label(file: &ImageFile) -> &'static str {
    match file.role.as_deref() {
        Some("kernel") => "KERNEL",
        Some("initrd") => "INITRD",
        Some("root_disk") => "ROOT DISK",
        Some("disk") => "DISK",
        Some(_) => "FILE",
        None => "UNUSED",
    }
}

fn file_line(file: &ImageFile) -> String {
    match (file.present, file.size, &file.sha256) {
        (true, Some(size), Some(sha)) => format!("{}  {size} bytes  sha256 {sha}", file.name),
        (true, _, _) => file.name.clone(),
        (false, _, _) => format!("{}  (missing on this server's host)", file.name),
    }
}
