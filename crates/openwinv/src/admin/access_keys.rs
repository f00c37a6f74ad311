//! `admin keys`: issue, import, list, update, disable and delete access keys.

use clap::{Args, Subcommand};
use openwinv_sdk::AdminClient;
use openwinv_sdk::wire::admin::{AccessKey, IssuedKey, KeyUpdate, NewKey};

use super::accounts::yes_no;
use crate::output::{Column, Output, Tabular, joined, long, number, or_dash, text};

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Issue a new key pair for an account (the secret is shown once)
    Create {
        #[arg(long, value_name = "NAME")]
        account: String,
        #[command(flatten)]
        limits: Limits,
    },
    /// Import an existing key pair (e.g. one issued by iwinv) for an account
    Import {
        #[arg(long, value_name = "NAME")]
        account: String,
        #[arg(long, value_name = "KEY")]
        access_key: String,
        #[arg(long, value_name = "KEY")]
        secret_key: String,
        #[command(flatten)]
        limits: Limits,
    },
    /// List keys, of every account or of one
    List {
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
    },
    /// Change a key's rate limit, allowlist or state
    Update {
        key: String,
        #[command(flatten)]
        limits: Limits,
        /// Allow every address (empty allowlist)
        #[arg(long, conflicts_with = "allow")]
        clear_allow: bool,
        /// Enable the key
        #[arg(long)]
        enable: bool,
    },
    /// Disable a key
    Disable { key: String },
    /// Delete a key
    Delete { key: String },
}

#[derive(Debug, Args)]
pub struct Limits {
    /// Requests per minute, 0 for unlimited [default: the server's]
    #[arg(long, value_name = "N")]
    rate_limit: Option<u32>,
    /// An address or CIDR the key may be used from (repeat; none means any)
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    allow: Vec<String>,
}

impl Limits {
    fn allow(&self) -> Option<Vec<String>> {
        (!self.allow.is_empty()).then(|| self.allow.clone())
    }
}

pub async fn run(admin: &AdminClient, action: KeyAction, out: Output) -> anyhow::Result<()> {
    match action {
        KeyAction::Create { account, limits } => {
            let key = NewKey { rate_limit: limits.rate_limit, allow: limits.allow(), ..NewKey::default() };
            issued(&admin.create_key(&account, &key).await?, out)
        }
        KeyAction::Import { account, access_key, secret_key, limits } => {
            let key = admin.import_key(&account, &access_key, &secret_key, limits.rate_limit, limits.allow()).await?;
            out.record(&key)
        }
        KeyAction::List { account } => out.list(&admin.keys(account.as_deref()).await?),
        KeyAction::Update { key, limits, clear_allow, enable } => {
            let update = KeyUpdate {
                enabled: enable.then_some(true),
                rate_limit: limits.rate_limit,
                allow: if clear_allow { Some(Vec::new()) } else { limits.allow() },
            };
            out.record(&admin.update_key(&key, &update).await?)
        }
        KeyAction::Disable { key } => out.record(&admin.disable_key(&key).await?),
        KeyAction::Delete { key } => out.record(&admin.delete_key(&key).await?),
    }
}

/// A new key, with a reminder that its secret is not shown again.
fn issued(key: &IssuedKey, out: Output) -> anyhow::Result<()> {
    out.record(key)?;
    if !out.machine() {
        eprintln!("The secret key is shown only now; store it (IWINV_SECRET_KEY) before going on.");
    }
    Ok(())
}

fn rate(limit: u32) -> String {
    if limit == 0 { "unlimited".into() } else { format!("{limit}/min") }
}

fn allowlist(allow: &[String]) -> String {
    if allow.is_empty() { "any".into() } else { joined(allow) }
}

impl Tabular for AccessKey {
    const COLUMNS: &'static [Column] = &[
        text("ACCESS KEY"),
        text("ACCOUNT"),
        text("ENABLED"),
        number("RATE LIMIT"),
        long("ALLOW"),
        text("CREATED"),
        text("LAST USED"),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.access_key.clone(),
            self.account.clone(),
            yes_no(self.enabled),
            rate(self.rate_limit),
            allowlist(&self.allow),
            self.created_at.clone(),
            or_dash(self.last_used_at.as_ref()),
        ]
    }
}

impl Tabular for IssuedKey {
    const COLUMNS: &'static [Column] =
        &[text("ACCOUNT"), text("ACCESS KEY"), text("SECRET KEY"), number("RATE LIMIT"), long("ALLOW")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.account.clone(),
            self.access_key.clone(),
            self.secret_key.clone(),
            rate(self.rate_limit),
            allowlist(&self.allow),
        ]
    }
}
