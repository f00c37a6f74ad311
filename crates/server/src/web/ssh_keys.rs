//! SSH keys: list, add (pasted, or uploaded as a file), delete — through `api::ssh_keys`.

use axum::extract::State;
use axum::response::Response;
use maud::html;
use openwinv_store::SshKeyRecord;
use serde_json::{Map, Value};

use super::form::Form;
use super::layout::{Page, csrf_field};
use super::named_text as named;
use super::{Shown, Signed, reply, text};
use crate::AppState;
use crate::api::ssh_keys;
use crate::input::{Path, Query};

async fn page(state: &AppState, s: &Signed, notice: Option<String>, error: Option<Shown>, sent: &Form) -> Response {
    let lang = s.lang;
    let q = Query([("page_size".to_owned(), "100".to_owned())].into_iter().collect());
    let (keys, list_error) = match reply(ssh_keys::list_for(state, &s.account_id, &q).await) {
        Ok(r) => (r.rows, None),
        Err(e) => (Vec::new(), Some(e.into())),
    };
    let body = html! {
        @if keys.is_empty() { p class="muted" { (lang.t("keys.none")) } } @else {
            table {
                thead { tr { th { (lang.t("instances.name")) } th { (lang.t("keys.fingerprint")) } th { (lang.t("instances.created")) } th {} } }
                tbody {
                    @for k in &keys {
                        @let id = text(k, "ssh_key_id");
                        tr data-key=(id) {
                            td { (text(k, "name")) br; span class="muted" { (id) } }
                            td { code { (text(k, "fingerprint")) } }
                            td { (text(k, "start_date")) }
                            td {
                                form method="post" action={"/ssh-keys/" (id) "/delete"} class="inline" {
                                    (csrf_field(&s.csrf))
                                    button type="submit" class="danger" { (lang.t("action.delete")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (lang.t("keys.add")) }
        form method="post" action="/ssh-keys" enctype="multipart/form-data" id="key-form" {
            (csrf_field(&s.csrf))
            label for="k-name" { (lang.t("instances.name")) }
            input type="text" id="k-name" name="name" required maxlength="64" value=(sent.get("name").unwrap_or(""));
            label for="k-key" { (lang.t("keys.paste")) }
            textarea id="k-key" name="public_key" placeholder="ssh-ed25519 AAAA… you@host" { (sent.get("public_key").unwrap_or("")) }
            label for="k-file" { (lang.t("keys.upload")) }
            input type="file" id="k-file" name="public_key_file" accept=".pub,text/plain";
            p { button type="submit" id="key-submit" { (lang.t("keys.add")) } }
        }
    };
    Page::new(s, "ssh-keys", lang.t("keys.title")).notice(notice).error(error.or(list_error)).body(body).render()
}

pub async fn list(State(state): State<AppState>, s: Signed, q: Query) -> Response {
    let notice = q.str("done").map(|d| format!("done.key_{d}")).filter(|k| s.lang.has(k)).map(|k| s.lang.t_owned(&k));
    page(&state, &s, notice, None, &Form::default()).await
}

pub async fn create(State(state): State<AppState>, s: Signed, form: Form) -> Response {
    let mut body = Map::new();
    if let Some(n) = form.get("name") {
        body.insert("name".into(), Value::String(n.to_owned()));
    }
    // An uploaded file wins over the text box.
    if let Some(k) = form.get("public_key_file").or(form.get("public_key")) {
        body.insert("public_key".into(), Value::String(k.trim().to_owned()));
    }
    named::create::<SshKeyRecord>((&state, &s, &form), body, "/ssh-keys", page).await
}

pub async fn delete(State(state): State<AppState>, s: Signed, Path(id): Path<String>, form: Form) -> Response {
    named::delete::<SshKeyRecord>((&state, &s, &form), &id, "/ssh-keys", page).await
}
