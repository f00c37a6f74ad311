//! Unauthenticated pages: health, metrics, and the reference pages iwinv
//! links from its documentation (`/error`, `/fields/v1/instances`, `/fields/v1/flavors`), as HTML
//! or, with `Accept: application/json`, as JSON.

use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use openwinv_wire::catalog::{flavor_fields, instance_fields};
use openwinv_wire::{Envelope, ErrorCode};
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/error", get(error_page))
        .route("/fields/v1/instances", get(instance_fields_page))
        .route("/fields/v1/flavors", get(flavor_fields_page))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is up")))]
pub async fn healthz() -> Json<Envelope<Vec<serde_json::Value>>> {
    Json(Envelope::rows(vec![json!({"status": "ok"})]))
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "The store answers"), (status = 500, body = openwinv_wire::ErrorEnvelope)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Envelope<Vec<serde_json::Value>>>, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "store not ready");
        ApiError::new(ErrorCode::DevCheckReturn, "The store is not reachable.")
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
    })?;
    Ok(Json(Envelope::rows(vec![json!({"status": "ready"})])))
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers.get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"))
}

fn escape(s: &str) -> String {
    html_escape::encode_text(s).into_owned()
}

fn page(title: &str, head: &[&str], rows: Vec<Vec<String>>) -> Html<String> {
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head><body><h1>{t}</h1><table><tr>",
        t = escape(title)
    );
    for h in head {
        html.push_str(&format!("<th>{}</th>", escape(h)));
    }
    html.push_str("</tr>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            html.push_str(&format!("<td>{}</td>", escape(&cell)));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table></body></html>");
    Html(html)
}

/// The error catalog.
#[utoipa::path(get, path = "/error", tag = "reference", responses((status = 200, description = "HTML, or JSON with Accept: application/json")))]
pub async fn error_page(headers: HeaderMap) -> Response {
    let rows: Vec<_> =
        ErrorCode::ALL.iter().map(|c| (c.code(), c.as_str(), c.http_status(), c.description())).collect();
    if wants_json(&headers) {
        let rows: Vec<_> = rows
            .iter()
            .map(|(code, name, status, doc)| json!({"code": code, "error_code": name, "http_status": status, "description": doc}))
            .collect();
        return Json(Envelope::rows(rows)).into_response();
    }
    page(
        "iwinv API v1 error codes",
        &["code", "error_code", "HTTP", "used for"],
        rows.iter().map(|(c, n, s, d)| vec![c.to_string(), n.to_string(), s.to_string(), d.to_string()]).collect(),
    )
    .into_response()
}

fn fields_page(headers: &HeaderMap, title: &str, table: &[(u64, &str, &str)]) -> Response {
    if wants_json(headers) {
        let rows: Vec<_> =
            table.iter().map(|(bit, f, shape)| json!({"bit": bit, "field": f, "shape": shape})).collect();
        return Json(Envelope::rows(rows)).into_response();
    }
    page(
        title,
        &["bit", "field", "shape"],
        table.iter().map(|(b, f, s)| vec![b.to_string(), f.to_string(), s.to_string()]).collect(),
    )
    .into_response()
}

/// The instance `fields` bits.
#[utoipa::path(get, path = "/fields/v1/instances", tag = "reference", responses((status = 200, description = "HTML, or JSON with Accept: application/json")))]
pub async fn instance_fields_page(headers: HeaderMap) -> Response {
    fields_page(&headers, "fields bits of /v1/instances", instance_fields::TABLE)
}

/// The flavor `fields` bits.
#[utoipa::path(get, path = "/fields/v1/flavors", tag = "reference", responses((status = 200, description = "HTML, or JSON with Accept: application/json")))]
pub async fn flavor_fields_page(headers: HeaderMap) -> Response {
    fields_page(&headers, "fields bits of /v1/flavors", flavor_fields::TABLE)
}
