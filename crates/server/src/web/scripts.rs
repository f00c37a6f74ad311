//! User scripts: list, write (a text editor), delete — through `api::scripts`.

use axum::extract::State;
use axum::response::Response;
use maud::html;
use openwinv_store::ScriptRecord;
use serde_json::{Map, Value};

use super::form::Form;
use super::layout::{Page, csrf_field};
use super::named_text as named;
use super::{Shown, Signed, reply, text};
use crate::AppState;
use crate::api::scripts;
use crate::input::{Path, Query};

async fn page(state: &AppState, s: &Signed, notice: Option<String>, error: Option<Shown>, sent: &Form) -> Response {
    let lang = s.lang;
    let q = Query([("page_size".to_owned(), "100".to_owned())].into_iter().collect());
    let (rows, list_error) = match reply(scripts::list_for(state, &s.account_id, &q).await) {
        Ok(r) => (r.rows, None),
        Err(e) => (Vec::new(), Some(e.into())),
    };
    let body = html! {
        @if rows.is_empty() { p class="muted" { (lang.t("scripts.none")) } }
        @for sc in &rows {
            @let id = text(sc, "user_script_id");
            details data-script=(id) {
                summary { strong { (text(sc, "name")) } " " span class="muted" { (id) " · " (text(sc, "created_at")) } }
                pre { (text(sc, "content")) }
                form method="post" action={"/scripts/" (id) "/delete"} class="inline" {
                    (csrf_field(&s.csrf))
                    button type="submit" class="danger" { (lang.t("action.delete")) }
                }
            }
        }
        h2 { (lang.t("scripts.add")) }
        form method="post" action="/scripts" id="script-form" {
            (csrf_field(&s.csrf))
            label for="s-name" { (lang.t("instances.name")) }
            input type="text" id="s-name" name="name" required maxlength="64" value=(sent.get("name").unwrap_or(""));
            label for="s-content" { (lang.t("scripts.content")) }
            textarea id="s-content" name="content" required spellcheck="false" { (sent.get("content").unwrap_or("#!/bin/sh\n")) }
            p { button type="submit" id="script-submit" { (lang.t("scripts.add")) } }
        }
    };
    Page::new(s, "scripts", lang.t("scripts.title")).notice(notice).error(error.or(list_error)).body(body).render()
}

pub async fn list(State(state): State<AppState>, s: Signed, q: Query) -> Response {
    let notice =
        q.str("done").map(|d| format!("done.script_{d}")).filter(|k| s.lang.has(k)).map(|k| s.lang.t_owned(&k));
    page(&state, &s, notice, None, &Form::default()).await
}

pub async fn create(State(state): State<AppState>, s: Signed, form: Form) -> Response {
    let mut body = Map::new();
    for f in ["name", "content"] {
        if let Some((_, v)) = form.0.iter().find(|(k, _)| k == f) {
            body.insert(f.into(), Value::String(v.clone()));
        }
    }
    named::create::<ScriptRecord>((&state, &s, &form), body, "/scripts", page).await
}

pub async fn delete(State(state): State<AppState>, s: Signed, Path(id): Path<String>, form: Form) -> Response {
    named::delete::<ScriptRecord>((&state, &s, &form), &id, "/scripts", page).await
}
