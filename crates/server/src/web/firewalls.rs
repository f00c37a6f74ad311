//! Firewalls: list, create, delete; the detail page with its rule editor (add, edit, delete one
//! rule at a time), settings, and attach/detach; and the firewall section of an instance's page
//! with a "can X reach port P?" check (`GET /v1/instances/{id}/reachability`).
//!
//! Every change goes through the functions both API families share (`api::firewalls::*_for`):
//! rules one at a time as family A's `/v1/security-groups/{id}/rules` does them (family B's
//! `PUT /v1/firewall/{id}` with `rules` would replace the whole set). A refusal is the API's, and
//! its message is shown next to the field it names (the first `` `field` `` in the message), with
//! the API's status.

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::form::Form;
use super::i18n::Lang;
use super::layout::{Page, csrf_field};
use super::{Shown, Signed, accepted, caller, csrf, reply, see_other, text};
use crate::AppState;
use crate::api::{firewalls, instances, reachability};
use crate::input::{Body, Path, Query};

const RULE_FIELDS: [&str; 6] = ["bound", "protocol", "port", "ip", "title", "content"];

/// A refused form: where it was (`add`, `rule-N`, `settings`, `attach`, `create`), the field the
/// API's message names (if the form has it), the API's error and what was sent.
struct Problem {
    at: String,
    field: Option<String>,
    shown: Shown,
    sent: Form,
}

impl Problem {
    fn new(at: &str, fields: &[&str], shown: Shown, sent: Form) -> Problem {
        let named = shown.message.split('`').nth(1).map(|f| f.rsplit('.').next().unwrap_or(f).to_owned());
        let field = named.filter(|f| fields.contains(&f.as_str()));
        Problem { at: at.to_owned(), field, shown, sent }
    }

    fn here(&self, at: &str) -> bool {
        self.at == at
    }

    /// The message to show beside `field` of the form at `at`.
    fn beside(&self, at: &str, field: &str) -> Option<&str> {
        (self.here(at) && self.field.as_deref() == Some(field)).then_some(self.shown.message.as_str())
    }

    /// What the person typed into `field` of the form at `at`.
    fn sent(&self, at: &str, field: &str) -> Option<&str> {
        if self.here(at) { self.sent.0.iter().find(|(k, _)| k == field).map(|(_, v)| v.as_str()) } else { None }
    }
}

/// The API returns a firewall's `content` HTML-escaped [iwinv]; the page shows the text itself
/// (and maud escapes it again on output).
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#039;", "'").replace("&amp;", "&")
}

fn body_of(form: &Form, fields: &[&str]) -> Body {
    let mut m = Map::new();
    for f in fields {
        if let Some((_, v)) = form.0.iter().find(|(k, _)| k == f) {
            m.insert((*f).to_owned(), Value::String(v.clone()));
        }
    }
    Body(m)
}

/// An input with its label, and the API's message beside it when it named this field.
fn field(p: Option<&Problem>, at: &str, name: &str, label: &str, input: Markup) -> Markup {
    let err = p.and_then(|p| p.beside(at, name));
    html! {
        div class=[err.map(|_| "field invalid")] {
            label for={(at) "-" (name)} { (label) }
            (input)
            @if let Some(m) = err { p class="field-error" id={(at) "-" (name) "-error"} role="alert" { (m) } }
        }
    }
}

fn described(p: Option<&Problem>, at: &str, name: &str) -> Option<String> {
    p.and_then(|p| p.beside(at, name)).map(|_| format!("{at}-{name}-error"))
}

fn semantics(lang: Lang) -> Markup {
    html! { p class="semantics muted" { (lang.t("fw.semantics")) } }
}

fn list_query() -> Query {
    Query([("page_size".to_owned(), "100".to_owned())].into_iter().collect())
}

