//! Client commands over the catalog: `zones`, `flavors`, `images`, `volume-types`.

use anyhow::bail;
use clap::{Args, Subcommand};
use openwinv_sdk::wire::catalog::{BlockStorageType, Flavor, Image, Zone};
use openwinv_sdk::{Client, FlavorQuery, ImageQuery};

use crate::output::{Column, Output, Tabular, joined, long, number, or_dash, text, won};
use crate::paging::Paging;
use crate::resolve;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FlavorsArgs {
    #[command(subcommand)]
    action: Option<FlavorAction>,
    #[command(flatten)]
    list: FlavorFilters,
}

#[derive(Debug, Subcommand)]
enum FlavorAction {
    /// List flavors (the default)
    List(FlavorFilters),
    /// Show one flavor (by id or name)
    Show {
        id: String,
        /// Bit mask of the fields to return (see /fields/v1/flavors)
        #[arg(long)]
        fields: Option<u64>,
    },
}

#[derive(Debug, Args)]
struct FlavorFilters {
    /// Only in these zones (repeat or comma-separate)
    #[arg(long, value_name = "ZONE_ID", value_delimiter = ',')]
    zone: Vec<String>,
    /// Only supporting these images (repeat or comma-separate)
    #[arg(long, value_name = "IMAGE_ID", value_delimiter = ',')]
    image: Vec<String>,
    /// Only of these types: standard, cpu, memory, gpu, … (repeat or comma-separate)
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    kind: Vec<String>,
    /// Only supporting an image of this type, e.g. os_linux
    #[arg(long)]
    image_type: Option<String>,
    #[command(flatten)]
    size: SizeFilters,
    /// Bit mask of the fields to return (see /fields/v1/flavors)
    #[arg(long)]
    fields: Option<u64>,
    #[command(flatten)]
    paging: Paging,
}

/// Bounds on a flavor's size, shared by the flavor and instance lists.
#[derive(Debug, Args)]
pub struct SizeFilters {
    /// At least N vCPUs
    #[arg(long, value_name = "N")]
    pub min_vcpu: Option<u32>,
    /// At most N vCPUs
    #[arg(long, value_name = "N")]
    pub max_vcpu: Option<u32>,
    /// At least this much memory, in GB
    #[arg(long, value_name = "GB")]
    pub min_memory: Option<u32>,
    /// At most this much memory, in GB
    #[arg(long, value_name = "GB")]
    pub max_memory: Option<u32>,
    /// At least this much disk, in GB
    #[arg(long, value_name = "GB")]
    pub min_disk: Option<u32>,
    /// At most this much disk, in GB
    #[arg(long, value_name = "GB")]
    pub max_disk: Option<u32>,
    /// At least N GPUs
    #[arg(long, value_name = "N")]
    pub min_gpu: Option<u32>,
    /// At most N GPUs
    #[arg(long, value_name = "N")]
    pub max_gpu: Option<u32>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ImagesArgs {
    #[command(subcommand)]
    action: Option<ImageAction>,
    #[command(flatten)]
    list: ImageFilters,
}

#[derive(Debug, Subcommand)]
enum ImageAction {
    /// List images (the default)
    List(ImageFilters),
    /// Show one image (by id or name)
    Show { id: String },
}

#[derive(Debug, Args)]
struct ImageFilters {
    /// Only in these zones (repeat or comma-separate)
    #[arg(long, value_name = "ZONE_ID", value_delimiter = ',')]
    zone: Vec<String>,
    /// Name contains this text (case-insensitive)
    #[arg(long)]
    name: Option<String>,
    /// OS families: ubuntu, rocky, debian, windows, … (repeat or comma-separate)
    #[arg(long, value_name = "FAMILY", value_delimiter = ',')]
    os: Vec<String>,
    /// Image type, e.g. os_linux
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// public or private
    #[arg(long)]
    visibility: Option<String>,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, Args)]
pub struct VolumeTypesArgs {
    /// Only this type, e.g. ssd
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
}

pub async fn zones(client: &Client, out: Output) -> anyhow::Result<()> {
    out.list(&client.zones().await?)
}

