//! Signed requests (spec §2): key lookup, timestamp window, HMAC check, IP allowlist, rate limit.
//!
//! Checks run in an order that tells an unauthenticated caller nothing about a key: the
//! credential, then the timestamp and the signature, then the allowlist, then the rate limit
//! (so that bad signatures cannot drain someone's bucket).
//!
//! Looked-up keys are cached (a key is read on most requests), and so are unknown ones, so that a
//! flood of made-up credentials does not become a flood of queries; the cache has a fixed capacity
//! so that such a flood cannot grow the server's memory either. The rate-limit bucket is in the
//! store, one row per key, because the limit is per key across every server process (spec §2).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use openwinv_wire::{ErrorCode, headers, signing};

use crate::AppState;
use crate::clock::Clock;
use crate::config::parse_cidr;
use crate::error::ApiError;

/// Largest accepted distance between the request's timestamp and the server clock.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;
/// How long a looked-up key is trusted before it is read again (so that a key disabled by another
/// server process stops working within this time; this process forgets at once).
const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// How many looked-up keys (known or unknown) this process remembers; past it the least useful
/// entries go. Far more than the keys in active use, and a few MB at most.
const KEY_CACHE_CAPACITY: usize = 10_000;
/// `last_used_at` is written at most this often per key.
const TOUCH_INTERVAL_SECS: i64 = 60;
/// The rate limit's window: a key's limit is a number of requests per minute.
const RATE_WINDOW_MICROS: u64 = 60_000_000;

/// The authenticated caller, put in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: openwinv_store::ids::AccountId,
    pub account_name: String,
    pub access_key: String,
}

#[derive(Debug, Clone)]
struct ResolvedKey {
    account_id: openwinv_store::ids::AccountId,
    account_name: String,
    secret: String,
    usable: bool,
    rate_limit: u32,
    allow: Vec<IpNet>,
}

/// A looked-up key (or the knowledge that there is none) and when it was looked up.
type CachedKey = (Instant, Option<Arc<ResolvedKey>>);

pub struct Authenticator {
    keys: quick_cache::sync::Cache<String, CachedKey>,
    /// Only keys that passed the signature check get here, so it is as large as the store's keys.
    touched: Mutex<HashMap<String, i64>>,
    clock: Arc<Clock>,
}

impl Authenticator {
    pub fn new(clock: Arc<Clock>) -> Authenticator {
        Authenticator { keys: quick_cache::sync::Cache::new(KEY_CACHE_CAPACITY), touched: Mutex::default(), clock }
    }

    /// Drops what this process remembers of a key (after an operator change).
    pub fn forget(&self, access_key: &str) {
        self.keys.remove(access_key);
    }

    /// Forgets every key (after the clock was moved). The buckets need nothing: they are in the
    /// store and measured against the clock there (see `Store::take_rate_token`).
    pub fn reset(&self) {
        self.keys.clear();
    }

    async fn resolve(&self, state: &AppState, access_key: &str) -> Result<Option<Arc<ResolvedKey>>, ApiError> {
        if let Some((at, hit)) = self.keys.get(access_key)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(hit);
        }
        let resolved = match state.store.key(access_key).await? {
            None => None,
            Some(rec) => {
                let secret = state.sealer.open(&rec.secret_sealed).map_err(ApiError::internal)?;
                Some(Arc::new(ResolvedKey {
                    allow: rec.allow_list().iter().filter_map(|c| parse_cidr(c)).collect(),
                    account_id: rec.account_id,
                    account_name: rec.account_name,
                    secret,
                    usable: rec.enabled != 0 && rec.account_enabled != 0,
                    rate_limit: u32::try_from(rec.rate_limit).unwrap_or(u32::MAX),
                }))
            }
        };
        self.keys.insert(access_key.to_owned(), (Instant::now(), resolved.clone()));
        Ok(resolved)
    }

    fn should_touch(&self, access_key: &str, now: i64) -> bool {
        let mut touched = self.touched.lock().expect("touched");
        match touched.get(access_key) {
            Some(last) if now - last < TOUCH_INTERVAL_SECS && now >= *last => false,
            _ => {
                touched.insert(access_key.to_owned(), now);
                true
            }
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The client address: the socket peer, or, behind a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for entry in forwarded.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer,
        }
    }
    peer
}

/// Middleware on every `/v1/` request.
pub async fn require_signature(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    match authenticate(&state, peer.ip(), req.headers(), req.uri().path()).await {
        Ok((caller, limit_headers)) => {
            req.extensions_mut().insert(caller);
            let mut resp = next.run(req).await;
            resp.headers_mut().extend(limit_headers);
            resp
        }
        Err(err) => {
            state.metrics.auth_failure(err.code);
            err.into_response()
        }
    }
}

