//! The control plane as the agent calls it: one HTTP client carrying the host token (and the
//! `--ca-file` trust), the agent protocol's calls (`/internal/v1/hosts/{what}`) and their failures
//! sorted by what the agent can do about them ([`CallError`]), the file routes (boot images,
//! machine disks in transit), and the backoff between attempts while the control plane is away.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Config;

/// How long one call may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest waits between attempts while the control plane is away.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// 401: the token is not (or no longer) a host's.
    Refused(String),
    /// 404 on a heartbeat: the host must register (again).
    NotRegistered(String),
    /// Another 4xx: the request is wrong; retrying the same one cannot help.
    Rejected(String),
    /// No answer, or a 5xx: try again later.
    Away(String),
    /// The control plane's TLS certificate failed verification: retrying cannot help until the
    /// operator fixes `--ca-file` or the certificate.
    Untrusted(String),
}

/// The control plane as the agent calls it.
pub(crate) struct Control {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: String,
    ca_file: Option<PathBuf>,
}

impl Control {
    pub(crate) fn new(config: &Config) -> anyhow::Result<Control> {
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).connect_timeout(REQUEST_TIMEOUT);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).with_context(|| format!("cannot read the CA file {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("the CA file {} is not PEM", path.display()))?;
            if certs.is_empty() {
                bail!("the CA file {} holds no certificate", path.display());
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let base = config.control_plane.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).with_context(|| format!("--control-plane `{base}` is not a URL"))?;
        Ok(Control {
            http: builder.build()?,
            base,
            token: config.host_token.trim().to_owned(),
            ca_file: config.ca_file.clone(),
        })
    }

    /// A failed request as a [`CallError`]: a certificate that failed verification is
    /// [`CallError::Untrusted`], with what to do about it; anything else is the control plane
    /// away.
    fn send_error(&self, e: &reqwest::Error) -> CallError {
        let chain = error_chain(e);
        let Some(why) = certificate_error(e) else { return CallError::Away(chain) };
        let trust = match &self.ca_file {
            None => "the agent trusts only the system's CAs without --ca-file: pass --ca-file with the \
                     control plane's CA (`openwinv tls ca` on the control plane prints it)"
                .to_owned(),
            Some(path) => format!(
                "the CA file {} does not vouch for it: check that it is the control plane's CA (`openwinv tls ca` \
                 prints it) and that --control-plane names a host its certificate covers (`serve --tls-name`)",
                path.display()
            ),
        };
        CallError::Untrusted(format!("the control plane's TLS certificate failed verification ({why}); {trust}"))
    }

    /// POSTs to `/internal/v1/hosts/{what}` and returns the first row of the answer.
    pub(crate) async fn call<T: DeserializeOwned>(&self, what: &str, body: Option<&Value>) -> Result<T, CallError> {
        let mut rows = self.call_rows(what, body, REQUEST_TIMEOUT).await?;
        if rows.is_empty() {
            return Err(CallError::Away(format!("no row in the answer to {what}")));
        }
        Ok(rows.swap_remove(0))
    }

    /// POSTs to `/internal/v1/hosts/{what}` and returns the rows of the answer.
    pub(crate) async fn call_rows<T: DeserializeOwned>(
        &self,
        what: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Vec<T>, CallError> {
        let mut req =
            self.http.post(format!("{}/internal/v1/hosts/{what}", self.base)).bearer_auth(&self.token).timeout(timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.send_error(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| CallError::Away(error_chain(&e)))?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = || {
            let m = json["message"].as_str().unwrap_or(text.trim());
            format!("{} {}: {m}", status.as_u16(), json["error_code"].as_str().unwrap_or(""))
        };
        match status.as_u16() {
            200 => {
                let rows = json["result"].clone();
                serde_json::from_value(rows).map_err(|e| CallError::Away(format!("unexpected answer ({e}): {text}")))
            }
            401 => Err(CallError::Refused(message())),
            404 => Err(CallError::NotRegistered(message())),
            400..=499 => Err(CallError::Rejected(message())),
            _ => Err(CallError::Away(message())),
        }
    }
}

impl Control {
    /// `GET /internal/v1/{kind}/{sha256}` (`images`: a boot file; `disks`: a machine disk in
    /// transit): the response, its body not read yet.
    pub(crate) async fn get_file(
        &self,
        kind: &str,
        sha256: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, openwinv_driver::DriverError> {
        let resp = self
            .http
            .get(format!("{}/internal/v1/{kind}/{sha256}", self.base))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                openwinv_driver::DriverError::Transient(format!("cannot fetch {kind} {sha256}: {}", error_chain(&e)))
            })?;
        file_answer(kind, sha256, resp).await
    }

    /// `PUT /internal/v1/disks/{sha256}`: streams the file at `path` (whose SHA-256 it is).
    pub(crate) async fn put_disk(
        &self,
        sha256: &str,
        path: &Path,
        timeout: Duration,
    ) -> Result<(), openwinv_driver::DriverError> {
        use openwinv_driver::DriverError::Transient;
        let file = tokio::fs::File::open(path).await.map_err(|e| Transient(format!("{}: {e}", path.display())))?;
        let stream = futures_util::stream::unfold((file, vec![0u8; 256 * 1024]), |(mut f, mut buf)| async move {
            use tokio::io::AsyncReadExt;
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => Some((Ok::<_, std::io::Error>(buf[..n].to_vec()), (f, buf))),
                Err(e) => Some((Err(e), (f, buf))),
            }
        });
        let resp = self
            .http
            .put(format!("{}/internal/v1/disks/{sha256}", self.base))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| Transient(format!("cannot hand disk {sha256} to the control plane: {}", error_chain(&e))))?;
        file_answer("disks", sha256, resp).await.map(|_| ())
    }
}

/// A file route's answer: the response on success, else its error, permanent for a 4xx.
async fn file_answer(
    kind: &str,
    sha256: &str,
    resp: reqwest::Response,
) -> Result<reqwest::Response, openwinv_driver::DriverError> {
    use openwinv_driver::DriverError::{Permanent, Transient};
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let m = format!("{kind} {sha256}: {} {}", status.as_u16(), json["message"].as_str().unwrap_or(text.trim()));
    match status.as_u16() {
        400..=499 => Err(Permanent(m)),
        _ => Err(Transient(m)),
    }
}

/// The certificate verification error inside a failed request, if that is why it failed. rustls
/// reports it as `rustls::Error` inside `io::Error`s (two, nested, under reqwest 0.12), and
/// `io::Error::source` skips its inner error, so the walk opens each `io::Error` itself.
fn certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use tokio_rustls::rustls::Error as Tls;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(t @ (Tls::InvalidCertificate(_) | Tls::NoCertificatesPresented)) = err.downcast_ref::<Tls>() {
            return Some(t.to_string());
        }
        next = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Doubling waits with ±20 % jitter, from [`BACKOFF_FIRST`] up to [`BACKOFF_MAX`].
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: BACKOFF_FIRST }
    }

    pub(crate) fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }

    pub(crate) fn wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        base.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..8).map(|_| b.wait()).collect();
        assert!(waits[0] <= BACKOFF_FIRST.mul_f64(1.2) && waits[0] >= BACKOFF_FIRST.mul_f64(0.8));
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX.mul_f64(1.2)));
        assert!(waits[7] >= BACKOFF_MAX.mul_f64(0.8), "{waits:?}");
        b.reset();
        assert!(b.wait() <= BACKOFF_FIRST.mul_f64(1.2));
    }
}
