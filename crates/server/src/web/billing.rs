//! Billing: the live bill with its per-resource breakdown (`GET /v1/bill/live?explain=1`), a chart
//! of this month's cost by day and by resource, the bills (`GET /v1/bill`) and one bill with its
//! grouped items (`GET /v1/bill/{bill_id}`).
//!
//! The chart's figures come from one rating of the month so far split by day
//! (`openwinv_billing::rate_by_day`, through `billing::live_by_day`): a day's cost for a resource
//! is what the live bill would say at that day's end minus what it would say at the previous
//! day's end, computed from running sums in one pass. So the days add up to the live bill
//! exactly, whatever the flooring to the won does.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::chart::{self, Series, Stacked};
use super::dashboard::won;
use super::i18n::Lang;
use super::layout::Page;
use super::{Shown, Signed, caller, reply, text};
use crate::AppState;
use crate::billing::handlers;
use crate::error::ApiError;
use crate::input::{Path, Query};

/// Resources drawn as their own series; the rest are summed into one.
const SERIES: usize = 6;
/// Rows of the breakdown, costliest first; the rest are summed into one row (an account with
/// 10,000 resources would otherwise get a page of megabytes).
const BREAKDOWN_ROWS: usize = 100;

fn query(pairs: &[(&str, &str)]) -> Query {
    Query(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// This month's cost per day (of the billing time zone) and per resource, up to today.
pub struct Daily {
    /// Day labels, `1` to today.
    pub days: Vec<String>,
    /// Resource id → (name, cost per day).
    pub by_resource: Vec<(String, String, Vec<i64>)>,
}

/// The days of the live bill `live` (its `start_date` to its `end_date`), from one rating of the
/// month split by day (`billing::live_by_day`, the same cached intervals and arithmetic as the
/// live bill). The last day is the live bill's own amount minus the earlier days, so the chart
/// adds up to the price shown beside it exactly even if the clock moved on between the two reads.
async fn daily(state: &AppState, account_id: &str, live: &Value) -> Result<Daily, ApiError> {
    let tz = &state.config.billing_timezone;
    let date = |field: &str| text(live, field).parse::<jiff::civil::Date>().ok();
    let (Some(first), Some(today)) = (date("start_date"), date("end_date")) else {
        return Ok(Daily { days: Vec::new(), by_resource: Vec::new() });
    };
    let mut dates = Vec::new();
    let mut day = first;
    loop {
        dates.push(day);
        match day.tomorrow() {
            Ok(d) if day < today => day = d,
            _ => break,
        }
    }
    let n = dates.len();
    let (_, split) =
        crate::billing::live_by_day(&state.store, &state.live_bills, account_id, state.clock.unix(), tz).await?;
    // Resource id → (name, cost per day); the days before today from the split.
    let mut rows: HashMap<String, (String, Vec<i64>)> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for l in split.lines {
        let mut v = vec![0i64; n];
        for (date, amount) in split.days.iter().zip(&l.days) {
            if let Ok(i) = dates.binary_search(date)
                && i + 1 < n
            {
                v[i] = *amount;
            }
        }
        order.push(l.line.resource_id.clone());
        rows.insert(l.line.resource_id, (l.line.name, v));
    }
    // Today: the live bill's amount of each resource minus its earlier days.
    for i in live["items"].as_array().into_iter().flatten() {
        let id = text(i, "id");
        let row = rows.entry(id.to_owned()).or_insert_with(|| {
            order.push(id.to_owned());
            (String::new(), vec![0i64; n])
        });
        row.0 = text(i, "name").to_owned();
        let earlier: i64 = row.1[..n - 1].iter().sum();
        row.1[n - 1] = i["amount"].as_i64().unwrap_or(0) - earlier;
    }
    let by_resource = order.into_iter().filter_map(|id| rows.remove(&id).map(|(name, v)| (id, name, v))).collect();
    Ok(Daily { days: dates.iter().map(|d| d.day().to_string()).collect(), by_resource })
}

/// The chart's series: the `SERIES` costliest resources, then the others together.
fn series(lang: Lang, d: &Daily) -> Vec<Series> {
    let mut ranked: Vec<&(String, String, Vec<i64>)> = d.by_resource.iter().collect();
    ranked.sort_by_key(|(id, _, v)| (std::cmp::Reverse(v.iter().sum::<i64>()), id.clone()));
    let mut out: Vec<Series> = ranked
        .iter()
        .take(SERIES)
        .map(|(id, name, v)| Series {
            name: if name.is_empty() { id.clone() } else { name.clone() },
            values: v.clone(),
        })
        .collect();
    if ranked.len() > SERIES {
        let mut rest = vec![0i64; d.days.len()];
        for (_, _, v) in &ranked[SERIES..] {
            for (i, x) in v.iter().enumerate() {
                rest[i] += x;
            }
        }
        out.push(Series { name: lang.t_owned("billing.others"), values: rest });
    }
    out
}

/// The breakdown's rows, costliest first, cut at `BREAKDOWN_ROWS`, and the rest.
fn breakdown(mut items: Vec<Value>) -> (Vec<Value>, Vec<Value>) {
    items.sort_by_key(|i| std::cmp::Reverse(i["amount"].as_i64().unwrap_or(0)));
    let rest = items.split_off(items.len().min(BREAKDOWN_ROWS));
    (items, rest)
}

fn kind_text(lang: Lang, kind: &str) -> String {
    let key = format!("billing.kind_{kind}");
    if lang.has(&key) { lang.t_owned(&key) } else { kind.to_owned() }
}

fn hours(seconds: i64) -> String {
    format!("{:.1}", seconds as f64 / 3600.0)
}

fn chart_section(lang: Lang, d: &Daily, month: &str) -> Markup {
    let series = series(lang, d);
    let totals = chart::totals(d.days.len(), &series);
    let total: i64 = totals.iter().sum();
    let desc =
        format!("{} {month}: {} {}", lang.t("billing.chart_desc"), won(total), lang.t("billing.chart_table_note"));
    let fmt = |v: i64| won(v);
    html! {
        figure id="cost-chart" {
            (chart::stacked(&Stacked {
                id: "daily-chart",
                title: lang.t("billing.chart_title"),
                desc: &desc,
                columns: &d.days,
                series: &series,
                format: &fmt,
            }))
            figcaption {
                ul class="legend" {
                    @for (k, s) in series.iter().enumerate() {
                        li { (chart::swatch(k)) " " (s.name) " " span class="muted" { (won(s.values.iter().sum())) } }
                    }
                }
            }
        }
        details id="chart-table" {
            summary { (lang.t("billing.chart_table")) }
            table {
                caption { (lang.t("billing.chart_title")) }
                thead { tr {
                    th scope="col" { (lang.t("billing.day")) }
                    @for s in &series { th scope="col" class="num" { (s.name) } }
                    th scope="col" class="num" { (lang.t("billing.total")) }
                } }
                tbody {
                    @for (i, day) in d.days.iter().enumerate() {
                        tr {
                            th scope="row" { (day) }
                            @for s in &series { td class="num" { (won(s.values.get(i).copied().unwrap_or(0))) } }
                            td class="num" { (won(totals[i])) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn page(State(state): State<AppState>, s: Signed) -> Response {
    let lang = s.lang;
    let who = caller(&s);
    let mut error: Option<Shown> = None;
    let live =
        match reply(handlers::live(State(state.clone()), Extension(who.clone()), query(&[("explain", "1")])).await) {
            Ok(r) => r.rows.into_iter().next(),
            Err(e) => {
                error = Some(e.into());
                None
            }
        };
    let daily = match &live {
        Some(row) => match daily(&state, &s.account_id, row).await {
            Ok(d) => Some(d),
            Err(e) => {
                error = Some(e.into());
                None
            }
        },
        None => None,
    };
    let bills = match reply(handlers::list(State(state.clone()), Extension(who), query(&[("page_size", "100")])).await)
    {
        Ok(r) => r.rows,
        Err(e) => {
            error = Some(e.into());
            Vec::new()
        }
    };
    let (items, rest) = breakdown(live.as_ref().and_then(|b| b["items"].as_array().cloned()).unwrap_or_default());
    let body = html! {
        @if let Some(b) = &live {
            @let price = b["price"].as_i64().unwrap_or(0);
            @let vat = openwinv_billing::vat(price);
            @let month = format!("{} – {}", text(b, "start_date"), text(b, "end_date"));
            section aria-labelledby="h-live" {
                h2 id="h-live" { (lang.t("billing.live")) " " span class="muted" { (month) } }
                div class="cards" {
                    div class="card" id="live-price" { div class="muted" { (lang.t("billing.price")) } div class="value" data-price=(price) { (won(price)) } }
                    div class="card" { div class="muted" { (lang.t("price.vat")) } div class="value" { (won(vat)) } }
                    div class="card" { div class="muted" { (lang.t("billing.with_vat")) } div class="value" { (won(price + vat)) } }
                }
                h3 { (lang.t("billing.breakdown")) }
                @if items.is_empty() { p class="muted" { (lang.t("billing.no_usage")) } } @else {
                    table id="live-items" {
                        thead { tr {
                            th { (lang.t("billing.resource")) } th { (lang.t("volumes.type")) } th class="num" { (lang.t("billing.rate")) }
                            th class="num" { (lang.t("billing.hours")) } th class="num" { (lang.t("billing.amount")) }
                        } }
                        tbody {
                            @for it in &items {
                                @let id = text(it, "id");
                                tr data-resource=(id) {
                                    td {
                                        @if id.starts_with("INSTANCE-") { a href={"/instances/" (id)} { (text(it, "name")) } } @else { (text(it, "name")) }
                                        br; span class="muted" { (id) }
                                    }
                                    td { (kind_text(lang, text(it, "type"))) }
                                    td class="num" { (won(it["rate"].as_i64().unwrap_or(0))) "/" (lang.t_owned(&format!("billing.per_{}", text(it, "rate_unit")))) }
                                    td class="num" { (hours(it["seconds"].as_i64().unwrap_or(0))) }
                                    td class="num" data-amount=(it["amount"]) { (won(it["amount"].as_i64().unwrap_or(0))) }
                                }
                            }
                        }
                        tfoot {
                            @if !rest.is_empty() {
                                tr id="live-rest" {
                                    th colspan="4" { (rest.len()) " " (lang.t("billing.more_resources")) }
                                    td class="num" { (won(rest.iter().map(|i| i["amount"].as_i64().unwrap_or(0)).sum())) }
                                }
                            }
                            tr { th colspan="4" { (lang.t("billing.total")) } td class="num" { (won(price)) } }
                        }
                    }
                }
                @if let Some(d) = &daily {
                    h3 { (lang.t("billing.chart_title")) }
                    (chart_section(lang, d, &month))
                }
            }
        }
        section aria-labelledby="h-bills" {
            h2 id="h-bills" { (lang.t("billing.bills")) }
            @if bills.is_empty() { p class="muted" { (lang.t("billing.no_bills")) } } @else {
                table id="bills" {
                    thead { tr {
                        th { (lang.t("billing.bill")) } th { (lang.t("billing.bill_date")) } th class="num" { (lang.t("billing.price")) }
                        th class="num" { (lang.t("price.vat")) } th class="num" { (lang.t("billing.payment_price")) } th { (lang.t("billing.payment")) }
                    } }
                    tbody {
                        @for b in &bills {
                            @let id = text(b, "bill_id");
                            tr data-bill=(id) {
                                td { a href={"/billing/" (id)} { (text(b, "name")) } br; span class="muted" { (id) } }
                                td { (text(b, "bill_date")) }
                                td class="num" { (won(b["price"].as_i64().unwrap_or(0))) }
                                td class="num" { (won(b["vat"].as_i64().unwrap_or(0))) }
                                td class="num" { (won(b["payment_price"].as_i64().unwrap_or(0))) }
                                td { (payment(lang, b)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Page::new(&s, "billing", lang.t("billing.title")).error(error).body(body).render()
}

fn payment(lang: Lang, b: &Value) -> Markup {
    let paid = text(b, "payment_status") == "paid";
    html! {
        @if paid { span class="badge badge-succeeded" { (lang.t("billing.paid")) } " " (text(b, "date_paid")) }
        @else { span class="badge badge-pending" { (lang.t("billing.unpaid")) } }
    }
}

/// One bill with its items grouped by kind; another account's id → the API's 404.
pub async fn bill(State(state): State<AppState>, s: Signed, Path(id): Path<String>) -> Response {
    let lang = s.lang;
    let b = match reply(handlers::detail(State(state.clone()), Extension(caller(&s)), Path(id)).await) {
        Ok(r) => r.rows.into_iter().next().unwrap_or(Value::Null),
        Err(e) => {
            return Page::new(&s, "billing", lang.t("error.not_found"))
                .error(Some(e.into()))
                .body(html! { p { a href="/billing" { (lang.t("billing.back")) } } })
                .render();
        }
    };
    let body = html! {
        p { a href="/billing" { (lang.t("billing.back")) } }
        table class="facts" id="bill-facts" {
            tbody {
                tr { th { "ID" } td { (text(&b, "bill_id")) } }
                tr { th { (lang.t("billing.usage")) } td { (text(&b, "usage_start")) " – " (text(&b, "usage_end")) } }
                tr { th { (lang.t("billing.bill_date")) } td { (text(&b, "bill_date")) } }
                tr { th { (lang.t("billing.price")) } td { (won(b["price"].as_i64().unwrap_or(0))) } }
                tr { th { (lang.t("price.vat")) } td { (won(b["vat"].as_i64().unwrap_or(0))) } }
                tr { th { (lang.t("billing.payment_price")) } td { (won(b["payment_price"].as_i64().unwrap_or(0))) } }
                tr { th { (lang.t("billing.payment")) } td { (payment(lang, &b)) } }
            }
        }
        @for g in b["group"].as_array().into_iter().flatten() {
            section class="bill-group" {
                h2 { (text(g, "type")) " " span class="muted" { "(" (g["count"]) ")" } }
                table {
                    thead { tr {
                        th { (lang.t("billing.resource")) } th { (lang.t("billing.usage")) } th class="num" { (lang.t("billing.amount")) }
                    } }
                    tbody {
                        @for it in g["item"].as_array().into_iter().flatten() {
                            tr {
                                td { (text(it, "name")) br; span class="muted" { (text(it, "service_id")) } }
                                td { (text(it, "usage_start")) " – " (text(it, "usage_end")) }
                                td class="num" { (won(it["price"].as_i64().unwrap_or(0))) }
                            }
                        }
                    }
                    tfoot { tr { th colspan="2" { (lang.t("billing.sub_total")) } td class="num" { (won(g["sub_total"].as_i64().unwrap_or(0))) } } }
                }
            }
        }
    };
    let title = format!("{} {}", lang.t("billing.bill"), text(&b, "name"));
    Page::new(&s, "billing", title).body(body).render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breakdown_shows_the_costliest_rows_and_keeps_the_rest() {
        let items: Vec<Value> = (0..150).map(|n| serde_json::json!({"id": format!("R{n}"), "amount": n})).collect();
        let (shown, rest) = breakdown(items);
        assert_eq!((shown.len(), rest.len()), (BREAKDOWN_ROWS, 50));
        assert_eq!(shown[0]["amount"], 149);
        assert_eq!(rest.iter().map(|i| i["amount"].as_i64().unwrap()).sum::<i64>(), (0..50).sum::<i64>());
        let (shown, rest) = breakdown(vec![serde_json::json!({"amount": 1})]);
        assert_eq!((shown.len(), rest.len()), (1, 0));
    }

    #[test]
    fn series_keep_six_resources_and_sum_the_others() {
        let d = Daily {
            days: vec!["1".into(), "2".into()],
            by_resource: (0..9).map(|n| (format!("R{n}"), format!("r{n}"), vec![n, 1])).collect(),
        };
        let s = series(Lang::En, &d);
        assert_eq!(s.len(), SERIES + 1);
        assert_eq!(s[0].name, "r8");
        assert_eq!(s[SERIES].name, "Others");
        // R0, R1, R2 are the others: 0+1+2 on day 1, 1 each on day 2.
        assert_eq!(s[SERIES].values, vec![3, 3]);
        let all: i64 = s.iter().flat_map(|x| x.values.iter()).sum();
        assert_eq!(all, (0..9).sum::<i64>() + 9);
    }
}
