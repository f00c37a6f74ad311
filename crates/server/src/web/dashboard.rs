//! The dashboard: instances by status, this month's live bill, the latest operations.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::layout::{Page, badge};
use super::{Shown, Signed, caller, reply, text};
use crate::AppState;
use crate::api::{instances, operations};
use crate::input::Query;

const STATUSES: [&str; 5] = ["pending", "active", "off", "work", "error"];
const RECENT: u64 = 8;

fn query(pairs: &[(&str, &str)]) -> Query {
    Query(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

pub async fn page(State(state): State<AppState>, s: Signed) -> Response {
    let lang = s.lang;
    let who = caller(&s);
    let mut error: Option<Shown> = None;
    let mut counts = Vec::new();
    for st in STATUSES {
        let q = query(&[("status", st), ("page_size", "1"), ("fields", "1")]);
        let r = instances::list(State(state.clone()), Extension(who.clone()), Default::default(), q).await;
        match reply(r) {
            Ok(rows) => counts.push((st, rows.total)),
            Err(e) => error = Some(e.into()),
        }
    }
    let bill = reply(crate::billing::handlers::live(State(state.clone()), Extension(who.clone()), query(&[])).await);
    let price = match bill {
        Ok(rows) => rows.rows.first().and_then(|r| r["price"].as_i64()),
        Err(e) => {
            error = Some(e.into());
            None
        }
    };
    // The newest operations: the list is oldest first, so read its last page.
    let first =
        reply(operations::list(State(state.clone()), Extension(who.clone()), query(&[("page_size", "1")])).await);
    let mut ops = Vec::new();
    if let Ok(first) = first {
        let total = first.total;
        let skip = total.saturating_sub(RECENT);
        // Two pages of RECENT cover the last RECENT rows wherever a page boundary falls.
        let page_no = skip / RECENT + 1;
        for p in [page_no, page_no + 1] {
            let q = query(&[("page_size", &RECENT.to_string()), ("page_no", &p.to_string())]);
            if let Ok(rows) = reply(operations::list(State(state.clone()), Extension(who.clone()), q).await) {
                ops.extend(rows.rows);
            }
        }
        let keep = ops.len().saturating_sub(RECENT as usize);
        ops.drain(..keep);
        ops.reverse();
    }
    let body = html! {
        h2 { (lang.t("dashboard.instances")) }
        div class="cards" {
            @for (st, n) in &counts {
                a class="card" href={"/instances?status=" (st)} data-count=(st) {
                    div { (badge(lang, st)) }
                    div class="value" { (n) }
                }
            }
        }
        h2 { (lang.t("dashboard.bill")) }
        div class="cards" {
            a class="card" id="live-bill" href="/billing" {
                div class="value" { @if let Some(p) = price { (won(p)) } @else { "—" } }
                div class="muted" { (lang.t("dashboard.bill_note")) }
            }
        }
        h2 { (lang.t("dashboard.operations")) }
        @if ops.is_empty() {
            p class="muted" { (lang.t("dashboard.no_operations")) }
        } @else {
            table {
                thead { tr {
                    th { (lang.t("op.kind")) } th { (lang.t("op.resource")) } th { (lang.t("op.status")) } th { (lang.t("op.created")) }
                } }
                tbody {
                    @for o in &ops {
                        tr {
                            td { (text(o, "kind")) }
                            td {
                                @let rid = text(o, "resource_id");
                                @if rid.starts_with("INSTANCE-") { a href={"/instances/" (rid)} { (rid) } } @else { (rid) }
                            }
                            td { (badge(lang, text(o, "status"))) }
                            td { (text(o, "created_at")) }
                        }
                    }
                }
            }
        }
    };
    Page::new(&s, "dashboard", lang.t("dashboard.title")).error(error).body(body).render()
}

/// `12,345원`-style amounts: digits grouped by thousands, with the currency.
pub fn won(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}₩{out}", if amount < 0 { "-" } else { "" })
}
