//! `PUT` and `GET /internal/v1/disks/{sha256}` [ext]: a machine's disk in transit between hosts
//! (`instance.evacuate`, docs/hosts.md). The source host's agent streams the stopped machine's
//! disk here under its SHA-256; the control plane hashes the body as it writes it and keeps it
//! (`<data>/disks/<sha256>`) only when the digest matches; the target's agent fetches it by that
//! digest, verifying it again on its side, as it fetches image files. The evacuation removes the
//! file once the move has switched (or failed).

use axum::Extension;
use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use openwinv_store::hosts::HostIdentity;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::api::Reply;
use crate::error::{ApiError, ApiResult};
use crate::images::is_sha256;
use crate::input::Path as UrlPath;

/// A disk the control plane holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoredDisk {
    pub sha256: String,
    pub size: u64,
}

fn check(sha256: &str) -> ApiResult<()> {
    if !is_sha256(sha256) {
        return Err(ApiError::param("The path parameter `sha256` must be 64 lowercase hexadecimal digits."));
    }
    Ok(())
}

/// Stores the body as the disk with SHA-256 `sha256`; 400 when the body has another digest.
#[utoipa::path(put, path = "/internal/v1/disks/{sha256}", tag = "agent", security(("host_token" = [])),
    params(("sha256" = String, Path, description = "64 lowercase hex digits: the body's SHA-256")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = openwinv_wire::Envelope<Vec<StoredDisk>>),
        (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope)))]
pub async fn put_disk(
    State(state): State<AppState>,
    Extension(host): Extension<HostIdentity>,
    UrlPath(sha256): UrlPath<String>,
    body: HttpBody,
) -> Reply<StoredDisk> {
    check(&sha256)?;
    let dir = state.images.disks_dir();
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let tmp = dir.join(format!(".upload-{sha256}-{}", rand::random::<u64>()));
    let written = receive(body, &tmp).await;
    let (sum, size) = match written {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if sum != sha256 {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ApiError::param(format!(
            "The body's SHA-256 is {sum} ({size} bytes), not the path parameter `sha256` {sha256}."
        )));
    }
    let path = dir.join(&sha256);
    tokio::fs::rename(&tmp, &path).await.map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    tracing::info!(host = %host.name, %sha256, size, "a machine disk received");
    Ok(axum::Json(openwinv_wire::Envelope::rows(vec![StoredDisk { sha256, size }])))
}

/// Writes the body to `tmp` (synced); its SHA-256 and size.
async fn receive(body: HttpBody, tmp: &std::path::Path) -> ApiResult<(String, u64)> {
    let io = |e: std::io::Error| ApiError::internal(format!("{}: {e}", tmp.display()));
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(tmp).await.map_err(io)?);
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::param(format!("The body broke off after {size} bytes: {e}")))?;
        hash.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    out.into_inner().sync_all().await.map_err(io)?;
    Ok((hex::encode(hash.finalize()), size))
}

/// Streams the disk with SHA-256 `sha256`; 404 `NOT_FOUND` when the control plane holds none.
#[utoipa::path(get, path = "/internal/v1/disks/{sha256}", tag = "agent", security(("host_token" = [])),
    params(("sha256" = String, Path, description = "64 lowercase hex digits")),
    responses((status = 200, description = "the disk's bytes", content_type = "application/octet-stream"),
        (status = 206, description = "the range asked for"),
        (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope),
        (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 416, body = openwinv_wire::ErrorEnvelope)))]
pub async fn get_disk(
    State(state): State<AppState>,
    Extension(host): Extension<HostIdentity>,
    UrlPath(sha256): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check(&sha256)?;
    let path = state.images.disks_dir().join(&sha256);
    tracing::info!(host = %host.name, %sha256, "a machine disk served");
    super::images::stream_file(&path, &headers, || {
        ApiError::not_found(format!("A machine disk with SHA-256 `{sha256}`"))
    })
    .await
}

/// Removes the disks an evacuation's export names (`files[].sha256`), once the move is over.
pub fn remove_exported(disks_dir: &std::path::Path, export: &serde_json::Value) {
    for f in export["files"].as_array().into_iter().flatten() {
        let Some(sha) = f["sha256"].as_str().filter(|s| is_sha256(s)) else { continue };
        match std::fs::remove_file(disks_dir.join(sha)) {
            Ok(()) => tracing::info!(sha256 = %sha, "a transferred machine disk removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(sha256 = %sha, error = %e, "cannot remove a transferred machine disk"),
        }
    }
}
