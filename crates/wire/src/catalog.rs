//! Catalog rows (spec §6): zones, flavors, images, block-storage types.
//!
//! Optional fields are omitted when a `fields` mask leaves them out, so the same type serves the
//! full row and the masked one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Zone {
    pub zone_id: String,
    pub zone_name: String,
    /// `on` or `off`; an `off` zone refuses creation.
    pub status: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Flavor {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub flavor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// `Y` when orderable.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provide: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub spec: Option<FlavorSpec>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub supporting_images: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub zone: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub price: Option<FlavorPrice>,
}

/// Memory and disk in GB, network in Mbps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlavorSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub vcpu: u32,
    pub memory: u32,
    pub disk: u32,
    pub network: u32,
    pub gpu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlavorPrice {
    /// The monthly price, which is also the monthly cap.
    pub full: PriceTerm,
    /// The hourly rate.
    pub partial: PriceTerm,
}

/// One price of a flavor. `KRW` is a plain integer, VAT excluded [iwinv live: a public dashboard
/// reads `Number(price.full.KRW)`]; `vat` and `total` beside it are [ext].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PriceTerm {
    /// `month` or `hour`.
    #[serde(rename = "type")]
    pub term: String,
    /// Integer won, VAT excluded.
    #[serde(rename = "KRW")]
    pub krw: i64,
    /// floor(KRW × 10 / 100) [ext].
    pub vat: i64,
    /// KRW + vat [ext].
    pub total: i64,
}

impl PriceTerm {
    /// The term's price with its VAT and total.
    pub fn new(term: &str, price: i64) -> PriceTerm {
        let vat = vat_of(price);
        PriceTerm { term: term.to_owned(), krw: price, vat, total: price + vat }
    }
}

/// VAT in whole won (spec §5): floor(price × 10 / 100).
pub fn vat_of(price: i64) -> i64 {
    (price * 10).div_euclid(100)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Image {
    pub image_id: String,
    pub name: String,
    /// `public` or `private`.
    pub visibility: String,
    pub os: ImageOs,
    /// e.g. `os_linux`, `os_windows`.
    pub image_type: String,
    pub zone: Vec<String>,
    pub tags: Vec<String>,
    pub status: String,
    pub protected: bool,
    pub description: Option<String>,
    /// GB.
    pub min_disk: u32,
    /// MB.
    pub min_ram: u32,
    /// Bytes.
    pub file_size: u64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageOs {
    /// The family: `ubuntu`, `rocky`, `windows`, …
    #[serde(rename = "type")]
    pub family: String,
    pub name: String,
    pub status: String,
    pub content: Vec<String>,
    /// `linux` or `windows`.
    pub os_type: String,
    pub version: String,
    pub oid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockStorageType {
    #[serde(rename = "type")]
    pub kind: String,
    /// Smallest size in GB.
    pub min: u32,
    /// Largest size in GB.
    pub max: u32,
    /// Zones offering it; null means every zone.
    pub zones: Option<Vec<String>>,
    /// Per-GB monthly price [ext].
    pub price: BlockStoragePrice,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockStoragePrice {
    #[serde(rename = "KRW")]
    pub krw: PerGbMonth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PerGbMonth {
    /// Won per GB per month, VAT excluded.
    pub price: i64,
}

/// Flavor `fields` bits (spec §6).
pub mod flavor_fields {
    pub const FLAVOR_ID: u64 = 1;
    pub const NAME: u64 = 2;
    pub const PROVIDE: u64 = 4;
    pub const STATUS: u64 = 8;
    pub const SPEC: u64 = 16;
    pub const SUPPORTING_IMAGES: u64 = 32;
    pub const ZONE: u64 = 64;
    pub const PRICE: u64 = 128;
    pub const ALL: u64 = 255;
    /// (bit, field name, shape) for the reference page.
    pub const TABLE: &[(u64, &str, &str)] = &[
        (FLAVOR_ID, "flavor_id", "string"),
        (NAME, "name", "string"),
        (PROVIDE, "provide", "string (Y)"),
        (STATUS, "status", "string (on|off)"),
        (SPEC, "spec", "{type, vcpu, memory, disk, network, gpu}"),
        (SUPPORTING_IMAGES, "supporting_images", "[image_id]"),
        (ZONE, "zone", "[zone_id]"),
        (PRICE, "price", "{full{type,KRW,vat,total}, partial{type,KRW,vat,total}} (KRW without VAT)"),
    ];
}

/// Instance `fields` bits (spec §7), for the reference page.
pub mod instance_fields {
    pub const ALL: u64 = 262143;
    /// Every field but `default_account` and `vnc`, which carry secrets.
    pub const DEFAULT: u64 = 245631;
    pub const TABLE: &[(u64, &str, &str)] = &[
        (1, "instance_id", "string"),
        (2, "name", "string"),
        (4, "description", "string or null"),
        (8, "status", "string"),
        (16, "provide", "string (Y)"),
        (32, "start_date", "timestamp of creation"),
        (64, "stop_date", "timestamp of the last shutdown, or null"),
        (128, "default_account", "{username, password}"),
        (256, "ip", "[{public:{address,attached}, private:{address,netmask,network,broadcast,gateway}, type}]"),
        (512, "zone", "{zone_id, name}"),
        (1024, "flavor", "{flavor_id, name, type, vcpu, memory, disk, network, gpu}"),
        (2048, "image", "{image_id, visibility, os{…}, image_type, zone[]}"),
        (4096, "monitoring", "{port, resource}"),
        (8192, "block_storage", "[{block_storage_id, volume_id, name, size, type, status}]"),
        (16384, "vnc", "{link, type}"),
        (32768, "connection_limit", "{block_storage, ip}"),
        (65536, "traffic", "{default, period, limit, reset_allow_count}"),
        (131072, "firewall", "[firewall_id]"),
    ];
}