async fn page(state: &AppState, s: &Signed, notice: Option<String>, problem: Option<Problem>) -> Response {
    let lang = s.lang;
    let (rows, list_error) = match reply(firewalls::list_for(state, &s.account_id, &list_query()).await) {
        Ok(r) => (r.rows, None),
        Err(e) => (Vec::new(), Some(Shown::from(e))),
    };
    let p = problem.as_ref();
    let body = html! {
        (semantics(lang))
        @if rows.is_empty() { p class="muted" { (lang.t("fw.none")) } } @else {
            table id="firewalls" {
                thead { tr {
                    th { (lang.t("fw.name")) } th { (lang.t("fw.description")) } th { "ICMP" } th class="num" { (lang.t("fw.rules")) }
                    th class="num" { (lang.t("fw.instances")) }
                } }
                tbody {
                    @for f in &rows {
                        @let id = text(f, "firewall_id");
                        tr data-firewall=(id) {
                            td { a href={"/firewalls/" (id)} { (text(f, "title")) } br; span class="muted" { (id) } }
                            td { (unescape(text(f, "content"))) }
                            td { (text(f, "icmp")) }
                            td class="num" { (f["rules"].as_array().map_or(0, Vec::len)) }
                            td class="num" { (f["instances"].as_array().map_or(0, Vec::len)) }
                        }
                    }
                }
            }
        }
        h2 { (lang.t("fw.create")) }
        form method="post" action="/firewalls" id="fw-form" class="row" {
            (csrf_field(&s.csrf))
            (field(p, "create", "title", lang.t("fw.name"), html! {
                input type="text" id="create-title" name="title" required maxlength="32" value=(p.and_then(|p| p.sent("create", "title")).unwrap_or(""))
                    aria-describedby=[described(p, "create", "title")] aria-invalid=[described(p, "create", "title").map(|_| "true")];
            }))
            (field(p, "create", "content", lang.t("fw.description"), html! {
                input type="text" id="create-content" name="content" required maxlength="50" value=(p.and_then(|p| p.sent("create", "content")).unwrap_or(""))
                    aria-describedby=[described(p, "create", "content")] aria-invalid=[described(p, "create", "content").map(|_| "true")];
            }))
            (field(p, "create", "icmp", lang.t("fw.icmp"), icmp_select("create-icmp", "Y")))
            div { button type="submit" id="fw-create" { (lang.t("fw.create")) } }
        }
    };
    let (error, status) = match problem {
        Some(p) if p.field.is_none() => (Some(p.shown), None),
        Some(p) => (None, Some(p.shown.status)),
        None => (list_error, None),
    };
    let mut page = Page::new(s, "firewalls", lang.t("fw.title")).notice(notice).error(error).body(body);
    if let Some(st) = status {
        page = page.status(st);
    }
    page.render()
}

fn icmp_select(id: &str, current: &str) -> Markup {
    html! {
        select id=(id) name="icmp" {
            @for v in ["Y", "N"] { option value=(v) selected[current == v] { (v) } }
        }
    }
}

fn done(lang: Lang, q: &Query) -> Option<String> {
    let key = format!("done.fw_{}", q.str("done")?);
    lang.has(&key).then(|| lang.t_owned(&key))
}

pub async fn list(State(state): State<AppState>, s: Signed, q: Query) -> Response {
    page(&state, &s, done(s.lang, &q), None).await
}

pub async fn create(State(state): State<AppState>, s: Signed, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let body = body_of(&form, &["title", "content", "icmp"]);
    match accepted(firewalls::create_for(&state, &s.account_id, &body, false).await) {
        Ok(rows) => {
            let id = rows.rows.first().map(|r| text(r, "firewall_id").to_owned()).unwrap_or_default();
            see_other(&format!("/firewalls/{id}?done=created"))
        }
        Err(e) => {
            let p = Problem::new("create", &["title", "content", "icmp"], e.into(), form);
            page(&state, &s, None, Some(p)).await
        }
    }
}

/// The account's instances (id, name), for the attach form.
async fn instance_choices(state: &AppState, s: &Signed) -> Vec<(String, String)> {
    let q = Query(
        [("page_size".to_owned(), "100".to_owned()), ("fields".to_owned(), "3".to_owned())].into_iter().collect(),
    );
    reply(instances::list(State(state.clone()), Extension(caller(s)), HeaderMap::new(), q).await)
        .map(|r| r.rows.iter().map(|i| (text(i, "instance_id").to_owned(), text(i, "name").to_owned())).collect())
        .unwrap_or_default()
}

