//! The response envelope (spec §3).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ErrorCode;

/// A successful answer: `result` is an array of rows (a string for a few delete acknowledgements).
///
/// Paginated lists add `page_no` and `page_size`; some add `total` too (spec §3: the flavor list
/// [iwinv]; images, instances, volumes and user scripts [ext]). The SSH key, firewall and bill
/// lists must not carry `total`: a public Terraform provider refuses any answer there that has one.
/// No answer carries a `page` key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Envelope<T> {
    pub code: String,
    pub error_code: String,
    pub message: String,
    pub result: T,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<u64>)]
    pub page_no: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<u64>)]
    pub page_size: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub total: Option<u64>,
}

impl<T> Envelope<T> {
    pub fn success(result: T) -> Self {
        Envelope {
            code: "0x00".into(),
            error_code: "SUCCESS".into(),
            message: String::new(),
            result,
            count: None,
            page_no: None,
            page_size: None,
            total: None,
        }
    }
}

impl<R> Envelope<Vec<R>> {
    /// An unpaginated list (or a detail answer): `count` is the number of rows.
    pub fn rows(rows: Vec<R>) -> Self {
        let count = rows.len() as u64;
        Envelope { count: Some(count), ..Envelope::success(rows) }
    }

    /// One page of a paginated list, with `total`: the rows matching over all pages.
    pub fn page(rows: Vec<R>, page: Page, total: u64) -> Self {
        Envelope { total: Some(total), ..Envelope::page_without_total(rows, page) }
    }

    /// One page of a list that carries no `total` [iwinv]: SSH keys, firewalls, bills.
    pub fn page_without_total(rows: Vec<R>, page: Page) -> Self {
        let count = rows.len() as u64;
        Envelope {
            count: Some(count),
            page_no: Some(page.page_no.into()),
            page_size: Some(page.page_size.into()),
            ..Envelope::success(rows)
        }
    }
}

/// A validated page request (spec §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page_no: u64,
    pub page_size: u64,
}

impl Page {
    pub const DEFAULT_SIZE: u64 = 10;
    pub const MAX_SIZE: u64 = 100;

    pub fn offset(self) -> u64 {
        (self.page_no - 1).saturating_mul(self.page_size)
    }

    /// The rows of this page out of an in-memory, already ordered list.
    pub fn slice<T: Clone>(self, all: &[T]) -> Vec<T> {
        let start = usize::try_from(self.offset()).unwrap_or(usize::MAX).min(all.len());
        let end = start.saturating_add(usize::try_from(self.page_size).unwrap_or(usize::MAX)).min(all.len());
        all[start..end].to_vec()
    }
}

/// An error answer: `result` is the string `"error"`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    /// e.g. `0x1`
    pub code: String,
    pub error_code: String,
    /// A sentence naming the field or id at fault.
    pub message: String,
    /// Always `"error"`.
    pub result: String,
}

impl ErrorEnvelope {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorEnvelope {
            code: code.code().into(),
            error_code: code.as_str().into(),
            message: message.into(),
            result: "error".into(),
        }
    }
}
