//! The instance list: filters, paging, status badges, polling and bulk actions.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::super::form::Form;
use super::super::i18n::Lang;
use super::super::layout::{Page, badge, csrf_field, partial};
use super::super::{Shown, Signed, caller, csrf, reply, see_other, text, transitional};
use super::{enc, refresh};
use crate::AppState;
use crate::api::instances;
use crate::input::Query;
use crate::service::instances::{self as svc, RebootInstance, RebootType, RebuildInstance, ResizeInstance};

const PAGE_SIZE: u64 = 20;
const BULK_ACTIONS: [&str; 4] = ["start", "shutdown", "reboot", "delete"];
const FILTERS: [&str; 3] = ["status", "name", "page_no"];

fn query_string(q: &Query) -> String {
    FILTERS.iter().filter_map(|k| q.str(k).map(|v| format!("{k}={}", enc(v)))).collect::<Vec<_>>().join("&")
}

pub(super) fn done_notice(lang: Lang, q: &Query) -> Option<String> {
    let key = format!("done.{}", q.str("done")?);
    lang.has(&key).then(|| lang.t_owned(&key))
}

/// The list's rows as a partial that refreshes itself: every 3 s while an instance is changing,
/// every 60 s otherwise.
async fn rows_partial(state: &AppState, s: &Signed, q: &Query) -> Result<Markup, Shown> {
    let lang = s.lang;
    let mut api_q = Query::default();
    if let Some(st) = q.str("status") {
        api_q.0.insert("status".into(), st.into());
    }
    if let Some(n) = q.str("name") {
        api_q.0.insert("name".into(), n.into());
    }
    let page_no = q.str("page_no").and_then(|p| p.parse::<u64>().ok()).filter(|p| *p >= 1).unwrap_or(1);
    api_q.0.insert("page_no".into(), page_no.to_string());
    api_q.0.insert("page_size".into(), PAGE_SIZE.to_string());
    let r = instances::list(State(state.clone()), Extension(caller(s)), HeaderMap::new(), api_q).await;
    let rows = reply(r).map_err(Shown::from)?;
    let busy = rows.rows.iter().any(|r| transitional(text(r, "status")));
    let (trigger, next, delay) = refresh(busy, q);
    let qs = query_string(q);
    let qs = if qs.is_empty() { format!("n={next}") } else { format!("{qs}&n={next}") };
    let pages = rows.total.div_ceil(PAGE_SIZE).max(1);
    let link = |p: u64| {
        let mut parts: Vec<String> =
            ["status", "name"].iter().filter_map(|k| q.str(k).map(|v| format!("{k}={}", enc(v)))).collect();
        parts.push(format!("page_no={p}"));
        format!("/instances?{}", parts.join("&"))
    };
    Ok(html! {
        div id="instance-rows" hx-get={"/instances/rows?" (qs)} hx-trigger=(trigger) hx-swap="outerHTML"
            data-refresh-ms=(delay) {
            @if rows.rows.is_empty() {
                p class="muted" { (lang.t("instances.none")) }
            } @else {
                table {
                    thead { tr {
                        th { span class="muted" { (lang.t("instances.select")) } }
                        th { (lang.t("instances.name")) } th { (lang.t("instances.status")) } th { (lang.t("instances.zone")) }
                        th { (lang.t("instances.flavor")) } th { (lang.t("instances.image")) } th { (lang.t("instances.addresses")) }
                        th { (lang.t("instances.created")) }
                    } }
                    tbody {
                        @for r in &rows.rows {
                            @let id = text(r, "instance_id");
                            tr data-instance=(id) {
                                td { input type="checkbox" form="bulk" name="id" value=(id) id={"sel-" (id)} hx-preserve
                                    aria-label={(lang.t("instances.select")) " " (text(r, "name"))}; }
                                td { a href={"/instances/" (id)} { (text(r, "name")) } br; span class="muted" { (id) } }
                                td { (badge(lang, text(r, "status"))) }
                                td { (r["zone"]["name"].as_str().unwrap_or("")) }
                                td { (r["flavor"]["name"].as_str().unwrap_or("")) }
                                td { (r["image"]["os"]["name"].as_str().or(r["image"]["image_id"].as_str()).unwrap_or("")) }
                                td { (addresses(r)) }
                                td { (text(r, "start_date")) }
                            }
                        }
                    }
                }
            }
            div class="pager" {
                span { (lang.t("list.total")) " " (rows.total) }
                @if page_no > 1 { a href=(link(page_no - 1)) rel="prev" { (lang.t("list.prev")) } }
                span { (page_no) " / " (pages) }
                @if page_no < pages { a href=(link(page_no + 1)) rel="next" { (lang.t("list.next")) } }
            }
        }
    })
}

pub(super) fn addresses(r: &Value) -> String {
    let mut out = Vec::new();
    for ip in r["ip"].as_array().into_iter().flatten() {
        if let Some(a) = ip["public"]["address"].as_str().filter(|a| !a.is_empty()) {
            out.push(a.to_owned());
        }
        if let Some(a) = ip["private"]["address"].as_str().filter(|a| !a.is_empty()) {
            out.push(a.to_owned());
        }
    }
    out.join(", ")
}

