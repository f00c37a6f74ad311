//! The catalog: zones, flavors, images and block-storage types, as the operator defines them.
//!
//! The operator's format is TOML (`catalog/default.toml` is built in and seeds an empty store).
//! The store keeps each entry as JSON; the server holds the whole catalog in memory, answers
//! `/v1` catalog reads from it, and reloads it when another process imports a new one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;

use openwinv_store::{CatalogEntry, Store};
use openwinv_wire::catalog as wire;
use openwinv_wire::images::{DISK_FORMATS, ImageBoot, KIND_DISK, KIND_KERNEL};
use serde::{Deserialize, Serialize};

pub const DEFAULT_CATALOG: &str = include_str!("../catalog/default.toml");

/// Flavor types the API knows, beyond any the operator adds.
pub const FLAVOR_TYPES: &[&str] = &["standard", "cpu", "memory", "gpu"];
/// Image families accepted by the `os` filter (spec §6).
pub const OS_FAMILIES: &[&str] = &[
    "windows",
    "windows_core",
    "windows_sql",
    "ubuntu",
    "rocky",
    "cent",
    "fedora",
    "freebsd",
    "opensuse",
    "coreos",
    "oracle",
    "debian",
    "alma",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    #[serde(default)]
    pub zones: Vec<ZoneDef>,
    #[serde(default)]
    pub flavors: Vec<FlavorDef>,
    #[serde(default)]
    pub images: Vec<ImageDef>,
    #[serde(default)]
    pub block_storage_types: Vec<BlockStorageTypeDef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneDef {
    pub id: String,
    pub name: String,
    /// `on` or `off`.
    #[serde(default = "on")]
    pub status: String,
    /// The zone's public address pool (IPv4 CIDR); omitted = instances get no public address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_pool: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlavorDef {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub vcpu: u32,
    /// GB.
    pub memory: u32,
    /// GB.
    pub disk: u32,
    /// Mbps.
    pub network: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
    /// Won per month, VAT excluded; also the monthly cap.
    pub price_month: i64,
    /// Won per hour, VAT excluded.
    pub price_hour: i64,
    /// Whether it can be ordered (`provide: Y`).
    #[serde(default = "yes")]
    pub provide: bool,
    #[serde(default = "on")]
    pub status: String,
    pub zones: Vec<String>,
    /// Images it supports; omitted = every image whose minimum disk and memory fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDef {
    pub id: String,
    pub name: String,
    /// The `os` family (`ubuntu`, `windows`, …).
    pub family: String,
    pub os_name: String,
    pub version: String,
    /// `linux` or `windows`.
    pub os_type: String,
    /// e.g. `os_linux`.
    pub image_type: String,
    #[serde(default = "public")]
    pub visibility: String,
    pub zones: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub content: Vec<String>,
    #[serde(default = "active")]
    pub status: String,
    #[serde(default)]
    pub protected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// GB.
    pub min_disk: u32,
    /// MB.
    pub min_ram: u32,
    #[serde(default)]
    pub file_size: u64,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// The files a real driver boots (`[images.boot]`); operator-only, never on the `/v1` wire.
    /// Kept last: TOML writes tables after the plain values of their entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<ImageBoot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockStorageTypeDef {
    #[serde(rename = "type")]
    pub kind: String,
    pub min: u32,
    pub max: u32,
    /// Won per GB per month, VAT excluded.
    pub price_gb_month: i64,
    /// Omitted = every zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<String>>,
}

fn on() -> String {
    "on".into()
}
fn yes() -> bool {
    true
}
fn public() -> String {
    "public".into()
}
fn active() -> String {
    "active".into()
}

impl CatalogFile {
    pub fn parse(text: &str) -> Result<CatalogFile, String> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| format!("The catalog is not valid TOML: {e}"))?;
        file.validate()?;
        Ok(file)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the catalog serializes")
    }

    /// Checks references and bounds; the message names the entry at fault.
    pub fn validate(&self) -> Result<(), String> {
        let mut zones = HashSet::new();
        for z in &self.zones {
            check_id("zone", &z.id)?;
            if !zones.insert(z.id.as_str()) {
                return Err(format!("zone `{}` is defined twice", z.id));
            }
            if !matches!(z.status.as_str(), "on" | "off") {
                return Err(format!("zone `{}`: status must be on or off", z.id));
            }
            if let Some(pool) = &z.public_pool {
                match pool.parse::<ipnet::Ipv4Net>() {
                    Ok(net) if net.prefix_len() <= 30 => {}
                    _ => {
                        return Err(format!("zone `{}`: public_pool must be an IPv4 CIDR of /30 or larger", z.id));
                    }
                }
            }
        }
        let known_zone = |owner: &str, z: &String| {
            if zones.contains(z.as_str()) { Ok(()) } else { Err(format!("{owner}: unknown zone `{z}`")) }
        };
        let mut images = HashSet::new();
        for i in &self.images {
            check_id("image", &i.id)?;
            if !images.insert(i.id.as_str()) {
                return Err(format!("image `{}` is defined twice", i.id));
            }
            if !matches!(i.visibility.as_str(), "public" | "private") {
                return Err(format!("image `{}`: visibility must be public or private", i.id));
            }
            if !matches!(i.os_type.as_str(), "linux" | "windows") {
                return Err(format!("image `{}`: os_type must be linux or windows", i.id));
            }
            i.zones.iter().try_for_each(|z| known_zone(&format!("image `{}`", i.id), z))?;
            if let Some(boot) = &i.boot {
                check_boot(boot).map_err(|e| format!("image `{}`: {e}", i.id))?;
            }
        }
        let mut flavors = HashSet::new();
        for f in &self.flavors {
            check_id("flavor", &f.id)?;
            if !flavors.insert(f.id.as_str()) {
                return Err(format!("flavor `{}` is defined twice", f.id));
            }
            if f.vcpu == 0 || f.memory == 0 || f.disk == 0 {
                return Err(format!("flavor `{}`: vcpu, memory and disk must be at least 1", f.id));
            }
            if f.price_month < 0 || f.price_hour < 0 {
                return Err(format!("flavor `{}`: prices must not be negative", f.id));
            }
            if !matches!(f.status.as_str(), "on" | "off") {
                return Err(format!("flavor `{}`: status must be on or off", f.id));
            }
            f.zones.iter().try_for_each(|z| known_zone(&format!("flavor `{}`", f.id), z))?;
            for img in f.images.iter().flatten() {
                if !images.contains(img.as_str()) {
                    return Err(format!("flavor `{}`: unknown image `{img}`", f.id));
                }
            }
        }
        let mut types = HashSet::new();
        for t in &self.block_storage_types {
            check_id("block storage type", &t.kind)?;
            if !types.insert(t.kind.as_str()) {
                return Err(format!("block storage type `{}` is defined twice", t.kind));
            }
            if t.min == 0 || t.min > t.max {
                return Err(format!("block storage type `{}`: need 1 <= min <= max", t.kind));
            }
            if t.price_gb_month < 0 {
                return Err(format!("block storage type `{}`: price must not be negative", t.kind));
            }
            for z in t.zones.iter().flatten() {
                known_zone(&format!("block storage type `{}`", t.kind), z)?;
            }
        }
        Ok(())
    }

    pub fn to_entries(&self) -> Vec<CatalogEntry> {
        fn entries<T: Serialize>(kind: &str, items: &[T], id: impl Fn(&T) -> &str) -> Vec<CatalogEntry> {
            items
                .iter()
                .enumerate()
                .map(|(i, item)| CatalogEntry {
                    kind: kind.into(),
                    id: id(item).into(),
                    position: i as i64,
                    body: serde_json::to_string(item).expect("catalog entries serialize"),
                })
                .collect()
        }
        let mut all = entries("zone", &self.zones, |z| &z.id);
        all.extend(entries("flavor", &self.flavors, |f| &f.id));
        all.extend(entries("image", &self.images, |i| &i.id));
        all.extend(entries("block_storage_type", &self.block_storage_types, |t| &t.kind));
        all
    }

    pub fn from_entries(entries: &[CatalogEntry]) -> Result<CatalogFile, String> {
        let mut file = CatalogFile::default();
        let mut sorted: Vec<&CatalogEntry> = entries.iter().collect();
        sorted.sort_by_key(|e| e.position);
        for e in sorted {
            let bad = |err: serde_json::Error| format!("catalog entry {} `{}` is damaged: {err}", e.kind, e.id);
            match e.kind.as_str() {
                "zone" => file.zones.push(serde_json::from_str(&e.body).map_err(bad)?),
                "flavor" => file.flavors.push(serde_json::from_str(&e.body).map_err(bad)?),
                "image" => file.images.push(serde_json::from_str(&e.body).map_err(bad)?),
                "block_storage_type" => file.block_storage_types.push(serde_json::from_str(&e.body).map_err(bad)?),
                other => return Err(format!("unknown catalog entry kind `{other}`")),
            }
        }
        Ok(file)
    }
}