pub async fn flavors(client: &Client, args: FlavorsArgs, out: Output) -> anyhow::Result<()> {
    let filters = match args.action {
        None => args.list,
        Some(FlavorAction::List(filters)) => filters,
        Some(FlavorAction::Show { id, fields }) => {
            let id = resolve::flavor(client, &id).await?;
            return match client.flavor(&id, fields).await? {
                Some(flavor) => out.record(&flavor),
                None => bail!("the flavor `{id}` does not exist"),
            };
        }
    };
    let paging = &filters.paging;
    let query = FlavorQuery {
        zone_id: csv(&filters.zone),
        image_id: csv(&filters.image),
        kind: csv(&filters.kind),
        image_type: filters.image_type.clone(),
        min_vcpu: filters.size.min_vcpu,
        max_vcpu: filters.size.max_vcpu,
        min_memory: filters.size.min_memory,
        max_memory: filters.size.max_memory,
        min_disk: filters.size.min_disk,
        max_disk: filters.size.max_disk,
        min_gpu: filters.size.min_gpu,
        max_gpu: filters.size.max_gpu,
        page_no: paging.page,
        page_size: paging.page_size,
        fields: filters.fields,
    };
    if paging.everything(out) {
        out.list(&client.all_flavors(&query).await?)
    } else {
        out.page(&client.flavors(&query).await?)
    }
}

pub async fn images(client: &Client, args: ImagesArgs, out: Output) -> anyhow::Result<()> {
    let filters = match args.action {
        None => args.list,
        Some(ImageAction::List(filters)) => filters,
        Some(ImageAction::Show { id }) => return out.record(&client.image(&resolve::image(client, &id).await?).await?),
    };
    let query = ImageQuery {
        zone_id: csv(&filters.zone),
        name: filters.name,
        os: csv(&filters.os),
        kind: filters.kind,
        visibility: filters.visibility,
        page_no: filters.paging.page,
        page_size: filters.paging.page_size,
    };
    if filters.paging.everything(out) {
        out.list(&client.all_images(&query).await?)
    } else {
        out.page(&client.images(&query).await?)
    }
}

pub async fn volume_types(client: &Client, args: VolumeTypesArgs, out: Output) -> anyhow::Result<()> {
    out.list(&client.block_storage_types(args.kind.as_deref()).await?)
}

/// Repeated or comma-separated flag values as one csv query value.
pub fn csv(values: &[String]) -> Option<String> {
    (!values.is_empty()).then(|| values.join(","))
}

impl Tabular for Zone {
    const COLUMNS: &'static [Column] = &[text("ID"), long("NAME"), text("STATUS")];

    fn cells(&self) -> Vec<String> {
        vec![self.zone_id.clone(), self.zone_name.clone(), self.status.clone()]
    }
}

impl Tabular for Flavor {
    const COLUMNS: &'static [Column] = &[
        text("ID"),
        long("NAME"),
        text("TYPE"),
        number("vCPU"),
        number("MEMORY GB"),
        number("DISK GB"),
        number("MONTHLY"),
        number("HOURLY"),
        long("ZONES"),
        text("STATUS/PROVIDE"),
    ];

    fn cells(&self) -> Vec<String> {
        let spec = self.spec.as_ref();
        let price = self.price.as_ref();
        vec![
            or_dash(self.flavor_id.as_ref()),
            or_dash(self.name.as_ref()),
            or_dash(spec.map(|s| &s.kind)),
            or_dash(spec.map(|s| s.vcpu)),
            or_dash(spec.map(|s| s.memory)),
            or_dash(spec.map(|s| s.disk)),
            or_dash(price.map(|p| won(p.full.krw))),
            or_dash(price.map(|p| won(p.partial.krw))),
            or_dash(self.zone.as_deref().map(joined)),
            format!("{}/{}", self.status.as_deref().unwrap_or("-"), self.provide.as_deref().unwrap_or("-")),
        ]
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        let spec = self.spec.as_ref();
        let price = |term: Option<&openwinv_sdk::wire::catalog::PriceTerm>| {
            or_dash(term.map(|t| format!("{} + VAT {} = {} PER {}", won(t.krw), won(t.vat), won(t.total), t.term)))
        };
        vec![
            ("ID", or_dash(self.flavor_id.as_ref())),
            ("NAME", or_dash(self.name.as_ref())),
            ("STATUS", or_dash(self.status.as_ref())),
            ("PROVIDE", or_dash(self.provide.as_ref())),
            ("TYPE", or_dash(spec.map(|s| &s.kind))),
            ("vCPU", or_dash(spec.map(|s| s.vcpu))),
            ("MEMORY GB", or_dash(spec.map(|s| s.memory))),
            ("DISK GB", or_dash(spec.map(|s| s.disk))),
            ("NETWORK Mbps", or_dash(spec.map(|s| s.network))),
            ("GPU", or_dash(spec.and_then(|s| s.gpu))),
            ("ZONES", or_dash(self.zone.as_deref().map(joined))),
            ("IMAGES", or_dash(self.supporting_images.as_deref().map(joined))),
            ("MONTHLY", price(self.price.as_ref().map(|p| &p.full))),
            ("HOURLY", price(self.price.as_ref().map(|p| &p.partial))),
        ]
    }
}

