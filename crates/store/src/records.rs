//! The store's leaf types, shared by its modules without importing each other: the status
//! vocabularies of instances and volumes, the refusal of an instance transition, the volume row.
//! `instances`, `volumes` and `usage` depend on this module and never the other way round.

/// Declares a text-valued state enum: its wire/column strings, `as_str`, `Display`, `FromStr`,
/// serde as those strings, and `TryFrom<String>` for reading the column (`#[sqlx(try_from)]`).
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the column and shown on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("{:?} is not {}", other, $what)),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(s: String) -> std::result::Result<Self, String> {
                s.parse()
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_enum! {
    /// Visible instance statuses (spec §7).
    InstanceStatus, "an instance status" {
        Pending = "pending",
        Active = "active",
        Off = "off",
        /// An operation is under way.
        Work = "work",
        Error = "error",
    }
}

text_enum! {
    /// Whether an instance's machine is meant to run (`instances.power`).
    Power, "a power state" {
        On = "on",
        Off = "off",
    }
}

impl Power {
    /// The power an instance at rest in `status` has: on when active, off otherwise.
    pub fn of(status: InstanceStatus) -> Power {
        if status == InstanceStatus::Active { Power::On } else { Power::Off }
    }

    /// The status an instance at rest with this power shows.
    pub fn at_rest(self) -> InstanceStatus {
        match self {
            Power::On => InstanceStatus::Active,
            Power::Off => InstanceStatus::Off,
        }
    }
}

text_enum! {
    /// Volume statuses (`volumes.status`).
    VolumeStatus, "a volume status" {
        Creating = "creating",
        Available = "available",
        Attaching = "attaching",
        InUse = "in-use",
        Detaching = "detaching",
        Deleting = "deleting",
        Error = "error",
    }
}

impl VolumeStatus {
    /// Whether the volume is in the middle of an operation.
    pub fn is_busy(self) -> bool {
        matches!(
            self,
            VolumeStatus::Creating | VolumeStatus::Attaching | VolumeStatus::Detaching | VolumeStatus::Deleting
        )
    }

    /// The busy statuses, as stored (for SQL `IN` lists).
    pub fn busy() -> impl Iterator<Item = VolumeStatus> {
        VolumeStatus::ALL.iter().copied().filter(|s| s.is_busy())
    }
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    NotFound,
    /// The instance is in this status, which the operation does not start from.
    From(InstanceStatus),
    /// One of the instance's volumes is in the middle of an operation.
    Busy,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VolumeRecord {
    pub block_storage_id: crate::ids::VolumeId,
    pub account_id: crate::ids::AccountId,
    pub name: String,
    pub description: Option<String>,
    #[sqlx(rename = "type")]
    pub kind: String,
    /// GB.
    pub size: i64,
    #[sqlx(try_from = "String")]
    pub status: VolumeStatus,
    pub zone_id: String,
    /// The instance it is attached to, or being attached to or detached from.
    pub instance_id: Option<crate::ids::InstanceId>,
    pub operation_id: Option<crate::ids::OperationId>,
    pub error_reason: Option<String>,
    /// Server clock, ms, when the current attachment began (the order of an instance's volumes).
    pub attached_at: Option<i64>,
    pub created_at: i64,
}

/// An SSH key as an instance keeps it (`instances.ssh_keys`, a JSON array): a copy taken at
/// create, so that the instance keeps its keys when the account's key is deleted. The fields are
/// in the order the column's text has always had them (alphabetical).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceKey {
    pub fingerprint: String,
    pub name: String,
    pub public_key: String,
    pub ssh_key_id: String,
}

/// The `instances.ssh_keys` column as stored: read into a `Vec<InstanceKey>` once, here.
#[derive(Debug, Clone, sqlx::Type)]
#[sqlx(transparent)]
pub struct KeysColumn(String);

impl TryFrom<KeysColumn> for Vec<InstanceKey> {
    type Error = serde_json::Error;

    fn try_from(c: KeysColumn) -> std::result::Result<Self, serde_json::Error> {
        serde_json::from_str(&c.0)
    }
}

/// The column text of an instance's keys.
pub(crate) fn keys_column(keys: &[InstanceKey]) -> String {
    serde_json::to_string(keys).expect("a list of strings is JSON")
}

/// A text column that holds JSON, as a page read as JSON carries it: a string, or (when the
/// database kept its JSON type) the JSON itself, written back to text.
pub(crate) fn text_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    use serde::Deserialize;
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

/// The keys column of a page read as JSON (see [`text_from_json`]).
pub(crate) fn keys_from_json<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<InstanceKey>, D::Error> {
    let text = text_from_json(d)?.unwrap_or_else(|| "[]".to_owned());
    Vec::<InstanceKey>::try_from(KeysColumn(text)).map_err(serde::de::Error::custom)
}

/// A 0/1 integer column of a page read as JSON.
pub(crate) fn flag_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    use serde::Deserialize;
    Ok(i64::deserialize(d)? != 0)
}

