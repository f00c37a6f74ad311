//! `admin bills`: mark a regular bill paid.

use clap::Subcommand;
use openwinv_sdk::AdminClient;

use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum BillAction {
    /// Mark a bill paid today (a bill already paid keeps its date)
    Pay { id: String },
}

pub async fn run(admin: &AdminClient, action: BillAction, out: Output) -> anyhow::Result<()> {
    match action {
        BillAction::Pay { id } => out.record(&admin.pay_bill(&id).await?),
    }
}
