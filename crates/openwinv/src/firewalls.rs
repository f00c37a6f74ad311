//! `firewalls`: list, show, create, edit and delete firewalls (the `/v1/security-groups`
//! family), their rules, and attaching them to instances. Attach and detach print their receipt
//! and operation, or with `--wait` follow the operation and print the firewall as it left it.

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use openwinv_sdk::wire::firewalls::{
    AttachmentReceipt, Firewall, FirewallChanges, FirewallRule, FirewallRuleChanges, NewFirewallRule, Reachability,
};
use openwinv_sdk::{Accepted, Client};
use serde::Serialize;

use crate::operations::{self, Started, WaitArgs};
use crate::output::{Column, Output, Tabular, emit, joined, long, number, or_dash, text};
use crate::paging::{self, Paging};
use crate::resolve;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FirewallsArgs {
    #[command(subcommand)]
    action: Option<FirewallAction>,
    #[command(flatten)]
    list: Paging,
}

#[derive(Debug, Subcommand)]
enum FirewallAction {
    /// List firewalls (the default)
    List(Paging),
    /// Show one firewall with its rules and instances
    Show { id: String },
    /// Create a firewall without rules
    Create {
        /// 4-32 characters
        #[arg(long)]
        title: String,
        /// 1-50 characters
        #[arg(long)]
        content: String,
        /// Whether ICMP reaches the instances [default: Y]
        #[arg(long, value_enum, ignore_case = true)]
        icmp: Option<YesNo>,
    },
    /// Change a firewall's title, content or ICMP setting
    Edit {
        id: String,
        #[command(flatten)]
        changes: EditArgs,
    },
    /// Delete a firewall that is attached nowhere
    Delete { id: String },
    /// Attach a firewall to an instance
    Attach {
        id: String,
        instance_id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Detach a firewall from an instance
    Detach {
        id: String,
        instance_id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List the instances a firewall is attached to
    Instances { id: String },
    /// A firewall's rules: list, add, edit, delete
    #[command(subcommand)]
    Rules(RuleAction),
    /// Can a packet reach an instance? Answers accept or drop and the deciding rule, from the
    /// same compiled rules the kernel enforces [ext]
    Check {
        /// The instance receiving the packet (id or name)
        instance: String,
        /// Where the packet comes from: an IPv4 address, or an instance of yours (id or name)
        #[arg(long)]
        from: String,
        #[arg(long, value_enum, ignore_case = true)]
        protocol: CheckProtocol,
        /// The destination port (TCP and UDP)
        #[arg(long)]
        port: Option<u16>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CheckProtocol {
    Tcp,
    Udp,
    Icmp,
}

impl CheckProtocol {
    fn wire(self) -> &'static str {
        match self {
            CheckProtocol::Tcp => "TCP",
            CheckProtocol::Udp => "UDP",
            CheckProtocol::Icmp => "ICMP",
        }
    }
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
struct EditArgs {
    /// The new title, 4-32 characters
    #[arg(long)]
    title: Option<String>,
    /// The new content, 1-50 characters
    #[arg(long)]
    content: Option<String>,
    /// Whether ICMP reaches the instances
    #[arg(long, value_enum, ignore_case = true)]
    icmp: Option<YesNo>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum YesNo {
    #[value(name = "Y")]
    Y,
    #[value(name = "N")]
    N,
}

impl YesNo {
    fn wire(self) -> String {
        match self {
            YesNo::Y => "Y",
            YesNo::N => "N",
        }
        .into()
    }
}

#[derive(Debug, Subcommand)]
enum RuleAction {
    /// List a firewall's rules
    List { firewall_id: String },
    /// Add a rule to a firewall
    Add {
        firewall_id: String,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// Change a rule; options left out keep their values
    Edit {
        firewall_id: String,
        rule_id: String,
        #[command(flatten)]
        changes: RuleChangeArgs,
    },
    /// Delete a rule
    Delete { firewall_id: String, rule_id: String },
}

#[derive(Debug, Args)]
struct RuleArgs {
    /// IN or OUT
    #[arg(long, value_name = "IN|OUT")]
    bound: String,
    /// TCP or UDP
    #[arg(long, value_name = "TCP|UDP")]
    protocol: String,
    /// A port, or a range A-B (1-65535)
    #[arg(long, value_name = "N|A-B")]
    port: String,
    /// IPv4 CIDR: the source of an IN rule, the destination of an OUT rule
    #[arg(long, value_name = "CIDR")]
    ip: String,
    /// 1-25 characters
    #[arg(long)]
    title: String,
    /// At most 25 characters
    #[arg(long)]
    content: Option<String>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
struct RuleChangeArgs {
    /// IN or OUT
    #[arg(long, value_name = "IN|OUT")]
    bound: Option<String>,
    /// TCP or UDP
    #[arg(long, value_name = "TCP|UDP")]
    protocol: Option<String>,
    /// A port, or a range A-B (1-65535)
    #[arg(long, value_name = "N|A-B")]
    port: Option<String>,
    /// IPv4 CIDR
    #[arg(long, value_name = "CIDR")]
    ip: Option<String>,
    /// 1-25 characters
    #[arg(long)]
    title: Option<String>,
    /// At most 25 characters ("" clears it)
    #[arg(long)]
    content: Option<String>,
}

pub async fn run(client: &Client, args: FirewallsArgs, out: Output) -> anyhow::Result<()> {
    let named = |id: String| async move { resolve::firewall(client, &id).await };
    let instance = |id: String| async move { resolve::instance(client, &id).await };
    match args.action.unwrap_or(FirewallAction::List(args.list)) {
        FirewallAction::List(paging) => paging::show(&paging, |page| client.firewalls(page), out).await,
        FirewallAction::Show { id } => out.record(&existing(client, &named(id).await?).await?),
        FirewallAction::Create { title, content, icmp } => {
            let icmp = icmp.map(YesNo::wire);
            out.record(&client.create_firewall(&title, &content, icmp.as_deref()).await?)
        }
        FirewallAction::Edit { id, changes } => {
            let changes = FirewallChanges {
                title: changes.title,
                content: changes.content,
                icmp: changes.icmp.map(YesNo::wire),
                rules: None,
            };
            out.record(&client.edit_firewall(&named(id).await?, &changes).await?)
        }
        FirewallAction::Delete { id } => {
            let id = named(id).await?;
            done(client.delete_firewall(&id).await?, &format!("{id} deleted"), out)
        }
        FirewallAction::Attach { id, instance_id, wait } => {
            let (id, instance_id) = (named(id).await?, instance(instance_id).await?);
            attached(client, client.attach_firewall(&id, &instance_id).await?, &wait, out).await
        }
        FirewallAction::Detach { id, instance_id, wait } => {
            let (id, instance_id) = (named(id).await?, instance(instance_id).await?);
            attached(client, client.detach_firewall(&id, &instance_id).await?, &wait, out).await
        }
        FirewallAction::Instances { id } => {
            let id = named(id).await?;
            let ids: Vec<InstanceId> = client.firewall_instances(&id).await?.into_iter().map(InstanceId).collect();
            out.list(&ids)
        }
        FirewallAction::Rules(action) => rules(client, action, out).await,
        FirewallAction::Check { instance: target, from, protocol, port } => {
            let target = instance(target).await?;
            let from = if from.parse::<std::net::Ipv4Addr>().is_ok() { from } else { instance(from).await? };
            out.record(&client.reachability(&target, &from, protocol.wire(), port).await?)
        }
    }
}

async fn rules(client: &Client, action: RuleAction, out: Output) -> anyhow::Result<()> {
    let named = |id: String| async move { resolve::firewall(client, &id).await };
    match action {
        RuleAction::List { firewall_id } => out.list(&client.firewall_rules(&named(firewall_id).await?).await?),
        RuleAction::Add { firewall_id, rule } => {
            let firewall_id = named(firewall_id).await?;
            let rule = NewFirewallRule {
                bound: rule.bound,
                protocol: rule.protocol,
                port: rule.port,
                ip: rule.ip,
                title: rule.title,
                content: rule.content,
            };
            out.record(&client.add_firewall_rule(&firewall_id, &rule).await?)
        }
        RuleAction::Edit { firewall_id, rule_id, changes } => {
            let firewall_id = named(firewall_id).await?;
            let changes = FirewallRuleChanges {
                bound: changes.bound,
                protocol: changes.protocol,
                port: changes.port,
                ip: changes.ip,
                title: changes.title,
                content: changes.content,
            };
            out.record(&client.edit_firewall_rule(&firewall_id, &rule_id, &changes).await?)
        }
        RuleAction::Delete { firewall_id, rule_id } => {
            let firewall_id = named(firewall_id).await?;
            let result = client.delete_firewall_rule(&firewall_id, &rule_id).await?;
            done(result, &format!("rule {rule_id} of {firewall_id} deleted"), out)
        }
    }
}

/// A firewall the server knows; it answers no rows for an unknown id.
async fn existing(client: &Client, id: &str) -> anyhow::Result<Firewall> {
    match client.firewall(id).await? {
        Some(firewall) => Ok(firewall),
        None => bail!("there is no firewall `{id}`"),
    }
}

/// The answer of a delete: the server's result with `--json`, else `message`.
fn done(result: String, message: &str, out: Output) -> anyhow::Result<()> {
    if out.machine() { out.list(&[Message(result)]) } else { emit(&format!("{message}\n")) }
}

/// After an attach or a detach: the receipt and its operation, or with `--wait` the firewall as
/// the operation left it.
async fn attached(
    client: &Client,
    accepted: Accepted<AttachmentReceipt>,
    wait: &WaitArgs,
    out: Output,
) -> anyhow::Result<()> {
    let show = async { out.record(&existing(client, &accepted.rows.firewall_id).await?) };
    operations::follow_up(client, &accepted, wait, None, show, out).await
}

/// An instance id, as `firewalls instances` lists them.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct InstanceId(String);

/// A plain result, such as the `success` of a delete.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Message(String);

impl Tabular for Started<AttachmentReceipt> {
    const COLUMNS: &'static [Column] = &[text("FIREWALL"), text("INSTANCE"), text("STATUS"), text("OPERATION")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.receipt.firewall_id.clone(),
            self.receipt.instance_id.clone(),
            self.receipt.status.clone(),
            or_dash(self.operation_id.as_ref()),
        ]
    }
}

impl Tabular for InstanceId {
    const COLUMNS: &'static [Column] = &[text("INSTANCE")];

    fn cells(&self) -> Vec<String> {
        vec![self.0.clone()]
    }
}

impl Tabular for Message {
    const COLUMNS: &'static [Column] = &[text("RESULT")];

    fn cells(&self) -> Vec<String> {
        vec![self.0.clone()]
    }
}

impl Tabular for Firewall {
    const COLUMNS: &'static [Column] =
        &[text("ID"), long("TITLE"), long("CONTENT"), text("ICMP"), number("RULES"), long("INSTANCES")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.firewall_id.clone(),
            self.title.clone(),
            self.content.clone(),
            self.icmp.clone(),
            self.rules.len().to_string(),
            joined(&self.instances),
        ]
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        let rules: Vec<String> = self.rules.iter().map(rule_line).collect();
        vec![
            ("ID", self.firewall_id.clone()),
            ("TITLE", self.title.clone()),
            ("CONTENT", self.content.clone()),
            ("ICMP", self.icmp.clone()),
            ("RULES", if rules.is_empty() { "-".into() } else { rules.join("\n") }),
            ("INSTANCES", joined(&self.instances)),
        ]
    }
}

impl Tabular for Reachability {
    const COLUMNS: &'static [Column] = &[
        text("VERDICT"),
        text("FROM"),
        text("TO"),
        text("PROTOCOL"),
        text("PORT"),
        long("DECIDED BY"),
        long("REASON"),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.verdict.clone(),
            or_dash(self.source_ip.as_ref()),
            or_dash(self.destination_ip.as_ref()),
            self.protocol.clone(),
            or_dash(self.port),
            if self.rules.is_empty() { or_dash(self.step.as_ref()) } else { joined(&self.rules) },
            self.reason.clone(),
        ]
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        vec![
            ("INSTANCE", self.instance_id.clone()),
            ("FROM", format!("{} ({})", self.from, or_dash(self.source_ip.as_ref()))),
            ("TO", or_dash(self.destination_ip.as_ref())),
            ("PROTOCOL", self.protocol.clone()),
            ("PORT", or_dash(self.port)),
            ("VERDICT", self.verdict.clone()),
            ("GATE", self.gate.clone()),
            ("CHAIN", or_dash(self.direction.as_ref())),
            ("STEP", or_dash(self.step.as_ref())),
            ("RULES", if self.rules.is_empty() { "-".into() } else { joined(&self.rules) }),
            ("REASON", self.reason.clone()),
        ]
    }
}

/// A rule on one line: `#1 IN TCP 22 from 0.0.0.0/0 (ssh)`.
fn rule_line(r: &FirewallRule) -> String {
    let direction = if r.bound == "OUT" { "to" } else { "from" };
    format!("#{} {} {} {} {direction} {} ({})", r.rule_id, r.bound, r.protocol, r.port, r.ip, r.title)
}

impl Tabular for FirewallRule {
    const COLUMNS: &'static [Column] =
        &[number("ID"), text("BOUND"), text("PROTOCOL"), text("PORT"), text("IP"), long("TITLE"), long("CONTENT")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.rule_id.to_string(),
            self.bound.clone(),
            self.protocol.clone(),
            self.port.clone(),
            self.ip.clone(),
            self.title.clone(),
            or_dash(self.content.as_ref()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_as_one_line() {
        let rule = FirewallRule {
            rule_id: 1,
            bound: "IN".into(),
            protocol: "TCP".into(),
            port: "22".into(),
            ip: "0.0.0.0/0".into(),
            title: "ssh".into(),
            content: None,
        };
        assert_eq!(rule_line(&rule), "#1 IN TCP 22 from 0.0.0.0/0 (ssh)");
        assert_eq!(rule.cells().last().unwrap(), "-");
    }
}
