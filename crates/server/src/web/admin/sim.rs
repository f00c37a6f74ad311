//! The server clock (show, advance, set) and the simulated driver's fault rules (list, add,
//! clear), through the `/admin/v1` handlers of `crate::admin` and `crate::admin_sim`. With
//! another driver those handlers refuse with 409, and the page shows their message.

use axum::extract::State;
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::forms::{Outcome, body_of};
use super::{CheckedForm, Operator};
use crate::AppState;
use crate::input::{Path, Query};
use crate::web::layout::csrf_field;
use crate::web::{reply, see_other, text};
use crate::{admin, admin_sim};

async fn clock_page(state: &AppState, op: &Operator, outcome: Outcome<'_>) -> Response {
    let (lang, sent) = (op.lang, outcome.sent);
    let (row, show_error) = match reply(admin::show_clock(State(state.clone())).await) {
        Ok(r) => (r.rows.into_iter().next().unwrap_or(Value::Null), None),
        Err(e) => (Value::Null, Some(e.into())),
    };
    let settable = row["settable"].as_bool().unwrap_or(false);
    let body = html! {
        dl id="clock" {
            dt { (lang.t("admin.clock_now")) } dd { code id="clock-now" { (text(&row, "now")) } }
            dt { "Unix" } dd { code id="clock-unix" { (row["unix"]) } }
            dt { (lang.t("admin.clock_offset")) } dd { code id="clock-offset" { (row["offset_ms"]) } }
        }
        @if !settable { p class="muted" { (lang.t("admin.clock_fixed")) } }
        h2 { (lang.t("admin.clock_advance")) }
        form method="post" action="/admin/clock" id="advance-form" {
            (csrf_field(&op.csrf))
            input type="hidden" name="action" value="advance";
            label for="duration" { (lang.t("admin.duration")) }
            input type="text" id="duration" name="duration" required placeholder="1h30m" value=(sent.get("duration").unwrap_or(""));
            p { button type="submit" id="advance-submit" { (lang.t("admin.clock_advance")) } }
        }
        h2 { (lang.t("admin.clock_set")) }
        form method="post" action="/admin/clock" id="set-clock-form" {
            (csrf_field(&op.csrf))
            input type="hidden" name="action" value="set";
            label for="clock-to" { (lang.t("admin.clock_to")) }
            input type="text" id="clock-to" name="now" required placeholder="2026-12-01T00:00:00+09:00" value=(sent.get("now").unwrap_or(""));
            p { button type="submit" id="set-clock-submit" class="secondary" { (lang.t("admin.clock_set")) } }
        }
    };
    op.page(state, "clock", lang.t("admin.clock_title"))
        .notice(outcome.notice)
        .error(outcome.error.or(show_error))
        .body(body)
        .render()
}

pub async fn clock(State(state): State<AppState>, op: Operator, q: Query) -> Response {
    clock_page(&state, &op, Outcome::shown(op.lang, &q)).await
}

pub async fn move_clock(State(state): State<AppState>, CheckedForm { op, form, .. }: CheckedForm) -> Response {
    let r = if form.get("action") == Some("set") {
        admin::set_clock(State(state.clone()), body_of(&form, &["now"])).await
    } else {
        admin::advance_clock(State(state.clone()), body_of(&form, &["duration"])).await
    };
    match reply(r) {
        Ok(_) => see_other("/admin/clock?done=clock"),
        Err(e) => clock_page(&state, &op, Outcome::refused(e, &form)).await,
    }
}

const FAULT_FIELDS: [&str; 7] = ["kind", "step", "mode", "count", "probability", "effect", "seed"];

