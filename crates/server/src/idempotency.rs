//! `Idempotency-Key` (spec §12) [ext]: the first answer to a POST, PUT or DELETE under `/v1` that
//! carries the header is stored for 24 hours per account and key, and replayed, with
//! `Idempotent-Replayed: true`, for the same key and the same request. The same key with a
//! different request is refused with 409 `CHECK_PARAM`.
//!
//! The middleware runs after signature authentication (it needs the caller's account) and
//! before the handler. It claims the key with a placeholder row before the handler runs, so that
//! two concurrent requests with one key cannot both run it; the second is answered 409 while the
//! first is in progress. Answers with a status of 500 or more are not kept: the placeholder is
//! removed and the request may be retried with the same key.

use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openwinv_store::{Claim, IdempotencyRecord};
use openwinv_wire::headers;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::input::{BODY_LIMIT, too_large};

/// How long an answer is kept and replayed (server clock).
pub const TTL_SECS: i64 = 24 * 60 * 60;
/// A placeholder older than this belongs to a request whose process died; a new request with the
/// same key replaces it. No handler takes anywhere near this long.
pub const ABANDONED_SECS: i64 = 5 * 60;
/// Longest accepted key.
pub const KEY_MAX: usize = 255;
/// Expired entries of every account are purged at most this often per process.
const PURGE_EVERY_SECS: i64 = 60 * 60;

/// Headers of the first answer that a replay repeats.
const KEPT_HEADERS: [&str; 3] = ["content-type", headers::OPERATION_ID, "location"];

fn bad_key() -> ApiError {
    ApiError::param(format!("The Idempotency-Key header must be 1 to {KEY_MAX} visible ASCII characters (no spaces)."))
}

fn conflict(message: &str) -> ApiError {
    ApiError::param(message).with_status(StatusCode::CONFLICT)
}

/// The key, when the request carries one and is a write.
fn key_of(req: &Request) -> Result<Option<String>, ApiError> {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::DELETE) {
        return Ok(None);
    }
    let mut values = req.headers().get_all(headers::IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::param("The Idempotency-Key header must be sent once."));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > KEY_MAX || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(bad_key());
    }
    Ok(Some(String::from_utf8(bytes.to_vec()).map_err(|_| bad_key())?))
}

/// Hex SHA-256 of what makes two requests the same: method, path, query and body bytes.
pub fn request_hash(method: &Method, path: &str, query: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [method.as_str().as_bytes(), path.as_bytes(), query.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(body);
    hex::encode(h.finalize())
}

/// The middleware, layered inside the signature check on the `/v1` router.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match handle(state, req, next).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: AppState, req: Request, next: Next) -> Result<Response, ApiError> {
    let Some(key) = key_of(&req)? else {
        return Ok(next.run(req).await);
    };
    let account_id = req
        .extensions()
        .get::<Caller>()
        .map(|c| c.account_id.clone())
        .ok_or_else(|| ApiError::internal("Idempotency-Key middleware runs without an authenticated caller"))?;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| too_large())?;
    let hash = request_hash(&parts.method, parts.uri.path(), parts.uri.query().unwrap_or(""), &bytes);
    let now = state.clock.unix();
    purge_now_and_then(&state, now);
    let claim =
        state.store.claim_idempotency_key(&account_id, &key, &hash, now, now - TTL_SECS, now - ABANDONED_SECS).await?;
    if let Claim::Existing(rec) = claim {
        return if rec.request_hash != hash {
            Err(conflict(
                "This Idempotency-Key was used in the last 24 hours with a different request (method, path, \
                 query or body); use a new key for a new request.",
            ))
        } else if rec.in_progress() {
            Err(conflict("A request with this Idempotency-Key is still being processed; retry once it has finished."))
        } else {
            replay(&state, &rec)
        };
    }

    // The handler runs in its own task so that a client that hangs up cannot cancel it between
    // its change and the storing of its answer; a retry then finds the answer.
    let req = Request::from_parts(parts, Body::from(bytes));
    let task = {
        let state = state.clone();
        let (account_id, key) = (account_id.clone(), key.clone());
        async move {
            let resp = next.run(req).await;
            finish(&state, &account_id, &key, now, resp).await
        }
    };
    match tokio::spawn(task.in_current_span()).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            // The handler panicked: nothing worth replaying.
            release(&state, &account_id, &key, now).await;
            Err(ApiError::internal(format!("handler task failed: {e}")))
        }
    }
}

