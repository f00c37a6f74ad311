//! `admin accounts`.

use clap::Subcommand;
use openwinv_sdk::AdminClient;
use openwinv_sdk::wire::admin::{Account, QuotaUpdate};

use crate::output::{Column, Output, Tabular, long, number, text};

#[derive(Debug, Subcommand)]
pub enum AccountAction {
    /// Create an account (1-64 of A-Z a-z 0-9 - _ .)
    Create { name: String },
    /// List accounts
    List,
    /// Disable an account: its keys stop working
    Disable { name: String },
    /// Enable a disabled account
    Enable { name: String },
    /// Set an account's quotas; each one left out goes back to the server default
    Quota {
        name: String,
        /// Most instances at once
        #[arg(long, value_name = "N")]
        instances: Option<i64>,
        /// Most vCPUs over all instances
        #[arg(long, value_name = "N")]
        vcpu: Option<i64>,
        /// Most GB of block storage over all volumes
        #[arg(long, value_name = "GB")]
        block_storage_gb: Option<i64>,
    },
}

pub async fn run(admin: &AdminClient, action: AccountAction, out: Output) -> anyhow::Result<()> {
    match action {
        AccountAction::Create { name } => out.record(&admin.create_account(&name).await?),
        AccountAction::List => out.list(&admin.accounts().await?),
        AccountAction::Disable { name } => out.record(&admin.disable_account(&name).await?),
        AccountAction::Enable { name } => out.record(&admin.enable_account(&name).await?),
        AccountAction::Quota { name, instances, vcpu, block_storage_gb } => {
            let quota = QuotaUpdate { instances, vcpu, block_storage_gb };
            out.record(&admin.set_quota(&name, &quota).await?)
        }
    }
}

impl Tabular for Account {
    const COLUMNS: &'static [Column] = &[
        text("ID"),
        long("NAME"),
        text("ENABLED"),
        number("MAX INSTANCES"),
        number("MAX VCPU"),
        number("MAX STORAGE GB"),
        text("CREATED"),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.account_id.clone(),
            self.name.clone(),
            yes_no(self.enabled),
            self.quota.instances.to_string(),
            self.quota.vcpu.to_string(),
            self.quota.block_storage_gb.to_string(),
            self.created_at.clone(),
        ]
    }
}

pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}
