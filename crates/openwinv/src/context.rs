//! Named contexts, as `hcloud context` has them: each holds an endpoint, a key pair, optionally a
//! CA file and the operator token, so that one machine can switch between a local stand-in and a
//! real cloud with `openwinv context use NAME` (or `--context NAME` / `IWINV_CONTEXT` for one
//! command). They live in `$XDG_CONFIG_HOME/openwinv/contexts.toml` (`~/.config/…`), written
//! with mode 0600 since it holds secrets.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::credentials::{config_dir, var};
use crate::output::{Column, Output, Tabular, emit, or_dash, text};

/// The file name under the configuration directory.
const FILE_NAME: &str = "contexts.toml";

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Save a context (endpoint, keys, CA file, operator token) and make it the active one
    Create {
        /// A name for it, e.g. local or prod
        name: String,
        /// The API endpoint, scheme://host[:port]
        #[arg(long, value_name = "URL")]
        endpoint: String,
        /// The access key
        #[arg(long, value_name = "KEY")]
        access_key: String,
        /// The secret key [default: read from IWINV_SECRET_KEY, else one line of standard input]
        #[arg(long, value_name = "SECRET")]
        secret_key: Option<String>,
        /// A PEM file of the certificate authority to trust for this endpoint
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// The operator token of /admin/v1 for `openwinv admin` (a local server's admin-token file)
        #[arg(long, value_name = "TOKEN")]
        admin_token: Option<String>,
        /// Replace a context of that name
        #[arg(long)]
        force: bool,
    },
    /// Make a context the active one (used when no --context, --profile or IWINV_ACCESS_KEY says
    /// otherwise)
    Use { name: String },
    /// List the contexts; `*` marks the active one
    List,
    /// Delete a context
    Delete { name: String },
}

/// One saved context.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
}

/// The contexts file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contexts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active: Option<String>,
    #[serde(default)]
    contexts: BTreeMap<String, Saved>,
}

/// A context chosen for this command, with its name.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub name: String,
    pub saved: Saved,
}

/// Where the contexts are kept; `None` without a home or configuration directory.
pub fn file() -> Option<PathBuf> {
    config_dir().map(|d| d.join(FILE_NAME))
}

fn load() -> anyhow::Result<Contexts> {
    let Some(path) = file() else { return Ok(Contexts::default()) };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contexts::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn store(contexts: &Contexts) -> anyhow::Result<()> {
    let Some(path) = file() else { bail!("no configuration directory: set HOME or XDG_CONFIG_HOME") };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = format!("# openwinv contexts: `openwinv context --help`\n{}", toml::to_string(contexts)?);
    write_private(&path, &text).with_context(|| format!("writing {}", path.display()))
}

/// Writes a file readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())
    }
    #[cfg(not(unix))]
    {
        options.open(path)?.write_all(text.as_bytes())
    }
}

/// The context a command uses: `--context` (or `IWINV_CONTEXT`), else the active one; `None`
/// when neither names one. A name that is not saved is an error naming the saved ones.
pub fn chosen(explicit: Option<&str>) -> anyhow::Result<Option<Chosen>> {
    let contexts = load()?;
    let (name, from_flag) = match explicit {
        Some(name) => (name.to_owned(), true),
        None => match &contexts.active {
            Some(name) => (name.clone(), false),
            None => return Ok(None),
        },
    };
    match contexts.contexts.get(&name) {
        Some(saved) => Ok(Some(Chosen { name, saved: saved.clone() })),
        None => {
            let known: Vec<&str> = contexts.contexts.keys().map(String::as_str).collect();
            let source = if from_flag { "--context (or IWINV_CONTEXT)" } else { "the active context" };
            bail!(
                "{source} names `{name}`, which is not saved; the contexts are: {}{}",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") },
                crate::resolve::did_you_mean(&name, known.iter().copied())
            )
        }
    }
}

pub fn run(command: ContextCommand, out: Output) -> anyhow::Result<()> {
    let mut contexts = load()?;
    match command {
        ContextCommand::Create { name, endpoint, access_key, secret_key, ca_file, admin_token, force } => {
            if contexts.contexts.contains_key(&name) && !force {
                bail!("a context `{name}` exists already: pass --force to replace it");
            }
            let secret_key = match secret_key.or_else(|| var("IWINV_SECRET_KEY")) {
                Some(secret) => secret,
                None => read_secret_line()?,
            };
            // Fails early on an endpoint or keys the client would refuse.
            openwinv_sdk::Client::new(&endpoint, access_key.clone(), secret_key.clone())
                .with_context(|| format!("context `{name}`"))?;
            let ca_file = ca_file.map(|p| std::path::absolute(&p).unwrap_or(p));
            let saved = Saved { endpoint, access_key, secret_key, ca_file, admin_token };
            contexts.contexts.insert(name.clone(), saved);
            contexts.active = Some(name.clone());
            store(&contexts)?;
            eprintln!("Context `{name}` saved and active.");
            Ok(())
        }
        ContextCommand::Use { name } => {
            if !contexts.contexts.contains_key(&name) {
                let known = contexts.contexts.keys().map(String::as_str);
                bail!("there is no context `{name}`{}", crate::resolve::did_you_mean(&name, known));
            }
            contexts.active = Some(name.clone());
            store(&contexts)?;
            eprintln!("Context `{name}` is now active.");
            Ok(())
        }
        ContextCommand::List => {
            let rows: Vec<Listed> = contexts
                .contexts
                .iter()
                .map(|(name, saved)| Listed {
                    active: contexts.active.as_deref() == Some(name.as_str()),
                    name: name.clone(),
                    endpoint: saved.endpoint.clone(),
                    access_key: saved.access_key.clone(),
                    ca_file: saved.ca_file.as_ref().map(|p| p.display().to_string()),
                    admin_token: saved.admin_token.is_some(),
                })
                .collect();
            out.list(&rows)
        }
        ContextCommand::Delete { name } => {
            if contexts.contexts.remove(&name).is_none() {
                bail!("there is no context `{name}`");
            }
            if contexts.active.as_deref() == Some(name.as_str()) {
                contexts.active = None;
            }
            store(&contexts)?;
            emit(&format!("{name} deleted\n"))
        }
    }
}

/// The secret key from one line of standard input (a prompt on a terminal).
fn read_secret_line() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprint!("Secret key: ");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the secret key from standard input")?;
    let secret = line.trim().to_owned();
    if secret.is_empty() {
        bail!("no secret key: pass --secret-key, set IWINV_SECRET_KEY or write it to standard input");
    }
    Ok(secret)
}

/// A line of `context list`; secrets are never shown.
#[derive(Debug, Serialize)]
struct Listed {
    active: bool,
    name: String,
    endpoint: String,
    access_key: String,
    ca_file: Option<String>,
    admin_token: bool,
}

impl Tabular for Listed {
    const COLUMNS: &'static [Column] =
        &[text("NAME"), text("ACTIVE"), text("ENDPOINT"), text("ACCESS KEY"), text("CA FILE"), text("ADMIN TOKEN")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            if self.active { "*".into() } else { String::new() },
            self.endpoint.clone(),
            self.access_key.clone(),
            or_dash(self.ca_file.as_ref()),
            if self.admin_token { "yes".into() } else { "no".into() },
        ]
    }
}
