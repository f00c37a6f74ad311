//! The API tester (the "API TEST" of the iwinv documentation): pick a `/v1` operation of the
//! server's own OpenAPI document, fill its path and query parameters and a JSON body, and send it
//! signed with one of the signed-in account's access keys.
//!
//! The request is signed **here, on the server**, with `openwinv_wire::signing::sign` (the signer
//! the SDK uses and the API verifies with); the secret is read from the store, unsealed for that
//! one signature and never put in a page. The request then goes through the whole application
//! router in process — signature check, rate limit, `Idempotency-Key`, the handler — exactly as a
//! request from the network would, with the person's address as its peer (so a key's allowlist
//! applies to them). The page shows the request, the signature's inputs (timestamp, signed path,
//! the string that was signed; not the secret), the answer, and the request as a curl command
//! with that request's headers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::header::HOST;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use openwinv_wire::signing;
use serde_json::Value;
use tower::ServiceExt;

use super::form::Form;
use super::layout::{Page, csrf_field};
use super::{Shown, Signed, csrf, session};
use crate::AppState;
use crate::error::ApiError;
use crate::input::Query;

/// Largest answer body the page shows (longer ones are cut, and say so).
const SHOWN_MAX: usize = 64 * 1024;

/// A parameter of an operation (path or query; the signature headers are the tester's job).
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub in_path: bool,
    pub required: bool,
    pub description: String,
}

/// A `/v1` operation of the OpenAPI document.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    pub path: String,
    pub summary: String,
    pub params: Vec<Param>,
    /// The JSON body's fields (name, required), when the operation takes a body.
    pub body: Option<Vec<(String, bool)>>,
}

impl Operation {
    /// How a form names the operation: `GET /v1/zones`.
    pub fn id(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The `/v1` operations of the server's OpenAPI document, by path then method.
pub static OPERATIONS: LazyLock<Vec<Operation>> = LazyLock::new(|| {
    let doc = serde_json::to_value(crate::openapi::document()).unwrap_or(Value::Null);
    operations_of(&doc)
});

fn operations_of(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    let Some(paths) = doc["paths"].as_object() else { return ops };
    let sorted: BTreeMap<&String, &Value> = paths.iter().collect();
    for (path, item) in sorted {
        if !path.starts_with("/v1/") {
            continue;
        }
        for method in ["get", "post", "put", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let params = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| matches!(p["in"].as_str(), Some("path" | "query")))
                .map(|p| Param {
                    name: p["name"].as_str().unwrap_or("").to_owned(),
                    in_path: p["in"] == "path",
                    required: p["required"].as_bool().unwrap_or(false),
                    description: p["description"].as_str().unwrap_or("").to_owned(),
                })
                .collect();
            let body = op.get("requestBody").map(|b| body_fields(doc, &b["content"]["application/json"]["schema"]));
            ops.push(Operation {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                summary: op["summary"].as_str().unwrap_or("").to_owned(),
                params,
                body,
            });
        }
    }
    ops
}

/// The properties of a body schema (following one `$ref`, and the parts of an `allOf`).
fn body_fields(doc: &Value, schema: &Value) -> Vec<(String, bool)> {
    let resolved = match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    };
    if let Some(parts) = resolved["allOf"].as_array() {
        return parts.iter().flat_map(|p| body_fields(doc, p)).collect();
    }
    let required: Vec<&str> = resolved["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    resolved["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, _)| (name.clone(), required.contains(&name.as_str())))
        .collect()
}

fn operation(id: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.id() == id)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A text in single quotes for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What was sent and what came back, for the page.
struct Exchange {
    method: String,
    url: String,
    /// The request's headers as sent (the signature's three and `Content-Type`).
    sent: Vec<(String, String)>,
    body: Option<String>,
    timestamp: String,
    signed_path: String,
    access_key: String,
    signature: String,
    status: StatusCode,
    answer_headers: Vec<(String, String)>,
    answer: String,
    curl: String,
}

/// The values a person typed, kept when the page is shown again.
struct Filled<'a> {
    form: &'a Form,
}

