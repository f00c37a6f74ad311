//! The detail page of one instance and its actions (start, shutdown, …, password, console).

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::super::form::Form;
use super::super::i18n::Lang;
use super::super::layout::{Page, badge, csrf_field, partial};
use super::super::{Shown, Signed, caller, csrf, reply, see_other, text, transitional};
use super::list::{addresses, done_notice, run_action};
use super::{enc, refresh};
use crate::AppState;
use crate::api::{instances, operations};
use crate::input::{Path, Query};
use crate::service::instances as svc;
use openwinv_wire::catalog::instance_fields;

fn status_markup(lang: Lang, id: &str, status: &str, q: &Query) -> Markup {
    let (trigger, next, delay) = refresh(transitional(status), q);
    html! {
        span id="instance-status" hx-get={"/instances/" (id) "/status?n=" (next)} hx-trigger=(trigger) hx-swap="outerHTML"
            data-refresh-ms=(delay) { (badge(lang, status)) }
    }
}

async fn fetch(state: &AppState, s: &Signed, id: &str, mask: u64) -> Result<Value, Shown> {
    let q = Query([("fields".to_owned(), mask.to_string())].into_iter().collect());
    let r =
        instances::detail(State(state.clone()), Extension(caller(s)), Path(id.to_owned()), HeaderMap::new(), q).await;
    let rows = reply(r).map_err(Shown::from)?;
    Ok(rows.rows.into_iter().next().unwrap_or(Value::Null))
}

/// The 404 page of an id the account does not have: the API's message.
fn not_found(s: &Signed, e: Shown) -> Response {
    let lang = s.lang;
    Page::new(s, "instances", lang.t("error.not_found"))
        .error(Some(e))
        .body(html! { p { a href="/instances" { (lang.t("bulk.back")) } } })
        .render()
}

pub async fn status_badge(State(state): State<AppState>, s: Signed, Path(id): Path<String>, q: Query) -> Response {
    match fetch(&state, &s, &id, 1 | 8).await {
        Ok(r) => partial(status_markup(s.lang, &id, text(&r, "status"), &q)),
        Err(e) => {
            let mut r = partial(html! { span id="instance-status" class="error" { (e.message) } });
            *r.status_mut() = e.status;
            r
        }
    }
}

pub async fn detail(State(state): State<AppState>, s: Signed, Path(id): Path<String>, q: Query) -> Response {
    show_with(&state, &s, &id, done_notice(s.lang, &q), None, None, &q, None).await
}

async fn show(
    state: &AppState,
    s: &Signed,
    id: &str,
    notice: Option<String>,
    error: Option<Shown>,
    password: Option<String>,
) -> Response {
    show_with(state, s, id, notice, error, password, &Query::default(), None).await
}

