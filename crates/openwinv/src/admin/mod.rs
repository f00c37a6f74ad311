//! `openwinv admin`: the operator API (`/admin/v1`), with the token and endpoint that
//! `credentials::admin_client` finds (`OPENWINV_ADMIN_TOKEN`, a context, or the server's data
//! directory).

mod access_keys;
mod accounts;
mod bills;
mod catalog;
mod clock;
mod faults;
mod hosts;
mod images;
mod network;
mod sim;
mod standin;
mod users;

use clap::Subcommand;
use openwinv_sdk::AdminClient;

use crate::keys::{self, AccountScope, Owner, ScriptAction, SshKeyAction};
use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Accounts: create, list, disable, enable, quota
    #[command(subcommand)]
    Accounts(accounts::AccountAction),
    /// Access keys: create, import, list, update, disable, delete
    #[command(subcommand)]
    Keys(access_keys::KeyAction),
    /// Web console users of an account: create, list
    #[command(subcommand)]
    Users(users::UserAction),
    /// The catalog (zones, flavors, images, volume types) as TOML
    #[command(subcommand)]
    Catalog(catalog::CatalogAction),
    /// Image files a real driver boots: import, files
    #[command(subcommand)]
    Images(images::ImageAction),
    /// SSH keys of an account
    #[command(subcommand)]
    SshKeys(SshKeyAction<AccountScope>),
    /// User scripts of an account
    #[command(subcommand)]
    Scripts(ScriptAction<AccountScope>),
    /// Regular bills: mark paid
    #[command(subcommand)]
    Bills(bills::BillAction),
    /// Real networks of the QEMU driver: show
    #[command(subcommand)]
    Network(network::NetworkAction),
    /// The server clock (settable with the simulated driver)
    #[command(subcommand)]
    Clock(clock::ClockAction),
    /// Hypervisor hosts: add (prints the token), list, show, disable, enable, drain, remove
    #[command(subcommand)]
    Hosts(hosts::HostAction),
    /// Where instances are placed: place, list, show, release, overcommit
    #[command(subcommand)]
    Placements(hosts::PlacementAction),
    /// Fault rules of the simulated driver: add, list, clear
    #[command(subcommand)]
    Faults(faults::FaultAction),
    /// Step operations of the simulated driver by hand
    #[command(subcommand)]
    Sim(sim::SimAction),
    /// Put the server back to its first-start state (simulated driver)
    Reset {
        /// Keep every account and access key; remove only what they own
        #[arg(long)]
        keep_accounts: bool,
    },
    /// Snapshots of the whole state: save, restore, list, delete
    #[command(subcommand)]
    Snapshot(standin::SnapshotAction),
    /// Load a fixture file (TOML or JSON): accounts, keys, SSH keys, scripts, firewalls, bills
    Seed {
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
}

pub async fn run(admin: &AdminClient, command: AdminCommand, out: Output) -> anyhow::Result<()> {
    match command {
        AdminCommand::Accounts(action) => accounts::run(admin, action, out).await,
        AdminCommand::Keys(action) => access_keys::run(admin, action, out).await,
        AdminCommand::Users(action) => users::run(admin, action, out).await,
        AdminCommand::Catalog(action) => catalog::run(admin, action, out).await,
        AdminCommand::Images(action) => images::run(admin, action, out).await,
        AdminCommand::SshKeys(action) => {
            let owner = Owner::Account(admin, &action.scope().account);
            keys::run(owner, &action, out).await
        }
        AdminCommand::Scripts(action) => {
            let owner = Owner::Account(admin, &action.scope().account);
            keys::run(owner, &action, out).await
        }
        AdminCommand::Bills(action) => bills::run(admin, action, out).await,
        AdminCommand::Clock(action) => clock::run(admin, action, out).await,
        AdminCommand::Network(action) => network::run(admin, action, out).await,
        AdminCommand::Faults(action) => faults::run(admin, action, out).await,
        AdminCommand::Hosts(action) => hosts::run(admin, action, out).await,
        AdminCommand::Placements(action) => hosts::placements(admin, action, out).await,
        AdminCommand::Sim(action) => sim::run(admin, action, out).await,
        AdminCommand::Reset { keep_accounts } => standin::reset(admin, keep_accounts, out).await,
        AdminCommand::Snapshot(action) => standin::snapshot(admin, action, out).await,
        AdminCommand::Seed { file } => standin::seed(admin, file, out).await,
    }
}