/// The longest operator-chosen catalog id.
const ID_MAX: usize = 64;

/// Checks an operator-chosen catalog id against `^[A-Za-z0-9_-][A-Za-z0-9_.-]*$` (spec §5: a public
/// client refuses any other id), at most [`ID_MAX`] characters. A leading `.` is refused too
/// because an image id names a directory under `<data>/images`.
fn check_id(what: &str, id: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let ok = (1..=ID_MAX).contains(&id.len()) && !id.starts_with('.') && id.bytes().all(allowed);
    if ok {
        Ok(())
    } else {
        Err(format!("{what} id `{id}` must be 1-{ID_MAX} characters of A-Z a-z 0-9 - _ . and must not start with `.`"))
    }
}

/// The longest kernel command line accepted; Linux's own limit on x86 is 2048 bytes.
pub const MAX_CMDLINE: usize = 4096;
/// The longest relative path accepted in a boot definition.
const MAX_BOOT_PATH: usize = 255;

/// Checks a boot definition: a known kind, the fields that kind needs and no others, and paths
/// that stay inside the image's directory. The message names the field (`boot.kernel`).
pub fn check_boot(boot: &ImageBoot) -> Result<(), String> {
    let (required, allowed): (&[&str], &[&str]) = match boot.kind.as_str() {
        KIND_KERNEL => (&["kernel"], &["kernel", "initrd", "cmdline", "root_disk"]),
        KIND_DISK => (&["path", "format"], &["path", "format"]),
        other => return Err(format!("boot.kind must be {KIND_KERNEL} or {KIND_DISK}, not `{other}`")),
    };
    let fields = [
        ("kernel", &boot.kernel),
        ("initrd", &boot.initrd),
        ("cmdline", &boot.cmdline),
        ("root_disk", &boot.root_disk),
        ("path", &boot.path),
        ("format", &boot.format),
    ];
    for (name, value) in fields {
        match value {
            None if required.contains(&name) => {
                return Err(format!("boot.{name} is required with kind {}", boot.kind));
            }
            Some(_) if !allowed.contains(&name) => {
                return Err(format!("boot.{name} does not go with kind {}", boot.kind));
            }
            _ => {}
        }
    }
    for (name, value) in [("kernel", &boot.kernel), ("initrd", &boot.initrd), ("root_disk", &boot.root_disk)] {
        if let Some(path) = value {
            check_boot_path(name, path)?;
        }
    }
    if let Some(path) = &boot.path {
        check_boot_path("path", path)?;
    }
    if let Some(format) = &boot.format
        && !DISK_FORMATS.contains(&format.as_str())
    {
        return Err(format!("boot.format must be {}, not `{format}`", DISK_FORMATS.join(" or ")));
    }
    if let Some(cmdline) = &boot.cmdline
        && (cmdline.len() > MAX_CMDLINE || cmdline.chars().any(char::is_control))
    {
        return Err(format!("boot.cmdline must be one line of at most {MAX_CMDLINE} bytes"));
    }
    Ok(())
}

