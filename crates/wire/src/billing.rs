//! Billing rows (spec §10): the live bill, regular bills and their detail.
//!
//! Money is integer KRW; `price` excludes VAT. Dates are `YYYY-MM-DD` in the billing time zone.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The id of the live bill [iwinv].
pub const LIVE_BILL_ID: &str = "BILL-live";
/// The only currency.
pub const CURRENCY: &str = "KRW";
/// Bill `type` [iwinv].
pub const REGULAR: &str = "regular";
/// `payment_status` values.
pub const UNPAID: &str = "unpaid";
pub const PAID: &str = "paid";
/// Bill group `type`s, in the order groups are listed.
pub const GROUP_SERVER: &str = "서버";
pub const GROUP_BLOCK_STORAGE: &str = "블록 스토리지";

/// `GET /v1/bill/live`: the charges of the current month so far (VAT excluded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiveBill {
    /// Always `BILL-live`.
    pub bill_id: String,
    /// The first day of the current month.
    pub start_date: String,
    /// Today.
    pub end_date: String,
    pub price: i64,
    /// `KRW`.
    pub currency: String,
    /// With `explain=1` [ext]: one line per resource; the amounts add up to `price`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub items: Option<Vec<LiveBillItem>>,
}

/// One resource's charges in the live bill [ext].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiveBillItem {
    /// The instance or block-storage id.
    pub id: String,
    pub name: String,
    /// `server` or `volume`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Won per `rate_unit`: the hourly rate of a server, the monthly price of a volume (its
    /// latest, when it changed this month).
    pub rate: i64,
    /// `hour` or `month`.
    pub rate_unit: String,
    /// Seconds charged this month.
    pub seconds: i64,
    /// Won, floored; capped at the monthly price for servers.
    pub amount: i64,
}

/// A regular bill, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Bill {
    /// `BILL-…`.
    pub bill_id: String,
    /// The first day of the billed month.
    pub usage_start: String,
    /// The last day of the billed month.
    pub usage_end: String,
    /// The day the bill was issued for: the first day of the next month.
    pub bill_date: String,
    /// `regular`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `unpaid` or `paid`.
    pub payment_status: String,
    /// e.g. `2026년 11월 정기 청구`.
    pub name: String,
    /// Won, VAT excluded.
    pub price: i64,
    /// floor(price × 10 / 100).
    pub vat: i64,
    /// price + vat.
    pub payment_price: i64,
    /// `KRW`.
    pub currency: String,
    /// The day it was paid; `""` while unpaid. No key of a bill row is ever null [ours: a public
    /// Terraform provider fails the whole listing on one null].
    pub date_paid: String,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub invoice: Vec<serde_json::Value>,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub tax: Vec<serde_json::Value>,
}

/// `GET /v1/bill/{bill_id}`: the bill and its lines by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BillDetail {
    #[serde(flatten)]
    pub bill: Bill,
    pub group: Vec<BillGroup>,
}

/// The lines of one kind (`서버`, `블록 스토리지`); kinds without lines are left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BillGroup {
    #[serde(rename = "type")]
    pub kind: String,
    pub count: u64,
    pub sub_total: i64,
    pub item: Vec<BillItem>,
}

/// One resource's charges in the month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BillItem {
    /// The instance or block-storage id.
    pub service_id: String,
    pub name: String,
    /// Won, VAT excluded.
    pub price: i64,
    /// The first and last day it was charged in the month.
    pub usage_start: String,
    pub usage_end: String,
}
