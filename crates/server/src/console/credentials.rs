//! The websocket credential: minted when the page spends its link, checked when a socket opens.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Config;

pub(super) type HmacSha256 = Hmac<Sha256>;

/// The credential key: HMAC-SHA256 of a fixed label under the sealing key. Deriving it (instead of
/// a key of its own) means every process that can open sealed secrets, and only those, accepts
/// the same credentials; the label keeps it apart from any other use of the sealing key. The
/// sealing key is found where `bootstrap` found it: the setting, or the data directory's file.
pub async fn credential_key(config: &Config) -> Result<[u8; 32], String> {
    let hex_key = match &config.encryption_key {
        Some(k) => k.clone(),
        None => {
            let path = config.data_dir.join("encryption-key");
            tokio::fs::read_to_string(&path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?
        }
    };
    let mut sealing = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut sealing).map_err(|_| "the encryption key is not 64 hex digits")?;
    let mut mac = HmacSha256::new_from_slice(&sealing).map_err(|e| e.to_string())?;
    mac.update(b"openwinv browser console credential v1");
    Ok(mac.finalize().into_bytes().into())
}

/// A websocket credential: `v1.<instance_id>.<expires>.<hex HMAC>`, where the HMAC covers the
/// link's token (so a credential opens only the sockets under its own link), the instance and
/// the expiry (Unix seconds on the server clock).
pub fn mint_credential(key: &[u8; 32], token: &str, instance_id: &str, expires: i64) -> String {
    let mac = credential_mac(key, token, instance_id, expires).finalize().into_bytes();
    format!("v1.{instance_id}.{expires}.{}", hex::encode(mac))
}

pub(super) fn credential_mac(key: &[u8; 32], token: &str, instance_id: &str, expires: i64) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail; the fallback is never used.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| HmacSha256::new(&Default::default()));
    for part in [token.as_bytes(), instance_id.as_bytes(), expires.to_string().as_bytes()] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

/// The instance a credential opens, if it is genuine, belongs to `token` and has not expired.
pub fn verify_credential(key: &[u8; 32], token: &str, credential: &str, now: i64) -> Option<String> {
    let mut parts = credential.rsplitn(3, '.');
    let (mac_hex, expires, head) = (parts.next()?, parts.next()?, parts.next()?);
    let instance_id = head.strip_prefix("v1.")?;
    let expires: i64 = expires.parse().ok()?;
    let mac = hex::decode(mac_hex).ok()?;
    credential_mac(key, token, instance_id, expires).verify_slice(&mac).ok()?;
    (now <= expires).then(|| instance_id.to_owned())
}