/// A path relative to the image's directory, of plain names only: no leading `/`, no `.` or
/// `..`, and no hidden names (the server keeps its upload temporaries and checksums there).
fn check_boot_path(field: &str, path: &str) -> Result<(), String> {
    let plain = |part: &str| {
        !part.is_empty() && !part.starts_with('.') && !part.contains('\\') && !part.chars().any(char::is_control)
    };
    if path.is_empty() || path.len() > MAX_BOOT_PATH || path.starts_with('/') || !path.split('/').all(plain) {
        return Err(format!(
            "boot.{field} must be a relative path inside the image's directory (plain names, no leading `/`, \
             no `..`, no names starting with `.`, at most {MAX_BOOT_PATH} bytes), not `{path}`"
        ));
    }
    Ok(())
}

impl FlavorDef {
    /// Whether this flavor can run `image`.
    pub fn supports(&self, image: &ImageDef) -> bool {
        match &self.images {
            Some(list) => list.iter().any(|i| i == &image.id),
            None => image.min_disk <= self.disk && u64::from(image.min_ram) <= u64::from(self.memory) * 1024,
        }
    }

    pub fn to_wire(&self, catalog: &CatalogFile) -> wire::Flavor {
        wire::Flavor {
            flavor_id: Some(self.id.clone()),
            name: Some(self.name.clone()),
            provide: Some(if self.provide { "Y" } else { "N" }.into()),
            status: Some(self.status.clone()),
            spec: Some(wire::FlavorSpec {
                kind: self.kind.clone(),
                vcpu: self.vcpu,
                memory: self.memory,
                disk: self.disk,
                network: self.network,
                gpu: self.gpu,
            }),
            supporting_images: Some(catalog.images.iter().filter(|i| self.supports(i)).map(|i| i.id.clone()).collect()),
            zone: Some(self.zones.clone()),
            price: Some(wire::FlavorPrice {
                full: wire::PriceTerm::new("month", self.price_month),
                partial: wire::PriceTerm::new("hour", self.price_hour),
            }),
        }
    }
}

