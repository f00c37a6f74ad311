//! `instances`: list, show, create, edit, delete, the power and rebuild/resize actions, and the
//! remote console. The asynchronous commands print their receipt and operation, or with `--wait`
//! follow the operation and print the instance as it left it.

use clap::{Args, Subcommand};
use openwinv_sdk::wire::ErrorCode;
use openwinv_sdk::wire::catalog::instance_fields;
use openwinv_sdk::wire::instances::{ActionReceipt, CreateReceipt, Instance, RemoteConsole};
use openwinv_sdk::wire::keys::{SshKey, UserScript};
use openwinv_sdk::{Accepted, Client, InstanceQuery, NewInstance};
use serde::Serialize;

use crate::catalog::{SizeFilters, csv};
use crate::keys::Owner;
use crate::operations::{self, Started, WaitArgs, fail_if_any_failed, follow_note, replay_note};
use crate::output::{Column, Output, Tabular, joined, long, or_dash, text};
use crate::paging::Paging;
use crate::resolve;

/// The receipt status of a delete (spec §7).
const DELETING: &str = "deleting";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InstancesArgs {
    #[command(subcommand)]
    action: Option<InstanceAction>,
    #[command(flatten)]
    list: InstanceFilters,
}

#[derive(Debug, Subcommand)]
enum InstanceAction {
    /// List instances (the default)
    List(InstanceFilters),
    /// Show one instance (by id or name, as every instance command)
    Show {
        id: String,
        /// Bit mask of the fields to return (see /fields/v1/instances; 262143 for all, with the
        /// password and console link)
        #[arg(long)]
        fields: Option<u64>,
    },
    /// Create 1-10 instances; the receipt shows each one's login and password
    ///
    /// The receipt's status is `building`, iwinv's receipt wording; the same instance is
    /// `pending` in `instances list` and `show` until it is `active` (spec §7).
    Create(CreateArgs),
    /// Rename an instance or change its description
    Edit {
        id: String,
        #[command(flatten)]
        changes: EditArgs,
    },
    /// Delete an instance (attached volumes are detached and kept)
    Delete {
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Power on an instance that is off (or in error)
    Start {
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Power off an active instance (a hard power-off)
    Shutdown {
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Reboot an active instance
    Reboot {
        id: String,
        /// Reset instead of a soft (ACPI) reboot
        #[arg(long)]
        hard: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Reinstall an instance with a new password, keeping its addresses and volumes
    Rebuild {
        id: String,
        /// The image to install [default: the instance's current image]
        #[arg(long, value_name = "IMAGE_ID")]
        image: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Move an instance to another flavor (the disk may grow, never shrink)
    Resize {
        id: String,
        #[arg(long, value_name = "FLAVOR_ID")]
        flavor: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// A one-time link to an active instance's console, valid for 5 minutes
    Console { id: String },
}

#[derive(Debug, Args)]
struct InstanceFilters {
    /// Only in these statuses: pending, active, off, work, error (repeat or comma-separate)
    ///
    /// An instance being created is `pending` here and in `show`, while the create receipt
    /// says `building`: that is iwinv's receipt wording for the same state (spec §7); filter
    /// with `pending`.
    #[arg(long, value_name = "STATUS", value_delimiter = ',')]
    status: Vec<String>,
    /// Only with an address in these, public or private: addresses or CIDRs (repeat or
    /// comma-separate)
    #[arg(long, value_name = "ADDR|CIDR", value_delimiter = ',')]
    ip: Vec<String>,
    /// Name contains this text
    #[arg(long)]
    name: Option<String>,
    /// Only in this zone
    #[arg(long, value_name = "ZONE_ID")]
    zone: Option<String>,
    /// Only from this image
    #[arg(long, value_name = "IMAGE_ID")]
    image: Option<String>,
    /// Only of these flavor types: standard, cpu, memory, gpu, … (repeat or comma-separate)
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    kind: Vec<String>,
    /// Only of this flavor type
    #[arg(long, value_name = "TYPE")]
    core_type: Option<String>,
    #[command(flatten)]
    size: SizeFilters,
    /// Bit mask of the fields to return (see /fields/v1/instances)
    #[arg(long)]
    fields: Option<u64>,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The zone to create in, by id or name
    #[arg(long, value_name = "ZONE")]
    zone: String,
    /// The image to install, by id or name
    #[arg(long, value_name = "IMAGE")]
    image: String,
    /// The flavor (machine size), by id or name
    #[arg(long, value_name = "FLAVOR")]
    flavor: String,
    /// 1-64 characters; -1 … -N is appended with --count [default: instance-xxxxxx]
    #[arg(long)]
    name: Option<String>,
    /// 0-255 characters
    #[arg(long)]
    description: Option<String>,
    /// How many instances, created all or none (1-10) [default: 1]
    #[arg(long, value_name = "N")]
    count: Option<u32>,
    /// An SSH key of the account to install, by id or name (repeat or comma-separate; Linux
    /// images only)
    #[arg(long = "ssh-key", value_name = "SSH_KEY", value_delimiter = ',')]
    ssh_keys: Vec<String>,
    /// A user script of the account to run on first boot, by id or name
    #[arg(long, value_name = "SCRIPT")]
    script: Option<String>,
    /// Give the instances no public address
    #[arg(long)]
    no_public_ip: bool,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
struct EditArgs {
    /// The new name, 1-64 characters
    #[arg(long)]
    name: Option<String>,
    /// The new description, 0-255 characters ("" clears it)
    #[arg(long)]
    description: Option<String>,
}

pub async fn run(client: &Client, args: InstancesArgs, out: Output) -> anyhow::Result<()> {
    let action = args.action.unwrap_or(InstanceAction::List(args.list));
    let named = |id: String| async move { resolve::instance(client, &id).await };
    match action {
        InstanceAction::List(filters) => list(client, filters, out).await,
        InstanceAction::Show { id, fields } => out.record(&client.instance(&named(id).await?, fields).await?),
        InstanceAction::Create(args) => create(client, args, out).await,
        InstanceAction::Edit { id, changes } => {
            let (name, description) = (changes.name.as_deref(), changes.description.as_deref());
            out.record(&client.edit_instance(&named(id).await?, name, description).await?)
        }
        InstanceAction::Delete { id, wait } => {
            acted(client, client.delete_instance(&named(id).await?).await?, &wait, out).await
        }
        InstanceAction::Start { id, wait } => {
            acted(client, client.start_instance(&named(id).await?).await?, &wait, out).await
        }
        InstanceAction::Shutdown { id, wait } => {
            acted(client, client.shutdown_instance(&named(id).await?).await?, &wait, out).await
        }
        InstanceAction::Reboot { id, hard, wait } => {
            acted(client, client.reboot_instance(&named(id).await?, hard).await?, &wait, out).await
        }
        InstanceAction::Rebuild { id, image, wait } => {
            let id = named(id).await?;
            let image = match image {
                Some(image) => Some(resolve::image(client, &image).await?),
                None => None,
            };
            let accepted = client.rebuild_instance(&id, image.as_deref()).await?;
            acted(client, accepted, &wait, out).await
        }
        InstanceAction::Resize { id, flavor, wait } => {
            let id = named(id).await?;
            let accepted = client.resize_instance(&id, &resolve::flavor(client, &flavor).await?).await?;
            acted(client, accepted, &wait, out).await
        }
        InstanceAction::Console { id } => out.record(&client.remote_console(&named(id).await?).await?),
    }
}

async fn list(client: &Client, filters: InstanceFilters, out: Output) -> anyhow::Result<()> {
    let size = &filters.size;
    let query = InstanceQuery {
        status: csv(&filters.status),
        ip: csv(&filters.ip),
        name: filters.name,
        zone_id: filters.zone,
        image_id: filters.image,
        kind: csv(&filters.kind),
        core_type: filters.core_type,
        min_vcpu: size.min_vcpu,
        max_vcpu: size.max_vcpu,
        min_memory: size.min_memory,
        max_memory: size.max_memory,
        min_disk: size.min_disk,
        max_disk: size.max_disk,
        min_gpu: size.min_gpu,
        max_gpu: size.max_gpu,
        page_no: filters.paging.page,
        page_size: filters.paging.page_size,
        fields: filters.fields,
    };
    if filters.paging.everything(out) {
        out.list(&client.all_instances(&query).await?)
    } else {
        out.page(&client.instances(&query).await?)
    }
}

async fn create(client: &Client, args: CreateArgs, out: Output) -> anyhow::Result<()> {
    let mut ssh_key_ids = Vec::new();
    for key in &args.ssh_keys {
        ssh_key_ids.push(resolve::named::<SshKey>(Owner::Own(client), key).await?);
    }
    let user_script_id = match &args.script {
        Some(script) => Some(resolve::named::<UserScript>(Owner::Own(client), script).await?),
        None => None,
    };
    let (zone, image, flavor) = (
        resolve::zone(client, &args.zone).await?,
        resolve::image(client, &args.image).await?,
        resolve::flavor(client, &args.flavor).await?,
    );
    let new = NewInstance {
        name: args.name,
        description: args.description,
        count: args.count,
        ssh_key_ids,
        user_script_id,
        attach_public_ip: args.no_public_ip.then_some(false),
        ..NewInstance::new(zone, image, flavor)
    };
    let accepted = client.create_instances(&new).await?;
    let receipt: Vec<Created> = accepted
        .rows
        .iter()
        .zip(operation_per_row(&accepted))
        .map(|(row, operation_id)| Created { receipt: row.clone(), operation_id })
        .collect();
    // With --wait and --json, the one JSON document printed is the instances at the end.
    if !(args.wait.wait && out.machine()) {
        out.list(&receipt)?;
        if !out.machine() {
            replay_note(&accepted);
            eprintln!(
                "Store the passwords now: later only `openwinv instances show ID --fields {}` \
                 shows them.",
                instance_fields::ALL
            );
        }
    }
    if !args.wait.wait {
        return follow_note(&accepted, out);
    }
    let ended = operations::wait(client, &accepted.operation_ids, args.wait.timeout()).await?;
    out.forget_answers();
    let ids: Vec<String> = accepted.rows.iter().map(|r| r.instance_id.clone()).collect();
    // The password is part of what a script waiting for its instances needs.
    let fields = instance_fields::DEFAULT | DEFAULT_ACCOUNT;
    show_instances(client, &ids, Some(fields), false, out).await?;
    fail_if_any_failed(&ended)
}

/// The `default_account` field bit.
const DEFAULT_ACCOUNT: u64 = 128;

/// After an action or a delete: the receipt and its operation, or with `--wait` the instance
/// as the operation left it ("deleted" for a delete).
async fn acted(client: &Client, accepted: Accepted<ActionReceipt>, wait: &WaitArgs, out: Output) -> anyhow::Result<()> {
    let id = &accepted.rows.instance_id;
    let deleting = (accepted.rows.status == DELETING).then_some(id.as_str());
    let show = show_instances(client, std::slice::from_ref(id), None, true, out);
    operations::follow_up(client, &accepted, wait, deleting, show, out).await
}

/// Prints the instances as they are now, leaving out those that no longer exist: one as a
/// detail view when `single`, else a table.
async fn show_instances(
    client: &Client,
    ids: &[String],
    fields: Option<u64>,
    single: bool,
    out: Output,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for id in ids {
        match client.instance(id, fields).await {
            Ok(row) => rows.push(row),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match rows.as_slice() {
        [row] if single => out.record(row),
        _ => out.list(&rows),
    }
}

/// The operation of each receipt row, in order, when the server named one per row.
fn operation_per_row<T>(accepted: &Accepted<Vec<T>>) -> Vec<Option<String>> {
    (0..accepted.rows.len()).map(|i| accepted.operation_ids.get(i).cloned()).collect()
}

/// A create receipt row and the operation building it.
#[derive(Debug, Serialize)]
struct Created {
    #[serde(flatten)]
    receipt: CreateReceipt,
    operation_id: Option<String>,
}

impl Tabular for Created {
    const COLUMNS: &'static [Column] = &[
        text("ID"),
        long("NAME"),
        text("STATUS"),
        text("FLAVOR"),
        text("IMAGE"),
        text("LOGIN"),
        text("PASSWORD"),
        text("OPERATION"),
    ];

    fn cells(&self) -> Vec<String> {
        let r = &self.receipt;
        vec![
            r.instance_id.clone(),
            r.name.clone(),
            r.status.clone(),
            r.flavor_id.clone(),
            r.image_id.clone(),
            r.default_account.username.clone(),
            r.default_account.password.clone(),
            or_dash(self.operation_id.as_ref()),
        ]
    }
}

impl Tabular for Started<ActionReceipt> {
    const COLUMNS: &'static [Column] = &[text("ID"), text("STATUS"), text("OPERATION")];

    fn cells(&self) -> Vec<String> {
        vec![self.receipt.instance_id.clone(), self.receipt.status.clone(), or_dash(self.operation_id.as_ref())]
    }
}

impl Tabular for Instance {
    const COLUMNS: &'static [Column] = &[
        text("ID"),
        long("NAME"),
        text("STATUS"),
        text("ZONE"),
        text("FLAVOR"),
        text("IMAGE"),
        text("PUBLIC IP"),
        text("PRIVATE IP"),
        text("CREATED"),
    ];

    fn cells(&self) -> Vec<String> {
        let ip = self.ip.as_ref().and_then(|ips| ips.first());
        vec![
            or_dash(self.instance_id.as_ref()),
            or_dash(self.name.as_ref()),
            // [ext] hosts mode: a machine whose host is away keeps its last status, marked.
            match (self.status.as_ref(), self.host_status.as_deref()) {
                (Some(st), Some("unreachable")) => format!("{st} (host unreachable)"),
                (st, _) => or_dash(st),
            },
            or_dash(self.zone.as_ref().map(|z| &z.zone_id)),
            or_dash(self.flavor.as_ref().map(|f| &f.flavor_id)),
            or_dash(self.image.as_ref().map(|i| &i.image_id)),
            or_dash(ip.and_then(|ip| ip.public.address.as_ref())),
            or_dash(ip.and_then(|ip| ip.private.address.as_ref())),
            or_dash(self.start_date.as_ref()),
        ]
    }

    /// The fields the answer has, and only those (a `--fields` mask leaves some out).
    fn details(&self) -> Vec<(&'static str, String)> {
        let mut d = Vec::new();
        let mut add = |label, value: Option<String>| {
            if let Some(value) = value {
                d.push((label, value));
            }
        };
        add("ID", self.instance_id.clone());
        add("NAME", self.name.clone());
        add("DESCRIPTION", self.description.clone().map(or_dash));
        add("STATUS", self.status.clone());
        add("HOST STATUS", self.host_status.clone());
        add("ZONE", self.zone.as_ref().map(|z| format!("{} ({})", z.zone_id, z.name)));
        add(
            "FLAVOR",
            self.flavor.as_ref().map(|f| {
                let gpu = f.gpu.map_or_else(String::new, |g| format!(", {g} GPU"));
                format!(
                    "{} ({}: {} vCPU, {} GB memory, {} GB disk{gpu})",
                    f.flavor_id, f.kind, f.vcpu, f.memory, f.disk
                )
            }),
        );
        add("IMAGE", self.image.as_ref().map(|i| format!("{} ({} {})", i.image_id, i.os.name, i.os.version)));
        for ip in self.ip.iter().flatten() {
            add("PUBLIC IP", Some(or_dash(ip.public.address.as_ref())));
            let p = &ip.private;
            add(
                "PRIVATE IP",
                Some(format!(
                    "{} (network {}, netmask {}, gateway {})",
                    or_dash(p.address.as_ref()),
                    p.network,
                    p.netmask,
                    p.gateway
                )),
            );
        }
        add("SSH", self.ssh.as_ref().map(|f| format!("ssh -p {} <user>@{}", f.port, f.host)));
        add("LOGIN", self.default_account.as_ref().map(|a| format!("{} / {}", a.username, a.password)));
        add("CONSOLE", self.vnc.as_ref().map(|v| or_dash(v.link.as_ref().map(|l| format!("{l} ({})", v.kind)))));
        add(
            "VOLUMES",
            self.block_storage.as_ref().map(|volumes| {
                let names: Vec<String> = volumes
                    .iter()
                    .map(|v| format!("{} ({} GB {}, {})", v.block_storage_id, v.size, v.kind, v.status))
                    .collect();
                joined(&names)
            }),
        );
        add("FIREWALLS", self.firewall.as_deref().map(joined));
        add(
            "TRAFFIC",
            self.traffic.as_ref().map(|t| format!("{} GB per {} (limit {} GB)", t.default, t.period, t.limit)),
        );
        add(
            "LIMITS",
            self.connection_limit.as_ref().map(|c| format!("{} volumes, {} addresses", c.block_storage, c.ip)),
        );
        add("CREATED", self.start_date.clone());
        add("STOPPED", self.stop_date.clone().map(or_dash));
        d
    }
}

impl Tabular for RemoteConsole {
    const COLUMNS: &'static [Column] = &[text("INSTANCE"), text("TYPE"), long("LINK"), text("EXPIRES")];

    fn cells(&self) -> Vec<String> {
        vec![self.instance_id.clone(), self.kind.clone(), self.link.clone(), self.expires_at.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openwinv_sdk::wire::instances::{DefaultAccount, InstanceZone};

    #[test]
    fn a_masked_instance_shows_only_what_it_has() {
        let masked = Instance {
            instance_id: Some("INSTANCE-1".into()),
            name: Some("web".into()),
            description: Some(None),
            ..Default::default()
        };
        let cells = masked.cells();
        assert_eq!(cells.len(), Instance::COLUMNS.len());
        assert_eq!(&cells[..3], ["INSTANCE-1", "web", "-"]);
        let labels: Vec<_> = masked.details().into_iter().map(|(l, _)| l).collect();
        assert_eq!(labels, ["ID", "NAME", "DESCRIPTION"]);
        let full = Instance {
            zone: Some(InstanceZone { zone_id: "KR1-Z01".into(), name: "서울 1".into() }),
            default_account: Some(DefaultAccount { username: "root".into(), password: "pw".into() }),
            ..masked
        };
        let details = full.details();
        assert!(details.contains(&("ZONE", "KR1-Z01 (서울 1)".into())));
        assert!(details.contains(&("LOGIN", "root / pw".into())));
    }

    #[test]
    fn operations_go_with_their_receipt_rows() {
        let accepted = |rows: usize, ids: &[&str]| Accepted {
            rows: vec![(); rows],
            operation_ids: ids.iter().map(|s| s.to_string()).collect(),
            replayed: false,
        };
        assert_eq!(operation_per_row(&accepted(2, &["OP-1", "OP-2"])), [Some("OP-1".into()), Some("OP-2".into())]);
        assert_eq!(operation_per_row(&accepted(1, &["OP-1"])), [Some("OP-1".into())]);
        assert_eq!(operation_per_row(&accepted(1, &[])), [None]);
    }
}
