//! Volumes: list (refreshing while one changes), create, attach, detach, delete — each through
//! its `/v1` handler.

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::form::Form;
use super::instances::{enc, refresh};
use super::layout::{Page, badge, csrf_field, partial};
use super::{Shown, Signed, caller, csrf, reply, see_other, text, transitional};
use crate::AppState;
use crate::api::{instances, volumes};
use crate::input::{Body, Encoding, Path, Query};
use crate::service::FromBody;
use crate::service::volumes::{self as svc, CreateVolume};

fn all() -> Query {
    Query([("page_size".to_owned(), "100".to_owned())].into_iter().collect())
}

/// The account's instances that volumes can go to (id, name).
async fn instance_choices(state: &AppState, s: &Signed) -> Vec<(String, String)> {
    let q = Query(
        [("page_size".to_owned(), "100".to_owned()), ("fields".to_owned(), "3".to_owned())].into_iter().collect(),
    );
    reply(instances::list(State(state.clone()), Extension(caller(s)), HeaderMap::new(), q).await)
        .map(|r| r.rows.iter().map(|i| (text(i, "instance_id").to_owned(), text(i, "name").to_owned())).collect())
        .unwrap_or_default()
}

async fn rows_partial(state: &AppState, s: &Signed, q: &Query) -> Result<Markup, Shown> {
    let lang = s.lang;
    let rows = reply(volumes::list(State(state.clone()), Extension(caller(s)), all()).await).map_err(Shown::from)?;
    let choices = instance_choices(state, s).await;
    let busy = rows.rows.iter().any(|v| transitional(text(v, "status")));
    let (trigger, next, delay) = refresh(busy, q);
    Ok(html! {
        div id="volume-rows" hx-get={"/volumes/rows?n=" (next)} hx-trigger=(trigger) hx-swap="outerHTML" data-refresh-ms=(delay) {
            @if rows.rows.is_empty() { p class="muted" { (lang.t("volumes.none")) } } @else {
                table {
                    thead { tr {
                        th { (lang.t("instances.name")) } th { (lang.t("volumes.size")) } th { (lang.t("volumes.type")) }
                        th { (lang.t("instances.status")) } th { (lang.t("volumes.instance")) } th { (lang.t("detail.actions")) }
                    } }
                    tbody {
                        @for v in &rows.rows {
                            @let id = text(v, "block_storage_id");
                            @let attached = v["instance_id"].as_str().filter(|i| !i.is_empty());
                            tr data-volume=(id) {
                                td { (text(v, "name")) br; span class="muted" { (id) } }
                                td class="num" { (v["size"]) " GB" }
                                td { (text(v, "type")) }
                                td { (badge(lang, text(v, "status"))) }
                                td { @if let Some(i) = attached { a href={"/instances/" (i)} { (i) } } }
                                td {
                                    @if attached.is_some() {
                                        (button(s, id, "detach", None, lang.t("volumes.detach")))
                                    } @else {
                                        form method="post" action={"/volumes/" (id) "/action"} class="inline" {
                                            (csrf_field(&s.csrf))
                                            input type="hidden" name="action" value="attach";
                                            select name="instance_id" id={"attach-to-" (id)} hx-preserve aria-label=(lang.t("volumes.instance")) {
                                                @for (iid, name) in &choices { option value=(iid) { (name) " (" (iid) ")" } }
                                            }
                                            button type="submit" class="secondary" id={"attach-" (id)} { (lang.t("volumes.attach")) }
                                        }
                                        (button(s, id, "delete", Some("danger"), lang.t("action.delete")))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

fn button(s: &Signed, id: &str, action: &str, class: Option<&str>, label: &str) -> Markup {
    html! {
        form method="post" action={"/volumes/" (id) "/action"} class="inline" {
            (csrf_field(&s.csrf))
            input type="hidden" name="action" value=(action);
            button type="submit" class=[class] id={(action) "-" (id)} { (label) }
        }
    }
}

async fn page(state: &AppState, s: &Signed, notice: Option<String>, error: Option<Shown>, sent: &Form) -> Response {
    let lang = s.lang;
    let (rows, list_error) = match rows_partial(state, s, &Query::default()).await {
        Ok(m) => (m, None),
        Err(e) => (html! {}, Some(e)),
    };
    let choices = instance_choices(state, s).await;
    let catalog = state.catalog.get();
    let body = html! {
        (rows)
        h2 { (lang.t("volumes.create")) }
        form method="post" action="/volumes" class="row" id="volume-form" {
            (csrf_field(&s.csrf))
            div {
                label for="v-instance" { (lang.t("volumes.instance")) }
                select id="v-instance" name="instance_id" required {
                    @for (iid, name) in &choices { option value=(iid) selected[sent.get("instance_id") == Some(iid.as_str())] { (name) " (" (iid) ")" } }
                }
            }
            div {
                label for="v-name" { (lang.t("instances.name")) }
                input type="text" id="v-name" name="name" maxlength="64" value=(sent.get("name").unwrap_or(""));
            }
            div {
                label for="v-type" { (lang.t("volumes.type")) }
                select id="v-type" name="type" {
                    @for t in &catalog.block_storage_types { option value=(t.kind) { (t.kind) " (" (t.min) "–" (t.max) " GB)" } }
                }
            }
            div {
                label for="v-size" { (lang.t("volumes.size")) }
                input type="number" id="v-size" name="size" required value=(sent.get("size").unwrap_or("10"));
            }
            div { button type="submit" id="volume-create" { (lang.t("volumes.create")) } }
        }
    };
    Page::new(s, "volumes", lang.t("volumes.title")).notice(notice).error(error.or(list_error)).body(body).render()
}

pub async fn list(State(state): State<AppState>, s: Signed, q: Query) -> Response {
    let notice =
        q.str("done").map(|d| format!("done.volume_{d}")).filter(|k| s.lang.has(k)).map(|k| s.lang.t_owned(&k));
    page(&state, &s, notice, None, &Form::default()).await
}

pub async fn rows(State(state): State<AppState>, s: Signed, q: Query) -> Response {
    match rows_partial(&state, &s, &q).await {
        Ok(m) => partial(m),
        Err(e) => partial(html! { div id="volume-rows" class="error" role="alert" { (e.message) } }),
    }
}

fn body_of(form: &Form, fields: &[&str]) -> Body {
    let mut m = Map::new();
    for f in fields {
        if let Some(v) = form.get(f) {
            m.insert((*f).to_owned(), Value::String(v.to_owned()));
        }
    }
    Body(m)
}

pub async fn create(State(state): State<AppState>, s: Signed, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let body = body_of(&form, &["instance_id", "name", "type", "size"]);
    let input = CreateVolume::from_body(&body, Encoding::Form);
    let r = match input {
        Ok(input) => svc::create(&state, &caller(&s), input).await.map(drop),
        Err(e) => Err(e),
    };
    match r {
        Ok(_) => see_other("/volumes?done=created"),
        Err(e) => page(&state, &s, None, Some(e.into()), &form).await,
    }
}

pub async fn action(State(state): State<AppState>, s: Signed, Path(id): Path<String>, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let who = caller(&s);
    let action = form.get("action").unwrap_or("").to_owned();
    let r = match action.as_str() {
        "attach" => {
            let instance = form.get("instance_id").unwrap_or("").to_owned();
            svc::attach(&state, &who, &id, &instance).await.map(drop)
        }
        "detach" => svc::detach(&state, &who, &id).await.map(drop),
        "delete" => svc::delete(&state, &who, &id).await.map(drop),
        other => Err(crate::input::enum_error("action", other, &["attach", "detach", "delete"])),
    };
    match r {
        Ok(_) => see_other(&format!("/volumes?done={}", enc(&action))),
        Err(e) => page(&state, &s, None, Some(e.into()), &Form::default()).await,
    }
}
