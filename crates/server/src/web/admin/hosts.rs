//! Hypervisor hosts (issue 18's operator face in the console): the list with each host's state,
//! liveness, capacity and reservations, adding a host (its token shown once, in the answer to
//! that `POST`), the overcommit ratios, and a host's page with its placements and strays and the
//! operator's moves on it (enable, disable, drain, evacuate, declare dead, remove, destroy a
//! stray). Every read and move goes through the `/admin/v1` handlers of `crate::admin_hosts`, so
//! validation, refusals and effects are the operator API's; only the placements' accounts and
//! states are read from the store, as evacuation reads them.

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::{CheckedForm, Operator, done_notice};
use crate::AppState;
use crate::error::ApiError;
use crate::input::{Body, Path, Query};
use crate::web::form::Form;
use crate::web::i18n::Lang;
use crate::web::layout::csrf_field;
use crate::web::{Shown, reply, see_other, text};
use crate::{admin, admin_hosts};

/// A body of the form's non-empty fields, as strings (the handlers read numbers from strings).
fn body_of(form: &Form, fields: &[&str]) -> Body {
    let mut map = Map::new();
    for f in fields {
        if let Some(v) = form.get(f).map(str::trim).filter(|v| !v.is_empty()) {
            map.insert((*f).to_owned(), Value::String(v.to_owned()));
        }
    }
    Body(map)
}

/// A host's state or liveness as a badge, coloured like the instances' statuses.
fn host_badge(lang: Lang, value: &str) -> Markup {
    let class = match value {
        "enabled" | "alive" => "active",
        "disabled" | "new" => "off",
        "draining" => "work",
        "dead" | "offline" => "error",
        _ => "off",
    };
    let key = format!("admin.host_{value}");
    let shown = if lang.has(&key) { lang.t_owned(&key) } else { value.to_owned() };
    html! { span class={"badge badge-" (class)} data-status=(value) { (shown) } }
}

/// "alive · 3 s ago", "offline · 2026-… (95 s ago)", "new".
fn liveness(lang: Lang, h: &Value) -> Markup {
    let status = text(h, "status");
    html! {
        (host_badge(lang, status))
        @if let Some(age) = h["heartbeat_age_s"].as_i64() {
            " " span class="muted" title=(text(h, "last_heartbeat_at")) data-heartbeat-age=(age) {
                (lang.t("admin.host_heartbeat")) " " (age) " s"
            }
        }
    }
}

/// "used / capacity" of one resource.
fn used_of(h: &Value, field: &str) -> String {
    format!("{} / {}", h["reserved"][field], h["capacity"][field])
}

/// A token just issued, shown once in the answer to the `POST` that made it.
struct Issued {
    name: String,
    zone: String,
    token: String,
}