/// Keeps only the fields selected by a flavor `fields` mask.
pub fn mask_flavor(mut f: wire::Flavor, mask: u64) -> wire::Flavor {
    use wire::flavor_fields::*;
    if mask & FLAVOR_ID == 0 {
        f.flavor_id = None;
    }
    if mask & NAME == 0 {
        f.name = None;
    }
    if mask & PROVIDE == 0 {
        f.provide = None;
    }
    if mask & STATUS == 0 {
        f.status = None;
    }
    if mask & SPEC == 0 {
        f.spec = None;
    }
    if mask & SUPPORTING_IMAGES == 0 {
        f.supporting_images = None;
    }
    if mask & ZONE == 0 {
        f.zone = None;
    }
    if mask & PRICE == 0 {
        f.price = None;
    }
    f
}

impl ImageDef {
    pub fn to_wire(&self) -> wire::Image {
        wire::Image {
            image_id: self.id.clone(),
            name: self.name.clone(),
            visibility: self.visibility.clone(),
            os: wire::ImageOs {
                family: self.family.clone(),
                name: self.os_name.clone(),
                status: self.status.clone(),
                content: self.content.clone(),
                os_type: self.os_type.clone(),
                version: self.version.clone(),
                oid: self.oid.clone().unwrap_or_else(|| self.id.clone()),
            },
            image_type: self.image_type.clone(),
            zone: self.zones.clone(),
            tags: self.tags.clone(),
            status: self.status.clone(),
            protected: self.protected,
            description: self.description.clone(),
            min_disk: self.min_disk,
            min_ram: self.min_ram,
            file_size: self.file_size,
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone().unwrap_or_else(|| self.created_at.clone()),
        }
    }
}

impl ZoneDef {
    pub fn to_wire(&self) -> wire::Zone {
        wire::Zone { zone_id: self.id.clone(), zone_name: self.name.clone(), status: self.status.clone() }
    }
}