/// Stores the answer (status < 500) or frees the key (anything else), and returns the answer.
async fn finish(state: &AppState, account_id: &str, key: &str, claimed_at: i64, resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            release(state, account_id, key, claimed_at).await;
            return ApiError::internal(format!("could not read an answer: {e}")).into_response();
        }
    };
    let text = std::str::from_utf8(&bytes).ok();
    match text {
        Some(text) if parts.status.as_u16() < 500 => {
            let kept: serde_json::Map<String, serde_json::Value> = KEPT_HEADERS
                .iter()
                .filter_map(|name| {
                    let v = parts.headers.get(*name)?.to_str().ok()?;
                    Some((name.to_string(), serde_json::Value::String(v.to_owned())))
                })
                .collect();
            let kept = serde_json::Value::Object(kept).to_string();
            let status = i64::from(parts.status.as_u16());
            // Answers may carry secrets (a new instance's password): kept sealed, like them.
            let sealed = state.sealer.seal(text);
            match state.store.complete_idempotency_key(account_id, key, claimed_at, status, &kept, &sealed).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!("an Idempotency-Key placeholder vanished before its answer was stored"),
                Err(e) => tracing::warn!(error = %e, "could not store an Idempotency-Key answer"),
            }
        }
        _ => release(state, account_id, key, claimed_at).await,
    }
    Response::from_parts(parts, Body::from(bytes))
}

async fn release(state: &AppState, account_id: &str, key: &str, claimed_at: i64) {
    if let Err(e) = state.store.release_idempotency_key(account_id, key, claimed_at).await {
        tracing::warn!(error = %e, "could not release an Idempotency-Key");
    }
}

/// The stored answer again, marked `Idempotent-Replayed: true`.
fn replay(state: &AppState, rec: &IdempotencyRecord) -> Result<Response, ApiError> {
    let body =
        state.sealer.open(&rec.body).map_err(|e| ApiError::internal(format!("stored idempotent answer: {e}")))?;
    let status = u16::try_from(rec.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| ApiError::internal(format!("stored idempotent answer has status {}", rec.status)))?;
    let stored: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&rec.headers)
        .map_err(|e| ApiError::internal(format!("stored idempotent headers: {e}")))?;
    let mut headers = HeaderMap::new();
    for (name, value) in stored {
        if let (Ok(name), Some(Ok(value))) =
            (HeaderName::try_from(name.as_str()), value.as_str().map(HeaderValue::from_str))
        {
            headers.insert(name, value);
        }
    }
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    headers.insert(headers::IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// Deletes expired entries of every account, in the background, at most once an hour.
fn purge_now_and_then(state: &AppState, now: i64) {
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);
    let last = LAST.load(Ordering::Relaxed);
    if last != i64::MIN && (now - last).abs() < PURGE_EVERY_SECS {
        return;
    }
    if LAST.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
        return;
    }
    let store = state.store.clone();
    tokio::spawn(async move {
        match store.purge_idempotency_keys(now - TTL_SECS).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "expired Idempotency-Key entries deleted"),
            Err(e) => tracing::warn!(error = %e, "could not purge expired Idempotency-Key entries"),
        }
    });
}

/// Documents the header on every write under `/v1` in the OpenAPI document.
pub struct OpenApiDoc;

impl utoipa::Modify for OpenApiDoc {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, Type};

        use crate::openapi::add_error;
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for op in [&mut item.post, &mut item.put, &mut item.delete].into_iter().flatten() {
                let key = ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Any 1-255 visible ASCII characters. The first answer is kept for 24 hours and \
                         replayed, with `Idempotent-Replayed: true`, for the same key and the same request \
                         (method, path, query and body); the same key with another request gets 409 \
                         CHECK_PARAM. [ext]",
                    ))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(KEY_MAX))
                            .pattern(Some("^[!-~]+$")),
                    ))
                    .build();
                op.parameters.get_or_insert_with(Vec::new).push(key);
                add_error(op, "400", "The Idempotency-Key header is malformed or sent twice (CHECK_PARAM).");
                add_error(
                    op,
                    "409",
                    "The Idempotency-Key was used with another request, or its first request is still running (CHECK_PARAM).",
                );
                add_error(op, "413", "The body is larger than 1 MiB (CHECK_PARAM).");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_separates_its_parts() {
        let a = request_hash(&Method::POST, "/v1/a", "b", b"");
        let b = request_hash(&Method::POST, "/v1/ab", "", b"");
        assert_ne!(a, b);
        assert_eq!(a, request_hash(&Method::POST, "/v1/a", "b", b""));
        assert_ne!(a, request_hash(&Method::PUT, "/v1/a", "b", b""));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn key_syntax() {
        let req = |v: &[u8]| {
            Request::builder()
                .method(Method::POST)
                .header(headers::IDEMPOTENCY_KEY, HeaderValue::from_bytes(v).unwrap())
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(key_of(&req(b"abc-123_~!")).unwrap().as_deref(), Some("abc-123_~!"));
        assert!(key_of(&req(&[b'k'; 255])).unwrap().is_some());
        assert!(key_of(&req(&[b'k'; 256])).is_err());
        assert!(key_of(&req(b"")).is_err());
        assert!(key_of(&req(b"a b")).is_err());
        assert!(key_of(&req(b"a\tb")).is_err());
        assert!(key_of(&req("caf\u{e9}".as_bytes())).is_err());
        let get = Request::builder().header(headers::IDEMPOTENCY_KEY, "k").body(Body::empty()).unwrap();
        assert_eq!(key_of(&get).unwrap(), None, "reads ignore the key");
    }
}