async fn authenticate(
    state: &AppState,
    peer: IpAddr,
    h: &HeaderMap,
    path: &str,
) -> Result<(Caller, HeaderMap), ApiError> {
    let auth = &state.auth;
    let access_key = header(h, headers::CREDENTIAL)
        .ok_or_else(|| ApiError::new(ErrorCode::CheckCredential, "The X-iwinv-Credential header is missing."))?;
    let unknown = || ApiError::new(ErrorCode::CheckCredential, "The access key is unknown or disabled.");
    let key = auth.resolve(state, access_key).await?.ok_or_else(unknown)?;
    if !key.usable {
        return Err(unknown());
    }
    let timestamp = header(h, headers::TIMESTAMP)
        .ok_or_else(|| ApiError::new(ErrorCode::CheckSignature, "The X-iwinv-Timestamp header is missing."))?;
    let signature = header(h, headers::SIGNATURE)
        .ok_or_else(|| ApiError::new(ErrorCode::CheckSignature, "The X-iwinv-Signature header is missing."))?;
    let ts: i64 =
        timestamp.bytes().all(|b| b.is_ascii_digit()).then(|| timestamp.parse().ok()).flatten().ok_or_else(|| {
            ApiError::new(ErrorCode::CheckSignature, "X-iwinv-Timestamp must be Unix time in whole seconds.")
        })?;
    let now = auth.clock.unix();
    if (now - ts).abs() > SIGNATURE_WINDOW_SECS {
        return Err(ApiError::new(
            ErrorCode::CheckSignature,
            format!(
                "X-iwinv-Timestamp is {} s away from the server time; at most {SIGNATURE_WINDOW_SECS} s is accepted.",
                (now - ts).abs()
            ),
        ));
    }
    if !signing::verify(&key.secret, timestamp, path, signature) {
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            "X-iwinv-Signature does not match HMAC-SHA256(secret key, timestamp + path).",
        ));
    }
    let ip = client_ip(peer, h, &state.config.trusted_proxies);
    if !key.allow.is_empty() && !key.allow.iter().any(|n| n.contains(&ip)) {
        return Err(ApiError::new(
            ErrorCode::CheckIp,
            format!("The address {ip} is not in this access key's allowlist."),
        ));
    }
    let limit_headers = match NonZeroU32::new(key.rate_limit) {
        None => HeaderMap::new(),
        Some(per_minute) => rate_limit(state, access_key, per_minute).await?,
    };
    if auth.should_touch(access_key, now) {
        let store = state.store.clone();
        let access_key = access_key.to_owned();
        tokio::spawn(async move {
            if let Err(e) = store.touch_key(&access_key, now).await {
                tracing::warn!(error = %e, "could not record key use");
            }
        });
    }
    Ok((
        Caller {
            account_id: key.account_id.clone(),
            account_name: key.account_name.clone(),
            access_key: access_key.to_owned(),
        },
        limit_headers,
    ))
}

/// Takes a token from the key's bucket in the store: `per_minute` tokens at most, one back every
/// minute / `per_minute`. Answers the `RateLimit-*` headers, or `LIMIT_EXCEEDED` with `Retry-After`.
async fn rate_limit(state: &AppState, access_key: &str, per_minute: NonZeroU32) -> Result<HeaderMap, ApiError> {
    let limit = per_minute.get();
    let interval_us = (RATE_WINDOW_MICROS / u64::from(limit)).max(1);
    let burst_us = interval_us * u64::from(limit);
    let now_us = state.clock.since_epoch().as_micros();
    let as_i64 = |v: u128| i64::try_from(v).map_err(ApiError::internal);
    let decision = state
        .store
        .take_rate_token(access_key, as_i64(now_us)?, as_i64(interval_us.into())?, as_i64(burst_us.into())?)
        .await?;
    // Until the bucket is full again.
    let full_in = micros_after(decision.tat_us, now_us);
    if decision.granted {
        let spare = u128::from(burst_us).saturating_sub(full_in.as_micros());
        let remaining = u64::try_from(spare / u128::from(interval_us)).unwrap_or(0);
        let mut h = HeaderMap::new();
        h.insert(headers::RATELIMIT_LIMIT, HeaderValue::from(limit));
        h.insert(headers::RATELIMIT_REMAINING, HeaderValue::from(remaining));
        h.insert(headers::RATELIMIT_RESET, HeaderValue::from(ceil_secs(full_in)));
        Ok(h)
    } else {
        // The next token comes when the arrival time, moved one interval on, is within a burst.
        let wait = full_in.saturating_sub(Duration::from_micros(burst_us - interval_us));
        let retry = ceil_secs(wait).max(1);
        Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("This access key may make {limit} requests per minute; retry in {retry} s."),
        )
        .with_header(headers::RATELIMIT_LIMIT, limit)
        .with_header(headers::RATELIMIT_REMAINING, 0)
        .with_header(headers::RATELIMIT_RESET, ceil_secs(full_in))
        .with_header("retry-after", retry))
    }
}

/// How long after `now_us` the instant `at_us` comes (zero when it has passed).
fn micros_after(at_us: i64, now_us: u128) -> Duration {
    let at = u128::try_from(at_us).unwrap_or(0);
    Duration::from_micros(u64::try_from(at.saturating_sub(now_us)).unwrap_or(u64::MAX))
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Middleware on `/admin/v1/`: a bearer token compared in constant time.
pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use subtle::ConstantTimeEq;
    let given = header(req.headers(), "authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    let ok: bool = given.as_bytes().ct_eq(state.admin_token.as_bytes()).into();
    if ok && !given.is_empty() {
        next.run(req).await
    } else {
        state.metrics.auth_failure(ErrorCode::CheckCredential);
        ApiError::new(ErrorCode::CheckCredential, "The operator API needs `Authorization: Bearer <admin token>`.")
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_read_only_behind_trusted_proxies() {
        let trusted = vec![parse_cidr("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.0.0.2".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let direct: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_ip(proxy, &h, &trusted), "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(direct, &h, &trusted), direct);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &trusted), proxy);
    }
}