impl Filled<'_> {
    fn get(&self, name: &str) -> &str {
        self.form.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

async fn keys_of(state: &AppState, s: &Signed) -> Result<Vec<(String, bool)>, Shown> {
    let keys = state.store.list_keys(Some(&s.account_name)).await.map_err(|e| Shown::from(ApiError::from(e)))?;
    Ok(keys.into_iter().filter(|k| k.account_id == s.account_id).map(|k| (k.access_key, k.enabled != 0)).collect())
}

fn render(
    s: &Signed,
    op: Option<&Operation>,
    keys: &[(String, bool)],
    filled: &Filled,
    exchange: Option<&Exchange>,
    error: Option<Shown>,
) -> Response {
    let lang = s.lang;
    let chosen = op.map(Operation::id).unwrap_or_default();
    let body = html! {
        p class="muted" { (lang.t("tester.intro")) }
        form method="get" action="/api-test" class="row" id="op-form" {
            label for="op" { (lang.t("tester.operation")) }
            select id="op" name="op" {
                @for o in OPERATIONS.iter() {
                    @let id = o.id();
                    option value=(id) selected[id == chosen] { (id) " — " (o.summary) }
                }
            }
            button type="submit" id="op-choose" class="secondary" { (lang.t("tester.choose")) }
        }
        @if let Some(op) = op {
            h2 { code { (op.method) " " (op.path) } }
            p { (op.summary) }
            @if keys.is_empty() {
                p class="error" id="no-keys" { (lang.t("tester.no_keys")) }
            }
            form method="post" action="/api-test" id="tester-form" {
                (csrf_field(&s.csrf))
                input type="hidden" name="op" value=(op.id());
                label for="key" { (lang.t("tester.key")) }
                select id="key" name="key" {
                    @for (k, enabled) in keys {
                        option value=(k) selected[filled.get("key") == k] {
                            (k) @if !enabled { " " (lang.t("tester.disabled")) }
                        }
                    }
                }
                (params(lang, op, filled, true))
                (params(lang, op, filled, false))
                @if let Some(fields) = &op.body {
                    label for="body" { (lang.t("tester.body")) }
                    textarea id="body" name="body" spellcheck="false" { (filled.get("body")) }
                    @if !fields.is_empty() {
                        p class="muted" id="body-fields" {
                            (lang.t("tester.fields")) " "
                            @for (i, (name, required)) in fields.iter().enumerate() {
                                @if i > 0 { ", " }
                                code { (name) } @if *required { "*" }
                            }
                        }
                    }
                }
                p { button type="submit" id="send" disabled[keys.is_empty()] { (lang.t("tester.send")) } }
            }
        }
        @if let Some(x) = exchange {
            section id="result" aria-labelledby="result-title" {
                h2 id="result-title" { (lang.t("tester.request")) }
                pre id="request" {
                    (x.method) " " (x.url) "\n"
                    @for (k, v) in &x.sent { (k) ": " (v) "\n" }
                    @if let Some(b) = &x.body { "\n" (b) }
                }
                h2 { (lang.t("tester.signature")) }
                dl id="signature-inputs" {
                    dt { "X-iwinv-Timestamp" } dd { code { (x.timestamp) } }
                    dt { (lang.t("tester.signed_path")) } dd { code { (x.signed_path) } }
                    dt { (lang.t("tester.string_to_sign")) } dd { code id="string-to-sign" { (x.timestamp) (x.signed_path) } }
                    dt { (lang.t("tester.key_used")) } dd { code { (x.access_key) } " " span class="muted" { (lang.t("tester.secret_kept")) } }
                    dt { "X-iwinv-Signature" } dd { code id="signature" { (x.signature) } }
                }
                h2 { (lang.t("tester.response")) }
                p id="response-status" {
                    strong { (x.status.as_u16()) } " " (x.status.canonical_reason().unwrap_or(""))
                }
                @if !x.answer_headers.is_empty() {
                    pre id="response-headers" { @for (k, v) in &x.answer_headers { (k) ": " (v) "\n" } }
                }
                pre id="response-body" { (x.answer) }
                h2 { label for="curl" { (lang.t("tester.curl")) } }
                p class="muted" { (lang.t("tester.curl_note")) }
                textarea id="curl" readonly rows="8" spellcheck="false" { (x.curl) }
            }
        }
    };
    Page::new(s, "api-test", lang.t("tester.title")).error(error).body(body).render()
}

fn params(lang: super::i18n::Lang, op: &Operation, filled: &Filled, in_path: bool) -> Markup {
    let list: Vec<&Param> = op.params.iter().filter(|p| p.in_path == in_path).collect();
    let (legend, prefix) = if in_path { ("tester.path_params", "path.") } else { ("tester.query_params", "query.") };
    html! {
        @if !list.is_empty() {
            fieldset {
                legend { (lang.t(legend)) }
                @for p in list {
                    @let id = format!("{}{}", if in_path { "p-" } else { "q-" }, p.name);
                    @let name = format!("{prefix}{}", p.name);
                    label for=(id) { code { (p.name) } @if p.required { "*" } @if !p.description.is_empty() { " " span class="muted" { (p.description) } } }
                    input type="text" id=(id) name=(name) value=(filled.get(&name)) required[p.required && in_path];
                }
            }
        }
    }
}

/// `GET /api-test[?op=GET /v1/zones]`: the form (reading only).
pub async fn page(State(state): State<AppState>, s: Signed, q: Query) -> Response {
    let op = q.str("op").and_then(operation);
    let (keys, error) = match keys_of(&state, &s).await {
        Ok(k) => (k, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let form = Form::default();
    let error = error.or_else(|| {
        q.str("op")
            .filter(|_| op.is_none())
            .map(|id| ApiError::param(format!("The operation `{id}` is not a /v1 operation of /openapi.json.")).into())
    });
    render(&s, op, &keys, &Filled { form: &form }, None, error)
}

/// `POST /api-test`: signs the request on the server and sends it through the router.
pub async fn send(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    s: Signed,
    form: Form,
) -> Response {
    if let Some(r) = csrf::check(&s, form.get(csrf::FIELD)) {
        return r;
    }
    let keys = match keys_of(&state, &s).await {
        Ok(k) => k,
        Err(e) => return render(&s, None, &[], &Filled { form: &form }, None, Some(e)),
    };
    let filled = Filled { form: &form };
    let Some(op) = form.get("op").and_then(operation) else {
        let e = ApiError::param("The field `op` must name a /v1 operation of /openapi.json.");
        return render(&s, None, &keys, &filled, None, Some(e.into()));
    };
    let refuse = |e: ApiError| render(&s, Some(op), &keys, &filled, None, Some(e.into()));
    let access_key = form.get("key").unwrap_or("").to_owned();
    if !keys.iter().any(|(k, _)| *k == access_key) {
        return refuse(ApiError::not_found(format!("The access key `{access_key}` of this account")));
    }
    // The secret, unsealed for this one signature; it goes nowhere else.
    let secret = match state.store.key(&access_key).await {
        Ok(Some(k)) if k.account_id == s.account_id => match state.sealer.open(&k.secret_sealed) {
            Ok(secret) => secret,
            Err(e) => return refuse(ApiError::internal(e)),
        },
        Ok(_) => return refuse(ApiError::not_found(format!("The access key `{access_key}` of this account"))),
        Err(e) => return refuse(e.into()),
    };

    let mut path = op.path.clone();
    let mut query = Vec::new();
    for p in &op.params {
        let value = filled.get(&format!("{}{}", if p.in_path { "path." } else { "query." }, p.name));
        if p.in_path {
            if value.is_empty() {
                return refuse(ApiError::param(format!("The path parameter `{}` is required.", p.name)));
            }
            path = path.replace(&format!("{{{}}}", p.name), &encode(value));
        } else if !value.is_empty() {
            query.push(format!("{}={}", encode(&p.name), encode(value)));
        }
    }
    let target = if query.is_empty() { path.clone() } else { format!("{path}?{}", query.join("&")) };
    let body = form.get("body").filter(|_| op.body.is_some()).map(str::to_owned);

    let timestamp = state.clock.unix().to_string();
    let signature = signing::sign(&secret, &timestamp, signing::signed_path(&target));
    drop(secret);
    let mut sent = vec![
        ("X-iwinv-Timestamp".to_owned(), timestamp.clone()),
        ("X-iwinv-Credential".to_owned(), access_key.clone()),
        ("X-iwinv-Signature".to_owned(), signature.clone()),
    ];
    if body.is_some() {
        sent.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)))
        .unwrap_or("127.0.0.1:8080")
        .to_owned();
    let scheme = if session::secure(&state) { "https" } else { "http" };
    let url = format!("{scheme}://{host}{target}");

    let method = Method::from_bytes(op.method.as_bytes()).unwrap_or(Method::GET);
    let mut req = Request::builder().method(method.clone()).uri(&target).header(HOST, &host);
    for (k, v) in &sent {
        req = req.header(k.as_str(), v.as_str());
    }
    let mut req = match req.body(axum::body::Body::from(body.clone().unwrap_or_default())) {
        Ok(r) => r,
        Err(e) => return refuse(ApiError::param(format!("The request cannot be built: {e}."))),
    };
    let address = session::client_address(&state, peer.as_ref().map(|Extension(c)| c), &headers);
    req.extensions_mut().insert(ConnectInfo(SocketAddr::new(address, 0)));
    let answer = match crate::router(state.clone()).oneshot(req).await {
        Ok(a) => a,
        Err(never) => match never {},
    };
    let status = answer.status();
    let answer_headers: Vec<(String, String)> = answer
        .headers()
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k == "content-type" || k == "x-operation-id" || k.starts_with("ratelimit") || k == "retry-after"
        })
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let bytes = axum::body::to_bytes(answer.into_body(), 16 * 1024 * 1024).await.unwrap_or_default();
    let mut shown = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    if shown.len() > SHOWN_MAX {
        let mut cut = SHOWN_MAX;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push_str(&format!("\n… ({} bytes in all)", bytes.len()));
    }

    let mut curl = String::from("curl -sS");
    if method != Method::GET {
        curl.push_str(&format!(" -X {method}"));
    }
    curl.push_str(&format!(" {}", shell_quote(&url)));
    for (k, v) in &sent {
        curl.push_str(&format!(" \\\n  -H {}", shell_quote(&format!("{k}: {v}"))));
    }
    if let Some(b) = &body {
        curl.push_str(&format!(" \\\n  --data-raw {}", shell_quote(b)));
    }
    let exchange = Exchange {
        method: method.to_string(),
        url,
        sent,
        body,
        signed_path: signing::signed_path(&target).to_owned(),
        timestamp,
        access_key,
        signature,
        status,
        answer_headers,
        answer: shown,
        curl,
    };
    render(&s, Some(op), &keys, &filled, Some(&exchange), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_v1_operations_with_their_parameters() {
        assert!(OPERATIONS.iter().all(|o| o.path.starts_with("/v1/")));
        let zones = operation("GET /v1/zones").expect("GET /v1/zones");
        assert!(zones.body.is_none());
        let flavors = operation("GET /v1/flavors").expect("GET /v1/flavors");
        assert!(flavors.params.iter().any(|p| p.name == "zone_id" && !p.in_path));
        assert!(flavors.params.iter().all(|p| !p.name.starts_with("X-iwinv")), "signature headers are not asked for");
        let start = operation("POST /v1/instances/{instance_id}/start").expect("start");
        assert!(start.params.iter().any(|p| p.name == "instance_id" && p.in_path && p.required));
        let key = operation("POST /v1/auth/ssh_key").expect("POST /v1/auth/ssh_key");
        let fields = key.body.as_ref().expect("a body");
        assert!(fields.iter().any(|(n, req)| n == "public_key" && *req), "{fields:?}");
        assert!(operation("GET /admin/v1/accounts").is_none());
    }

    #[test]
    fn encoding_and_quoting() {
        assert_eq!(encode("a b/ç"), "a%20b%2F%C3%A7");
        assert_eq!(encode("IMG-ubuntu_24.04~x"), "IMG-ubuntu_24.04~x");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
