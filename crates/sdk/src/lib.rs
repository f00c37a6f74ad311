//! Rust client for the iwinv IaaS API v1, against openwinv or the real service
//! (`https://api-kr.iwinv.kr`), and for the openwinv operator API.
//!
//! [`Client`] signs every request (spec §2) and decodes the envelope (spec §3) into typed rows
//! from [`openwinv_wire`] or a typed [`Error`]. Asynchronous changes answer an [`Accepted`]
//! receipt naming their operations, which [`Client::wait_for_operation`] follows (spec §12).
//! [`AdminClient`] speaks `/admin/v1` with a bearer token. A [`RawLog`] keeps every answer as
//! sent, for tools that print the server's own JSON.
//!
//! ```no_run
//! # async fn demo() -> openwinv_sdk::Result<()> {
//! let client = openwinv_sdk::Client::from_env()?;
//! for zone in client.zones().await? {
//!     println!("{} {}", zone.zone_id, zone.status);
//! }
//! # Ok(())
//! # }
//! ```

mod admin;
mod billing;
mod catalog;
mod client;
mod error;
mod firewalls;
mod instances;
mod keys;
mod pages;
mod query;
mod raw;
mod response;
mod transport;
mod volumes;

pub use admin::{AdminClient, ImageImport};
pub use client::{Client, DEFAULT_ENDPOINT};
pub use error::{Error, Result};
pub use instances::{Accepted, NewInstance, operation_status};
pub use pages::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, PageRequest, collect_pages};
pub use query::{BillQuery, FlavorQuery, ImageQuery, InstanceQuery, OperationQuery, VolumeQuery};
pub use raw::RawLog;
pub use volumes::NewVolume;

/// The wire types the methods return, re-exported so callers need not depend on them directly.
pub use openwinv_wire as wire;
pub use reqwest::Method;
