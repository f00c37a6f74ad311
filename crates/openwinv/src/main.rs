//! `openwinv`: the server (`serve`), its operator tool (`admin`) and an iwinv API client.

mod admin;
mod agent;
mod billing;
mod catalog;
mod context;
mod credentials;
mod failure;
mod firewalls;
mod input;
mod instances;
mod keys;
mod operations;
mod output;
mod paging;
mod resolve;
mod serve;
mod volumes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::credentials::Choice;
use crate::failure::Surface;
use crate::keys::Owner;
use crate::output::{Output, OutputArgs, emit};

/// How many times a command waits out a 429 (`Retry-After`) before giving up.
const RATE_LIMIT_RETRIES: u32 = 3;

#[derive(Debug, Parser)]
#[command(name = "openwinv", version, about)]
struct Cli {
    #[command(flatten)]
    output: OutputArgs,
    /// Credentials file, used when IWINV_ACCESS_KEY is unset
    ///
    /// TOML with `endpoint`, `access_key` and `secret_key`, as `openwinv serve` writes on first
    /// start. Default: ~/.config/openwinv/credentials.toml, then ./openwinv-data/credentials.
    #[arg(long, global = true, env = "IWINV_CONFIG", value_name = "FILE", help_heading = "Client options")]
    profile: Option<PathBuf>,
    /// Use this saved context instead of the active one (`openwinv context list`)
    #[arg(long, global = true, env = "IWINV_CONTEXT", value_name = "NAME", help_heading = "Client options")]
    context: Option<String>,
    /// Seconds to add to this machine's clock when signing requests
    #[arg(
        long,
        global = true,
        env = "IWINV_TIME_OFFSET",
        value_name = "SECS",
        allow_negative_numbers = true,
        help_heading = "Client options"
    )]
    time_offset: Option<i64>,
    /// Send this Idempotency-Key with the command's write, so that running the command again
    /// with the same key replays the first answer instead of acting twice
    #[arg(long, global = true, env = "IWINV_IDEMPOTENCY_KEY", value_name = "KEY", help_heading = "Client options")]
    idempotency_key: Option<String>,
    /// A CA certificate (PEM) to trust besides the system's, such as `openwinv tls ca` prints
    #[arg(long, global = true, env = "IWINV_CA_FILE", value_name = "FILE", help_heading = "Client options")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the openwinv server
    Serve(serve::ServeArgs),
    /// Run a hypervisor host's agent against a control plane (docs/hosts.md)
    Agent(agent::AgentArgs),
    /// Print the OpenAPI document of /v1
    Openapi,
    /// The local certificate authority of `serve --tls`
    #[command(subcommand)]
    Tls(serve::TlsCommand),
    /// List zones
    Zones,
    /// List flavors (machine sizes) or show one
    Flavors(catalog::FlavorsArgs),
    /// List images or show one
    Images(catalog::ImagesArgs),
    /// List block-storage (volume) types
    VolumeTypes(catalog::VolumeTypesArgs),
    /// List, create or delete SSH keys
    SshKeys(keys::SshKeysArgs),
    /// List, create or delete user scripts
    Scripts(keys::ScriptsArgs),
    /// List, create, change, power and delete instances
    Instances(instances::InstancesArgs),
    /// List, create, attach, detach and delete volumes (block storage)
    Volumes(volumes::VolumesArgs),
    /// List, create, change, attach and delete firewalls and their rules
    Firewalls(firewalls::FirewallsArgs),
    /// Show the live bill of this month, list regular bills or show one
    #[command(subcommand)]
    Bill(billing::BillCommand),
    /// Show or wait for an operation (what an asynchronous command started)
    #[command(subcommand)]
    Operations(operations::OperationsCommand),
    /// Operate the server: accounts, keys, catalog, bills, clock, faults (needs the operator token)
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Save, switch, list and delete named contexts (endpoint, keys, CA file, operator token)
    #[command(subcommand)]
    Context(context::ContextCommand),
    /// Print a shell completion script, e.g. `openwinv completion bash > ~/.local/share/bash-completion/completions/openwinv`
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `openwinv man | man -l -`
    Man,
}

