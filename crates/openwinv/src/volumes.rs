//! `volumes`: list, show, create, delete, attach and detach block storage. The changes print
//! their receipt and operation, or with `--wait` follow the operation and print the volume as it
//! left it.

use clap::{Args, Subcommand};
use openwinv_sdk::wire::volumes::{BlockStorage, BlockStorageReceipt};
use openwinv_sdk::{Accepted, Client, NewVolume, VolumeQuery};

use crate::operations::{self, Started, WaitArgs};
use crate::output::{Column, Output, Tabular, long, number, or_dash, text};
use crate::paging::Paging;
use crate::resolve;

/// The receipt status of a delete (spec §8).
const DELETING: &str = "deleting";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct VolumesArgs {
    #[command(subcommand)]
    action: Option<VolumeAction>,
    #[command(flatten)]
    list: VolumeFilters,
}

#[derive(Debug, Subcommand)]
enum VolumeAction {
    /// List volumes (the default)
    List(VolumeFilters),
    /// Show one volume
    Show { id: String },
    /// Create a volume attached to an instance (in the instance's zone)
    Create(CreateArgs),
    /// Delete a volume that is not attached
    Delete {
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Attach an available volume to an instance of its zone
    Attach {
        id: String,
        instance_id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Detach a volume from its instance
    Detach {
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Debug, Args)]
struct VolumeFilters {
    /// Only in this zone
    #[arg(long, value_name = "ZONE_ID")]
    zone: Option<String>,
    /// Name contains this text
    #[arg(long)]
    name: Option<String>,
    /// Only of this block-storage type (ssd, sata, …)
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// Only those attached to this instance
    #[arg(long, value_name = "INSTANCE_ID")]
    instance: Option<String>,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The instance to attach the volume to
    #[arg(long, value_name = "INSTANCE_ID")]
    instance: String,
    /// The block-storage type (see `openwinv volume-types`)
    #[arg(long = "type", value_name = "TYPE")]
    kind: String,
    /// GB
    #[arg(long, value_name = "GB")]
    size: u32,
    /// 1-64 characters [default: chosen by the server]
    #[arg(long)]
    name: Option<String>,
    /// 0-255 characters
    #[arg(long)]
    description: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
}

pub async fn run(client: &Client, args: VolumesArgs, out: Output) -> anyhow::Result<()> {
    let named = |id: String| async move { resolve::volume(client, &id).await };
    match args.action.unwrap_or(VolumeAction::List(args.list)) {
        VolumeAction::List(filters) => list(client, filters, out).await,
        VolumeAction::Show { id } => out.record(&client.volume(&named(id).await?).await?),
        VolumeAction::Create(args) => {
            let new = NewVolume {
                name: args.name,
                description: args.description,
                ..NewVolume::new(resolve::instance(client, &args.instance).await?, args.kind, args.size)
            };
            changed(client, client.create_volume(&new).await?, &args.wait, out).await
        }
        VolumeAction::Delete { id, wait } => {
            changed(client, client.delete_volume(&named(id).await?).await?, &wait, out).await
        }
        VolumeAction::Attach { id, instance_id, wait } => {
            let (id, instance_id) = (named(id).await?, resolve::instance(client, &instance_id).await?);
            changed(client, client.attach_volume(&id, &instance_id).await?, &wait, out).await
        }
        VolumeAction::Detach { id, wait } => {
            changed(client, client.detach_volume(&named(id).await?).await?, &wait, out).await
        }
    }
}

async fn list(client: &Client, filters: VolumeFilters, out: Output) -> anyhow::Result<()> {
    let query = VolumeQuery {
        zone_id: filters.zone,
        name: filters.name,
        kind: filters.kind,
        instance_id: filters.instance,
        page_no: filters.paging.page,
        page_size: filters.paging.page_size,
    };
    if filters.paging.everything(out) {
        out.list(&client.all_volumes(&query).await?)
    } else {
        out.page(&client.volumes(&query).await?)
    }
}

/// After a change: the receipt and its operation, or with `--wait` the volume as the operation
/// left it ("deleted" for a delete).
async fn changed(
    client: &Client,
    accepted: Accepted<BlockStorageReceipt>,
    wait: &WaitArgs,
    out: Output,
) -> anyhow::Result<()> {
    let id = &accepted.rows.block_storage_id;
    let deleting = (accepted.rows.status == DELETING).then_some(id.as_str());
    let show = async { out.record(&client.volume(id).await?) };
    operations::follow_up(client, &accepted, wait, deleting, show, out).await
}

impl Tabular for Started<BlockStorageReceipt> {
    const COLUMNS: &'static [Column] = &[text("ID"), text("INSTANCE"), text("STATUS"), text("OPERATION")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.receipt.block_storage_id.clone(),
            or_dash(self.receipt.instance_id.as_ref()),
            self.receipt.status.clone(),
            or_dash(self.operation_id.as_ref()),
        ]
    }
}

impl Tabular for BlockStorage {
    const COLUMNS: &'static [Column] = &[
        text("ID"),
        long("NAME"),
        text("TYPE"),
        number("GB"),
        text("STATUS"),
        text("ZONE"),
        text("INSTANCE"),
        text("CREATED"),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.block_storage_id.clone(),
            self.name.clone(),
            self.kind.clone(),
            self.size.to_string(),
            self.status.clone(),
            self.zone_id.clone(),
            or_dash(self.instance_id.as_ref()),
            self.created_at.clone(),
        ]
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ID", self.block_storage_id.clone()),
            ("NAME", self.name.clone()),
            ("DESCRIPTION", or_dash(self.description.as_ref())),
            ("TYPE", self.kind.clone()),
            ("SIZE", format!("{} GB", self.size)),
            ("STATUS", self.status.clone()),
            ("ZONE", self.zone_id.clone()),
            ("INSTANCE", or_dash(self.instance_id.as_ref())),
            ("CREATED", self.created_at.clone()),
        ]
    }
}
