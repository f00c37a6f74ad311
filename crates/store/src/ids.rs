//! Resource ids: a prefix plus 22 base62 characters (spec §5).
//!
//! The first 8 characters encode the creation time in milliseconds and increase strictly within a
//! process, the other 14 are random (83 bits). Ordering by id is then ordering by creation, which
//! keeps lists in creation order when several rows share a creation second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;

const TIME_CHARS: usize = 8;
const RANDOM_CHARS: usize = 14;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// 22 random base62 characters (about 131 bits).
pub fn random_base62(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char).collect()
}

/// A new id such as `SSHKEY-0Q3fZ1kd8Jx0…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}{}", time_part(next_millis()), random_base62(RANDOM_CHARS))
}

/// Milliseconds since the epoch, strictly increasing within this process.
fn next_millis() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

fn time_part(mut ms: u64) -> String {
    let mut out = [b'0'; TIME_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(ms % 62) as usize];
        ms /= 62;
    }
    String::from_utf8(out.to_vec()).expect("base62 is ASCII")
}

/// Whether `id` has the shape `PREFIX-` + 22 base62 characters.
pub fn has_shape(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|tail| tail.len() == 22 && tail.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Declares a resource id type: the id's text with its prefix, stored and sent as that text
/// (`sqlx` and `serde` transparent), read as a `&str` wherever text is wanted.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type, serde::Serialize, serde::Deserialize)]
        #[sqlx(transparent)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id (see [`new_id`]).
            pub fn generate() -> Self {
                $name(new_id($prefix))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// An id as given (a path, a body): its shape is not checked, an unknown one is simply
        /// not found.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == &other.0
            }
        }
    };
}

id_type!(
    /// `INSTANCE-…`
    InstanceId, "INSTANCE"
);
id_type!(
    /// `BS-…` (a block-storage volume)
    VolumeId, "BS"
);
id_type!(
    /// `FIREWALL-…`
    FirewallId, "FIREWALL"
);
id_type!(
    /// `OP-…` (a durable operation)
    OperationId, "OP"
);
id_type!(
    /// `ACCOUNT-…` (a tenant; every resource row carries one)
    AccountId, "ACCOUNT"
);

#[cfg(test)]
mod tests {
    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..1000).map(|_| super::new_id("X")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn shape() {
        let id = super::new_id("SSHKEY");
        assert!(super::has_shape("SSHKEY", &id), "{id}");
        assert!(!super::has_shape("SCRIPT", &id));
        assert!(!super::has_shape("SSHKEY", "SSHKEY-short"));
    }

    #[test]
    fn id_types_carry_their_prefix_and_text() {
        let id = super::FirewallId::generate();
        assert!(super::has_shape(super::FirewallId::PREFIX, &id), "{id}");
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
        let given = super::FirewallId::from("FIREWALL-x");
        assert!(given == *"FIREWALL-x" && given.len() == 10);
        assert_eq!(String::from(given), "FIREWALL-x");
    }

    #[test]
    fn operation_and_account_ids_and_lookups_by_text() {
        let op = super::OperationId::generate();
        assert!(super::has_shape("OP", &op), "{op}");
        let account = super::AccountId::generate();
        assert!(super::has_shape("ACCOUNT", &account), "{account}");
        // `Borrow<str>`: a set of ids is searched with the text a row or a path carries.
        let set: std::collections::HashSet<super::OperationId> = [op.clone()].into_iter().collect();
        assert!(set.contains(op.as_str()));
        assert!(!set.contains("OP-other"));
    }
}
