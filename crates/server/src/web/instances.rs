//! Instances: the list (filters, paging, badges, polling, bulk actions), the create wizard and
//! the detail page with its actions. Every read and action is a `/v1` handler called with the
//! session's caller.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::form::Form;
use super::i18n::Lang;
use super::layout::{Page, badge, csrf_field, partial};
use super::{Shown, Signed, caller, csrf, reply, see_other, text, transitional};
use crate::AppState;
use crate::api::{firewalls, instances, operations, scripts, ssh_keys};
use crate::error::ApiResult;
use crate::input::{Body, Encoding, Path, Query};
use crate::service::FromBody;
use crate::service::instances::{
    self as svc, CreateInstance, RebootInstance, RebootType, RebuildInstance, ResizeInstance,
};
use openwinv_wire::catalog::instance_fields;

const PAGE_SIZE: u64 = 20;
/// Seconds between refreshes of a list or badge while something is changing, and otherwise.
pub const FAST_REFRESH: u32 = 3;
pub const SLOW_REFRESH: u32 = 60;
/// The first refresh of a part that shows something transitional (ms); each refresh after it
/// waits twice as long, up to [`FAST_REFRESH`]. Most operations on the simulated driver, and
/// quick ones anywhere, end within a second: the badge turns without waiting out 3 s.
const FIRST_REFRESH_MS: u32 = 250;

/// The htmx trigger of a part that refreshes itself, the round it is in (`n` in the query of
/// its refresh) and its delay in ms: quickly, then every 3 s at the most, while something is
/// transitional (`busy`); every 60 s otherwise.
pub fn refresh(busy: bool, q: &Query) -> (String, u32, u32) {
    if !busy {
        return (format!("every {SLOW_REFRESH}s"), 0, SLOW_REFRESH * 1000);
    }
    let round = q.str("n").and_then(|n| n.parse::<u32>().ok()).unwrap_or(0).min(16);
    let ms = FIRST_REFRESH_MS.saturating_mul(1 << round.min(8)).min(FAST_REFRESH * 1000);
    (format!("load delay:{ms}ms"), round + 1, ms)
}
const BULK_ACTIONS: [&str; 4] = ["start", "shutdown", "reboot", "delete"];
const FILTERS: [&str; 3] = ["status", "name", "page_no"];