impl Tabular for Image {
    const COLUMNS: &'static [Column] =
        &[text("ID"), long("NAME"), long("OS"), text("VERSION"), number("MIN DISK GB"), long("ZONES")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.image_id.clone(),
            self.name.clone(),
            self.os.family.clone(),
            self.os.version.clone(),
            self.min_disk.to_string(),
            joined(&self.zone),
        ]
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ID", self.image_id.clone()),
            ("NAME", self.name.clone()),
            ("STATUS", self.status.clone()),
            ("VISIBILITY", self.visibility.clone()),
            ("TYPE", self.image_type.clone()),
            ("OS", format!("{} ({})", self.os.name, self.os.os_type)),
            ("OS FAMILY", self.os.family.clone()),
            ("OS VERSION", self.os.version.clone()),
            ("MIN DISK GB", self.min_disk.to_string()),
            ("MIN RAM MB", self.min_ram.to_string()),
            ("FILE SIZE B", self.file_size.to_string()),
            ("ZONES", joined(&self.zone)),
            ("TAGS", joined(&self.tags)),
            ("PROTECTED", self.protected.to_string()),
            ("DESCRIPTION", or_dash(self.description.as_ref())),
            ("CREATED", self.created_at.clone()),
            ("UPDATED", self.updated_at.clone()),
        ]
    }
}

impl Tabular for BlockStorageType {
    const COLUMNS: &'static [Column] =
        &[text("TYPE"), number("MIN GB"), number("MAX GB"), long("ZONES"), number("PER GB-MONTH")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.kind.clone(),
            self.min.to_string(),
            self.max.to_string(),
            self.zones.as_deref().map_or_else(|| "all".into(), joined),
            won(self.price.krw.price),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openwinv_sdk::wire::catalog::{FlavorPrice, FlavorSpec, PriceTerm};

    #[test]
    fn flavor_cells_show_won_and_survive_a_field_mask() {
        let full = Flavor {
            flavor_id: Some("ss1.c1m1".into()),
            name: Some("Standard".into()),
            provide: Some("Y".into()),
            status: Some("on".into()),
            spec: Some(FlavorSpec { kind: "standard".into(), vcpu: 1, memory: 1, disk: 25, network: 100, gpu: None }),
            supporting_images: Some(vec![]),
            zone: Some(vec!["KR1-Z01".into(), "KR1-Z02".into()]),
            price: Some(FlavorPrice { full: PriceTerm::new("month", 9900), partial: PriceTerm::new("hour", 14) }),
        };
        let cells = full.cells();
        assert_eq!(cells.len(), Flavor::COLUMNS.len());
        assert_eq!(cells[6], "₩9,900");
        assert_eq!(cells[8], "KR1-Z01, KR1-Z02");
        assert_eq!(cells[9], "on/Y");
        let masked = Flavor { flavor_id: Some("ss1.c1m1".into()), ..Default::default() };
        assert_eq!(masked.cells()[1], "-");
    }
}