async fn list_page(
    state: &AppState,
    op: &Operator,
    notice: Option<String>,
    error: Option<Shown>,
    sent: &Form,
    issued: Option<Issued>,
) -> Response {
    let lang = op.lang;
    let mut read_error: Option<Shown> = None;
    let rows = match reply(admin_hosts::list_hosts(State(state.clone())).await) {
        Ok(r) => r.rows,
        Err(e) => {
            read_error = Some(e.into());
            Vec::new()
        }
    };
    let ratios = match reply(admin_hosts::show_overcommit(State(state.clone())).await) {
        Ok(r) => r.rows.into_iter().next().unwrap_or(Value::Null),
        Err(e) => {
            read_error = read_error.or(Some(e.into()));
            Value::Null
        }
    };
    let zones: Vec<String> = state.catalog.get().zones.iter().map(|z| z.id.clone()).collect();
    let ratio = |field: &str| sent.get(field).map(str::to_owned).unwrap_or_else(|| ratios[field].to_string());
    let body = html! {
        p class="muted" { (lang.t("admin.hosts_note")) }
        @if let Some(i) = &issued {
            div class="secret" id="issued-host" role="status" {
                p { (lang.t("admin.host_token_once")) }
                dl {
                    dt { (lang.t("admin.host")) } dd { code id="issued-host-name" { (i.name) } }
                    dt { (lang.t("admin.host_token")) } dd { code id="issued-host-token" { (i.token) } }
                }
                p { (lang.t("admin.host_agent_hint")) }
                pre tabindex="0" { code id="issued-host-command" {
                    "openwinv agent --control-plane " (state.config.internal_url.as_deref().unwrap_or("<control-plane URL>"))
                    " --zone " (i.zone) " --host-token " (i.token)
                } }
            }
        }
        @if rows.is_empty() { p class="muted" id="no-hosts" { (lang.t("admin.no_hosts")) } } @else {
            table id="hosts" {
                thead { tr {
                    th { (lang.t("admin.host")) } th { (lang.t("instances.zone")) } th { (lang.t("admin.host_state")) }
                    th { (lang.t("admin.host_status")) } th class="num" { (lang.t("admin.host_vcpus")) }
                    th class="num" { (lang.t("admin.host_memory")) } th class="num" { (lang.t("admin.host_instances")) }
                    th class="num" { (lang.t("admin.host_strays")) } th { (lang.t("admin.host_driver")) }
                } }
                tbody {
                    @for h in &rows {
                        @let name = text(h, "name");
                        tr data-host=(name) {
                            td { a href={"/admin/hosts/" (name)} { (name) } }
                            td { (text(h, "zone")) }
                            td data-field="state" { (host_badge(lang, text(h, "state"))) }
                            td data-field="status" { (liveness(lang, h)) }
                            td class="num" data-field="vcpus" { (used_of(h, "vcpus")) }
                            td class="num" data-field="memory_mb" { (used_of(h, "memory_mb")) }
                            td class="num" data-field="instances" { (h["instances"]) }
                            td class="num" data-field="strays" { (h["strays"].as_array().map_or(0, Vec::len)) }
                            td { (text(h, "driver")) }
                        }
                    }
                }
            }
            p class="muted" { (lang.t("admin.host_used_note")) }
        }
        h2 { (lang.t("admin.host_add")) }
        form method="post" action="/admin/hosts" id="host-form" {
            (csrf_field(&op.csrf))
            label for="h-name" { (lang.t("admin.host_name")) }
            input type="text" id="h-name" name="name" required maxlength="63" value=(sent.get("name").unwrap_or(""));
            label for="h-zone" { (lang.t("instances.zone")) }
            select id="h-zone" name="zone" {
                @for z in &zones { option value=(z) selected[sent.get("zone") == Some(z.as_str())] { (z) } }
            }
            p { button type="submit" id="host-add" { (lang.t("admin.host_add")) } }
        }
        h2 { (lang.t("admin.overcommit")) }
        p class="muted" { (lang.t("admin.overcommit_note")) }
        form method="post" action="/admin/placements/overcommit" id="overcommit-form" {
            (csrf_field(&op.csrf))
            label for="oc-vcpu" { (lang.t("admin.overcommit_vcpu")) }
            input type="text" inputmode="decimal" id="oc-vcpu" name="vcpu" value=(ratio("vcpu"));
            label for="oc-memory" { (lang.t("admin.overcommit_memory")) }
            input type="text" inputmode="decimal" id="oc-memory" name="memory" value=(ratio("memory"));
            label for="oc-disk" { (lang.t("admin.overcommit_disk")) }
            input type="text" inputmode="decimal" id="oc-disk" name="disk" value=(ratio("disk"));
            p { button type="submit" id="overcommit-submit" { (lang.t("admin.overcommit_set")) } }
        }
    };
    op.page(state, "hosts", lang.t("admin.hosts_title")).notice(notice).error(error.or(read_error)).body(body).render()
}

pub async fn list(State(state): State<AppState>, op: Operator, q: Query) -> Response {
    list_page(&state, &op, done_notice(op.lang, &q), None, &Form::default(), None).await
}

pub async fn add(State(state): State<AppState>, CheckedForm { op, form, .. }: CheckedForm) -> Response {
    match reply(admin_hosts::add_host(State(state.clone()), body_of(&form, &["name", "zone"])).await) {
        Ok(r) => {
            let row = r.rows.first().cloned().unwrap_or(Value::Null);
            let issued = Issued {
                name: text(&row, "name").to_owned(),
                zone: text(&row, "zone").to_owned(),
                token: text(&row, "token").to_owned(),
            };
            let notice = Some(op.lang.t_owned("admin.done_host_added"));
            list_page(&state, &op, notice, None, &Form::default(), Some(issued)).await
        }
        Err(e) => list_page(&state, &op, None, Some(e.into()), &form, None).await,
    }
}