impl BlockStorageTypeDef {
    pub fn to_wire(&self) -> wire::BlockStorageType {
        wire::BlockStorageType {
            kind: self.kind.clone(),
            min: self.min,
            max: self.max,
            zones: self.zones.clone(),
            price: wire::BlockStoragePrice { krw: wire::PerGbMonth { price: self.price_gb_month } },
        }
    }
}

/// The catalog in memory, with the version it was loaded at.
pub struct CatalogCache {
    current: RwLock<(i64, Arc<CatalogFile>, Arc<Answers>)>,
}

/// Serialized answers of catalog reads for one catalog version, by path and query. Catalog reads
/// depend on nothing else (not the caller, not the clock), so an answer stays right until the
/// catalog changes, and a new version starts with an empty set.
#[derive(Default)]
pub struct Answers(Mutex<HashMap<String, Bytes>>);

impl Answers {
    /// Distinct queries kept per version; past it, answers are built and not kept.
    const MAX: usize = 4096;

    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.0.lock().expect("catalog answers").get(key).cloned()
    }

    pub fn put(&self, key: String, body: Bytes) {
        let mut answers = self.0.lock().expect("catalog answers");
        if answers.len() < Self::MAX {
            answers.insert(key, body);
        }
    }
}

impl CatalogCache {
    pub async fn load(store: &Store) -> anyhow::Result<CatalogCache> {
        let cache = CatalogCache { current: RwLock::new((-1, Arc::default(), Arc::default())) };
        cache.refresh(store).await?;
        Ok(cache)
    }

    pub fn get(&self) -> Arc<CatalogFile> {
        self.current.read().expect("catalog lock").1.clone()
    }

    /// The version of the catalog [`CatalogCache::get`] answers.
    pub fn version(&self) -> i64 {
        self.current.read().expect("catalog lock").0
    }

    /// The kept answers of the current version.
    pub fn answers(&self) -> Arc<Answers> {
        self.current.read().expect("catalog lock").2.clone()
    }

