//! Encryption at rest for secrets the server must read back (access-key secrets, passwords).
//!
//! ChaCha20-Poly1305 with a random nonce per value; the stored form is `v1:` + hex(nonce ‖ ciphertext).
//! The 32-byte key comes from the data directory or the configuration; it never enters the database.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the encryption key must be 64 hexadecimal characters")]
    BadKey,
    #[error("a sealed value could not be opened: wrong encryption key or damaged data")]
    Open,
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Sealer {
        Sealer { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)) }
    }

    pub fn from_hex(hex_key: &str) -> Result<Sealer, SealError> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_key.trim(), &mut key).map_err(|_| SealError::BadKey)?;
        Ok(Sealer::new(key))
    }

    /// A fresh random key, hex encoded.
    pub fn generate_hex() -> String {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        hex::encode(key)
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("v1:{}", hex::encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        let raw = sealed.strip_prefix("v1:").ok_or(SealError::Open)?;
        let bytes = hex::decode(raw).map_err(|_| SealError::Open)?;
        if bytes.len() < 12 {
            return Err(SealError::Open);
        }
        let (nonce, ct) = bytes.split_at(12);
        let pt = self.cipher.decrypt(Nonce::from_slice(nonce), ct).map_err(|_| SealError::Open)?;
        String::from_utf8(pt).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let s = Sealer::from_hex(&Sealer::generate_hex()).unwrap();
        let sealed = s.seal("비밀 secret");
        assert!(!sealed.contains("secret"));
        assert_eq!(s.open(&sealed).unwrap(), "비밀 secret");
        let other = Sealer::from_hex(&Sealer::generate_hex()).unwrap();
        assert!(other.open(&sealed).is_err());
        assert!(Sealer::from_hex("zz").is_err());
    }
}
