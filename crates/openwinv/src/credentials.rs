//! Where the client commands find their endpoint and key pair: the `IWINV_*` environment, else a
//! credentials file (the one `openwinv serve` writes on first start has exactly this shape).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use openwinv_sdk::{Client, DEFAULT_ENDPOINT};
use serde::Deserialize;

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

/// The client for the given `--profile` (or `IWINV_CONFIG`), time offset and CA file. Without a
/// time offset, the client corrects its timestamps from the server's time when they are refused.
pub fn client(profile: Option<&Path>, time_offset: Option<i64>, ca_file: Option<&Path>) -> anyhow::Result<Client> {
    let client = if var("IWINV_ACCESS_KEY").is_some() || var("IWINV_SECRET_KEY").is_some() {
        Client::from_env()?
    } else {
        from_file(profile)?
    };
    let client = match ca_file {
        Some(path) => client.with_ca_file(path)?,
        None => client,
    };
    Ok(match time_offset {
        Some(secs) => client.with_time_offset(secs),
        None => client,
    })
}

fn from_file(explicit: Option<&Path>) -> anyhow::Result<Client> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => {
            let candidates = default_paths();
            match candidates.iter().find(|p| p.is_file()) {
                Some(path) => path.clone(),
                None => bail!(
                    "no credentials: set IWINV_ACCESS_KEY and IWINV_SECRET_KEY, pass --profile FILE, \
                     or write one of {}",
                    candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let profile: Profile = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let endpoint = var("IWINV_ENDPOINT").or(profile.endpoint).unwrap_or_else(|| DEFAULT_ENDPOINT.into());
    let client = Client::new(&endpoint, profile.access_key, profile.secret_key)
        .with_context(|| format!("the credentials in {}", path.display()))?;
    match profile.ca_file {
        Some(ca) => client.with_ca_file(&ca).with_context(|| format!("ca_file in {}", path.display())),
        None => Ok(client),
    }
}

/// `$XDG_CONFIG_HOME/openwinv/credentials.toml` (or `~/.config/…`), then the file a local
/// `openwinv serve` writes in its data directory.
fn default_paths() -> Vec<PathBuf> {
    let config_home =
        var("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")));
    let data_dir = var("OPENWINV_DATA_DIR").unwrap_or_else(|| "./openwinv-data".into());
    config_home
        .map(|c| c.join("openwinv").join("credentials.toml"))
        .into_iter()
        .chain([PathBuf::from(data_dir).join("credentials")])
        .collect()
}

fn var(name: &str) -> Option<String> {
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
}