async fn faults_page(state: &AppState, op: &Operator, outcome: Outcome<'_>) -> Response {
    let (lang, sent) = (op.lang, outcome.sent);
    let (rows, list_error) = match reply(admin_sim::list_faults(State(state.clone())).await) {
        Ok(r) => (r.rows, None),
        Err(e) => (Vec::new(), Some(e.into())),
    };
    let kinds = crate::sagas::kinds();
    let chosen = |field: &str, default: &str| sent.get(field).unwrap_or(default).to_owned();
    let body = html! {
        p class="muted" { (lang.t("admin.faults_note")) }
        @if rows.is_empty() { p class="muted" id="no-faults" { (lang.t("admin.no_faults")) } } @else {
            table id="faults" {
                thead { tr {
                    th { "ID" } th { (lang.t("admin.fault_kind")) } th { (lang.t("admin.fault_step")) } th { (lang.t("admin.fault_mode")) }
                    th class="num" { (lang.t("admin.fault_remaining")) } th { (lang.t("admin.fault_effect")) } th class="num" { (lang.t("admin.fault_hits")) }
                    th { (lang.t("admin.actions")) }
                } }
                tbody {
                    @for f in &rows {
                        @let id = text(f, "fault_id");
                        tr data-fault=(id) {
                            td { code { (id) } } td { (text(f, "kind")) } td { (text(f, "step")) } td { (text(f, "mode")) }
                            td class="num" { (f["remaining"]) } td { (text(f, "effect")) } td class="num" { (f["hits"]) }
                            td {
                                form method="post" action={"/admin/faults/" (id) "/delete"} class="inline" {
                                    (csrf_field(&op.csrf))
                                    button type="submit" class="danger" { (lang.t("action.delete")) }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action="/admin/faults/clear" id="faults-clear-form" {
                (csrf_field(&op.csrf))
                p { button type="submit" class="danger" id="faults-clear" { (lang.t("admin.faults_clear")) } }
            }
        }
        h2 { (lang.t("admin.fault_add")) }
        form method="post" action="/admin/faults" id="fault-form" {
            (csrf_field(&op.csrf))
            label for="f-kind" { (lang.t("admin.fault_kind")) }
            select id="f-kind" name="kind" {
                option value="*" selected[chosen("kind", "*") == "*"] { "* (" (lang.t("admin.fault_any")) ")" }
                @for (k, _) in &kinds { option value=(k) selected[chosen("kind", "*") == *k] { (k) } }
            }
            label for="f-step" { (lang.t("admin.fault_step")) }
            input type="text" id="f-step" name="step" required value=(chosen("step", "*"));
            label for="f-mode" { (lang.t("admin.fault_mode")) }
            select id="f-mode" name="mode" {
                @for m in admin_sim::MODES { option value=(m) selected[chosen("mode", "once") == *m] { (m) } }
            }
            label for="f-count" { (lang.t("admin.fault_count")) }
            input type="number" id="f-count" name="count" min="1" value=(sent.get("count").unwrap_or(""));
            label for="f-probability" { (lang.t("admin.fault_probability")) }
            input type="text" id="f-probability" name="probability" inputmode="decimal" value=(sent.get("probability").unwrap_or(""));
            label for="f-effect" { (lang.t("admin.fault_effect")) }
            select id="f-effect" name="effect" {
                @for e in admin_sim::EFFECTS { option value=(e) selected[chosen("effect", "permanent") == *e] { (e) } }
            }
            label for="f-seed" { (lang.t("admin.fault_seed")) }
            input type="number" id="f-seed" name="seed" value=(sent.get("seed").unwrap_or(""));
            p { button type="submit" id="fault-submit" { (lang.t("admin.fault_add")) } }
        }
    };
    op.page(state, "faults", lang.t("admin.faults_title"))
        .notice(outcome.notice)
        .error(outcome.error.or(list_error))
        .body(body)
        .render()
}

pub async fn faults(State(state): State<AppState>, op: Operator, q: Query) -> Response {
    faults_page(&state, &op, Outcome::shown(op.lang, &q)).await
}

pub async fn add_fault(State(state): State<AppState>, CheckedForm { op, form, .. }: CheckedForm) -> Response {
    match reply(admin_sim::add_fault(State(state.clone()), body_of(&form, &FAULT_FIELDS)).await) {
        Ok(_) => see_other("/admin/faults?done=fault_added"),
        Err(e) => faults_page(&state, &op, Outcome::refused(e, &form)).await,
    }
}

pub async fn clear_faults(State(state): State<AppState>, CheckedForm { op, .. }: CheckedForm) -> Response {
    match reply(admin_sim::clear_faults(State(state.clone())).await) {
        Ok(_) => see_other("/admin/faults?done=faults_cleared"),
        Err(e) => faults_page(&state, &op, Outcome::failed(e)).await,
    }
}

pub async fn delete_fault(
    State(state): State<AppState>,
    CheckedForm { op, path: Path(fault_id), .. }: CheckedForm<Path<String>>,
) -> Response {
    match reply(admin_sim::delete_fault(State(state.clone()), Path(fault_id)).await) {
        Ok(_) => see_other("/admin/faults?done=faults_cleared"),
        Err(e) => faults_page(&state, &op, Outcome::failed(e)).await,
    }
}
