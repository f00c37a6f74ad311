//! The signed client of `/v1` (spec §2): credentials, clock offset, idempotency keys, and raw
//! calls. The typed resource methods live in `catalog`, `keys`, `instances`, `volumes`,
//! `firewalls` and `billing`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openwinv_wire::{Envelope, ErrorCode, headers, signing};
use reqwest::header::HeaderValue;
use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::raw::RawLog;
use crate::response;
use crate::transport::{Answer, Exchange, Transport};

/// Where the SDK connects when `IWINV_ENDPOINT` is unset: a local `openwinv serve`.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// How far a learned skew must differ from the one in use to be worth a second try: less than
/// this is not why the server refused the timestamp.
const SKEW_TOLERANCE_SECS: i64 = 2;
/// The wait of a 429 answer without `Retry-After`.
const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// Receives the client's notes on what it did by itself (a retry, a corrected clock).
type NoticeHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// A client of the iwinv API v1, against openwinv or the real service.
///
/// When the server refuses a request's timestamp (`CHECK_SIGNATURE`) and tells its own time (the
/// `X-Openwinv-Server-Time` or `Date` header), the client signs the request again once with the
/// server's time and keeps that skew for later requests (`with_time_offset` turns this off). It
/// can also wait out rate-limit refusals (`with_rate_limit_retries`). Both are noted on stderr
/// unless `with_notices` sends the notes elsewhere.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
    access_key: String,
    secret_key: String,
    /// Seconds added to this machine's clock when stamping requests.
    time_offset: i64,
    /// Whether a refused timestamp may be corrected from the server's time.
    correct_skew: bool,
    /// The skew learned from the server, in seconds; shared by clones.
    skew: Arc<AtomicI64>,
    /// 429 answers waited out (after `Retry-After`) before the refusal is returned.
    rate_limit_retries: u32,
    notices: NoticeHandler,
    /// Sent as `Idempotency-Key` with every POST, PUT and DELETE (spec §12).
    idempotency_key: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint())
            .field("access_key", &self.access_key)
            .field("time_offset", &self.time_offset)
            .field("skew", &self.skew.load(Ordering::Relaxed))
            .field("rate_limit_retries", &self.rate_limit_retries)
            .field("idempotency_key", &self.idempotency_key)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of `endpoint` (`scheme://host[:port]`) signing with the given key pair.
    pub fn new(endpoint: &str, access_key: impl Into<String>, secret_key: impl Into<String>) -> Result<Client> {
        let (access_key, secret_key) = (access_key.into(), secret_key.into());
        if access_key.is_empty() || secret_key.is_empty() {
            return Err(Error::Config("the access key and the secret key must not be empty".into()));
        }
        Ok(Client {
            transport: Transport::new(endpoint)?,
            access_key,
            secret_key,
            time_offset: 0,
            correct_skew: true,
            skew: Arc::default(),
            rate_limit_retries: 0,
            notices: Arc::new(|note: &str| eprintln!("note: {note}")),
            idempotency_key: None,
        })
    }

    /// A client from `IWINV_ENDPOINT` (default [`DEFAULT_ENDPOINT`]), `IWINV_ACCESS_KEY`,
    /// `IWINV_SECRET_KEY` and, when set, `IWINV_CA_FILE`.
    pub fn from_env() -> Result<Client> {
        let endpoint = env("IWINV_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let key = |name: &str| env(name).ok_or_else(|| Error::Config(format!("{name} is not set")));
        let client = Client::new(&endpoint, key("IWINV_ACCESS_KEY")?, key("IWINV_SECRET_KEY")?)?;
        match env("IWINV_CA_FILE") {
            Some(path) => client.with_ca_file(path),
            None => Ok(client),
        }
    }

    /// Shifts request timestamps by exactly `secs`, for a machine whose clock is off by that
    /// much, and stops correcting them from the server's time (strict use).
    pub fn with_time_offset(mut self, secs: i64) -> Client {
        self.time_offset = secs;
        self.correct_skew = false;
        self
    }

    /// Whether a timestamp refused with `CHECK_SIGNATURE` is corrected from the server's time
    /// and the request signed again once (on by default).
    pub fn with_skew_correction(mut self, on: bool) -> Client {
        self.correct_skew = on;
        self
    }

    /// Waits out up to `retries` rate-limit refusals (429, after their `Retry-After`) per call
    /// before returning the refusal (none by default). Requests whose body is a stream are not
    /// retried.
    pub fn with_rate_limit_retries(mut self, retries: u32) -> Client {
        self.rate_limit_retries = retries;
        self
    }

    /// Sends the client's notes (a retry, a corrected clock) to `handler` instead of stderr.
    pub fn with_notices(mut self, handler: impl Fn(&str) + Send + Sync + 'static) -> Client {
        self.notices = Arc::new(handler);
        self
    }

    /// Also trusts the certificates of a PEM file, such as the local CA that `openwinv tls ca`
    /// prints, for an `https` endpoint.
    pub fn with_ca_file(mut self, path: impl AsRef<Path>) -> Result<Client> {
        self.transport = self.transport.with_ca_file(path.as_ref())?;
        Ok(self)
    }

    /// Connects to `addr` whenever the endpoint names `host`, as curl's `--resolve` does, so a
    /// client can keep the real endpoint (`https://api-kr.iwinv.kr`) and reach a local server; the
    /// certificate is still checked against `host`.
    pub fn with_resolve(mut self, host: &str, addr: std::net::SocketAddr) -> Result<Client> {
        self.transport = self.transport.with_resolve(host, addr)?;
        Ok(self)
    }

    /// A client that sends `key` as the `Idempotency-Key` of its POST, PUT and DELETE requests
    /// (spec §12): the server runs the first request with that key and replays its answer to
    /// the same request again for 24 hours; another request with the key is refused with 409
    /// `CHECK_PARAM`. So use one such client for one logical write, and retry it freely.
    ///
    /// ```no_run
    /// # async fn demo(client: &openwinv_sdk::Client) -> openwinv_sdk::Result<()> {
    /// let new = openwinv_sdk::NewInstance::new("KR1-Z01", "IMG-ubuntu-2404", "ss1.c1m1");
    /// let once = client.clone().with_idempotency_key("create-web-1");
    /// let first = once.create_instances(&new).await?;
    /// let again = once.create_instances(&new).await?; // after a lost answer, say
    /// assert!(again.replayed && again.rows == first.rows);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Client {
        self.idempotency_key = Some(key.into());
        self
    }

    /// A client that keeps the `result` of every successful answer in `log`, as sent.
    pub fn with_raw_log(mut self, log: RawLog) -> Client {
        self.transport = self.transport.with_raw_log(log);
        self
    }

    /// The endpoint as `scheme://host[:port]`.
    pub fn endpoint(&self) -> &str {
        self.transport.endpoint()
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// A signed request for an absolute path such as `/v1/zones`. Add a query or a body to it and
    /// pass it to [`Client::execute`]; neither is signed, so they may be added afterwards.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.signed(method, self.transport.url(path))
    }

    /// Sends a request made by [`Client::request`] and decodes the envelope.
    pub async fn execute<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<Envelope<T>> {
        self.answer(request).await?.typed()
    }

    /// `GET path?query`; `query` is any serializable struct or list of pairs (`&()` for none).
    pub async fn get<T: DeserializeOwned, Q: Serialize + ?Sized>(&self, path: &str, query: &Q) -> Result<Envelope<T>> {
        self.execute(self.request(Method::GET, path).query(query)).await
    }

    /// Any method on `path`, with an optional JSON body.
    pub async fn send<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Envelope<T>> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.execute(request).await
    }

    /// Sends a request made by [`Client::request`] and returns the success envelope as sent,
    /// fields the wire types do not model included. Failures are still typed errors.
    pub async fn execute_raw(&self, request: RequestBuilder) -> Result<Value> {
        Ok(self.answer(request).await?.envelope)
    }

    /// `GET path?query`, the envelope as sent (see [`Client::execute_raw`]).
    pub async fn get_raw<Q: Serialize + ?Sized>(&self, path: &str, query: &Q) -> Result<Value> {
        self.execute_raw(self.request(Method::GET, path).query(query)).await
    }

    /// Any method on `path`, with an optional JSON body; the envelope as sent.
    pub async fn send_raw<B: Serialize + ?Sized>(&self, method: Method, path: &str, body: Option<&B>) -> Result<Value> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.execute_raw(request).await
    }

    /// Sends a request and returns the whole success answer, headers included: after waiting
    /// out rate-limit refusals as configured, and after signing again once with the server's
    /// time when the timestamp was refused.
    pub(crate) async fn answer(&self, request: RequestBuilder) -> Result<Answer> {
        let mut request = request.build()?;
        let (mut waits, mut resigned) = (0, false);
        loop {
            // A request whose body is a stream cannot be sent twice.
            let again = request.try_clone();
            let exchange = self.transport.exchange(request).await?;
            let Some(mut next) = again else {
                return self.transport.decode(exchange);
            };
            if exchange.status == 429 && waits < self.rate_limit_retries {
                waits += 1;
                let secs = response::retry_after(&exchange.headers).unwrap_or(DEFAULT_RETRY_AFTER_SECS);
                (self.notices)(&format!(
                    "rate limited (429); retrying in {secs} s ({waits} of {})",
                    self.rate_limit_retries
                ));
                tokio::time::sleep(Duration::from_secs(secs)).await;
            } else if let Some(skew) = self.learned_skew(&exchange).filter(|_| !resigned) {
                resigned = true;
                self.skew.store(skew, Ordering::Relaxed);
                (self.notices)(&format!(
                    "the server refused the request's timestamp; its clock is {} s {} this machine's, so \
                     the request is signed again with the server's time",
                    skew.abs(),
                    if skew > 0 { "ahead of" } else { "behind" }
                ));
            } else {
                return self.transport.decode(exchange);
            }
            self.stamp(&mut next);
            request = next;
        }
    }

    /// The skew the server's answer shows, when it refused the timestamp, tells its time, and the
    /// skew differs from the one in use.
    fn learned_skew(&self, exchange: &Exchange) -> Option<i64> {
        if !self.correct_skew || !response::is_error_code(&exchange.body, ErrorCode::CheckSignature) {
            return None;
        }
        let skew = response::server_time(&exchange.headers)? - unix_now();
        ((skew - self.skew.load(Ordering::Relaxed)).abs() > SKEW_TOLERANCE_SECS).then_some(skew)
    }

    /// Seconds since the epoch to sign with: this machine's clock, the offset and the learned skew.
    fn timestamp(&self) -> String {
        (unix_now() + self.time_offset + self.skew.load(Ordering::Relaxed)).to_string()
    }

    /// Signs a built request again with a fresh timestamp.
    fn stamp(&self, request: &mut reqwest::Request) {
        let timestamp = self.timestamp();
        let signature = signing::sign(&self.secret_key, &timestamp, request.url().path());
        for (name, value) in [(headers::TIMESTAMP, timestamp), (headers::SIGNATURE, signature)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                request.headers_mut().insert(name, value);
            }
        }
    }

    /// A signed request for a URL built from unencoded path segments.
    pub(crate) fn request_of(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.signed(method, self.transport.url_of(segments))
    }

    fn signed(&self, method: Method, url: Url) -> RequestBuilder {
        let timestamp = self.timestamp();
        let writes = matches!(method, Method::POST | Method::PUT | Method::DELETE);
        let mut request = self.transport.request(method, url.clone());
        for (name, value) in signature_headers(&self.access_key, &self.secret_key, &timestamp, &url) {
            request = request.header(name, value);
        }
        match &self.idempotency_key {
            Some(key) if writes => request.header(headers::IDEMPOTENCY_KEY, key),
            _ => request,
        }
    }
}

