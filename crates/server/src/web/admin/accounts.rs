//! Accounts (list, create, enable/disable, quotas) and an account's access keys (list, create with
//! the secret shown once, disable), through the `/admin/v1` handlers of `crate::admin`.

use axum::extract::State;
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::forms::{Outcome, body_of};
use super::{CheckedForm, Operator};
use crate::AppState;
use crate::admin;
use crate::input::{Path, Query};
use crate::web::layout::{badge, csrf_field};
use crate::web::{reply, see_other, text};

async fn accounts_page(state: &AppState, op: &Operator, outcome: Outcome<'_>) -> Response {
    let (lang, sent) = (op.lang, outcome.sent);
    let (rows, list_error) = match reply(admin::list_accounts(State(state.clone())).await) {
        Ok(r) => (r.rows, None),
        Err(e) => (Vec::new(), Some(e.into())),
    };
    let body = html! {
        table id="accounts" {
            thead { tr {
                th { (lang.t("admin.account")) } th { (lang.t("instances.status")) }
                th class="num" { (lang.t("admin.quota_instances")) } th class="num" { (lang.t("admin.quota_vcpu")) }
                th class="num" { (lang.t("admin.quota_storage")) } th { (lang.t("instances.created")) } th { (lang.t("admin.actions")) }
            } }
            tbody {
                @for a in &rows {
                    @let name = text(a, "name");
                    @let enabled = a["enabled"].as_bool().unwrap_or(false);
                    tr data-account=(name) {
                        td { (name) br; span class="muted" { (text(a, "account_id")) } }
                        td { (badge(lang, if enabled { "active" } else { "off" })) }
                        td class="num" data-quota="instances" { (a["quota"]["instances"]) }
                        td class="num" data-quota="vcpu" { (a["quota"]["vcpu"]) }
                        td class="num" data-quota="block_storage_gb" { (a["quota"]["block_storage_gb"]) }
                        td { (text(a, "created_at")) }
                        td {
                            a href={"/admin/accounts/" (name) "/keys"} { (lang.t("admin.keys")) }
                            " "
                            form method="post" action={"/admin/accounts/" (name) "/state"} class="inline" {
                                (csrf_field(&op.csrf))
                                input type="hidden" name="enabled" value=(if enabled { "false" } else { "true" });
                                button type="submit" class="secondary" {
                                    (lang.t(if enabled { "admin.disable" } else { "admin.enable" }))
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (lang.t("admin.create_account")) }
        form method="post" action="/admin/accounts" id="account-form" {
            (csrf_field(&op.csrf))
            label for="a-name" { (lang.t("admin.account")) }
            input type="text" id="a-name" name="name" required maxlength="64" value=(sent.get("name").unwrap_or(""));
            p { button type="submit" id="account-create" { (lang.t("admin.create")) } }
        }
        h2 { (lang.t("admin.set_quota")) }
        p class="muted" { (lang.t("admin.quota_note")) }
        form method="post" action="/admin/accounts/quota" id="quota-form" {
            (csrf_field(&op.csrf))
            label for="quota-account" { (lang.t("admin.account")) }
            select id="quota-account" name="account" {
                @for a in &rows {
                    @let name = text(a, "name");
                    option value=(name) selected[sent.get("account") == Some(name)] { (name) }
                }
            }
            label for="quota-instances" { (lang.t("admin.quota_instances")) }
            input type="number" id="quota-instances" name="instances" min="0" value=(sent.get("instances").unwrap_or(""));
            label for="quota-vcpu" { (lang.t("admin.quota_vcpu")) }
            input type="number" id="quota-vcpu" name="vcpu" min="0" value=(sent.get("vcpu").unwrap_or(""));
            label for="quota-storage" { (lang.t("admin.quota_storage")) }
            input type="number" id="quota-storage" name="block_storage_gb" min="0" value=(sent.get("block_storage_gb").unwrap_or(""));
            p { button type="submit" id="quota-submit" { (lang.t("admin.set_quota")) } }
        }
    };
    op.page(state, "accounts", lang.t("admin.accounts_title"))
        .notice(outcome.notice)
        .error(outcome.error.or(list_error))
        .body(body)
        .render()
}

pub async fn list(State(state): State<AppState>, op: Operator, q: Query) -> Response {
    accounts_page(&state, &op, Outcome::shown(op.lang, &q)).await
}

pub async fn create(State(state): State<AppState>, CheckedForm { op, form, .. }: CheckedForm) -> Response {
    match reply(admin::create_account(State(state.clone()), body_of(&form, &["name"])).await) {
        Ok(_) => see_other("/admin/?done=account_created"),
        Err(e) => accounts_page(&state, &op, Outcome::refused(e, &form)).await,
    }
}

pub async fn quota(State(state): State<AppState>, CheckedForm { op, form, .. }: CheckedForm) -> Response {
    let name = form.get("account").unwrap_or("").to_owned();
    let body = body_of(&form, &["instances", "vcpu", "block_storage_gb"]);
    match reply(admin::set_quota(State(state.clone()), Path(name), body).await) {
        Ok(_) => see_other("/admin/?done=quota"),
        Err(e) => accounts_page(&state, &op, Outcome::refused(e, &form)).await,
    }
}

pub async fn set_enabled(
    State(state): State<AppState>,
    CheckedForm { op, path: Path(name), form }: CheckedForm<Path<String>>,
) -> Response {
    let (r, done) = if form.get("enabled") == Some("true") {
        (admin::enable_account(State(state.clone()), Path(name)).await, "enabled")
    } else {
        (admin::disable_account(State(state.clone()), Path(name)).await, "disabled")
    };
    match reply(r) {
        Ok(_) => see_other(&format!("/admin/?done={done}")),
        Err(e) => accounts_page(&state, &op, Outcome::failed(e)).await,
    }
}

/// An issued key, shown once in the answer to the `POST` that made it.
struct Issued {
    access_key: String,
    secret_key: String,
}

async fn keys_page(
    state: &AppState,
    op: &Operator,
    account: &str,
    outcome: Outcome<'_>,
    issued: Option<Issued>,
) -> Response {
    let lang = op.lang;
    let q = Query([("account".to_owned(), account.to_owned())].into_iter().collect());
    let (rows, list_error) = match reply(admin::list_keys(State(state.clone()), q).await) {
        Ok(r) => (r.rows, None),
        Err(e) => (Vec::new(), Some(e.into())),
    };
    let body = html! {
        p { a href="/admin/" { "← " (lang.t("admin.accounts_title")) } }
        @if let Some(k) = &issued {
            div class="secret" id="issued-key" role="status" {
                p { (lang.t("admin.secret_once")) }
                dl {
                    dt { (lang.t("admin.access_key")) } dd { code id="issued-access-key" { (k.access_key) } }
                    dt { (lang.t("admin.secret_key")) } dd { code id="issued-secret-key" { (k.secret_key) } }
                }
            }
        }
        @if rows.is_empty() { p class="muted" { (lang.t("admin.no_keys")) } } @else {
            table id="keys" {
                thead { tr {
                    th { (lang.t("admin.access_key")) } th { (lang.t("instances.status")) }
                    th class="num" { (lang.t("admin.rate_limit")) } th { (lang.t("admin.allow")) }
                    th { (lang.t("instances.created")) } th { (lang.t("admin.last_used")) } th { (lang.t("admin.actions")) }
                } }
                tbody {
                    @for k in &rows {
                        @let ak = text(k, "access_key");
                        @let enabled = k["enabled"].as_bool().unwrap_or(false);
                        tr data-key=(ak) {
                            td { code { (ak) } }
                            td { (badge(lang, if enabled { "active" } else { "off" })) }
                            td class="num" { (k["rate_limit"]) }
                            td { @for c in k["allow"].as_array().into_iter().flatten() { code { (c.as_str().unwrap_or("")) } " " } }
                            td { (text(k, "created_at")) }
                            td { (text(k, "last_used_at")) }
                            td {
                                @if enabled {
                                    form method="post" action={"/admin/keys/" (ak) "/disable"} class="inline" {
                                        (csrf_field(&op.csrf))
                                        input type="hidden" name="account" value=(account);
                                        button type="submit" class="danger" { (lang.t("admin.disable")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (lang.t("admin.create_key")) }
        form method="post" action={"/admin/accounts/" (account) "/keys"} id="key-form" {
            (csrf_field(&op.csrf))
            label for="key-rate" { (lang.t("admin.rate_limit")) }
            input type="number" id="key-rate" name="rate_limit" min="0";
            label for="key-allow" { (lang.t("admin.allow_field")) }
            input type="text" id="key-allow" name="allow" placeholder="10.0.0.0/8, 192.0.2.7";
            p { button type="submit" id="key-create" { (lang.t("admin.create")) } }
        }
    };
    let title = format!("{} · {account}", lang.t("admin.keys_title"));
    op.page(state, "accounts", &title).notice(outcome.notice).error(outcome.error.or(list_error)).body(body).render()
}

pub async fn keys(State(state): State<AppState>, op: Operator, Path(name): Path<String>, q: Query) -> Response {
    keys_page(&state, &op, &name, Outcome::shown(op.lang, &q), None).await
}

pub async fn create_key(
    State(state): State<AppState>,
    CheckedForm { op, path: Path(name), form }: CheckedForm<Path<String>>,
) -> Response {
    let body = body_of(&form, &["rate_limit", "allow"]);
    match reply(admin::create_key(State(state.clone()), Path(name.clone()), body).await) {
        Ok(r) => {
            let row = r.rows.first().cloned().unwrap_or(Value::Null);
            let issued = Issued {
                access_key: text(&row, "access_key").to_owned(),
                secret_key: text(&row, "secret_key").to_owned(),
            };
            let done = Outcome::done(op.lang.t_owned("admin.done_key_created"));
            keys_page(&state, &op, &name, done, Some(issued)).await
        }
        Err(e) => keys_page(&state, &op, &name, Outcome::failed(e), None).await,
    }
}

pub async fn disable_key(
    State(state): State<AppState>,
    CheckedForm { op, path: Path(access_key), form }: CheckedForm<Path<String>>,
) -> Response {
    let account = form.get("account").unwrap_or("").to_owned();
    match reply(admin::disable_key(State(state.clone()), Path(access_key)).await) {
        Ok(r) => {
            let owner = r.rows.first().map(|k| text(k, "account").to_owned()).unwrap_or(account);
            see_other(&format!("/admin/accounts/{owner}/keys?done=key_disabled"))
        }
        Err(e) => keys_page(&state, &op, &account, Outcome::failed(e), None).await,
    }
}
