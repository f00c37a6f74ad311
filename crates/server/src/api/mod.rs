//! The iwinv API v1 under `/v1`: one module per resource.

pub mod catalog;
pub mod firewalls;
pub mod instances;
pub mod named_text;
pub mod operations;
pub mod reachability;
pub mod scripts;
pub mod ssh_keys;
pub mod volumes;

use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use openwinv_wire::Envelope;

use crate::AppState;
use crate::error::ApiResult;

/// A successful answer with rows.
pub type Reply<T> = ApiResult<Json<Envelope<Vec<T>>>>;

/// A 202 answer: the receipts as rows, the operations in `X-Operation-Id`.
pub type Accepted<T> = ApiResult<(StatusCode, HeaderMap, Json<Envelope<Vec<T>>>)>;

/// Renders what the service accepted as the 202 answer.
pub fn accepted<T>(a: crate::service::Accepted<T>) -> (StatusCode, HeaderMap, Json<Envelope<Vec<T>>>) {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&a.operation_ids.iter().map(|id| id.as_str()).collect::<Vec<_>>().join(",")) {
        h.insert(openwinv_wire::headers::OPERATION_ID, v);
    }
    (StatusCode::ACCEPTED, h, Json(Envelope::rows(a.rows)))
}

pub fn routes(state: AppState) -> Router<AppState> {
    let catalog = Router::new()
        .route("/v1/zones", get(catalog::zones))
        .route("/v1/flavors", get(catalog::flavors))
        .route("/v1/flavors/{flavor_id}", get(catalog::flavor))
        .route("/v1/images", get(catalog::images))
        .route("/v1/images/{image_id}", get(catalog::image))
        .route("/v1/block-storages/types", get(catalog::block_storage_types))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), catalog::cached));
    // Instance lists and details are answered from serialized answers while the account's view
    // version holds (`instances::cached`).
    let kept = |state: &AppState| axum::middleware::from_fn_with_state(state.clone(), instances::cached);
    Router::new()
        .merge(catalog)
        .route("/v1/block-storages", get(volumes::list).post(volumes::create))
        .route("/v1/block-storages/{block_storage_id}", get(volumes::detail).delete(volumes::delete))
        .route("/v1/block-storages/{block_storage_id}/attach/{instance_id}", post(volumes::attach))
        .route("/v1/block-storages/{block_storage_id}/detach", post(volumes::detach))
        .route("/v1/auth/ssh_key", get(ssh_keys::list).post(ssh_keys::create))
        .route("/v1/auth/ssh_key/{ssh_key_id}", delete(ssh_keys::delete))
        .route("/v1/instance/script", get(scripts::list).post(scripts::create))
        .route("/v1/instance/script/{user_script_id}", delete(scripts::delete))
        .route("/v1/instances", get(instances::list.layer(kept(&state))).post(instances::create))
        .route(
            "/v1/instances/{instance_id}",
            get(instances::detail.layer(kept(&state))).put(instances::edit).delete(instances::delete),
        )
        .route("/v1/instances/{instance_id}/start", post(instances::start))
        .route("/v1/instances/{instance_id}/shutdown", post(instances::shutdown))
        .route("/v1/instances/{instance_id}/reboot", post(instances::reboot))
        .route("/v1/instances/{instance_id}/rebuild", post(instances::rebuild))
        .route("/v1/instances/{instance_id}/resize", post(instances::resize))
        .route("/v1/instances/{instance_id}/remote-console", get(instances::remote_console))
        .route("/v1/instances/{instance_id}/reachability", get(reachability::reachability))
        .merge(firewalls::routes())
}

/// A JSON answer kept by one of the answer caches (the catalog's, the instance pages').
pub(crate) fn kept_answer(body: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    let json = [(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"))];
    (json, body).into_response()
}

/// Runs the handler and hands the body of a 200 answer to `keep` before answering it.
pub(crate) async fn run_and_keep(
    req: axum::extract::Request,
    next: axum::middleware::Next,
    keep: impl FnOnce(axum::body::Bytes),
) -> axum::response::Response {
    use axum::response::{IntoResponse, Response};
    let resp = next.run(req).await;
    if resp.status() != axum::http::StatusCode::OK {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => {
            keep(bytes.clone());
            Response::from_parts(parts, axum::body::Body::from(bytes))
        }
        Err(e) => crate::error::ApiError::internal(e).into_response(),
    }
}
