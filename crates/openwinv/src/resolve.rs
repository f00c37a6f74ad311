//! Names where ids go: `instances show web`, `--ssh-key laptop`, `volumes attach data web`.
//! The argument is looked up among the account's resources of that kind (or the catalog): an
//! exact id wins, else an exact name (a firewall's title); two resources of that name are an
//! error listing their ids. An argument that matches nothing is sent as given, so the server
//! stays the judge (and a replayed request with an Idempotency-Key is sent unchanged); should
//! the command then fail, the nearest id or name is suggested ("did you mean"), from the same
//! list, the same way for every kind.
//!
//! The lookup costs one list request (a few for long lists) before the command's own.

use std::sync::Mutex;

use anyhow::bail;
use openwinv_sdk::{Client, FlavorQuery, ImageQuery, InstanceQuery, PageRequest, VolumeQuery, collect_pages};

use crate::keys::{Named, Owner};

/// A suggestion is made when the nearest candidate is at least this similar (Jaro-Winkler).
const SIMILAR: f64 = 0.8;
/// How many ids an ambiguous name lists.
const LISTED: usize = 5;

/// The suggestions for arguments that matched nothing, shown if the command fails.
static SUGGESTIONS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The suggestions made so far, one sentence each.
pub fn suggestions() -> Vec<String> {
    SUGGESTIONS.lock().map(|s| s.clone()).unwrap_or_default()
}

/// `; did you mean `X`?` for the candidate nearest to `given`, or nothing when none is near.
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let lower = given.to_lowercase();
    let scored = candidates
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_lowercase()), c))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match scored {
        Some((score, best)) if score >= SIMILAR => format!("; did you mean `{best}`?"),
        _ => String::new(),
    }
}

/// The id of the one candidate `(id, name)` whose id, else name, is `given`; `given` itself
/// when nothing matches (with a suggestion kept for the error report).
pub fn pick(what: &str, given: &str, candidates: &[(String, String)]) -> anyhow::Result<String> {
    // The lookup's answers are not the command's: `--json` prints only what follows.
    crate::output::forget_answers();
    if candidates.iter().any(|(id, _)| id == given) {
        return Ok(given.to_owned());
    }
    let named: Vec<&str> = candidates.iter().filter(|(_, name)| name == given).map(|(id, _)| id.as_str()).collect();
    match named.as_slice() {
        [id] => Ok((*id).to_owned()),
        [] => {
            let near = did_you_mean(given, candidates.iter().flat_map(|(id, name)| [id.as_str(), name.as_str()]));
            if let Some(near) = near.strip_prefix("; ")
                && let Ok(mut kept) = SUGGESTIONS.lock()
            {
                kept.push(format!("no {what} has the id or name `{given}`: {near}"));
            }
            Ok(given.to_owned())
        }
        ids => {
            let more = if ids.len() > LISTED { format!(" and {} more", ids.len() - LISTED) } else { String::new() };
            bail!(
                "{} {what}s are named `{given}` ({}{more}): give an id",
                ids.len(),
                ids[..ids.len().min(LISTED)].join(", ")
            )
        }
    }
}

fn pairs<T>(rows: &[T], id: impl Fn(&T) -> String, name: impl Fn(&T) -> String) -> Vec<(String, String)> {
    rows.iter().map(|r| (id(r), name(r))).collect()
}

pub async fn instance(client: &Client, given: &str) -> anyhow::Result<String> {
    let rows = client.all_instances(&InstanceQuery::default()).await?;
    let candidates =
        pairs(&rows, |i| i.instance_id.clone().unwrap_or_default(), |i| i.name.clone().unwrap_or_default());
    pick("instance", given, &candidates)
}

pub async fn volume(client: &Client, given: &str) -> anyhow::Result<String> {
    let rows = client.all_volumes(&VolumeQuery::default()).await?;
    pick("volume", given, &pairs(&rows, |v| v.block_storage_id.clone(), |v| v.name.clone()))
}

/// A firewall by id or title.
pub async fn firewall(client: &Client, given: &str) -> anyhow::Result<String> {
    let size = openwinv_sdk::MAX_PAGE_SIZE;
    let rows = collect_pages(|no| client.firewalls(PageRequest::new(no, size))).await?;
    pick("firewall", given, &pairs(&rows, |f| f.firewall_id.clone(), |f| f.title.clone()))
}

/// An SSH key or user script of the owner, by id or name.
pub async fn named<K: Named>(owner: Owner<'_>, given: &str) -> anyhow::Result<String> {
    let size = openwinv_sdk::MAX_PAGE_SIZE;
    let rows = collect_pages(|no| K::page(owner, None, PageRequest::new(no, size))).await?;
    pick(K::KIND, given, &pairs(&rows, |k| k.id().to_owned(), |k| k.name().to_owned()))
}

/// A zone by id or name.
pub async fn zone(client: &Client, given: &str) -> anyhow::Result<String> {
    let rows = client.zones().await?;
    pick("zone", given, &pairs(&rows, |z| z.zone_id.clone(), |z| z.zone_name.clone()))
}

/// An image by id or name.
pub async fn image(client: &Client, given: &str) -> anyhow::Result<String> {
    let rows = client.all_images(&ImageQuery::default()).await?;
    pick("image", given, &pairs(&rows, |i| i.image_id.clone(), |i| i.name.clone()))
}

/// A flavor by id or name.
pub async fn flavor(client: &Client, given: &str) -> anyhow::Result<String> {
    let rows = client.all_flavors(&FlavorQuery::default()).await?;
    let candidates = pairs(&rows, |f| f.flavor_id.clone().unwrap_or_default(), |f| f.name.clone().unwrap_or_default());
    pick("flavor", given, &candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates() -> Vec<(String, String)> {
        [("INSTANCE-a1b2", "web"), ("INSTANCE-c3d4", "db"), ("INSTANCE-e5f6", "db")]
            .iter()
            .map(|(i, n)| (i.to_string(), n.to_string()))
            .collect()
    }

    #[test]
    fn ids_then_names_then_suggestions() {
        assert_eq!(pick("instance", "INSTANCE-c3d4", &candidates()).unwrap(), "INSTANCE-c3d4");
        assert_eq!(pick("instance", "web", &candidates()).unwrap(), "INSTANCE-a1b2");
        let ambiguous = pick("instance", "db", &candidates()).unwrap_err().to_string();
        assert!(ambiguous.contains("2 instances are named `db` (INSTANCE-c3d4, INSTANCE-e5f6)"), "{ambiguous}");
        assert_eq!(pick("instance", "INSTANCE-a1b3", &candidates()).unwrap(), "INSTANCE-a1b3", "sent as given");
        assert_eq!(pick("instance", "zzz", &candidates()).unwrap(), "zzz");
        let kept = suggestions();
        assert!(kept.iter().any(|s| s.ends_with("did you mean `INSTANCE-a1b2`?")), "{kept:?}");
        assert!(!kept.iter().any(|s| s.contains("zzz")), "nothing near: no suggestion: {kept:?}");
    }
}
