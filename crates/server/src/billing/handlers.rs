//! `GET /v1/bill/live`, `GET /v1/bill`, `GET /v1/bill/{bill_id}` and the operator's
//! `POST /admin/v1/bills/{bill_id}/pay`.

use axum::extract::State;
use axum::{Extension, Json};
use openwinv_billing::{Kind, date_of};
use openwinv_store::{BillFilter, BillItemRecord, BillRecord, PageQuery};
use openwinv_wire::billing::{
    Bill, BillDetail, BillGroup, BillItem, CURRENCY, LIVE_BILL_ID, LiveBill, LiveBillItem, PAID, REGULAR, UNPAID,
};
use openwinv_wire::envelope::Page;
use openwinv_wire::{Envelope, ErrorCode};

use crate::AppState;
use crate::api::Reply;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::input::{Path, Query};

pub fn bill_row(b: BillRecord) -> Bill {
    Bill {
        payment_status: if b.date_paid.is_some() { PAID } else { UNPAID }.to_owned(),
        bill_id: b.bill_id,
        usage_start: b.usage_start,
        usage_end: b.usage_end,
        bill_date: b.bill_date,
        kind: REGULAR.to_owned(),
        name: b.name,
        price: b.price,
        vat: b.vat,
        payment_price: b.payment_price,
        currency: CURRENCY.to_owned(),
        // `""` while unpaid: no key of a bill row is ever null (spec §10).
        date_paid: b.date_paid.unwrap_or_default(),
        invoice: Vec::new(),
        tax: Vec::new(),
    }
}

/// The groups of a bill's items: servers, then block storage; kinds without items left out.
pub fn bill_groups(items: Vec<BillItemRecord>) -> Vec<BillGroup> {
    Kind::ALL
        .iter()
        .filter_map(|&kind| {
            let item: Vec<BillItem> = items
                .iter()
                .filter(|i| i.kind == kind.as_str())
                .map(|i| BillItem {
                    service_id: i.service_id.clone(),
                    name: i.name.clone(),
                    price: i.price,
                    usage_start: i.usage_start.clone(),
                    usage_end: i.usage_end.clone(),
                })
                .collect();
            (!item.is_empty()).then(|| BillGroup {
                kind: kind.group_name().to_owned(),
                count: item.len() as u64,
                sub_total: item.iter().fold(0i64, |s, i| s.saturating_add(i.price)),
                item,
            })
        })
        .collect()
}

fn flag(q: &Query, name: &str) -> ApiResult<bool> {
    match q.str(name).map(str::trim) {
        None | Some("0") | Some("false") => Ok(false),
        Some("1") | Some("true") => Ok(true),
        Some(v) => Err(ApiError::param(format!("The query parameter `{name}` must be 1 or 0, not `{v}`."))),
    }
}

