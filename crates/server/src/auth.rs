//! Signed requests (spec §2): key lookup, timestamp window, HMAC check, IP allowlist, rate limit.
//!
//! Checks run in an order that tells an unauthenticated caller nothing about a key: the
//! credential, then the timestamp and the signature, then the allowlist, then the rate limit
//! (so that bad signatures cannot drain someone's bucket).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
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
/// `last_used_at` is written at most this often per key.
const TOUCH_INTERVAL_SECS: i64 = 60;

/// The authenticated caller, put in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
    pub account_name: String,
    pub access_key: String,
}

#[derive(Debug, Clone)]
struct ResolvedKey {
    account_id: String,
    account_name: String,
    secret: String,
    usable: bool,
    rate_limit: u32,
    allow: Vec<IpNet>,
}

/// A looked-up key (or the knowledge that there is none) and when it was looked up.
type CachedKey = (Instant, Option<Arc<ResolvedKey>>);

type Limiter = RateLimiter<NotKeyed, InMemoryState, GovernorClock, StateInformationMiddleware>;

/// Adapter so that governor's rate limiter reads the server clock.
#[derive(Debug, Clone)]
pub struct GovernorClock(pub Arc<Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.since_epoch()
    }
}

pub struct Authenticator {
    keys: Mutex<HashMap<String, CachedKey>>,
    limiters: Mutex<HashMap<String, (u32, Arc<Limiter>)>>,
    touched: Mutex<HashMap<String, i64>>,
    clock: Arc<Clock>,
}

impl Authenticator {
    pub fn new(clock: Arc<Clock>) -> Authenticator {
        Authenticator { keys: Mutex::default(), limiters: Mutex::default(), touched: Mutex::default(), clock }
    }

    /// Drops what this process remembers of a key (after an operator change).
    pub fn forget(&self, access_key: &str) {
        self.keys.lock().expect("key cache").remove(access_key);
    }

    /// Forgets every key and empties every bucket (after the clock was moved).
    pub fn reset(&self) {
        self.keys.lock().expect("key cache").clear();
        self.limiters.lock().expect("limiters").clear();
    }

    async fn resolve(&self, state: &AppState, access_key: &str) -> Result<Option<Arc<ResolvedKey>>, ApiError> {
        if let Some((at, hit)) = self.keys.lock().expect("key cache").get(access_key)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(hit.clone());
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
        self.keys.lock().expect("key cache").insert(access_key.to_owned(), (Instant::now(), resolved.clone()));
        Ok(resolved)
    }

    fn limiter(&self, access_key: &str, per_minute: NonZeroU32) -> Arc<Limiter> {
        let mut limiters = self.limiters.lock().expect("limiters");
        match limiters.get(access_key) {
            Some((n, l)) if *n == per_minute.get() => l.clone(),
            _ => {
                let l = Arc::new(
                    RateLimiter::direct_with_clock(Quota::per_minute(per_minute), GovernorClock(self.clock.clone()))
                        .with_middleware::<StateInformationMiddleware>(),
                );
                limiters.insert(access_key.to_owned(), (per_minute.get(), l.clone()));
                l
            }
        }
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
        Some(per_minute) => rate_limit(auth, access_key, per_minute)?,
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

fn rate_limit(auth: &Authenticator, access_key: &str, per_minute: NonZeroU32) -> Result<HeaderMap, ApiError> {
    let limiter = auth.limiter(access_key, per_minute);
    let limit = per_minute.get();
    let period = Duration::from_secs(60) / limit;
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, v: u64| {
        h.insert(name, HeaderValue::from(v));
    };
    match limiter.check() {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            put(headers::RATELIMIT_LIMIT, u64::from(limit));
            put(headers::RATELIMIT_REMAINING, u64::from(remaining));
            put(headers::RATELIMIT_RESET, ceil_secs(period * (limit - remaining)));
            Ok(h)
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(auth.clock.since_epoch());
            let mut err = ApiError::new(
                ErrorCode::LimitExceeded,
                format!("This access key may make {limit} requests per minute; retry in {} s.", ceil_secs(wait).max(1)),
            );
            err = err
                .with_header(headers::RATELIMIT_LIMIT, limit)
                .with_header(headers::RATELIMIT_REMAINING, 0)
                .with_header(headers::RATELIMIT_RESET, ceil_secs(wait + period * (limit - 1)))
                .with_header("retry-after", ceil_secs(wait).max(1));
            Err(err)
        }
    }
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
