//! Request signing (spec §2): HMAC-SHA256 over the timestamp string followed by the raw path.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex signature of `timestamp` + `path` (the path as on the wire, without the query).
pub fn sign(secret_key: &str, timestamp: &str, path: &str) -> String {
    hex::encode(mac(secret_key, timestamp, path))
}

fn mac(secret_key: &str, timestamp: &str, path: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret_key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(path.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Checks a hex signature (upper or lower case) in constant time.
pub fn verify(secret_key: &str, timestamp: &str, path: &str, signature_hex: &str) -> bool {
    let expected = mac(secret_key, timestamp, path);
    let mut given = [0u8; 32];
    if signature_hex.len() != 64 || hex::decode_to_slice(signature_hex, &mut given).is_err() {
        return false;
    }
    expected.ct_eq(&given).into()
}

/// Strips the query from a request target, leaving the path exactly as written.
pub fn signed_path(path_and_query: &str) -> &str {
    path_and_query.split_once('?').map_or(path_and_query, |(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = "8ca2700c4d713ffaa657017a5d1dff97c4619512b6eef75ab1da9d38a518dc94";

    #[test]
    fn public_vector() {
        assert_eq!(sign("your_secret_key", "1710000000", "/v1/example/param1/param2"), VECTOR);
        assert!(verify("your_secret_key", "1710000000", "/v1/example/param1/param2", VECTOR));
        assert!(verify("your_secret_key", "1710000000", "/v1/example/param1/param2", &VECTOR.to_uppercase()));
    }

    #[test]
    fn rejects_other_inputs() {
        assert!(!verify("other", "1710000000", "/v1/example/param1/param2", VECTOR));
        assert!(!verify("your_secret_key", "1710000001", "/v1/example/param1/param2", VECTOR));
        assert!(!verify("your_secret_key", "1710000000", "/v1/example/param1", VECTOR));
        assert!(!verify("your_secret_key", "1710000000", "/v1/example/param1/param2", &VECTOR[..63]));
        assert!(!verify("your_secret_key", "1710000000", "/v1/example/param1/param2", "zz"));
    }

    #[test]
    fn query_is_not_part_of_the_signed_path() {
        assert_eq!(signed_path("/v1/flavors?zone_id=KR1-Z01"), "/v1/flavors");
        assert_eq!(signed_path("/v1/a%20b?x"), "/v1/a%20b");
        assert_eq!(signed_path("/v1/zones"), "/v1/zones");
    }
}