/// Percent-encodes a query value.
pub fn enc(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query_string(q: &Query) -> String {
    FILTERS.iter().filter_map(|k| q.str(k).map(|v| format!("{k}={}", enc(v)))).collect::<Vec<_>>().join("&")
}

fn done_notice(lang: Lang, q: &Query) -> Option<String> {
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

fn addresses(r: &Value) -> String {
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
async fn run_action(state: &AppState, s: &Signed, id: &str, action: &str, form: &Form) -> Result<(), Shown> {
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

// ---------------------------------------------------------------------------------------------
// The create wizard: zone → image → flavor and the rest.

fn price_cell(lang: Lang, month: i64, hour: i64) -> Markup {
    let vat_m = openwinv_billing::vat(month);
    html! {
        span class="price" {
            (super::dashboard::won(month)) (lang.t("price.per_month")) " · " (super::dashboard::won(hour)) (lang.t("price.per_hour"))
            br;
            span class="muted" { (lang.t("price.vat")) " " (super::dashboard::won(vat_m)) " → " (super::dashboard::won(month + vat_m)) (lang.t("price.per_month")) }
        }
    }
}

/// The most rows the API gives in one page.
const API_PAGE: usize = 100;
/// Pages read for one picker at most (10,000 rows), in case a list ignored `page_no`.
const PICKER_PAGES: u32 = 100;

/// The wizard's pickers: lists the API gives `API_PAGE` rows at a time.
#[derive(Clone, Copy)]
enum Picker {
    SshKeys,
    Scripts,
    Firewalls,
}

/// Every row of a picker's list: pages are read until one comes back short, since the key and
/// firewall lists have no `total` [iwinv].
async fn every_row(
    state: &AppState,
    account_id: &openwinv_store::ids::AccountId,
    picker: Picker,
) -> ApiResult<Vec<Value>> {
    let mut all = Vec::new();
    for page_no in 1..=PICKER_PAGES {
        let q = Query(
            [("page_size".to_owned(), API_PAGE.to_string()), ("page_no".to_owned(), page_no.to_string())]
                .into_iter()
                .collect(),
        );
        let rows = match picker {
            Picker::SshKeys => reply(ssh_keys::list_for(state, account_id, &q).await),
            Picker::Scripts => reply(scripts::list_for(state, account_id, &q).await),
            Picker::Firewalls => reply(firewalls::list_for(state, account_id, &q).await),
        }?
        .rows;
        let short = rows.len() < API_PAGE;
        all.extend(rows);
        if short {
            break;
        }
    }
    Ok(all)
}

pub async fn wizard(State(state): State<AppState>, s: Signed, q: Query) -> Response {
    render_wizard(&state, &s, &q, &Form::default(), None).await
}

async fn render_wizard(state: &AppState, s: &Signed, q: &Query, sent: &Form, mut error: Option<Shown>) -> Response {
    let lang = s.lang;
    let catalog = state.catalog.get();
    let zone = q.str("zone_id").and_then(|z| catalog.zones.iter().find(|d| d.id == z));
    let image = zone.and_then(|z| {
        q.str("image_id").and_then(|i| catalog.images.iter().find(|d| d.id == i && d.zones.contains(&z.id)))
    });
    let body = match (zone, image) {
        (None, _) => html! {
            form method="get" action="/instances/new" {
                fieldset {
                    legend { "1. " (lang.t("wizard.zone")) }
                    div class="choices" {
                        @for z in &catalog.zones {
                            label {
                                input type="radio" name="zone_id" value=(z.id) required disabled[z.status != "on"];
                                " " (z.name) " " span class="muted" { (z.id) }
                                @if z.status != "on" { " " span class="muted" { (lang.t("wizard.closed")) } }
                            }
                        }
                    }
                }
                button type="submit" id="wizard-next" { (lang.t("wizard.next")) }
            }
        },
        (Some(z), None) => html! {
            p { (lang.t("wizard.zone")) ": " strong { (z.name) } " · " a href="/instances/new" { (lang.t("wizard.change")) } }
            form method="get" action="/instances/new" {
                input type="hidden" name="zone_id" value=(z.id);
                fieldset {
                    legend { "2. " (lang.t("wizard.image")) }
                    div class="choices" {
                        @for i in catalog.images.iter().filter(|i| i.zones.contains(&z.id)) {
                            label {
                                input type="radio" name="image_id" value=(i.id) required;
                                " " (i.name) " " span class="muted" { (i.id) }
                            }
                        }
                    }
                }
                button type="submit" id="wizard-next" { (lang.t("wizard.next")) }
            }
        },
        (Some(z), Some(i)) => {
            let account = &caller(s).account_id;
            let mut lists = Vec::new();
            for picker in [Picker::SshKeys, Picker::Scripts, Picker::Firewalls] {
                lists.push(every_row(state, account, picker).await.unwrap_or_else(|e| {
                    error.get_or_insert(e.into());
                    Vec::new()
                }));
            }
            let [keys, scripts, fws]: [Vec<Value>; 3] = lists.try_into().unwrap_or_default();
            let flavors: Vec<_> = catalog
                .flavors
                .iter()
                .filter(|f| f.zones.contains(&z.id) && f.provide && f.status == "on" && f.supports(i))
                .collect();
            let chosen_keys = sent.all("ssh_key_id");
            let windows = i.os_type == "windows";
            html! {
                p {
                    (lang.t("wizard.zone")) ": " strong { (z.name) } " · " (lang.t("wizard.image")) ": " strong { (i.name) }
                    " · " a href={"/instances/new?zone_id=" (enc(&z.id))} { (lang.t("wizard.change")) }
                }
                form method="post" action="/instances/new" id="create-form" {
                    (csrf_field(&s.csrf))
                    input type="hidden" name="zone_id" value=(z.id);
                    input type="hidden" name="image_id" value=(i.id);
                    fieldset {
                        legend { "3. " (lang.t("wizard.flavor")) }
                        div class="choices" {
                            @for f in &flavors {
                                label {
                                    input type="radio" name="flavor_id" value=(f.id) required checked[sent.get("flavor_id") == Some(f.id.as_str())];
                                    " " strong { (f.name) } " " span class="muted" { (f.vcpu) " vCPU · " (f.memory) " GB · " (f.disk) " GB" }
                                    br;
                                    (price_cell(lang, f.price_month, f.price_hour))
                                }
                            }
                        }
                    }
                    fieldset {
                        legend { "4. " (lang.t("wizard.details")) }
                        label for="name" { (lang.t("instances.name")) }
                        input type="text" id="name" name="name" maxlength="64" value=(sent.get("name").unwrap_or(""));
                        label for="count" { (lang.t("wizard.count")) }
                        input type="number" id="count" name="count" min="1" max="10" required value=(sent.get("count").unwrap_or("1"));
                        @if !windows {
                            label { (lang.t("wizard.ssh_keys")) }
                            @if keys.is_empty() { p class="muted" { (lang.t("wizard.no_keys")) " " a href="/ssh-keys" { (lang.t("nav.ssh_keys")) } } }
                            @for k in &keys {
                                @let kid = text(k, "ssh_key_id");
                                label class="inline" {
                                    input type="checkbox" name="ssh_key_id" value=(kid) checked[chosen_keys.iter().any(|c| c == kid)];
                                    (text(k, "name")) " " span class="muted" { (text(k, "fingerprint")) }
                                }
                            }
                        }
                        label for="user_script_id" { (lang.t("wizard.script")) }
                        select id="user_script_id" name="user_script_id" {
                            option value="" { (lang.t("wizard.none")) }
                            @for sc in &scripts {
                                @let sid = text(sc, "user_script_id");
                                option value=(sid) selected[sent.get("user_script_id") == Some(sid)] { (text(sc, "name")) }
                            }
                        }
                        label for="security_group" { (lang.t("wizard.firewall")) }
                        select id="security_group" name="security_group" {
                            option value="" { (lang.t("wizard.none")) }
                            @for fw in &fws {
                                @let fid = text(fw, "firewall_id");
                                option value=(fid) selected[sent.get("security_group") == Some(fid)] { (text(fw, "title")) " (" (fid) ")" }
                            }
                        }
                        div class="row" {
                            div {
                                label for="volume_size" { (lang.t("wizard.volume_size")) }
                                input type="number" id="volume_size" name="volume_size" min="0" value=(sent.get("volume_size").unwrap_or(""));
                            }
                            div {
                                label for="volume_type" { (lang.t("wizard.volume_type")) }
                                select id="volume_type" name="volume_type" {
                                    @for t in catalog.block_storage_types.iter().filter(|t| t.zones.as_ref().is_none_or(|zs| zs.contains(&z.id))) {
                                        option value=(t.kind) selected[sent.get("volume_type") == Some(t.kind.as_str())] {
                                            (t.kind) " (" (t.min) "–" (t.max) " GB, " (super::dashboard::won(t.price_gb_month)) "/GB" (lang.t("price.per_month")) ")"
                                        }
                                    }
                                }
                            }
                        }
                    }
                    button type="submit" id="create-submit" { (lang.t("wizard.create")) }
                }
            }
        }
    };
    Page::new(s, "instances", lang.t("wizard.title")).error(error).body(body).render()
}

pub async fn create(State(state): State<AppState>, s: Signed, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let mut body = Map::new();
    for field in ["zone_id", "image_id", "flavor_id", "name", "count", "user_script_id", "security_group"] {
        if let Some(v) = form.get(field) {
            body.insert(field.to_owned(), Value::String(v.to_owned()));
        }
    }
    let keys = form.all("ssh_key_id");
    if !keys.is_empty() {
        body.insert("ssh_key_id".into(), json!(keys));
    }
    if let Some(size) = form.get("volume_size").filter(|v| v.trim() != "0") {
        let mut v = Map::new();
        v.insert("size".into(), Value::String(size.to_owned()));
        if let Some(t) = form.get("volume_type") {
            v.insert("type".into(), Value::String(t.to_owned()));
        }
        body.insert("block_storage".into(), Value::Array(vec![Value::Object(v)]));
    }
    let input = CreateInstance::from_body(&Body(body), Encoding::Form);
    let r = match input {
        Ok(input) => svc::create(&state, &caller(&s), input).await.map(drop),
        Err(e) => Err(e),
    };
    match r {
        Ok(_) => see_other("/instances?done=created"),
        Err(e) => {
            let mut q = Query::default();
            for k in ["zone_id", "image_id"] {
                if let Some(v) = form.get(k) {
                    q.0.insert(k.into(), v.into());
                }
            }
            render_wizard(&state, &s, &q, &form, Some(e.into())).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Detail

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
    let firewall_section = super::firewalls::instance_section(state, s, id, &fws, q).await;
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
                            option value=(f.id) { (f.name) " — " (super::dashboard::won(f.price_month)) (lang.t("price.per_month")) }
                        }
                    }
                    button type="submit" id="act-resize" { (lang.t("action.resize")) }
                }
            }
        }
        (super::console_frame::slot(lang, console))
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
                partial(super::console_frame::slot(s.lang, Some(&path)))
            } else {
                show_with(&state, &s, &id, None, None, None, &Query::default(), Some(&path)).await
            }
        }
        Err(e) if htmx => partial(super::console_frame::refused(&e.into())),
        Err(e) if e.code == openwinv_wire::ErrorCode::NotFound => not_found(&s, e.into()),
        Err(e) => show(&state, &s, &id, None, Some(e.into()), None).await,
    }
}
