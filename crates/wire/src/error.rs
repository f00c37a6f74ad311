//! The iwinv error catalog (spec §3): one enum, mapped to `code`, `error_code` and HTTP status.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! error_catalog {
    ($($variant:ident = $code:literal, $name:literal, $status:literal, $doc:literal;)*) => {
        /// Every `error_code` the API can answer with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum ErrorCode {
            $(#[doc = $doc] #[serde(rename = $name)] $variant,)*
        }

        impl ErrorCode {
            /// All codes, in catalog order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The hexadecimal `code` field, e.g. `0x1`.
            pub fn code(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The `error_code` field, e.g. `NOT_FOUND`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            /// The HTTP status used by default. `LIMIT_EXCEEDED` is 429 for the rate limit and
            /// 403 for quotas; this returns 429 and callers pick 403 where a quota is meant.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// What the code is used for, as the catalog page says.
            pub fn description(self) -> &'static str {
                match self { $(ErrorCode::$variant => $doc,)* }
            }

            /// Parses an `error_code` string.
            pub fn parse(name: &str) -> Option<ErrorCode> {
                match name { $($name => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_catalog! {
    NotFound = "0x1", "NOT_FOUND", 404, "Unknown id in the path, or unknown route.";
    CidrNotValid = "0x2", "CIDR_NOT_VALID", 400, "Reserved.";
    CidrNotRegistered = "0x3", "CIDR_NOT_REGISTERED", 400, "Reserved.";
    Ipv6NotSupported = "0x4", "IPV6_NOT_SUPPORTED", 400, "IPv6 address in a firewall rule.";
    CheckRequestIp = "0x5", "CHECK_REQUEST_IP", 403, "Reserved.";
    CheckCredential = "0x6", "CHECK_CREDENTIAL", 401, "Credential header missing, access key unknown or disabled.";
    CheckSignature = "0x7", "CHECK_SIGNATURE", 401, "Timestamp or signature header missing, timestamp not an integer, or outside the 300 s window.";
    InvalidSignature = "0x8", "INVALID_SIGNATURE", 401, "The signature does not match.";
    CheckIp = "0x9", "CHECK_IP", 403, "The client address is not in the access key's allowlist.";
    RequiredGetParamMissing = "0xa", "REQUIRED_GET_PARAM_MISSING", 400, "A required query parameter is missing.";
    RequiredPostParamMissing = "0xb", "REQUIRED_POST_PARAM_MISSING", 400, "A required body field is missing.";
    DevCheckReturn = "0xc", "DEV_CHECK_RETURN", 500, "The compute or storage backend failed, or the zone is closed for creation.";
    UnavailableFlavor = "0xd", "UNAVAILABLE_FLAVOR", 400, "Flavor not offered in that zone, not orderable, or a resize that would shrink the disk.";
    CheckParam = "0xe", "CHECK_PARAM", 400, "Malformed or out-of-range value, or a duplicate firewall rule.";
    CheckParamEnum = "0xf", "CHECK_PARAM_ENUM", 400, "Value not in its enum.";
    UnavailableCombination = "0x10", "UNAVAILABLE_COMBINATION", 400, "Image not supported by the flavor, or resources in different zones.";
    CheckLength = "0x11", "CHECK_LENGTH", 400, "String length outside its bounds.";
    UnavailableSshKey = "0x12", "UNAVAILABLE_SSH_KEY", 400, "SSH key unknown to the account, or used with a Windows image.";
    DeletedOrWorkingInstance = "0x13", "DELETED_OR_WORKING_INSTANCE", 409, "The instance is being created, is mid-operation, or is being deleted.";
    EmptySet = "0x14", "EMPTY_SET", 400, "A bill-list filter matches nothing on page 1.";
    InUse = "0x15", "IN_USE", 409, "Deleting an attached volume or a firewall that is attached to instances.";
    IdInvalid = "0x16", "ID_INVALID", 400, "An id in the query or body that does not exist (image, flavor, zone, script).";
    LimitExceeded = "0x17", "LIMIT_EXCEEDED", 429, "Rate limit (429), or an account quota or per-instance limit (403).";
    CheckConsole = "0x18", "CHECK_CONSOLE", 409, "Remote console asked for an instance that is not active.";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(c.code(), format!("0x{:x}", i + 1));
            assert!(seen.insert(c.as_str()));
            assert_eq!(ErrorCode::parse(c.as_str()), Some(*c));
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert_eq!(ErrorCode::ALL.len(), 24);
    }
}
