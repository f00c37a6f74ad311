//! The signed client of `/v1` (spec §2): credentials, clock offset, idempotency keys, and raw
//! calls. The typed resource methods live in `catalog`, `keys`, `instances`, `volumes`,
//! `firewalls` and `billing`.

use std::time::{SystemTime, UNIX_EPOCH};

use openwinv_wire::{Envelope, headers, signing};
use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::raw::RawLog;
use crate::transport::{Answer, Transport};

/// Where the SDK connects when `IWINV_ENDPOINT` is unset: a local `openwinv serve`.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// A client of the iwinv API v1, against openwinv or the real service.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
    access_key: String,
    secret_key: String,
    /// Seconds added to this machine's clock when stamping requests.
    time_offset: i64,
    /// Sent as `Idempotency-Key` with every POST, PUT and DELETE (spec §12).
    idempotency_key: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint())
            .field("access_key", &self.access_key)
            .field("time_offset", &self.time_offset)
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
            idempotency_key: None,
        })
    }

    /// A client from `IWINV_ENDPOINT` (default [`DEFAULT_ENDPOINT`]), `IWINV_ACCESS_KEY` and
    /// `IWINV_SECRET_KEY`.
    pub fn from_env() -> Result<Client> {
        let endpoint = env("IWINV_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let key = |name: &str| env(name).ok_or_else(|| Error::Config(format!("{name} is not set")));
        Client::new(&endpoint, key("IWINV_ACCESS_KEY")?, key("IWINV_SECRET_KEY")?)
    }

    /// Shifts request timestamps by `secs`, for a machine whose clock is off by that much.
    pub fn with_time_offset(mut self, secs: i64) -> Client {
        self.time_offset = secs;
        self
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
        self.transport.execute(request).await
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
        Ok(self.transport.answer(request).await?.envelope)
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

    /// Sends a request and returns the whole success answer, headers included.
    pub(crate) async fn answer(&self, request: RequestBuilder) -> Result<Answer> {
        self.transport.answer(request).await
    }

    /// A signed request for a URL built from unencoded path segments.
    pub(crate) fn request_of(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.signed(method, self.transport.url_of(segments))
    }

    fn signed(&self, method: Method, url: Url) -> RequestBuilder {
        let timestamp = (unix_now() + self.time_offset).to_string();
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