/// The charges of the current month so far, VAT excluded. Not paginated.
#[utoipa::path(get, path = "/v1/bill/live", tag = "billing",
    params(("explain" = Option<u8>, Query, description = "1: add `items`, one line per resource, summing to `price` [ext]")),
    responses((status = 200, body = Envelope<Vec<LiveBill>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn live(State(state): State<AppState>, Extension(caller): Extension<Caller>, q: Query) -> Reply<LiveBill> {
    let explain = flag(&q, "explain")?;
    let tz = &state.config.billing_timezone;
    let now = state.clock.unix();
    let (month, price, lines) =
        super::live(&state.store, &state.live_bills, &caller.account_id, now, tz, explain).await?;
    let items = lines.map(|lines| {
        lines
            .into_iter()
            .map(|l| LiveBillItem {
                rate_unit: l.kind.rate_unit().to_owned(),
                kind: l.kind.as_str().to_owned(),
                id: l.resource_id,
                name: l.name,
                rate: l.rate,
                seconds: l.seconds,
                amount: l.amount,
            })
            .collect()
    });
    let row = LiveBill {
        bill_id: LIVE_BILL_ID.to_owned(),
        start_date: month.first_day().to_string(),
        end_date: date_of(now, tz).to_string(),
        price,
        currency: CURRENCY.to_owned(),
        items,
    };
    Ok(Json(Envelope::rows(vec![row])))
}

fn date_param(q: &Query, name: &str) -> ApiResult<Option<String>> {
    let Some(v) = q.str(name) else { return Ok(None) };
    let v = v.trim();
    let ok =
        v.len() == 10 && v.as_bytes()[4] == b'-' && v.as_bytes()[7] == b'-' && v.parse::<jiff::civil::Date>().is_ok();
    if !ok {
        return Err(ApiError::param(format!(
            "The query parameter `{name}` must be a date YYYY-MM-DD such as 2026-11-01, not `{v}`."
        )));
    }
    Ok(Some(v.to_owned()))
}

/// A price bound in won. Negative bounds are accepted [iwinv live]; they match every bill above
/// them.
fn price_param(q: &Query, name: &str) -> ApiResult<Option<i64>> {
    let Some(v) = q.str(name) else { return Ok(None) };
    v.trim().parse::<i64>().map(Some).map_err(|_| {
        ApiError::param(format!("The query parameter `{name}` must be an integer number of won, not `{v}`."))
    })
}

/// The account's regular bills, oldest first. `page_no` and `page_size` are echoed as strings
/// [iwinv], and there is no `total` [iwinv live]. Filters that match nothing on page 1 → 400
/// `EMPTY_SET` [iwinv]; with no filter, no bills is an empty list [ours].
#[utoipa::path(get, path = "/v1/bill", tag = "billing",
    params(
        ("start_date" = Option<String>, Query, description = "YYYY-MM-DD, inclusive, on bill_date"),
        ("end_date" = Option<String>, Query, description = "YYYY-MM-DD, inclusive, on bill_date"),
        ("min_price" = Option<i64>, Query, description = "won, inclusive, on price; may be negative"),
        ("max_price" = Option<i64>, Query, description = "won, inclusive, on price; may be negative"),
        ("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query)),
    responses((status = 200, body = crate::openapi::schemas::BillPage), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>, q: Query) -> Reply<Bill> {
    let page = q.page(Page::DEFAULT_SIZE)?;
    let filter = BillFilter {
        start_date: date_param(&q, "start_date")?,
        end_date: date_param(&q, "end_date")?,
        min_price: price_param(&q, "min_price")?,
        max_price: price_param(&q, "max_price")?,
    };
    let filtered = filter.start_date.is_some()
        || filter.end_date.is_some()
        || filter.min_price.is_some()
        || filter.max_price.is_some();
    let (rows, total) =
        state.store.list_bills(&caller.account_id, &filter, PageQuery::new(page.page_size, page.offset())).await?;
    if filtered && total == 0 && page.page_no == 1 {
        return Err(ApiError::new(ErrorCode::EmptySet, "No bill matches the filters."));
    }
    let mut env = Envelope::page_without_total(rows.into_iter().map(bill_row).collect(), page);
    env.page_no = Some(page.page_no.to_string().into());
    env.page_size = Some(page.page_size.to_string().into());
    Ok(Json(env))
}

/// One bill with its lines grouped by kind; another account's or an unknown id → 404.
#[utoipa::path(get, path = "/v1/bill/{bill_id}", tag = "billing", params(("bill_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<BillDetail>>), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn detail(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(bill_id): Path<String>,
) -> Reply<BillDetail> {
    let b = state
        .store
        .bill(&caller.account_id, &bill_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("The bill `{bill_id}`")))?;
    let items = state.store.bill_items(&b.bill_id).await?;
    Ok(Json(Envelope::rows(vec![BillDetail { bill: bill_row(b), group: bill_groups(items) }])))
}

/// Marks a bill paid today (billing time zone). A bill already paid keeps its date.
#[utoipa::path(post, path = "/admin/v1/bills/{bill_id}/pay", tag = "operator", security(("admin_token" = [])),
    params(("bill_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Bill>>), (status = 401, body = openwinv_wire::ErrorEnvelope), (status = 404, body = openwinv_wire::ErrorEnvelope)))]
pub async fn pay(State(state): State<AppState>, Path(bill_id): Path<String>) -> Reply<Bill> {
    let now = state.clock.unix();
    let today = date_of(now, &state.config.billing_timezone).to_string();
    let b = state
        .store
        .pay_bill(&bill_id, &today, now)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("The bill `{bill_id}`")))?;
    Ok(Json(Envelope::rows(vec![bill_row(b)])))
}