/// The detail page; `q` may ask for a reachability check, `console` is a one-time console path
/// to open in the page.
#[allow(clippy::too_many_arguments)]
async fn show_with(
    state: &AppState,
    s: &Signed,
    id: &str,
    notice: Option<String>,
    error: Option<Shown>,
    password: Option<String>,
    q: &Query,
    console: Option<&str>,
) -> Response {
    let lang = s.lang;
    let r = match fetch(state, s, id, instance_fields::DEFAULT).await {
        Ok(r) => r,
        Err(e) => return not_found(s, e),
    };
    let ops_q = Query(
        [("resource_id".to_owned(), id.to_owned()), ("page_size".to_owned(), "100".to_owned())].into_iter().collect(),
    );
    let mut ops = reply(operations::list(State(state.clone()), Extension(caller(s)), ops_q).await)
        .map(|r| r.rows)
        .unwrap_or_default();
    ops.reverse();
    let catalog = state.catalog.get();
    let zone_id = r["zone"]["zone_id"].as_str().unwrap_or("");
    let status = text(&r, "status");
    let action = |name: &str, key: &str, class: Option<&str>| {
        html! {
            form method="post" action={"/instances/" (id) "/action"} class="inline" {
                (csrf_field(&s.csrf))
                input type="hidden" name="action" value=(name);
                button type="submit" id={"act-" (name)} class=[class] { (lang.t_owned(key)) }
            }
        }
    };
    let fws: Vec<String> =
        r["firewall"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
    let firewall_section = super::super::firewalls::instance_section(state, s, id, &fws, q).await;
    let body = html! {
        p { (lang.t("instances.status")) ": " (status_markup(lang, id, status, &Query::default())) }
        @if let Some(p) = &password {
            p id="initial-password" { (lang.t("detail.password")) ": " span class="secret" { (p) } }
        }
        section aria-labelledby="h-actions" {
            h2 id="h-actions" { (lang.t("detail.actions")) }
            div class="row" {
                (action("start", "action.start", None))
                (action("shutdown", "action.shutdown", None))
                (action("reboot", "action.reboot", None))
                (action("reboot-hard", "action.reboot-hard", None))
                (action("delete", "action.delete", Some("danger")))
                form method="post" action={"/instances/" (id) "/console"} class="inline"
                    hx-post={"/instances/" (id) "/console"} hx-target="#console-slot" hx-swap="outerHTML" {
                    (csrf_field(&s.csrf))
                    button type="submit" id="act-console" class="secondary" { (lang.t("detail.console")) }
                }
                form method="post" action={"/instances/" (id) "/password"} class="inline" {
                    (csrf_field(&s.csrf))
                    button type="submit" id="act-password" class="secondary" { (lang.t("detail.show_password")) }
                }
            }
            div class="row" {
                form method="post" action={"/instances/" (id) "/action"} class="inline" {
                    (csrf_field(&s.csrf))
                    input type="hidden" name="action" value="rebuild";
                    label for="rebuild-image" { (lang.t("action.rebuild")) }
                    select id="rebuild-image" name="image_id" {
                        @for i in catalog.images.iter().filter(|i| i.zones.iter().any(|z| z == zone_id)) {
                            option value=(i.id) selected[r["image"]["image_id"].as_str() == Some(i.id.as_str())] { (i.name) }
                        }
                    }
                    button type="submit" id="act-rebuild" { (lang.t("action.rebuild")) }
                }
                form method="post" action={"/instances/" (id) "/action"} class="inline" {
                    (csrf_field(&s.csrf))
                    input type="hidden" name="action" value="resize";
                    label for="resize-flavor" { (lang.t("action.resize")) }
                    select id="resize-flavor" name="flavor_id" {
                        @for f in catalog.flavors.iter().filter(|f| f.zones.iter().any(|z| z == zone_id) && f.provide) {
                            option value=(f.id) { (f.name) " — " (super::super::dashboard::won(f.price_month)) (lang.t("price.per_month")) }
                        }
                    }
                    button type="submit" id="act-resize" { (lang.t("action.resize")) }
                }
            }
        }
        (super::super::console_frame::slot(lang, console))
        h2 { (lang.t("detail.overview")) }
        table class="facts" {
            tbody {
                tr { th { "ID" } td { (id) } }
                tr { th { (lang.t("instances.zone")) } td { (r["zone"]["name"].as_str().unwrap_or("")) " (" (zone_id) ")" } }
                tr { th { (lang.t("instances.flavor")) } td {
                    (r["flavor"]["name"].as_str().unwrap_or("")) " · " (r["flavor"]["vcpu"]) " vCPU · " (r["flavor"]["memory"]) " GB · "
                    (r["flavor"]["disk"]) " GB"
                } }
                tr { th { (lang.t("instances.image")) } td { (r["image"]["image_id"].as_str().unwrap_or("")) } }
                tr { th { (lang.t("instances.addresses")) } td id="addresses" { (addresses(&r)) } }
                tr { th { (lang.t("instances.created")) } td { (text(&r, "start_date")) } }
            }
        }
        h2 { (lang.t("nav.volumes")) }
        @let vols = r["block_storage"].as_array().cloned().unwrap_or_default();
        @if vols.is_empty() { p class="muted" { (lang.t("detail.no_volumes")) } } @else {
            ul id="instance-volumes" { @for v in &vols { li { (text(v, "name")) " · " (v["size"]) " GB · " (badge(lang, text(v, "status"))) " " span class="muted" { (text(v, "block_storage_id")) } } } }
        }
        (firewall_section)
        h2 { (lang.t("dashboard.operations")) }
        table {
            thead { tr { th { (lang.t("op.kind")) } th { (lang.t("op.status")) } th { (lang.t("op.created")) } th { (lang.t("op.error")) } } }
            tbody { @for o in &ops { tr { td { (text(o, "kind")) } td { (badge(lang, text(o, "status"))) } td { (text(o, "created_at")) } td { (o["error"].as_str().unwrap_or("")) } } } }
        }
    };
    let title = format!("{} {}", lang.t("detail.title"), text(&r, "name"));
    Page::new(s, "instances", title).notice(notice).error(error).body(body).render()
}

pub async fn action(State(state): State<AppState>, s: Signed, Path(id): Path<String>, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let action = form.get("action").unwrap_or("").to_owned();
    match run_action(&state, &s, &id, &action, &form).await {
        Ok(()) if action == "delete" => see_other("/instances?done=delete"),
        Ok(()) => see_other(&format!("/instances/{}?done={}", enc(&id), enc(&action))),
        Err(e) if e.code == "NOT_FOUND" => not_found(&s, e),
        Err(e) => show(&state, &s, &id, None, Some(e), None).await,
    }
}

/// The instance's initial password, shown on request in this answer only (never in a URL).
pub async fn password(State(state): State<AppState>, s: Signed, Path(id): Path<String>, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    match fetch(&state, &s, &id, 1 | 128).await {
        Ok(r) => {
            let p = r["default_account"]["password"].as_str().unwrap_or("").to_owned();
            show(&state, &s, &id, None, None, Some(p)).await
        }
        Err(e) => not_found(&s, e),
    }
}

/// Opens the browser console in the page: asks the API for a one-time link and answers with the
/// console framed (an htmx partial, or the whole page without script). The link's path is only in
/// the frame's `src`, never in the address bar (see `console_frame`).
pub async fn console(
    State(state): State<AppState>,
    s: Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let htmx = headers.get("hx-request").is_some_and(|v| v == "true");
    match svc::remote_console(&state, &caller(&s), &id, &instances::host_of(&headers)).await {
        Ok((link, _)) => {
            // The link is absolute; keep its path so the browser stays on the origin it uses.
            let path = link.find("/console/").map_or(link.as_str(), |i| &link[i..]).to_owned();
            if htmx {
                partial(super::super::console_frame::slot(s.lang, Some(&path)))
            } else {
                show_with(&state, &s, &id, None, None, None, &Query::default(), Some(&path)).await
            }
        }
        Err(e) if htmx => partial(super::super::console_frame::refused(&e.into())),
        Err(e) if e.code == openwinv_wire::ErrorCode::NotFound => not_found(&s, e.into()),
        Err(e) => show(&state, &s, &id, None, Some(e.into()), None).await,
    }
}