/// A 0/1 integer column read as a `bool`: one column type on both stores (SQLite has no boolean),
/// converted here so that no record carries the integer.
#[derive(Debug, Clone, Copy, sqlx::Type)]
#[sqlx(transparent)]
pub struct IntFlag(i64);

impl From<IntFlag> for bool {
    fn from(f: IntFlag) -> bool {
        f.0 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_todays_column_values() {
        let texts: Vec<&str> = InstanceStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(texts, ["pending", "active", "off", "work", "error"]);
        let texts: Vec<&str> = VolumeStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(texts, ["creating", "available", "attaching", "in-use", "detaching", "deleting", "error"]);
        assert_eq!(Power::On.as_str(), "on");
        assert_eq!(Power::Off.as_str(), "off");
    }

    #[test]
    fn text_round_trips_and_refuses_unknown() {
        for s in InstanceStatus::ALL {
            assert_eq!(s.as_str().parse::<InstanceStatus>(), Ok(*s));
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<InstanceStatus>(&format!("\"{s}\"")).unwrap(), *s);
        }
        for s in VolumeStatus::ALL {
            assert_eq!(VolumeStatus::try_from(s.to_string()), Ok(*s));
        }
        assert_eq!("Active".parse::<InstanceStatus>(), Err("\"Active\" is not an instance status".into()));
        assert!("in_use".parse::<VolumeStatus>().is_err());
        assert!(serde_json::from_str::<Power>("\"up\"").is_err());
    }

    #[test]
    fn keys_column_round_trips_todays_json() {
        // The text today's code writes (service: one object per key, these four fields).
        let text =
            r#"[{"fingerprint":"SHA256:x","name":"laptop","public_key":"ssh-ed25519 AAAA","ssh_key_id":"SSHKEY-1"}]"#;
        let keys = Vec::<InstanceKey>::try_from(KeysColumn(text.into())).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!((keys[0].name.as_str(), keys[0].public_key.as_str()), ("laptop", "ssh-ed25519 AAAA"));
        assert_eq!(keys_column(&keys), text);
        assert_eq!(Vec::<InstanceKey>::try_from(KeysColumn("[]".into())).unwrap(), Vec::new());
        assert!(Vec::<InstanceKey>::try_from(KeysColumn("{".into())).is_err());
    }

    #[test]
    fn busy_and_power_rules() {
        let busy: Vec<VolumeStatus> = VolumeStatus::busy().collect();
        assert_eq!(
            busy,
            [VolumeStatus::Creating, VolumeStatus::Attaching, VolumeStatus::Detaching, VolumeStatus::Deleting]
        );
        assert!(!VolumeStatus::InUse.is_busy() && !VolumeStatus::Error.is_busy());
        assert_eq!(Power::of(InstanceStatus::Active), Power::On);
        assert_eq!(Power::of(InstanceStatus::Error), Power::Off);
        assert_eq!(Power::On.at_rest(), InstanceStatus::Active);
        assert_eq!(Power::Off.at_rest(), InstanceStatus::Off);
    }
}