fn rule_inputs(lang: Lang, p: Option<&Problem>, at: &str, rule: Option<&Value>, form_id: Option<&str>) -> Markup {
    let value = |name: &str, default: &str| -> String {
        p.and_then(|p| p.sent(at, name))
            .map(str::to_owned)
            .or_else(|| rule.map(|r| r[name].as_str().unwrap_or("").to_owned()))
            .unwrap_or_else(|| default.to_owned())
    };
    let attrs = |name: &str| (described(p, at, name), described(p, at, name).map(|_| "true"));
    let cell = |name: &str, input: Markup| {
        let err = p.and_then(|p| p.beside(at, name));
        html! {
            td class=[err.map(|_| "invalid")] {
                (input)
                @if let Some(m) = err { p class="field-error" id={(at) "-" (name) "-error"} role="alert" { (m) } }
            }
        }
    };
    let bound = value("bound", "IN");
    let protocol = value("protocol", "TCP");
    let (d_port, i_port) = attrs("port");
    let (d_ip, i_ip) = attrs("ip");
    let (d_title, i_title) = attrs("title");
    let (d_content, i_content) = attrs("content");
    html! {
        (cell("bound", html! {
            select id={(at) "-bound"} name="bound" form=[form_id] aria-label=(lang.t("fw.bound")) {
                @for v in ["IN", "OUT"] { option value=(v) selected[bound == v] { (v) } }
            }
        }))
        (cell("protocol", html! {
            select id={(at) "-protocol"} name="protocol" form=[form_id] aria-label=(lang.t("fw.protocol")) {
                @for v in ["TCP", "UDP"] { option value=(v) selected[protocol == v] { (v) } }
            }
        }))
        (cell("port", html! {
            input type="text" id={(at) "-port"} name="port" form=[form_id] size="11" value=(value("port", "")) placeholder="22, 8000-8080"
                aria-label=(lang.t("fw.port")) aria-describedby=[d_port] aria-invalid=[i_port];
        }))
        (cell("ip", html! {
            input type="text" id={(at) "-ip"} name="ip" form=[form_id] size="16" value=(value("ip", "0.0.0.0/0"))
                aria-label=(lang.t("fw.ip")) aria-describedby=[d_ip] aria-invalid=[i_ip];
        }))
        (cell("title", html! {
            input type="text" id={(at) "-title"} name="title" form=[form_id] size="14" value=(value("title", ""))
                aria-label=(lang.t("fw.rule_title")) aria-describedby=[d_title] aria-invalid=[i_title];
        }))
        (cell("content", html! {
            input type="text" id={(at) "-content"} name="content" form=[form_id] size="14" value=(value("content", ""))
                aria-label=(lang.t("fw.rule_content")) aria-describedby=[d_content] aria-invalid=[i_content];
        }))
    }
}

