//! `GET /internal/v1/images/{sha256}` [ext]: an agent fetches a boot file by its content. The
//! file is streamed from disk (never read whole into memory); one `Range: bytes=a-b` (or `a-`)
//! is honoured, so an agent could resume a transfer. The digest is the file's SHA-256 as the
//! control plane's checksum cache has it; the agent checks it again on its side.

use std::io::SeekFrom;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Extension;
use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openwinv_store::hosts::HostIdentity;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::images::is_sha256;
use crate::input::Path as UrlPath;

/// Bytes read from disk per chunk of the answer.
const CHUNK: usize = 256 * 1024;

/// Image files this process has served (whole or in part), for the log.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// Streams the image file whose SHA-256 is `sha256`; 404 `NOT_FOUND` when no image has it.
#[utoipa::path(get, path = "/internal/v1/images/{sha256}", tag = "agent", security(("host_token" = [])),
    params(("sha256" = String, Path, description = "64 lowercase hex digits")),
    responses((status = 200, description = "the file's bytes", content_type = "application/octet-stream"),
        (status = 206, description = "the range asked for"),
        (status = 400, body = openwinv_wire::ErrorEnvelope), (status = 401, body = openwinv_wire::ErrorEnvelope),
        (status = 404, body = openwinv_wire::ErrorEnvelope), (status = 416, body = openwinv_wire::ErrorEnvelope)))]
pub async fn image_file(
    State(state): State<AppState>,
    Extension(host): Extension<HostIdentity>,
    UrlPath(sha256): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if !is_sha256(&sha256) {
        return Err(ApiError::param("The path parameter `sha256` must be 64 lowercase hexadecimal digits."));
    }
    let not_found = || ApiError::not_found(format!("An image file with SHA-256 `{sha256}`"));
    let (path, _) = state.images.find_by_digest(&sha256).await.map_err(ApiError::internal)?.ok_or_else(not_found)?;
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::info!(host = %host.name, %sha256, file = %path.display(), served, "image file served");
    stream_file(&path, &headers, not_found).await
}

/// Streams the file at `path` (one `Range` honoured), for image files and evacuated disks.
pub(crate) async fn stream_file(
    path: &std::path::Path,
    headers: &HeaderMap,
    not_found: impl Fn() -> ApiError,
) -> ApiResult<Response> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(ApiError::internal(format!("{}: {e}", path.display()))),
    };
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(r) => Some(parse_range(r, len).ok_or_else(|| {
            ApiError::param(format!("The header `Range` must be one range `bytes=a-b` within the file's {len} bytes."))
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        })?),
    };
    let (start, end) = range.unwrap_or((0, len));
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await.map_err(ApiError::internal)?;
    }
    let stream = futures_util::stream::unfold((file.take(end - start), vec![0u8; CHUNK]), |(mut f, mut buf)| async {
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => Some((Ok::<_, std::io::Error>(axum::body::Bytes::copy_from_slice(&buf[..n])), (f, buf))),
            Err(e) => Some((Err(e), (f, buf))),
        }
    });
    let mut resp = HttpBody::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        let v = format!("bytes {start}-{}/{len}", end - 1);
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&v).map_err(ApiError::internal)?);
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(resp)
}

/// `bytes=a-b` or `bytes=a-` as [start, end) within `len`; `None` for anything else.
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => len,
        b => b.parse::<u64>().ok()?.checked_add(1)?.min(len),
    };
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=90-1000", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-4", 100), None);
        assert_eq!(parse_range("bytes=-5", 100), None);
        assert_eq!(parse_range("bytes=0-1,4-5", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