pub async fn overcommit(State(state): State<AppState>, CheckedForm { op, form, .. }: CheckedForm) -> Response {
    let body = body_of(&form, &["vcpu", "memory", "disk"]);
    match reply(admin_hosts::set_overcommit(State(state.clone()), body).await) {
        Ok(_) => see_other("/admin/hosts?done=overcommit"),
        Err(e) => list_page(&state, &op, None, Some(e.into()), &form, None).await,
    }
}

/// What a move on a host answered, shown on the host's page under its buttons.
enum Outcome {
    None,
    Evacuation(Value),
    Dead(Value),
}

async fn host_page(
    state: &AppState,
    op: &Operator,
    name: &str,
    notice: Option<String>,
    error: Option<Shown>,
    outcome: Outcome,
) -> Response {
    let lang = op.lang;
    let host = match reply(admin_hosts::show_host(State(state.clone()), Path(name.to_owned())).await) {
        Ok(r) => r.rows.into_iter().next().unwrap_or(Value::Null),
        Err(e) => {
            let title = format!("{} · {name}", lang.t("admin.host"));
            let body = html! { p { a href="/admin/hosts" { "← " (lang.t("admin.hosts_title")) } } };
            return op.page(state, "hosts", &title).error(error.or(Some(e.into()))).body(body).render();
        }
    };
    let mut read_error: Option<Shown> = None;
    let placed = match state.store.host_instances(text(&host, "host_id")).await {
        Ok(p) => p,
        Err(e) => {
            read_error = Some(ApiError::from(e).into());
            Vec::new()
        }
    };
    let accounts: Vec<(String, String)> = match reply(admin::list_accounts(State(state.clone())).await) {
        Ok(r) => r.rows.iter().map(|a| (text(a, "account_id").to_owned(), text(a, "name").to_owned())).collect(),
        Err(_) => Vec::new(),
    };
    let account_name =
        |id: &str| accounts.iter().find(|(a, _)| a == id).map_or_else(|| id.to_owned(), |(_, n)| n.clone());
    let strays: Vec<&str> = host["strays"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let host_state = text(&host, "state");
    let action = |act: &str| format!("/admin/hosts/{name}/{act}");
    let body = html! {
        p { a href="/admin/hosts" { "← " (lang.t("admin.hosts_title")) } }
        dl id="host" {
            dt { "ID" } dd { code { (text(&host, "host_id")) } }
            dt { (lang.t("instances.zone")) } dd { (text(&host, "zone")) }
            dt { (lang.t("admin.host_state")) } dd id="host-state" { (host_badge(lang, host_state)) }
            dt { (lang.t("admin.host_status")) } dd id="host-status" { (liveness(lang, &host)) }
            dt { (lang.t("admin.host_last_heartbeat")) } dd { (text(&host, "last_heartbeat_at")) }
            dt { (lang.t("admin.host_address")) } dd { (text(&host, "address")) }
            dt { (lang.t("admin.host_driver")) } dd { (text(&host, "driver")) " " span class="muted" { (text(&host, "agent_version")) } }
            dt { (lang.t("admin.host_capabilities")) } dd {
                @for c in host["capabilities"].as_array().into_iter().flatten() { code { (c.as_str().unwrap_or("")) } " " }
            }
            dt { (lang.t("admin.host_vcpus")) } dd { (used_of(&host, "vcpus")) }
            dt { (lang.t("admin.host_memory")) } dd { (used_of(&host, "memory_mb")) }
            dt { (lang.t("admin.host_disk")) } dd { (used_of(&host, "disk_gb")) }
            dt { (lang.t("instances.created")) } dd { (text(&host, "created_at")) }
        }
        @match &outcome {
            Outcome::Evacuation(ev) => {
                section id="evacuation" aria-labelledby="evacuation-title" {
                    h2 id="evacuation-title" { (lang.t("admin.evacuation")) }
                    @let moving = ev["moving"].as_array().cloned().unwrap_or_default();
                    @let left = ev["left"].as_array().cloned().unwrap_or_default();
                    @if moving.is_empty() { p class="muted" { (lang.t("admin.evacuation_none_moving")) } } @else {
                        table id="evacuation-moving" {
                            caption { (lang.t("admin.evacuation_moving")) }
                            thead { tr { th { (lang.t("admin.instance")) } th { (lang.t("admin.operation")) } } }
                            tbody { @for m in &moving { tr data-moving=(text(m, "instance_id")) {
                                td { code { (text(m, "instance_id")) } } td { code { (text(m, "operation_id")) } }
                            } } }
                        }
                    }
                    @if !left.is_empty() {
                        table id="evacuation-left" {
                            caption { (lang.t("admin.evacuation_left")) }
                            thead { tr { th { (lang.t("admin.instance")) } th { (lang.t("instances.status")) } th { (lang.t("admin.reason")) } } }
                            tbody { @for l in &left { tr data-left=(text(l, "instance_id")) {
                                td { code { (text(l, "instance_id")) } } td { (text(l, "status")) } td { (text(l, "reason")) }
                            } } }
                        }
                    }
                }
            }
            Outcome::Dead(d) => {
                section id="declared-dead" aria-labelledby="dead-title" {
                    h2 id="dead-title" { (lang.t("admin.declared_dead")) }
                    p { (text(d, "reason")) }
                    p { (lang.t("admin.dead_failed_work")) " " span id="dead-failed-work" { (d["failed_work"]) } }
                    @let lost = d["instances"].as_array().cloned().unwrap_or_default();
                    @if !lost.is_empty() {
                        p { (lang.t("admin.dead_instances")) }
                        ul id="dead-instances" { @for i in &lost { li { code { (i.as_str().unwrap_or("")) } } } }
                    }
                    @let volumes = d["volumes"].as_array().cloned().unwrap_or_default();
                    @if !volumes.is_empty() {
                        p { (lang.t("admin.dead_volumes")) }
                        ul id="dead-volumes" { @for v in &volumes { li { code { (v.as_str().unwrap_or("")) } } } }
                    }
                }
            }
            Outcome::None => {}
        }
        h2 id="placements-title" { (lang.t("admin.placements")) }
        @if placed.is_empty() { p class="muted" id="no-placements" { (lang.t("admin.no_placements")) } } @else {
            table id="placements" aria-labelledby="placements-title" {
                thead { tr {
                    th { (lang.t("admin.instance")) } th { (lang.t("admin.account")) } th { (lang.t("instances.status")) }
                    th { (lang.t("admin.flavor")) }
                } }
                tbody { @for p in &placed { tr data-placement=(p.instance_id) {
                    td { code { (p.instance_id) } } td { (account_name(&p.account_id)) }
                    td data-field="status" { (p.status) } td { (p.flavor_id) }
                } } }
            }
        }
        h2 id="strays-title" { (lang.t("admin.strays")) }
        p class="muted" { (lang.t("admin.strays_note")) }
        @if strays.is_empty() { p class="muted" id="no-strays" { (lang.t("admin.no_strays")) } } @else {
            table id="strays" aria-labelledby="strays-title" {
                thead { tr { th { (lang.t("admin.instance")) } th { (lang.t("admin.actions")) } } }
                tbody { @for s in &strays { tr data-stray=(s) {
                    td { code { (s) } }
                    td {
                        form method="post" action=(action("strays/destroy")) class="inline" {
                            (csrf_field(&op.csrf))
                            input type="hidden" name="instance_id" value=(s);
                            button type="submit" class="danger" aria-label={(lang.t("admin.destroy_stray")) " " (s)} {
                                (lang.t("admin.destroy_stray"))
                            }
                        }
                    }
                } } }
            }
        }
        h2 { (lang.t("admin.host_moves")) }
        div class="actions" id="host-actions" {
            // Each move but the one to the state the host is in.
            @for (act, key, to) in [("enable", "admin.enable", "enabled"), ("disable", "admin.disable", "disabled"),
                                    ("drain", "admin.host_drain", "draining"), ("evacuate", "admin.host_evacuate", "")] {
                @if host_state != to {
                    form method="post" action=(action(act)) class="inline" {
                        (csrf_field(&op.csrf))
                        button type="submit" class="secondary" id={"host-" (act)} { (lang.t(key)) }
                    }
                    " "
                }
            }
        }
        p class="muted" { (lang.t("admin.host_moves_note")) }
        h2 { (lang.t("admin.declare_dead")) }
        p class="muted" { (lang.t("admin.declare_dead_note")) }
        form method="post" action=(action("declare-dead")) id="declare-dead-form" {
            (csrf_field(&op.csrf))
            label for="dead-confirm" { (lang.t("admin.declare_dead_confirm")) }
            input type="text" id="dead-confirm" name="confirm" required autocomplete="off";
            p { button type="submit" class="danger" id="host-declare-dead" { (lang.t("admin.declare_dead")) } }
        }
        h2 { (lang.t("admin.host_remove")) }
        p class="muted" { (lang.t("admin.host_remove_note")) }
        form method="post" action=(action("remove")) id="remove-form" {
            (csrf_field(&op.csrf))
            p { button type="submit" class="danger" id="host-remove" { (lang.t("admin.host_remove")) } }
        }
    };
    let title = format!("{} · {name}", lang.t("admin.host"));
    op.page(state, "hosts", &title).notice(notice).error(error.or(read_error)).body(body).render()
}

pub async fn show(State(state): State<AppState>, op: Operator, Path(name): Path<String>, q: Query) -> Response {
    host_page(&state, &op, &name, done_notice(op.lang, &q), None, Outcome::None).await
}

/// A move on a host: `enable`, `disable`, `drain`, `evacuate`, `declare-dead` or `remove`.
pub async fn act(
    State(state): State<AppState>,
    CheckedForm { op, path: Path((name, act)), form }: CheckedForm<Path<(String, String)>>,
) -> Response {
    let s = || State(state.clone());
    let p = || Path(name.clone());
    let failed = |e: ApiError| host_page(&state, &op, &name, None, Some(e.into()), Outcome::None);
    let back = |done: &str| see_other(&format!("/admin/hosts/{name}?done={done}"));
    match act.as_str() {
        "enable" | "disable" | "drain" => {
            let r = match act.as_str() {
                "enable" => admin_hosts::enable_host(s(), p()).await,
                "disable" => admin_hosts::disable_host(s(), p()).await,
                _ => admin_hosts::drain_host(s(), p()).await,
            };
            match reply(r) {
                Ok(_) => back(&format!("host_{act}")),
                Err(e) => failed(e).await,
            }
        }
        "evacuate" => match reply(admin_hosts::evacuate(s(), p()).await) {
            Ok(r) => {
                let ev = r.rows.into_iter().next().unwrap_or(Value::Null);
                let notice = Some(op.lang.t_owned("admin.done_host_evacuate"));
                host_page(&state, &op, &name, notice, None, Outcome::Evacuation(ev)).await
            }
            Err(e) => failed(e).await,
        },
        "declare-dead" => {
            if form.get("confirm").map(str::trim) != Some(name.as_str()) {
                let e = ApiError::param(format!(
                    "The field `confirm` must be the host's name, `{name}`, to declare it dead."
                ));
                return failed(e).await;
            }
            match reply(admin_hosts::declare_dead(s(), p()).await) {
                Ok(r) => {
                    let d = r.rows.into_iter().next().unwrap_or(Value::Null);
                    let notice = Some(op.lang.t_owned("admin.done_host_dead"));
                    host_page(&state, &op, &name, notice, None, Outcome::Dead(d)).await
                }
                Err(e) => failed(e).await,
            }
        }
        "remove" => match reply(admin_hosts::remove_host(s(), p()).await) {
            Ok(_) => see_other("/admin/hosts?done=host_removed"),
            Err(e) => failed(e).await,
        },
        _ => failed(ApiError::not_found(format!("The page `/admin/hosts/{name}/{act}`"))).await,
    }
}

/// Destroys a stray machine of the host (the form names it in `instance_id`).
pub async fn destroy_stray(
    State(state): State<AppState>,
    CheckedForm { op, path: Path(name), form }: CheckedForm<Path<String>>,
) -> Response {
    let instance_id = form.get("instance_id").unwrap_or("").trim().to_owned();
    match reply(admin_hosts::destroy_stray(State(state.clone()), Path((name.clone(), instance_id))).await) {
        Ok(_) => see_other(&format!("/admin/hosts/{name}?done=stray_destroyed")),
        Err(e) => host_page(&state, &op, &name, None, Some(e.into()), Outcome::None).await,
    }
}