/// The three authentication headers for `url` at `timestamp`. The signed path is the URL's path
/// as it goes on the wire (percent-encoded), without the query.
fn signature_headers(access_key: &str, secret_key: &str, timestamp: &str, url: &Url) -> [(&'static str, String); 3] {
    [
        (headers::TIMESTAMP, timestamp.to_owned()),
        (headers::CREDENTIAL, access_key.to_owned()),
        (headers::SIGNATURE, signing::sign(secret_key, timestamp, url.path())),
    ]
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A set, non-empty environment variable.
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(r: &'a reqwest::Request, name: &str) -> &'a str {
        r.headers().get(name).unwrap().to_str().unwrap()
    }

    #[test]
    fn public_vector_through_the_headers() {
        let url = Url::parse("http://h/v1/example/param1/param2?x=1").unwrap();
        let [ts, cred, sig] = signature_headers("AK", "your_secret_key", "1710000000", &url);
        assert_eq!(ts, (headers::TIMESTAMP, "1710000000".into()));
        assert_eq!(cred, (headers::CREDENTIAL, "AK".into()));
        assert_eq!(sig.1, "8ca2700c4d713ffaa657017a5d1dff97c4619512b6eef75ab1da9d38a518dc94");
    }

    #[test]
    fn requests_carry_a_fresh_signature_over_the_encoded_path() {
        let c = Client::new("http://127.0.0.1:9", "AK", "SK").unwrap();
        let r =
            c.request_of(Method::DELETE, &["v1", "auth", "ssh_key", "a b"]).query(&[("page_no", "2")]).build().unwrap();
        assert_eq!(r.url().path(), "/v1/auth/ssh_key/a%20b");
        assert_eq!(r.url().query(), Some("page_no=2"));
        let ts = header(&r, headers::TIMESTAMP);
        assert!((ts.parse::<i64>().unwrap() - unix_now()).abs() <= 2);
        assert_eq!(header(&r, headers::CREDENTIAL), "AK");
        assert_eq!(header(&r, headers::SIGNATURE), signing::sign("SK", ts, "/v1/auth/ssh_key/a%20b"));
    }

    #[test]
    fn time_offset_shifts_the_timestamp() {
        let c = Client::new("http://h", "AK", "SK").unwrap().with_time_offset(-3600);
        let r = c.request(Method::GET, "/v1/zones").build().unwrap();
        let ts: i64 = header(&r, headers::TIMESTAMP).parse().unwrap();
        assert!((ts - (unix_now() - 3600)).abs() <= 2);
    }

    #[test]
    fn empty_keys_are_refused() {
        assert!(matches!(Client::new("http://h", "", "SK"), Err(Error::Config(_))));
    }

    #[test]
    fn idempotency_keys_go_with_writes_only() {
        let plain = Client::new("http://h", "AK", "SK").unwrap();
        let keyed = plain.clone().with_idempotency_key("retry-1");
        let key_of = |c: &Client, method: Method| {
            let r = c.request(method, "/v1/instances").build().unwrap();
            r.headers().get(headers::IDEMPOTENCY_KEY).map(|v| v.to_str().unwrap().to_owned())
        };
        for method in [Method::POST, Method::PUT, Method::DELETE] {
            assert_eq!(key_of(&keyed, method.clone()).as_deref(), Some("retry-1"));
            assert_eq!(key_of(&plain, method), None);
        }
        assert_eq!(key_of(&keyed, Method::GET), None);
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = Client::new("http://h", "AK", "very-secret").unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
