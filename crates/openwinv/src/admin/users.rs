//! `admin users`: the people who sign in to the web console for an account.

use std::io::Read;

use anyhow::Context;
use clap::Subcommand;
use openwinv_sdk::AdminClient;
use openwinv_sdk::wire::admin::ConsoleUser;

use crate::output::{Column, Output, Tabular, long, text};

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create a console user; without --password-stdin a password is generated and shown once
    Create {
        /// The account the user signs in to
        #[arg(long)]
        account: String,
        /// The sign-in name (1-64 of A-Z a-z 0-9 - _ .), unique over the server
        #[arg(long)]
        login: String,
        /// Read the password (at least 12 characters) from standard input, first line
        #[arg(long)]
        password_stdin: bool,
    },
    /// List an account's console users
    List {
        #[arg(long)]
        account: String,
    },
}

pub async fn run(admin: &AdminClient, action: UserAction, out: Output) -> anyhow::Result<()> {
    match action {
        UserAction::Create { account, login, password_stdin } => {
            let password = if password_stdin {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).context("reading the password from standard input")?;
                Some(text.lines().next().unwrap_or("").to_owned())
            } else {
                None
            };
            out.record(&admin.create_console_user(&account, &login, password.as_deref()).await?)
        }
        UserAction::List { account } => out.list(&admin.console_users(&account).await?),
    }
}

impl Tabular for ConsoleUser {
    const COLUMNS: &'static [Column] =
        &[text("ID"), long("LOGIN"), text("ACCOUNT"), text("CREATED"), text("PASSWORD (SHOWN ONCE)")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.user_id.clone(),
            self.login.clone(),
            self.account.clone(),
            self.created_at.clone(),
            self.password.clone().unwrap_or_default(),
        ]
    }
}
