//! Where the commands find their endpoint, key pair and operator token, and the name of the
//! place each value came from, so that a bad value is blamed on its real source.
//!
//! Client commands, first match wins:
//! 1. `IWINV_ACCESS_KEY` and `IWINV_SECRET_KEY`;
//! 2. `--profile FILE` (or `IWINV_CONFIG`): TOML with `endpoint`, `access_key`, `secret_key`;
//! 3. a context: `--context NAME` (or `IWINV_CONTEXT`), else the active one;
//! 4. `~/.config/openwinv/credentials.toml`, then `./openwinv-data/credentials` (what a local
//!    `openwinv serve` writes on first start).
//!
//! `IWINV_ENDPOINT` overrides the endpoint of any of them.
//!
//! `admin` commands take the token from `OPENWINV_ADMIN_TOKEN`, else the chosen context, else
//! the `admin-token` file of the data directory (`OPENWINV_DATA_DIR`, default
//! `./openwinv-data`), and the endpoint from `OPENWINV_ADMIN_ENDPOINT`, else from the same place
//! as the token: the context's endpoint, or the `credentials` file beside `admin-token` (so a
//! local server on another port gets its own token, never another server's). A token from the
//! environment goes to `IWINV_ENDPOINT`, else the data directory's endpoint.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use openwinv_sdk::{AdminClient, Client, DEFAULT_ENDPOINT};
use serde::Deserialize;

use crate::context::{self, Chosen};

/// The data directory `openwinv serve` uses by default.
const DEFAULT_DATA_DIR: &str = "./openwinv-data";

/// The credentials file: `endpoint` (optional), `access_key`, `secret_key`, `ca_file` (optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    endpoint: Option<String>,
    access_key: String,
    secret_key: String,
    /// The CA to trust for an https endpoint (`serve --tls` writes it).
    ca_file: Option<PathBuf>,
}

/// Where a value came from.
#[derive(Debug, Clone)]
pub enum Source {
    Env(&'static str),
    File(PathBuf),
    Context(String),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Env(name) => write!(f, "{name} (environment)"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Context(name) => write!(f, "context `{name}`"),
            Source::Default => write!(f, "the default"),
        }
    }
}

/// Which credentials the command line chose.
#[derive(Debug, Clone, Copy)]
pub struct Choice<'a> {
    pub profile: Option<&'a Path>,
    pub context: Option<&'a str>,
}

/// A client endpoint and key pair, with their sources.
struct Resolved {
    endpoint: String,
    endpoint_from: Source,
    access_key: String,
    secret_key: String,
    keys_from: Source,
    /// The CA to trust: `--ca-file`/`IWINV_CA_FILE`, else the profile's or context's `ca_file`.
    ca_file: Option<PathBuf>,
}

/// The client for the chosen credentials, time offset and CA file (`--ca-file`, which wins over
/// the credentials' own `ca_file`). Without a time offset, the client corrects its timestamps
/// from the server's time when they are refused.
pub fn client(choice: Choice<'_>, time_offset: Option<i64>, ca_file: Option<&Path>) -> anyhow::Result<Client> {
    let r = resolve(choice)?;
    if r.access_key.trim().is_empty() || r.secret_key.trim().is_empty() {
        bail!("the access key and the secret key from {} must not be empty", r.keys_from);
    }
    let client = Client::new(&r.endpoint, r.access_key, r.secret_key)
        .with_context(|| format!("the endpoint from {}", r.endpoint_from))?;
    let client = match ca_file.map(Path::to_path_buf).or(r.ca_file) {
        Some(path) => client.with_ca_file(&path)?,
        None => client,
    };
    Ok(match time_offset {
        Some(secs) => client.with_time_offset(secs),
        None => client,
    })
}