impl Command {
    fn surface(&self) -> Surface {
        match self {
            Command::Serve(_)
            | Command::Agent(_)
            | Command::Openapi
            | Command::Tls(_)
            | Command::Context(_)
            | Command::Completion { .. }
            | Command::Man => Surface::Local,
            Command::Admin(_) => Surface::Admin,
            _ => Surface::Client,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let surface = cli.command.surface();
    let json = cli.output.wants_json();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failure::report(&err, surface, json),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Output::new(&cli.output)?;
    let choice = Choice { profile: cli.profile.as_deref(), context: cli.context.as_deref() };
    let client = || -> anyhow::Result<openwinv_sdk::Client> {
        let client = credentials::client(choice, cli.time_offset, cli.ca_file.as_deref())?
            .with_rate_limit_retries(RATE_LIMIT_RETRIES);
        let client = match &cli.idempotency_key {
            Some(key) => client.with_idempotency_key(key),
            None => client,
        };
        Ok(out.client(client))
    };
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Agent(args) => agent::run(args, cli.ca_file.clone()).await,
        Command::Openapi => emit(&openwinv_server::openapi::document_json()),
        Command::Tls(command) => serve::tls(command),
        Command::Zones => catalog::zones(&client()?, out).await,
        Command::Flavors(args) => catalog::flavors(&client()?, args, out).await,
        Command::Images(args) => catalog::images(&client()?, args, out).await,
        Command::VolumeTypes(args) => catalog::volume_types(&client()?, args, out).await,
        Command::SshKeys(args) => {
            let client = client()?;
            keys::run(Owner::Own(&client), &args.action(), out).await
        }
        Command::Scripts(args) => {
            let client = client()?;
            keys::run(Owner::Own(&client), &args.action(), out).await
        }
        Command::Instances(args) => instances::run(&client()?, args, out).await,
        Command::Volumes(args) => volumes::run(&client()?, args, out).await,
        Command::Firewalls(args) => firewalls::run(&client()?, args, out).await,
        Command::Bill(command) => billing::run(&client()?, command, out).await,
        Command::Operations(command) => operations::run(&client()?, command, out).await,
        Command::Admin(command) => {
            let (admin, origin) = credentials::admin_client(cli.context.as_deref(), cli.ca_file.as_deref())?;
            failure::set_admin_origin(origin);
            admin::run(&out.admin_client(admin), command, out).await
        }
        Command::Context(command) => context::run(command, out),
        Command::Completion { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "openwinv", &mut text);
            emit(&String::from_utf8(text)?)
        }
        Command::Man => {
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut text)?;
            emit(&String::from_utf8(text)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn list_is_the_default_and_show_takes_an_id() {
        let cli = Cli::try_parse_from(["openwinv", "flavors", "--zone", "KR1-Z01", "--json"]);
        assert!(cli.is_ok());
        assert!(Cli::try_parse_from(["openwinv", "flavors", "show", "ss1.c1m1"]).is_ok());
        assert!(Cli::try_parse_from(["openwinv", "flavors", "show", "x", "--zone", "z"]).is_err());
        assert!(Cli::try_parse_from(["openwinv", "ssh-keys", "--name", "a"]).is_ok());
    }

    #[test]
    fn create_needs_exactly_one_source() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["openwinv"], args].concat());
        assert!(parse(&["ssh-keys", "create", "--name", "k"]).is_err());
        assert!(parse(&["ssh-keys", "create", "--name", "k", "--public-key", "x"]).is_ok());
        assert!(parse(&["scripts", "create", "--name", "s", "--content", "a", "--file", "f"]).is_err());
    }

    #[test]
    fn admin_key_commands_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["openwinv", "admin"], args].concat());
        assert!(parse(&["ssh-keys", "list", "--account", "dev"]).is_ok());
        assert!(parse(&["ssh-keys", "list"]).is_err());
        assert!(parse(&["keys", "create", "--account", "dev", "--allow", "10.0.0.0/8"]).is_ok());
        assert!(parse(&["keys", "update", "K", "--allow", "1.2.3.4", "--clear-allow"]).is_err());
        assert!(parse(&["clock", "advance", "1h"]).is_ok());
        assert!(parse(&["faults", "add", "--kind", "*", "--step", "*", "--sticky"]).is_ok());
        assert!(parse(&["faults", "clear"]).is_ok());
        assert!(parse(&["faults", "clear", "FAULT-1"]).is_ok());
        assert!(parse(&["sim", "step", "OP-1"]).is_ok());
        assert!(parse(&["bills", "pay", "BILL-1"]).is_ok());
    }

    #[test]
    fn instance_commands_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["openwinv", "instances"], args].concat());
        assert!(parse(&[]).is_ok(), "list is the default");
        assert!(parse(&["--status", "active,off", "--ip", "10.16.0.0/16", "--all"]).is_ok());
        assert!(parse(&["show", "I", "--fields", "3"]).is_ok());
        let create = ["create", "--zone", "Z", "--image", "IMG", "--flavor", "F"];
        assert!(parse(&create).is_ok());
        assert!(parse(&create[..5]).is_err(), "--flavor is required");
        let full = [
            &create[..],
            &["--ssh-key", "A", "--ssh-key", "B,C", "--count", "2", "--no-public-ip"],
            &["--wait", "--timeout", "30"],
        ]
        .concat();
        assert!(parse(&full).is_ok());
        assert!(parse(&["start", "I", "--timeout", "30"]).is_err(), "--timeout needs --wait");
        assert!(parse(&["reboot", "I", "--hard", "--wait"]).is_ok());
        assert!(parse(&["rebuild", "I"]).is_ok());
        assert!(parse(&["resize", "I"]).is_err(), "--flavor is required");
        assert!(parse(&["edit", "I"]).is_err(), "something to change is required");
        assert!(parse(&["edit", "I", "--description", ""]).is_ok());
        assert!(parse(&["console", "I"]).is_ok());
        let global = ["openwinv", "--idempotency-key", "k1", "instances", "delete", "I"];
        assert!(Cli::try_parse_from(global).is_ok());
        assert!(Cli::try_parse_from(["openwinv", "operations", "wait", "OP-1"]).is_ok());
    }

    #[test]
    fn volume_and_firewall_commands_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["openwinv"], args].concat());
        assert!(parse(&["volumes"]).is_ok(), "list is the default");
        assert!(parse(&["volumes", "--type", "ssd", "--instance", "I"]).is_ok());
        assert!(parse(&["volumes", "create", "--instance", "I", "--type", "ssd", "--size", "20", "--wait"]).is_ok());
        assert!(parse(&["volumes", "create", "--instance", "I", "--type", "ssd"]).is_err(), "--size is required");
        assert!(parse(&["volumes", "attach", "V", "I", "--wait"]).is_ok());
        assert!(parse(&["volumes", "detach", "V"]).is_ok());
        assert!(parse(&["firewalls"]).is_ok(), "list is the default");
        assert!(parse(&["firewalls", "create", "--title", "webs", "--content", "c", "--icmp", "N"]).is_ok());
        assert!(parse(&["firewalls", "edit", "F"]).is_err(), "something to change is required");
        assert!(parse(&["firewalls", "attach", "F", "I", "--wait"]).is_ok());
        let add = ["firewalls", "rules", "add", "F", "--bound", "IN", "--protocol", "TCP", "--port", "22"];
        assert!(parse(&[&add[..], &["--ip", "0.0.0.0/0", "--title", "ssh"]].concat()).is_ok());
        assert!(parse(&add).is_err(), "--ip and --title are required");
        assert!(parse(&["firewalls", "rules", "edit", "F", "1", "--port", "80-90"]).is_ok());
        assert!(parse(&["firewalls", "rules", "delete", "F", "1"]).is_ok());
        assert!(parse(&["admin", "accounts", "quota", "dev", "--vcpu", "8"]).is_ok());
    }

    #[test]
    fn output_and_context_options_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["openwinv"], args].concat());
        assert!(parse(&["instances", "-o", "csv", "--columns", "id,name", "--no-header"]).is_ok());
        assert!(parse(&["instances", "--output", "xml"]).is_err());
        assert!(parse(&["--context", "prod", "zones", "--output", "yaml"]).is_ok());
        assert!(parse(&["context", "create", "local", "--endpoint", "http://h:1", "--access-key", "A"]).is_ok());
        assert!(parse(&["context", "use", "local"]).is_ok());
        assert!(parse(&["completion", "zsh"]).is_ok());
        assert!(parse(&["man"]).is_ok());
        assert!(parse(&["admin", "catalog", "export", "--file", "c.toml", "-o", "json"]).is_ok());
    }

    #[test]
    fn bill_commands_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["openwinv", "bill"], args].concat());
        assert!(parse(&["live", "--explain", "--json"]).is_ok());
        let list = ["list", "--from", "2026-01-01", "--to", "2026-12-31", "--min-price", "0", "--max-price", "9"];
        assert!(parse(&[&list[..], &["--page", "2", "--page-size", "5"]].concat()).is_ok());
        assert!(parse(&["list", "--min-price", "-1"]).is_err());
        assert!(parse(&["show", "BILL-1"]).is_ok());
        assert!(parse(&["show"]).is_err(), "the id is required");
    }
}
