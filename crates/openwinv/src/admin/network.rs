//! `admin network show`: the QEMU driver's real networks, their taps, addresses and rule counts.

use clap::Subcommand;
use openwinv_sdk::AdminClient;
use openwinv_sdk::wire::admin::NetworkInfo;

use crate::output::{Column, Output, Tabular, joined, long, number, text};

#[derive(Debug, Subcommand)]
pub enum NetworkAction {
    /// List the networks (empty unless the server runs `--driver qemu --network namespaces`)
    Show,
}

pub async fn run(admin: &AdminClient, action: NetworkAction, out: Output) -> anyhow::Result<()> {
    match action {
        NetworkAction::Show => out.list(&admin.networks().await?),
    }
}

impl Tabular for NetworkInfo {
    const COLUMNS: &'static [Column] = &[
        text("ACCOUNT"),
        text("ZONE"),
        text("NETNS"),
        text("SUBNET"),
        long("TAPS"),
        long("ADDRESSES"),
        number("RULES"),
    ];

    fn cells(&self) -> Vec<String> {
        let taps: Vec<String> = self.ports.iter().map(|p| p.tap.clone()).collect();
        let addresses: Vec<String> = self
            .ports
            .iter()
            .map(|p| match &p.public_ip {
                Some(public) => format!("{} ({public})", p.ip),
                None => p.ip.clone(),
            })
            .collect();
        let rules: usize = self.ports.iter().map(|p| p.inbound_rules + p.outbound_rules).sum();
        vec![
            self.account_id.clone(),
            self.zone_id.clone(),
            self.netns.clone(),
            self.subnet.clone(),
            joined(&taps),
            joined(&addresses),
            rules.to_string(),
        ]
    }
}