fn resolve(choice: Choice<'_>) -> anyhow::Result<Resolved> {
    let (endpoint, access_key, secret_key, keys_from, ca_file) = if var("IWINV_ACCESS_KEY").is_some()
        || var("IWINV_SECRET_KEY").is_some()
    {
        let key = |name: &str| {
            var(name).with_context(|| format!("{name} is not set (IWINV_ACCESS_KEY and IWINV_SECRET_KEY go together)"))
        };
        (None, key("IWINV_ACCESS_KEY")?, key("IWINV_SECRET_KEY")?, Source::Env("IWINV_ACCESS_KEY"), None)
    } else if let Some(path) = choice.profile {
        from_file(path)?
    } else if let Some(Chosen { name, saved }) = context::chosen(choice.context)? {
        let source = Source::Context(name);
        (Some((saved.endpoint, source.clone())), saved.access_key, saved.secret_key, source, saved.ca_file)
    } else {
        let candidates = default_paths();
        match candidates.iter().find(|p| p.is_file()) {
            Some(path) => from_file(path)?,
            None => bail!(
                "no credentials: set IWINV_ACCESS_KEY and IWINV_SECRET_KEY, pass --profile FILE, \
                     create a context (`openwinv context create`), or write one of {}",
                candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        }
    };
    let (endpoint, endpoint_from) = match var("IWINV_ENDPOINT") {
        Some(endpoint) => (endpoint, Source::Env("IWINV_ENDPOINT")),
        None => endpoint.unwrap_or_else(|| (DEFAULT_ENDPOINT.into(), Source::Default)),
    };
    Ok(Resolved { endpoint, endpoint_from, access_key, secret_key, keys_from, ca_file })
}

type FromFile = (Option<(String, Source)>, String, String, Source, Option<PathBuf>);

fn from_file(path: &Path) -> anyhow::Result<FromFile> {
    let profile = read_profile(path)?;
    let source = Source::File(path.to_owned());
    Ok((profile.endpoint.map(|e| (e, source.clone())), profile.access_key, profile.secret_key, source, profile.ca_file))
}

fn read_profile(path: &Path) -> anyhow::Result<Profile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The operator client, and a sentence naming where its token and endpoint came from (for the
/// message when the server refuses the token). The CA to trust is `ca_file` (`--ca-file`), else
/// the one recorded beside the token: the context's, or the data directory's credentials file's.
pub fn admin_client(context_name: Option<&str>, ca_file: Option<&Path>) -> anyhow::Result<(AdminClient, String)> {
    let data_dir = PathBuf::from(var("OPENWINV_DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.into()));
    let beside = read_profile(&data_dir.join("credentials")).ok();
    let beside_ca = beside.as_ref().and_then(|p| p.ca_file.clone());
    let beside_token = || -> Option<(String, Source)> {
        Some((beside.as_ref()?.endpoint.clone()?, Source::File(data_dir.join("credentials"))))
    };
    let context = context::chosen(context_name)?;
    let (token, token_from, token_endpoint, token_ca) = if let Some(token) = var("OPENWINV_ADMIN_TOKEN") {
        let endpoint = var("IWINV_ENDPOINT").map(|e| (e, Source::Env("IWINV_ENDPOINT"))).or_else(beside_token);
        (token, Source::Env("OPENWINV_ADMIN_TOKEN"), endpoint, beside_ca)
    } else if let Some(Chosen { name, saved: context::Saved { admin_token: Some(token), endpoint, ca_file, .. } }) =
        context
    {
        let source = Source::Context(name);
        (token, source.clone(), Some((endpoint, source)), ca_file)
    } else {
        let path = data_dir.join("admin-token");
        let token = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "no operator token: OPENWINV_ADMIN_TOKEN is not set, no context holds one, and {} \
                 cannot be read ({e}); set OPENWINV_DATA_DIR to the server's data directory",
                path.display()
            )
        })?;
        (token, Source::File(path), beside_token(), beside_ca)
    };
    let (endpoint, endpoint_from) = match var("OPENWINV_ADMIN_ENDPOINT") {
        Some(endpoint) => (endpoint, Source::Env("OPENWINV_ADMIN_ENDPOINT")),
        None => token_endpoint.unwrap_or_else(|| (DEFAULT_ENDPOINT.into(), Source::Default)),
    };
    if token.trim().is_empty() {
        bail!("the operator token from {token_from} is empty");
    }
    let admin = AdminClient::new(&endpoint, token).with_context(|| format!("the endpoint from {endpoint_from}"))?;
    let admin = match ca_file.map(Path::to_path_buf).or(token_ca) {
        Some(path) => admin.with_ca_file(&path)?,
        None => admin,
    };
    let origin = format!("the operator token from {token_from}, sent to {endpoint} (from {endpoint_from})");
    Ok((admin, origin))
}

/// `$XDG_CONFIG_HOME/openwinv` (or `~/.config/openwinv`).
pub fn config_dir() -> Option<PathBuf> {
    var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|c| c.join("openwinv"))
}

/// `$XDG_CONFIG_HOME/openwinv/credentials.toml` (or `~/.config/…`), then the file a local
/// `openwinv serve` writes in its data directory.
fn default_paths() -> Vec<PathBuf> {
    let data_dir = var("OPENWINV_DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    config_dir()
        .map(|c| c.join("credentials.toml"))
        .into_iter()
        .chain([PathBuf::from(data_dir).join("credentials")])
        .collect()
}

/// An environment variable, unset when blank.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_written_file_parses() {
        let text = "# openwinv client credentials for account `dev`\n\
                    endpoint = \"http://127.0.0.1:8080\"\naccess_key = \"AK\"\nsecret_key = \"SK\"\n";
        let p: Profile = toml::from_str(text).unwrap();
        assert_eq!(p.endpoint.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!((p.access_key.as_str(), p.secret_key.as_str()), ("AK", "SK"));
        assert!(toml::from_str::<Profile>("access_key = \"AK\"").is_err());
    }

    #[test]
    fn sources_name_themselves() {
        assert_eq!(Source::Env("IWINV_ENDPOINT").to_string(), "IWINV_ENDPOINT (environment)");
        assert_eq!(Source::Context("prod".into()).to_string(), "context `prod`");
        assert_eq!(Source::File("/x/credentials".into()).to_string(), "/x/credentials");
    }
}