async fn detail_page(
    state: &AppState,
    s: &Signed,
    id: &str,
    notice: Option<String>,
    problem: Option<Problem>,
) -> Response {
    let lang = s.lang;
    let fw = match reply(firewalls::detail_for(state, &s.account_id, id).await) {
        Ok(r) if !r.rows.is_empty() => r.rows.into_iter().next().unwrap_or(Value::Null),
        // Family A's detail answers an unknown or another account's id with `[]` [iwinv]; the
        // page answers it as the rule and attachment routes do: the API's 404.
        Ok(_) => return not_found(s, firewalls::rules_for(state, &s.account_id, id).await.err().map(Shown::from)),
        Err(e) => return not_found(s, Some(e.into())),
    };
    let p = problem.as_ref();
    let attached: Vec<String> =
        fw["instances"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
    let choices: Vec<(String, String)> =
        instance_choices(state, s).await.into_iter().filter(|(i, _)| !attached.contains(i)).collect();
    let rules = fw["rules"].as_array().cloned().unwrap_or_default();
    let action = |path: &str| format!("/firewalls/{id}/{path}");
    let body = html! {
        p { a href="/firewalls" { (lang.t("fw.back")) } }
        (semantics(lang))
        table class="facts" {
            tbody {
                tr { th { "ID" } td { (id) } }
                tr { th { (lang.t("fw.description")) } td id="fw-description" { (unescape(text(&fw, "content"))) } }
                tr { th { (lang.t("fw.icmp")) } td { (text(&fw, "icmp")) } }
            }
        }
        section aria-labelledby="h-rules" {
            h2 id="h-rules" { (lang.t("fw.rules")) " " span class="muted" { "(" (rules.len()) ")" } }
            p class="muted" { (lang.t("fw.rules_note")) }
            table id="rules" {
                thead { tr {
                    th { (lang.t("fw.bound")) } th { (lang.t("fw.protocol")) } th { (lang.t("fw.port")) } th { (lang.t("fw.ip")) }
                    th { (lang.t("fw.rule_title")) } th { (lang.t("fw.rule_content")) } th { (lang.t("detail.actions")) }
                } }
                tbody {
                    @for r in &rules {
                        @let rid = r["rule_id"].to_string();
                        @let at = format!("rule-{rid}");
                        @let form_id = format!("rule-form-{rid}");
                        tr data-rule=(rid) {
                            (rule_inputs(lang, p, &at, Some(r), Some(&form_id)))
                            td {
                                form method="post" action=(action(&format!("rules/{rid}"))) id=(form_id) class="inline" {
                                    (csrf_field(&s.csrf))
                                    button type="submit" class="secondary" id={"save-rule-" (rid)} { (lang.t("fw.save")) }
                                }
                                form method="post" action=(action(&format!("rules/{rid}/delete"))) class="inline" {
                                    (csrf_field(&s.csrf))
                                    button type="submit" class="danger" id={"delete-rule-" (rid)} { (lang.t("action.delete")) }
                                }
                            }
                        }
                    }
                    tr id="new-rule" {
                        (rule_inputs(lang, p, "add", None, Some("add-rule-form")))
                        td {
                            form method="post" action=(action("rules")) id="add-rule-form" class="inline" {
                                (csrf_field(&s.csrf))
                                button type="submit" id="add-rule" { (lang.t("fw.add_rule")) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-attached" {
            h2 id="h-attached" { (lang.t("fw.instances")) }
            @if attached.is_empty() { p class="muted" id="no-attached" { (lang.t("fw.not_attached")) } } @else {
                ul id="attached" {
                    @for i in &attached {
                        li data-instance=(i) {
                            a href={"/instances/" (i)} { (i) } " "
                            form method="post" action=(action("detach")) class="inline" {
                                (csrf_field(&s.csrf))
                                input type="hidden" name="instance_id" value=(i);
                                button type="submit" class="secondary" id={"detach-" (i)} { (lang.t("volumes.detach")) }
                            }
                        }
                    }
                }
            }
            form method="post" action=(action("attach")) class="row" id="attach-form" {
                (csrf_field(&s.csrf))
                (field(p, "attach", "instance_id", lang.t("volumes.instance"), html! {
                    select id="attach-instance_id" name="instance_id" {
                        @for (iid, name) in &choices { option value=(iid) { (name) " (" (iid) ")" } }
                    }
                }))
                div { button type="submit" id="attach" disabled[choices.is_empty()] { (lang.t("volumes.attach")) } }
            }
        }
        section aria-labelledby="h-settings" {
            h2 id="h-settings" { (lang.t("fw.settings")) }
            form method="post" action=(action("edit")) class="row" id="settings-form" {
                (csrf_field(&s.csrf))
                (field(p, "settings", "title", lang.t("fw.name"), html! {
                    input type="text" id="settings-title" name="title" maxlength="32"
                        value=(p.and_then(|p| p.sent("settings", "title")).unwrap_or(text(&fw, "title")))
                        aria-describedby=[described(p, "settings", "title")] aria-invalid=[described(p, "settings", "title").map(|_| "true")];
                }))
                @let content = unescape(text(&fw, "content"));
                (field(p, "settings", "content", lang.t("fw.description"), html! {
                    input type="text" id="settings-content" name="content" maxlength="50"
                        value=(p.and_then(|p| p.sent("settings", "content")).unwrap_or(&content))
                        aria-describedby=[described(p, "settings", "content")] aria-invalid=[described(p, "settings", "content").map(|_| "true")];
                }))
                (field(p, "settings", "icmp", lang.t("fw.icmp"), icmp_select("settings-icmp", text(&fw, "icmp"))))
                div { button type="submit" class="secondary" id="settings-save" { (lang.t("fw.save")) } }
            }
            form method="post" action=(action("delete")) class="inline" {
                (csrf_field(&s.csrf))
                button type="submit" class="danger" id="fw-delete" { (lang.t("fw.delete")) }
            }
        }
    };
    let (error, status) = match problem {
        Some(p) if p.field.is_none() => (Some(p.shown), None),
        Some(p) => (None, Some(p.shown.status)),
        None => (None, None),
    };
    let title = format!("{} {}", lang.t("fw.one"), text(&fw, "title"));
    let mut page = Page::new(s, "firewalls", title).notice(notice).error(error).body(body);
    if let Some(st) = status {
        page = page.status(st);
    }
    page.render()
}

fn not_found(s: &Signed, e: Option<Shown>) -> Response {
    let lang = s.lang;
    let e = e.unwrap_or_else(|| crate::error::ApiError::not_found("The firewall").into());
    Page::new(s, "firewalls", lang.t("error.not_found"))
        .error(Some(e))
        .body(html! { p { a href="/firewalls" { (lang.t("fw.back")) } } })
        .render()
}

pub async fn detail(State(state): State<AppState>, s: Signed, Path(id): Path<String>, q: Query) -> Response {
    detail_page(&state, &s, &id, done(s.lang, &q), None).await
}

/// After a change: back to the page with a notice, or the page again with the API's refusal.
async fn after(
    state: &AppState,
    s: &Signed,
    id: &str,
    r: crate::error::ApiResult<()>,
    done: &str,
    (at, fields): (&str, &[&str]),
    form: Form,
) -> Response {
    match r {
        Ok(()) => see_other(&format!("/firewalls/{}?done={done}", super::instances::enc(id))),
        Err(e) if e.code == openwinv_wire::ErrorCode::NotFound && !at.starts_with("rule-") => {
            not_found(s, Some(e.into()))
        }
        Err(e) => detail_page(state, s, id, None, Some(Problem::new(at, fields, e.into(), form))).await,
    }
}

pub async fn edit(State(state): State<AppState>, s: Signed, Path(id): Path<String>, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let body = body_of(&form, &["title", "content", "icmp"]);
    let r = firewalls::edit_for(&state, &s.account_id, &id, &body).await.map(|_| ());
    after(&state, &s, &id, r, "edited", ("settings", &["title", "content", "icmp"]), form).await
}

pub async fn delete(State(state): State<AppState>, s: Signed, Path(id): Path<String>, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    match firewalls::delete_for(&state, &s.account_id, &id).await {
        Ok(_) => see_other("/firewalls?done=deleted"),
        Err(e) if e.code == openwinv_wire::ErrorCode::NotFound => not_found(&s, Some(e.into())),
        Err(e) => detail_page(&state, &s, &id, None, Some(Problem::new("delete", &[], e.into(), form))).await,
    }
}

pub async fn add_rule(State(state): State<AppState>, s: Signed, Path(id): Path<String>, form: Form) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let body = body_of(&form, &RULE_FIELDS);
    let r = firewalls::add_rule_for(&state, &s.account_id, &id, &body).await.map(|_| ());
    after(&state, &s, &id, r, "rule_added", ("add", &RULE_FIELDS), form).await
}

pub async fn edit_rule(
    State(state): State<AppState>,
    s: Signed,
    Path((id, rule_id)): Path<(String, String)>,
    form: Form,
) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let body = body_of(&form, &RULE_FIELDS);
    let r = firewalls::edit_rule_for(&state, &s.account_id, &id, &rule_id, &body).await.map(|_| ());
    let at = format!("rule-{rule_id}");
    after(&state, &s, &id, r, "rule_edited", (&at, &RULE_FIELDS), form).await
}

pub async fn delete_rule(
    State(state): State<AppState>,
    s: Signed,
    Path((id, rule_id)): Path<(String, String)>,
    form: Form,
) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let r = firewalls::delete_rule_for(&state, &s.account_id, &id, &rule_id).await.map(|_| ());
    after(&state, &s, &id, r, "rule_deleted", ("rules", &[]), form).await
}

pub async fn attach(State(state): State<AppState>, s: Signed, Path(id): Path<String>, form: Form) -> Response {
    attachment(state, s, id, form, true).await
}

pub async fn detach(State(state): State<AppState>, s: Signed, Path(id): Path<String>, form: Form) -> Response {
    attachment(state, s, id, form, false).await
}

async fn attachment(state: AppState, s: Signed, id: String, form: Form, attach: bool) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let body = body_of(&form, &["instance_id"]);
    let r = firewalls::attachment_for(&state, &s.account_id, &id, &body, attach).await.map(|_| ());
    let done = if attach { "attached" } else { "detached" };
    after(&state, &s, &id, r, done, ("attach", &["instance_id"]), form).await
}

// ---------------------------------------------------------------------------------------------
// The firewall section of an instance's page

/// The instance's firewalls (with their names), what they mean, and a reachability check: a GET
/// form (`reach_from`, `reach_protocol`, `reach_port`) answered by the API's reachability handler.
pub async fn instance_section(
    state: &AppState,
    s: &Signed,
    instance_id: &str,
    attached: &[String],
    q: &Query,
) -> Markup {
    let lang = s.lang;
    let names: Vec<(String, String)> = reply(firewalls::list_for(state, &s.account_id, &list_query()).await)
        .map(|r| r.rows.iter().map(|f| (text(f, "firewall_id").to_owned(), text(f, "title").to_owned())).collect())
        .unwrap_or_default();
    // Past the first 100 firewalls the id stands for the name.
    let name_of =
        |id: &str| names.iter().find(|(i, _)| i == id).map(|(_, n)| n.clone()).unwrap_or_else(|| id.to_owned());
    let from = q.str("reach_from").unwrap_or("");
    let protocol = q.str("reach_protocol").unwrap_or("TCP");
    let port = q.str("reach_port").unwrap_or("22");
    let answer = if from.is_empty() {
        None
    } else {
        let mut pairs = vec![("from".to_owned(), from.to_owned()), ("protocol".to_owned(), protocol.to_owned())];
        if protocol != "ICMP" {
            pairs.push(("port".to_owned(), port.to_owned()));
        }
        let r = reachability::reachability(
            State(state.clone()),
            Extension(caller(s)),
            Path(instance_id.to_owned()),
            Query(pairs.into_iter().collect()),
        )
        .await;
        Some(reply(r).map_err(Shown::from))
    };
    html! {
        section id="instance-firewalls" aria-labelledby="h-firewalls" {
            h2 id="h-firewalls" { (lang.t("detail.firewalls")) }
            (semantics(lang))
            @if attached.is_empty() { p class="muted" { (lang.t("detail.no_firewalls")) } } @else {
                ul { @for f in attached { li { a href={"/firewalls/" (f)} { (name_of(f)) } " " span class="muted" { (f) } } } }
            }
            form method="get" action={"/instances/" (instance_id)} class="row" id="reach-form" {
                div {
                    label for="reach-from" { (lang.t("reach.from")) }
                    input type="text" id="reach-from" name="reach_from" required value=(from) placeholder="203.0.113.7";
                }
                div {
                    label for="reach-protocol" { (lang.t("fw.protocol")) }
                    select id="reach-protocol" name="reach_protocol" {
                        @for v in ["TCP", "UDP", "ICMP"] { option value=(v) selected[protocol == v] { (v) } }
                    }
                }
                div {
                    label for="reach-port" { (lang.t("fw.port")) }
                    input type="number" id="reach-port" name="reach_port" min="1" max="65535" value=(port);
                }
                div { button type="submit" class="secondary" id="reach-check" { (lang.t("reach.check")) } }
            }
            @match &answer {
                Some(Ok(rows)) => {
                    @let r = rows.rows.first().cloned().unwrap_or(Value::Null);
                    @let ok = text(&r, "verdict") == "accept";
                    p id="reach-result" role="status" data-verdict=(text(&r, "verdict")) {
                        span class={"badge " (if ok { "badge-succeeded" } else { "badge-failed" })} {
                            (if ok { lang.t("reach.yes") } else { lang.t("reach.no") })
                        } " "
                        (text(&r, "reason"))
                    }
                }
                Some(Err(e)) => { p id="reach-result" class="error" role="alert" { strong { (e.code) } " " (e.message) } }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn shown(message: &str) -> Shown {
        Shown { status: StatusCode::BAD_REQUEST, code: "CHECK_PARAM".into(), message: message.into() }
    }

    #[test]
    fn a_refusal_goes_beside_the_field_its_message_names_if_the_form_has_it() {
        let p = Problem::new("add", &RULE_FIELDS, shown("The field `port` must be a port."), Form::default());
        assert_eq!(p.beside("add", "port"), Some("The field `port` must be a port."));
        assert_eq!(p.beside("add", "ip"), None);
        assert_eq!(p.beside("rule-1", "port"), None);
        // Inline rules' names (`rules.2.ip`) name the field too.
        let p = Problem::new("add", &RULE_FIELDS, shown("The field `rules.2.ip` is bad."), Form::default());
        assert_eq!(p.field.as_deref(), Some("ip"));
        // A message naming something else (an id) goes to the top of the page.
        let p = Problem::new(
            "add",
            &RULE_FIELDS,
            shown("The rule duplicates rule 3 of the firewall `FIREWALL-x`."),
            Form::default(),
        );
        assert_eq!(p.field, None);
    }

    #[test]
    fn content_is_unescaped_exactly_once() {
        assert_eq!(unescape(&firewalls::escape_html("<b> & \"x\" 'y'")), "<b> & \"x\" 'y'");
        // What a person typed as an entity stays that text.
        assert_eq!(unescape(&firewalls::escape_html("&lt;")), "&lt;");
    }
}
