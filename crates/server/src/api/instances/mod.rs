//! Instances (spec §7): list, detail, create, edit, delete, actions and the remote console.
//!
//! Mutations validate completely, then write the instance change and its operation in one
//! transaction and answer 202 with `X-Operation-Id`; the engine does the rest.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use openwinv_store::instances::status;
use openwinv_wire::{Envelope, ErrorCode};
use rand::Rng;
use rand::seq::SliceRandom;

use crate::catalog::ImageDef;
use crate::error::{ApiError, ApiResult};

mod actions;
mod create;
mod view;

pub use actions::*;
pub use create::*;
pub use view::*;

/// Most instances one create request makes [iwinv].
pub const MAX_COUNT: i64 = 10;
pub const NAME_MAX: usize = 64;
pub const DESCRIPTION_MAX: usize = 255;
/// Volumes an instance can have attached.
pub const MAX_VOLUMES: u32 = 8;
/// How long a remote-console link is valid, in seconds.
pub const CONSOLE_TTL: i64 = 300;
const PASSWORD_LEN: usize = 20;
const STATUSES: &[&str] = &[status::PENDING, status::ACTIVE, status::OFF, status::WORK, status::ERROR];

type Accepted<T> = ApiResult<(StatusCode, HeaderMap, Json<Envelope<Vec<T>>>)>;

fn accepted<T>(operation_ids: &[String], rows: Vec<T>) -> (StatusCode, HeaderMap, Json<Envelope<Vec<T>>>) {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&operation_ids.join(",")) {
        h.insert(openwinv_wire::headers::OPERATION_ID, v);
    }
    (StatusCode::ACCEPTED, h, Json(Envelope::rows(rows)))
}

/// A random password of 20 characters with upper and lower case letters, digits and symbols.
pub fn new_password() -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"!@#$%^*-_=+";
    let mut rng = rand::thread_rng();
    let all: Vec<u8> = [UPPER, LOWER, DIGIT, SYMBOL].concat();
    let mut chars: Vec<u8> = [UPPER, LOWER, DIGIT, SYMBOL].iter().map(|set| set[rng.gen_range(0..set.len())]).collect();
    while chars.len() < PASSWORD_LEN {
        chars.push(all[rng.gen_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    String::from_utf8(chars).expect("ASCII")
}

fn is_windows(image: &ImageDef) -> bool {
    image.os_type == "windows"
}

fn instance_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("The instance `{id}`"))
}

fn id_invalid(field: &str, id: &str) -> ApiError {
    ApiError::new(ErrorCode::IdInvalid, format!("The {field} `{id}` does not exist."))
}
