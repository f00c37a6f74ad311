//! `admin catalog`: export the catalog as TOML, or replace it with a TOML file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use openwinv_sdk::AdminClient;
use openwinv_sdk::wire::admin::CatalogImportSummary;

use crate::input::read_text;
use crate::output::{Column, Output, Tabular, emit, number};

#[derive(Debug, Subcommand)]
pub enum CatalogAction {
    /// Print the catalog as TOML (always TOML, whatever --output says)
    Export {
        /// Write to this file instead of standard output (`--output` is the global format option)
        #[arg(long, short, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Replace the whole catalog with a TOML file (`-` for standard input)
    Import { file: PathBuf },
}

pub async fn run(admin: &AdminClient, action: CatalogAction, out: Output) -> anyhow::Result<()> {
    match action {
        CatalogAction::Export { file: None } => emit(&admin.export_catalog().await?),
        CatalogAction::Export { file: Some(path) } => {
            let toml = admin.export_catalog().await?;
            std::fs::write(&path, toml).with_context(|| format!("writing {}", path.display()))
        }
        CatalogAction::Import { file } => out.record(&admin.import_catalog(&read_text(&file)?).await?),
    }
}

impl Tabular for CatalogImportSummary {
    const COLUMNS: &'static [Column] = &[number("ZONES"), number("FLAVORS"), number("IMAGES"), number("VOLUME TYPES")];

    fn cells(&self) -> Vec<String> {
        [self.zones, self.flavors, self.images, self.block_storage_types].iter().map(usize::to_string).collect()
    }
}