    /// Reloads when the stored version differs from the one held.
    pub async fn refresh(&self, store: &Store) -> anyhow::Result<()> {
        let version = store.catalog_version().await?;
        if self.current.read().expect("catalog lock").0 == version {
            return Ok(());
        }
        let file = CatalogFile::from_entries(&store.catalog().await?).map_err(anyhow::Error::msg)?;
        *self.current.write().expect("catalog lock") = (version, Arc::new(file), Arc::default());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_is_valid_and_complete() {
        let c = CatalogFile::parse(DEFAULT_CATALOG).unwrap();
        assert_eq!(c.zones.iter().filter(|z| z.status == "on").count(), 2);
        assert!(c.zones.iter().any(|z| z.status == "off"));
        assert!(c.zones.iter().any(|z| z.id == "KR1-Z01" && z.name == "서울 1"));
        assert!(c.zones.iter().any(|z| z.id == "KR1-Z02" && z.name == "서울 2"));
        assert!(c.flavors.len() >= 12);
        for t in FLAVOR_TYPES {
            assert!(c.flavors.iter().any(|f| f.kind == *t), "no {t} flavor");
        }
        assert!(c.images.len() >= 10);
        assert!(c.images.iter().any(|i| i.os_type == "windows"));
        assert!(c.images.iter().any(|i| i.os_type == "linux"));
        let kinds: Vec<_> = c.block_storage_types.iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(kinds, ["ssd", "sata"]);
        for f in &c.flavors {
            assert!(c.images.iter().any(|i| f.supports(i)), "flavor {} supports no image", f.id);
        }
    }

    #[test]
    fn round_trips_through_the_store_format_and_toml() {
        let c = CatalogFile::parse(DEFAULT_CATALOG).unwrap();
        assert_eq!(CatalogFile::from_entries(&c.to_entries()).unwrap(), c);
        assert_eq!(CatalogFile::parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn validation_names_the_entry() {
        let mut c = CatalogFile::parse(DEFAULT_CATALOG).unwrap();
        c.flavors[0].zones.push("KR9-Z99".into());
        let e = c.validate().unwrap_err();
        assert!(e.contains(&c.flavors[0].id) && e.contains("KR9-Z99"), "{e}");
        assert!(CatalogFile::parse("zones = 3").is_err());
    }

    #[test]
    fn ids_match_the_public_pattern() {
        for good in ["ss1.c1m1", "KR1-Z01", "_x", "-x", "a.b.c", "IMG-ubuntu-2404"] {
            assert!(check_id("flavor", good).is_ok(), "{good}");
        }
        let long = "a".repeat(ID_MAX + 1);
        for bad in ["", ".hidden", "a b", "a/b", "é", "a:b", long.as_str()] {
            let e = check_id("flavor", bad).unwrap_err();
            assert!(e.starts_with("flavor id"), "{e}");
        }
    }

    fn kernel_boot() -> ImageBoot {
        ImageBoot {
            kind: "kernel".into(),
            kernel: Some("vmlinuz".into()),
            initrd: Some("initrd.img".into()),
            cmdline: Some("console=ttyS0 quiet".into()),
            root_disk: Some("disks/root.raw".into()),
            path: None,
            format: None,
        }
    }

    fn disk_boot(path: &str, format: Option<&str>) -> ImageBoot {
        ImageBoot {
            kind: "disk".into(),
            path: Some(path.into()),
            format: format.map(Into::into),
            ..ImageBoot::default()
        }
    }

    #[test]
    fn boot_tables_round_trip_and_stay_off_the_wire() {
        let mut c = CatalogFile::parse(DEFAULT_CATALOG).unwrap();
        c.images[0].boot = Some(kernel_boot());
        c.images[1].boot = Some(disk_boot("disk.qcow2", Some("qcow2")));
        let toml = c.to_toml();
        assert!(toml.contains("[images.boot]"), "{toml}");
        assert_eq!(CatalogFile::parse(&toml).unwrap(), c);
        assert_eq!(CatalogFile::from_entries(&c.to_entries()).unwrap(), c);
        let wire = serde_json::to_string(&c.images[0].to_wire()).unwrap();
        assert!(!wire.contains("vmlinuz") && !wire.contains("boot"), "{wire}");
    }

    #[test]
    fn boot_validation_names_the_field() {
        let refused = |change: &dyn Fn(&mut ImageBoot), needle: &str| {
            let mut c = CatalogFile::parse(DEFAULT_CATALOG).unwrap();
            let mut boot = kernel_boot();
            change(&mut boot);
            c.images[0].boot = Some(boot);
            let e = c.validate().unwrap_err();
            assert!(e.contains(&c.images[0].id) && e.contains(needle), "{needle}: {e}");
        };
        refused(&|b| b.kind = "iso".into(), "boot.kind");
        refused(&|b| b.kernel = None, "boot.kernel is required");
        refused(&|b| b.kernel = Some("../../etc/passwd".into()), "boot.kernel");
        refused(&|b| b.kernel = Some("/boot/vmlinuz".into()), "boot.kernel");
        refused(&|b| b.initrd = Some("a/./b".into()), "boot.initrd");
        refused(&|b| b.root_disk = Some(".upload-x".into()), "boot.root_disk");
        refused(&|b| b.format = Some("raw".into()), "boot.format does not go with kind kernel");
        refused(&|b| b.cmdline = Some("a\nb".into()), "boot.cmdline");
        refused(&|b| *b = disk_boot("d.img", Some("vmdk")), "boot.format must be qcow2 or raw");
        refused(&|b| *b = disk_boot("d.img", None), "boot.format is required");
        refused(&|b| *b = disk_boot("d/../../x", Some("raw")), "boot.path");
        refused(&|b| b.path = Some("d.img".into()), "boot.path does not go with kind kernel");
        let e =
            CatalogFile::parse(&format!("{DEFAULT_CATALOG}\n[images.boot]\nkind = \"disk\"\nsize = 3\n")).unwrap_err();
        assert!(e.contains("size"), "{e}");
    }
}
