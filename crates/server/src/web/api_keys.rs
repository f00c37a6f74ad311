//! API keys: the signed-in account's own access keys — create (the secret shown once), disable,
//! enable, and the allowlist of addresses each may sign from.
//!
//! Keys are managed by the operator API's functions (`admin::create_key`, `list_keys`,
//! `update_key`), called scoped to the session's account: the list is asked for with the
//! account's name, and a key id is acted on only after it was found in that list, so another
//! account's key id is the operator API's own 404. People cannot import a key pair or change the
//! rate limit: those stay the operator's.
//!
//! The secret appears only in the answer to the creating `POST`: with htmx the answer is a part of
//! the page swapped in place (the address stays `/api-keys`, so a reload shows the list without
//! it); without script it is the whole page answering the `POST`. It is never in a URL, a cookie
//! or the store (which keeps it sealed), and the page is sent `Cache-Control: no-store`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::form::Form;
use super::layout::{Page, csrf_field, partial};
use super::{Shown, Signed, csrf, reply, see_other, text};
use crate::AppState;
use crate::admin;
use crate::error::ApiError;
use crate::input::{Body, Path, Query};

/// The account's keys, as the operator API lists them.
async fn keys(state: &AppState, s: &Signed) -> Result<Vec<Value>, Shown> {
    let q = Query([("account".to_owned(), s.account_name.clone())].into_iter().collect());
    reply(admin::list_keys(State(state.clone()), q).await).map(|r| r.rows).map_err(Shown::from)
}

/// The key if it is the account's; else the operator API's 404 for it.
async fn own_key(state: &AppState, s: &Signed, access_key: &str) -> Result<Value, Shown> {
    keys(state, s)
        .await?
        .into_iter()
        .find(|k| text(k, "access_key") == access_key)
        .ok_or_else(|| ApiError::not_found(format!("The access key `{access_key}`")).into())
}

/// `allow` as typed: addresses or CIDRs separated by commas, blanks or new lines.
fn allow_list(form: &Form) -> Value {
    let raw = form.0.iter().find(|(k, _)| k == "allow").map(|(_, v)| v.as_str()).unwrap_or("");
    Value::Array(
        raw.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(|p| Value::String(p.to_owned()))
            .collect(),
    )
}

fn body(pairs: Vec<(&str, Value)>) -> Body {
    Body(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<String, Value>>())
}

