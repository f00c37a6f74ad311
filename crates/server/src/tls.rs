//! HTTPS for clients that hard-code `https://api-kr.iwinv.kr` (`serve --tls`): a local certificate
//! authority kept in the data directory, a server certificate it issues at every start, and the
//! rustls listener that `axum::serve` runs on.
//!
//! The CA is made on first use (`serve --tls` or `openwinv tls ca`) and then kept, so a client
//! trusts it once (`curl --cacert`, `SSL_CERT_FILE`, a system store, `IWINV_CA_FILE`). Its key is
//! 0600 and never leaves the directory. Its common name carries a digest of its key, so the CAs of
//! two data directories trusted on one machine are never confused. The server certificate lives in
//! memory only and is issued again at each start, so a change of `--tls-name` needs no file to be
//! deleted, and its validity stays short enough for clients that cap it (398 days).
//!
//! Certificates are dated by the machine's clock, not the server clock that `admin clock` moves:
//! clients check them against their own clock.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The folder of the data directory that holds the CA.
pub const TLS_DIR: &str = "tls";
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// Names every server certificate covers: loopback, and the real service's host for clients that
/// reach this server through the hosts file or `--resolve`.
pub const DEFAULT_NAMES: [&str; 4] = ["localhost", "127.0.0.1", "::1", "api-kr.iwinv.kr"];
const CA_COMMON_NAME: &str = "openwinv local CA";
const SERVER_COMMON_NAME: &str = "openwinv";
/// Hex digits of the key digest in the CA's common name.
const CA_NAME_DIGEST_CHARS: usize = 12;
const CA_VALID_DAYS: i64 = 3650;
const SERVER_VALID_DAYS: i64 = 365;
/// Certificates start a day early, for clients whose clock is a little behind.
const BACKDATE_DAYS: i64 = 1;
/// A client that has not finished its handshake by then is dropped (the listener applies it).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The local certificate authority of a data directory.
pub struct LocalCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl LocalCa {
    /// The CA of `data_dir`, made (certificate 0644, key 0600) when the directory has none.
    pub fn open(data_dir: &Path) -> anyhow::Result<LocalCa> {
        let dir = data_dir.join(TLS_DIR);
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert_pem = read(&cert_path)?;
                let key = KeyPair::from_pem(&read(&key_path)?)
                    .with_context(|| format!("{} is not a private key in PEM", key_path.display()))?;
                Ok(LocalCa { cert_pem, issuer: Issuer::new(ca_params(&key)?, key) })
            }
            (false, false) => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let key = KeyPair::generate().context("cannot generate the CA key")?;
                let params = ca_params(&key)?;
                let cert_pem = params.self_signed(&key).context("cannot make the CA certificate")?.pem();
                write_file(&key_path, &key.serialize_pem(), 0o600)?;
                write_file(&cert_path, &cert_pem, 0o644)?;
                tracing::info!(path = %cert_path.display(), "created the local certificate authority");
                Ok(LocalCa { cert_pem, issuer: Issuer::new(params, key) })
            }
            _ => bail!(
                "{} holds only one of {CA_CERT_FILE} and {CA_KEY_FILE}: put the other back, or remove both to make a \
                 new CA (clients must then trust the new one)",
                dir.display()
            ),
        }
    }

    /// The CA certificate in PEM, for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A new server certificate for [`DEFAULT_NAMES`] and `extra` (host names or IP addresses),
    /// and its private key.
    pub fn issue(&self, extra: &[String]) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, SERVER_COMMON_NAME);
        params.subject_alt_names = server_names(extra)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, SERVER_VALID_DAYS);
        let key = KeyPair::generate().context("cannot generate the server key")?;
        let cert = params.signed_by(&key, &self.issuer).context("cannot issue the server certificate")?;
        Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))))
    }
}

/// The path of the CA certificate of `data_dir`.
pub fn ca_cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TLS_DIR).join(CA_CERT_FILE)
}

/// The rustls configuration of the HTTPS listener: a fresh server certificate from the CA of
/// `data_dir` (made if missing) for the default names and `extra`.
pub fn server_config(data_dir: &Path, extra: &[String]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let ca = LocalCa::open(data_dir)?;
    let (cert, key) = ca.issue(extra)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .context("the server certificate")?;
    // HTTP/2 for the clients that offer it, HTTP/1.1 for the others (and for WebSockets).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks a `--tls-name`: a DNS name or an IP address.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    san(name).map(drop)
}

/// The CA's parameters. Everything an issued certificate takes from them (name, key identifier)
/// follows from the key, so they are rebuilt from the key at each start instead of parsed.
fn ca_params(key: &KeyPair) -> anyhow::Result<CertificateParams> {
    let digest = hex::encode(Sha256::digest(key.public_key_raw()));
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, format!("{CA_COMMON_NAME} {}", &digest[..CA_NAME_DIGEST_CHARS]));
    params.distinguished_name.push(DnType::OrganizationName, "openwinv");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, CA_VALID_DAYS);
    Ok(params)
}

fn server_names(extra: &[String]) -> anyhow::Result<Vec<SanType>> {
    let mut names: Vec<&str> = DEFAULT_NAMES.to_vec();
    for name in extra {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    names.into_iter().map(san).collect()
}

fn san(name: &str) -> anyhow::Result<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            let wildcard = i == 0 && label == "*";
            wildcard
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        });
    if !valid {
        bail!("tls_names: `{name}` is neither a host name nor an IP address");
    }
    Ok(SanType::DnsName(name.to_ascii_lowercase().try_into().context("tls_names")?))
}

/// Valid from `BACKDATE_DAYS` ago to `days` from now, on this machine's clock, at midnight UTC.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let day = |offset: i64| {
        let date = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * offset))
            .unwrap_or(jiff::Timestamp::MAX)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        rcgen::date_time_ymd(i32::from(date.year()), date.month() as u8, date.day() as u8)
    };
    params.not_before = day(-BACKDATE_DAYS);
    params.not_after = day(days);
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes a new file with `mode`, through a temporary name so a crash leaves no half file.
fn write_file(path: &Path, content: &str, mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalCa::open(dir.path()).unwrap();
        let key = dir.path().join(TLS_DIR).join(CA_KEY_FILE);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let again = LocalCa::open(dir.path()).unwrap();
        assert_eq!(first.cert_pem(), again.cert_pem());
        assert!(first.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        again.issue(&["dev.example".into(), "10.0.0.5".into()]).unwrap();
    }

    #[test]
    fn a_half_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::open(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(TLS_DIR).join(CA_KEY_FILE)).unwrap();
        let err = LocalCa::open(dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("only one of"), "{err:#}");
    }

    #[test]
    fn names_are_host_names_or_addresses() {
        for good in ["api.test", "*.dev.local", "10.1.2.3", "fe80::1", "host-1"] {
            check_name(good).unwrap();
        }
        for bad in ["", "a b", "-x.test", "x..y", "http://x"] {
            let err = check_name(bad).unwrap_err();
            assert!(format!("{err:#}").contains("tls_names"), "{bad}: {err:#}");
        }
    }
}