pub async fn list(State(state): State<AppState>, s: Signed, q: Query) -> Response {
    let lang = s.lang;
    let (rows, error) = match rows_partial(&state, &s, &q).await {
        Ok(m) => (m, None),
        Err(e) => (html! {}, Some(e)),
    };
    let status = q.str("status").unwrap_or("");
    let body = html! {
        p { a href="/instances/new" id="new-instance" { (lang.t("instances.new")) } }
        form class="row" method="get" action="/instances" role="search" {
            div {
                label for="f-status" { (lang.t("instances.status")) }
                select id="f-status" name="status" {
                    option value="" { (lang.t("filter.any")) }
                    @for st in ["pending", "active", "off", "work", "error"] {
                        option value=(st) selected[status == st] { (lang.t_owned(&format!("status.{st}"))) }
                    }
                }
            }
            div {
                label for="f-name" { (lang.t("instances.name")) }
                input type="text" id="f-name" name="name" value=(q.str("name").unwrap_or(""));
            }
            div { button type="submit" class="secondary" { (lang.t("filter.apply")) } }
        }
        form id="bulk" class="row" method="post" action="/instances/bulk" {
            (csrf_field(&s.csrf))
            div {
                label for="bulk-action" { (lang.t("bulk.action")) }
                select id="bulk-action" name="action" {
                    @for a in BULK_ACTIONS { option value=(a) { (lang.t_owned(&format!("action.{a}"))) } }
                }
            }
            div { button type="submit" id="bulk-submit" { (lang.t("bulk.apply")) } }
        }
        (rows)
    };
    Page::new(&s, "instances", lang.t("instances.title")).notice(done_notice(lang, &q)).error(error).body(body).render()
}

pub async fn rows(State(state): State<AppState>, s: Signed, q: Query) -> Response {
    match rows_partial(&state, &s, &q).await {
        Ok(m) => partial(m),
        Err(e) => partial(html! { div id="instance-rows" class="error" role="alert" { (e.message) } }),
    }
}

/// Runs one action on one instance through its `/v1` handler.
pub(super) async fn run_action(state: &AppState, s: &Signed, id: &str, action: &str, form: &Form) -> Result<(), Shown> {
    let who = caller(s);
    let r = match action {
        "start" => svc::start(state, &who, id).await.map(drop),
        "shutdown" => svc::shutdown(state, &who, id).await.map(drop),
        "reboot" => svc::reboot(state, &who, id, RebootInstance { kind: Some(RebootType::Soft) }).await.map(drop),
        "reboot-hard" => svc::reboot(state, &who, id, RebootInstance { kind: Some(RebootType::Hard) }).await.map(drop),
        "delete" => svc::delete(state, &who, id).await.map(drop),
        "rebuild" => {
            let image_id = form.get("image_id").filter(|v| !v.is_empty()).map(str::to_owned);
            svc::rebuild(state, &who, id, RebuildInstance { image_id }).await.map(drop)
        }
        "resize" => {
            let flavor_id = form.get("flavor_id").map(str::to_owned);
            svc::resize(state, &who, id, ResizeInstance { flavor_id }).await.map(drop)
        }
        _ => {
            return Err(Shown {
                status: StatusCode::BAD_REQUEST,
                code: "CHECK_PARAM_ENUM".into(),
                message: format!(
                    "The action `{action}` is not one of start, shutdown, reboot, reboot-hard, delete, rebuild, resize."
                ),
            });
        }
    };
    r.map(|_| ()).map_err(Shown::from)
}

/// Bulk actions: the first post shows what will happen and asks once; the confirmed post runs
/// the action on each instance and reports each one's refusal, if any.
pub async fn bulk(State(state): State<AppState>, s: Signed, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let lang = s.lang;
    let ids = form.all("id");
    let action = form.get("action").unwrap_or("").to_owned();
    if !BULK_ACTIONS.contains(&action.as_str()) || ids.is_empty() {
        let key = if ids.is_empty() { "bulk.none_selected" } else { "bulk.bad_action" };
        return Page::new(&s, "instances", lang.t("bulk.title"))
            .error_text(lang.t(key))
            .status(StatusCode::BAD_REQUEST)
            .body(html! { p { a href="/instances" { (lang.t("bulk.back")) } } })
            .render();
    }
    let action_text = lang.t_owned(&format!("action.{action}"));
    if form.get("confirm") != Some("yes") {
        let body = html! {
            p id="bulk-question" { (lang.t("bulk.confirm_question")) " " strong { (action_text) } " (" (ids.len()) ")" }
            ul { @for id in &ids { li { (id) } } }
            form method="post" action="/instances/bulk" class="inline" {
                (csrf_field(&s.csrf))
                input type="hidden" name="action" value=(action);
                input type="hidden" name="confirm" value="yes";
                @for id in &ids { input type="hidden" name="id" value=(id); }
                button type="submit" id="bulk-confirm" class=[(action == "delete").then_some("danger")] { (lang.t("bulk.confirm")) }
            }
            " "
            a href="/instances" { (lang.t("bulk.cancel")) }
        };
        return Page::new(&s, "instances", lang.t("bulk.title")).body(body).render();
    }
    let mut failures = Vec::new();
    for id in &ids {
        if let Err(e) = run_action(&state, &s, id, &action, &form).await {
            failures.push((id.clone(), e));
        }
    }
    if failures.is_empty() {
        return see_other("/instances?done=bulk");
    }
    let body = html! {
        p { (lang.t("bulk.some_failed")) }
        ul class="error" role="alert" {
            @for (id, e) in &failures { li { strong { (id) } " " (e.code) " " (e.message) } }
        }
        p { a href="/instances" { (lang.t("bulk.back")) } }
    };
    let status = failures[0].1.status;
    Page::new(&s, "instances", lang.t("bulk.title")).status(status).body(body).render()
}