/// The list; `oob` marks it for htmx to swap in place of the page's list (out of band).
fn rows(s: &Signed, keys: &[Value], oob: bool) -> Markup {
    let lang = s.lang;
    html! {
        div id="key-rows" hx-swap-oob=[oob.then_some("true")] {
            @if keys.is_empty() { p class="muted" { (lang.t("apikeys.none")) } } @else {
                table {
                    thead { tr {
                        th { (lang.t("apikeys.access_key")) } th { (lang.t("instances.status")) } th { (lang.t("apikeys.allow")) }
                        th { (lang.t("apikeys.rate_limit")) } th { (lang.t("instances.created")) } th { (lang.t("apikeys.last_used")) }
                        th { (lang.t("detail.actions")) }
                    } }
                    tbody {
                        @for k in keys {
                            @let ak = text(k, "access_key");
                            @let enabled = k["enabled"].as_bool().unwrap_or(false);
                            @let allow: Vec<&str> = k["allow"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                            tr data-key=(ak) {
                                td { code { (ak) } }
                                td { @if enabled { span class="badge badge-active" { (lang.t("apikeys.enabled")) } } @else { span class="badge badge-off" { (lang.t("apikeys.disabled")) } } }
                                td {
                                    form method="post" action={"/api-keys/" (ak) "/allow"} class="inline" {
                                        (csrf_field(&s.csrf))
                                        input type="text" name="allow" id={"allow-" (ak)} value=(allow.join(", ")) placeholder=(lang.t("apikeys.any_address"))
                                            aria-label={(lang.t("apikeys.allow")) " " (ak)};
                                        button type="submit" class="secondary" id={"allow-save-" (ak)} { (lang.t("apikeys.save")) }
                                    }
                                }
                                td class="num" { @if k["rate_limit"] == 0 { (lang.t("apikeys.unlimited")) } @else { (k["rate_limit"]) "/min" } }
                                td { (text(k, "created_at")) }
                                td { (k["last_used_at"].as_str().unwrap_or("—")) }
                                td {
                                    form method="post" action={"/api-keys/" (ak) (if enabled { "/disable" } else { "/enable" })} class="inline" {
                                        (csrf_field(&s.csrf))
                                        @if enabled {
                                            button type="submit" class="danger" id={"disable-" (ak)} { (lang.t("apikeys.disable")) }
                                        } @else {
                                            button type="submit" id={"enable-" (ak)} { (lang.t("apikeys.enable")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The box with a new key's secret, or the refusal of the create.
fn created(s: &Signed, issued: Option<&Value>, error: Option<&Shown>) -> Markup {
    let lang = s.lang;
    html! {
        div id="key-created" aria-live="polite" {
            @if let Some(e) = error {
                div class="error" role="alert" {
                    @if !e.code.is_empty() { strong { (e.code) } " " }
                    span class="error-message" { (e.message) }
                }
            }
            @if let Some(k) = issued {
                div class="notice" role="status" {
                    p { strong { (lang.t("apikeys.created")) } " " (lang.t("apikeys.secret_once")) }
                    table class="facts" {
                        tbody {
                            tr { th { (lang.t("apikeys.access_key")) } td { code id="new-access-key" { (text(k, "access_key")) } } }
                            tr { th { (lang.t("apikeys.secret_key")) } td { code id="key-secret" class="secret" { (text(k, "secret_key")) } } }
                        }
                    }
                }
            }
        }
    }
}

fn create_form(s: &Signed) -> Markup {
    let lang = s.lang;
    html! {
        h2 { (lang.t("apikeys.create")) }
        form method="post" action="/api-keys" id="key-form" class="row" hx-post="/api-keys" hx-target="#key-created" hx-swap="outerHTML" {
            (csrf_field(&s.csrf))
            div {
                label for="new-allow" { (lang.t("apikeys.allow")) }
                input type="text" id="new-allow" name="allow" placeholder=(lang.t("apikeys.any_address")) aria-describedby="allow-help";
                p id="allow-help" class="muted" { (lang.t("apikeys.allow_help")) }
            }
            div { button type="submit" id="key-create" { (lang.t("apikeys.create")) } }
        }
    }
}

async fn page(
    state: &AppState,
    s: &Signed,
    notice: Option<String>,
    error: Option<Shown>,
    issued: Option<&Value>,
) -> Response {
    let lang = s.lang;
    let (list, list_error) = match keys(state, s).await {
        Ok(k) => (k, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let body = html! {
        p class="muted" { (lang.t("apikeys.intro")) }
        (created(s, issued, None))
        (rows(s, &list, false))
        (create_form(s))
    };
    Page::new(s, "api-keys", lang.t("apikeys.title")).notice(notice).error(error.or(list_error)).body(body).render()
}

pub async fn list(State(state): State<AppState>, s: Signed, q: Query) -> Response {
    let notice =
        q.str("done").map(|d| format!("done.apikey_{d}")).filter(|k| s.lang.has(k)).map(|k| s.lang.t_owned(&k));
    page(&state, &s, notice, None, None).await
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}

/// Creates a key with `admin::create_key` for the session's account (generated pair, the
/// server's default rate limit, the allowlist given).
pub async fn create(State(state): State<AppState>, s: Signed, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let b = body(vec![("allow", allow_list(&form))]);
    let r = reply(admin::create_key(State(state.clone()), Path(s.account_name.clone()), b).await);
    let (issued, error) = match r {
        Ok(rows) => (rows.rows.into_iter().next(), None),
        Err(e) => (None, Some(Shown::from(e))),
    };
    if is_htmx(&headers) {
        // htmx swaps only 2xx answers: a refusal comes as 200 with the API's message in the box.
        let list = keys(&state, &s).await.unwrap_or_default();
        return partial(html! {
            (created(&s, issued.as_ref(), error.as_ref()))
            (rows(&s, &list, true))
        });
    }
    page(&state, &s, None, error, issued.as_ref()).await
}

/// Disable, enable or set the allowlist of one of the account's keys with `admin::update_key`.
pub async fn change(
    State(state): State<AppState>,
    s: Signed,
    Path((access_key, what)): Path<(String, String)>,
    form: Form,
) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let lang = s.lang;
    if let Err(e) = own_key(&state, &s, &access_key).await {
        return Page::new(&s, "api-keys", lang.t("error.not_found"))
            .error(Some(e))
            .body(html! { p { a href="/api-keys" { (lang.t("apikeys.back")) } } })
            .render();
    }
    let b = match what.as_str() {
        "disable" => body(vec![("enabled", Value::Bool(false))]),
        "enable" => body(vec![("enabled", Value::Bool(true))]),
        "allow" => body(vec![("allow", allow_list(&form))]),
        other => {
            let e = crate::input::enum_error("action", other, &["disable", "enable", "allow"]);
            return page(&state, &s, None, Some(e.into()), None).await;
        }
    };
    match reply(admin::update_key(State(state.clone()), Path(access_key), b).await) {
        Ok(_) => see_other(&format!("/api-keys?done={what}")),
        Err(e) => page(&state, &s, None, Some(e.into()), None).await,
    }
}
