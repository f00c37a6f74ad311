//! HTTP plumbing shared by the signed client and the operator client: one connection pool, the
//! endpoint, URL building and answer decoding. Authentication is added by each client.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use openwinv_wire::Envelope;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::raw::RawLog;
use crate::response;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub(crate) struct Transport {
    http: reqwest::Client,
    /// Certificates trusted besides the built-in roots (`with_ca_file`).
    extra_roots: Vec<reqwest::Certificate>,
    /// Host names connected to a fixed address instead of their DNS answer (`with_resolve`).
    overrides: Vec<(String, SocketAddr)>,
    /// `scheme://host[:port]/`, nothing else.
    base: Url,
    /// Where the `result` of each success answer is kept, when the caller asked for it.
    raw_log: Option<RawLog>,
}

/// A success answer: its status, headers and envelope as sent.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub envelope: Value,
}

impl Answer {
    /// The envelope with typed rows.
    pub(crate) fn typed<T: DeserializeOwned>(&self) -> Result<Envelope<T>> {
        response::typed(self.status, &self.envelope)
    }
}

impl Transport {
    pub(crate) fn new(endpoint: &str) -> Result<Transport> {
        let base = parse_endpoint(endpoint)?;
        Ok(Transport {
            http: http_client(&[], &[])?,
            extra_roots: Vec::new(),
            overrides: Vec::new(),
            base,
            raw_log: None,
        })
    }

    /// Also trusts the certificates of a PEM file (a local CA such as `openwinv tls ca` prints).
    pub(crate) fn with_ca_file(mut self, path: &Path) -> Result<Transport> {
        let bad = |why: String| Error::Config(format!("the CA file {}: {why}", path.display()));
        let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(format!("is not PEM ({e})")))?;
        if certs.is_empty() {
            return Err(bad("holds no PEM certificate".into()));
        }
        self.extra_roots.extend(certs);
        self.http = http_client(&self.extra_roots, &self.overrides)?;
        Ok(self)
    }

    /// Connects to `addr` whenever a URL names `host`, as curl's `--resolve` does: the TLS name
    /// and the `Host` header stay `host`.
    pub(crate) fn with_resolve(mut self, host: &str, addr: SocketAddr) -> Result<Transport> {
        self.overrides.push((host.to_ascii_lowercase(), addr));
        self.http = http_client(&self.extra_roots, &self.overrides)?;
        Ok(self)
    }

    pub(crate) fn with_raw_log(mut self, log: RawLog) -> Transport {
        self.raw_log = Some(log);
        self
    }

    /// The endpoint as `scheme://host[:port]`.
    pub(crate) fn endpoint(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// A URL for an absolute path such as `/v1/zones`; the path is percent-encoded as needed.
    pub(crate) fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url
    }

    /// A URL from unencoded segments, so ids are encoded (`/` in an id becomes `%2F`).
    pub(crate) fn url_of(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("http(s) URLs have a path").clear().extend(segments);
        url
    }

    pub(crate) fn request(&self, method: reqwest::Method, url: Url) -> RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends a request and decodes the envelope (or the error it reports).
    pub(crate) async fn execute<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<Envelope<T>> {
        self.answer(request).await?.typed()
    }

    /// Sends a request and returns the success answer with its envelope as sent (or the error
    /// it reports), after keeping its `result` in the raw log.
    pub(crate) async fn answer(&self, request: RequestBuilder) -> Result<Answer> {
        let exchange = self.exchange(request.build()?).await?;
        self.decode(exchange)
    }

    /// Sends a request and reads the whole answer, whatever its status.
    pub(crate) async fn exchange(&self, request: reqwest::Request) -> Result<Exchange> {
        let answer = self.http.execute(request).await?;
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let body = answer.bytes().await?.to_vec();
        Ok(Exchange { status, headers, body })
    }

    /// The success answer of an exchange (or the error it reports), after keeping its `result`
    /// in the raw log.
    pub(crate) fn decode(&self, exchange: Exchange) -> Result<Answer> {
        let Exchange { status, headers, body } = exchange;
        let envelope = response::decode_value(status, response::retry_after(&headers), &body)?;
        if let Some(log) = &self.raw_log {
            log.record(&envelope);
        }
        Ok(Answer { status, headers, envelope })
    }

    /// Sends a request whose success answer is plain text (the catalog export).
    pub(crate) async fn execute_text(&self, request: RequestBuilder) -> Result<String> {
        let answer = request.send().await?;
        let status = answer.status();
        let retry_after = response::retry_after(answer.headers());
        let body = answer.bytes().await?;
        if !status.is_success() {
            return Err(response::failure(status.as_u16(), retry_after, &body));
        }
        String::from_utf8(body.to_vec()).map_err(|_| Error::Decode {
            status: status.as_u16(),
            message: "the body is not UTF-8".into(),
            body: String::new(),
        })
    }
}

/// One HTTP answer as received, before decoding.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

fn http_client(extra_roots: &[reqwest::Certificate], overrides: &[(String, SocketAddr)]) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("openwinv-sdk/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    for cert in extra_roots {
        builder = builder.add_root_certificate(cert.clone());
    }
    for (host, addr) in overrides {
        builder = builder.resolve(host, *addr);
    }
    builder.build().map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
}

/// Accepts `scheme://host[:port]` with an optional trailing slash, for http and https.
fn parse_endpoint(endpoint: &str) -> Result<Url> {
    let bad = |why: &str| Error::Config(format!("the endpoint `{endpoint}` {why}"));
    let url = Url::parse(endpoint.trim()).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must start with http:// or https://"));
    }
    if url.host_str().is_none() {
        return Err(bad("has no host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must be scheme://host[:port] without a path or query"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_origins_only() {
        let t = Transport::new("http://127.0.0.1:8080/").unwrap();
        assert_eq!(t.endpoint(), "http://127.0.0.1:8080");
        assert_eq!(Transport::new("https://api-kr.iwinv.kr").unwrap().endpoint(), "https://api-kr.iwinv.kr");
        for bad in ["127.0.0.1:8080", "ftp://x", "http://x/v1", "http://x/?a=1", "http://u:p@x"] {
            assert!(matches!(Transport::new(bad), Err(Error::Config(_))), "{bad}");
        }
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let t = Transport::new("https://h").unwrap();
        let missing = t.clone().with_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(missing.to_string().contains("cannot be read"), "{missing}");
        let dir = std::env::temp_dir().join(format!("openwinv-sdk-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let empty = t.with_ca_file(&dir).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert!(empty.to_string().contains("CA file"), "{empty}");
    }

    #[test]
    fn ids_are_encoded_as_one_segment() {
        let t = Transport::new("http://h").unwrap();
        assert_eq!(t.url_of(&["v1", "flavors", "ss1.c1m1"]).path(), "/v1/flavors/ss1.c1m1");
        assert_eq!(t.url_of(&["v1", "images", "a/b c"]).path(), "/v1/images/a%2Fb%20c");
        assert_eq!(t.url("/v1/zones").path(), "/v1/zones");
    }
}
