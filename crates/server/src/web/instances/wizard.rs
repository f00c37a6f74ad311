//! The create wizard: zone → image → flavor and the rest.

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::super::form::Form;
use super::super::i18n::Lang;
use super::super::layout::{Page, csrf_field};
use super::super::{Shown, Signed, caller, csrf, reply, see_other, text};
use super::enc;
use crate::AppState;
use crate::api::{firewalls, scripts, ssh_keys};
use crate::error::ApiResult;
use crate::input::{Body, Encoding, Query};
use crate::service::FromBody;
use crate::service::instances::{self as svc, CreateInstance};

fn price_cell(lang: Lang, month: i64, hour: i64) -> Markup {
    let vat_m = openwinv_billing::vat(month);
    html! {
        span class="price" {
            (super::super::dashboard::won(month)) (lang.t("price.per_month")) " · " (super::super::dashboard::won(hour)) (lang.t("price.per_hour"))
            br;
            span class="muted" { (lang.t("price.vat")) " " (super::super::dashboard::won(vat_m)) " → " (super::super::dashboard::won(month + vat_m)) (lang.t("price.per_month")) }
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
                                            (t.kind) " (" (t.min) "–" (t.max) " GB, " (super::super::dashboard::won(t.price_gb_month)) "/GB" (lang.t("price.per_month")) ")"
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
