//! The console's texts: one catalog per language (`i18n/en.toml`, `i18n/ko.toml`), compiled in
//! and parsed once. Korean for a browser whose `Accept-Language` starts with `ko`, English
//! otherwise; the header's switch stores the choice in a cookie, which wins.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::FromRequestParts;
use axum::http::header::{ACCEPT_LANGUAGE, COOKIE};
use axum::http::request::Parts;

/// The cookie holding the language picked with the header's switch.
pub const LANG_COOKIE: &str = "openwinv_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ko,
}

type Catalog = HashMap<String, String>;

fn parse(text: &str) -> Catalog {
    toml::from_str::<Catalog>(text).expect("the console's language catalogs are valid TOML of strings")
}

static EN: LazyLock<Catalog> = LazyLock::new(|| parse(include_str!("i18n/en.toml")));
static KO: LazyLock<Catalog> = LazyLock::new(|| parse(include_str!("i18n/ko.toml")));

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ko => "ko",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "en" => Some(Lang::En),
            "ko" => Some(Lang::Ko),
            _ => None,
        }
    }

    /// The other language, which the header's switch offers.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Ko,
            Lang::Ko => Lang::En,
        }
    }

    /// The text for `key`; the key itself when a catalog lacks it (a unit test keeps both
    /// catalogs complete).
    pub fn t(self, key: &str) -> &'static str {
        let catalog: &'static Catalog = match self {
            Lang::En => &EN,
            Lang::Ko => &KO,
        };
        match catalog.get(key) {
            Some(v) => v.as_str(),
            None => {
                tracing::warn!(key, lang = self.code(), "missing console text");
                EN.get(key).map_or("?", String::as_str)
            }
        }
    }

    /// Whether the catalog has `key` (for texts picked at run time, such as statuses).
    pub fn has(self, key: &str) -> bool {
        match self {
            Lang::En => EN.contains_key(key),
            Lang::Ko => KO.contains_key(key),
        }
    }

    /// [`Lang::t`] for a key built at run time.
    pub fn t_owned(self, key: &str) -> String {
        self.t(key).to_owned()
    }

    /// From the cookie, else `Accept-Language` (its first tag).
    pub fn of(headers: &axum::http::HeaderMap) -> Lang {
        if let Some(l) = cookie(headers, LANG_COOKIE).and_then(|c| Lang::parse(&c)) {
            return l;
        }
        let first = headers
            .get(ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if first == "ko" || first.starts_with("ko-") || first.starts_with("ko;") { Lang::Ko } else { Lang::En }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Lang, Self::Rejection> {
        Ok(Lang::of(&parts.headers))
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogs_have_the_same_keys_and_no_empty_text() {
        let mut en: Vec<&String> = EN.keys().collect();
        let mut ko: Vec<&String> = KO.keys().collect();
        en.sort();
        ko.sort();
        assert_eq!(en, ko, "en.toml and ko.toml must name the same texts");
        for (k, v) in EN.iter().chain(KO.iter()) {
            assert!(!v.trim().is_empty(), "the text `{k}` is empty");
        }
    }

    #[test]
    fn every_key_the_code_uses_is_in_the_catalogs() {
        // Keys are written as `t("…")` in the console's sources.
        let sources = [
            include_str!("layout.rs"),
            include_str!("signin.rs"),
            include_str!("dashboard.rs"),
            include_str!("instances.rs"),
            include_str!("volumes.rs"),
            include_str!("ssh_keys.rs"),
            include_str!("scripts.rs"),
            include_str!("session.rs"),
            include_str!("csrf.rs"),
            include_str!("tester.rs"),
            include_str!("admin/mod.rs"),
            include_str!("admin/accounts.rs"),
            include_str!("admin/catalog.rs"),
            include_str!("admin/sim.rs"),
            include_str!("admin/hosts.rs"),
            include_str!("firewalls.rs"),
            include_str!("billing.rs"),
            include_str!("api_keys.rs"),
            include_str!("console_frame.rs"),
        ];
        for src in sources {
            for piece in src.split(".t(\"").skip(1) {
                let key = piece.split('"').next().unwrap_or("");
                assert!(EN.contains_key(key), "the text `{key}` is missing from en.toml");
            }
        }
    }

    #[test]
    fn keys_built_at_run_time_are_in_the_catalogs() {
        let mut keys: Vec<String> = ["nav.dashboard", "nav.instances", "nav.volumes", "nav.ssh_keys", "nav.scripts"]
            .iter()
            .chain(&["signin.wrong", "signin.throttled", "error.internal", "bulk.none_selected", "bulk.bad_action"])
            .map(|k| k.to_string())
            .collect();
        for a in ["start", "shutdown", "reboot", "reboot-hard", "delete", "rebuild", "resize"] {
            keys.push(format!("action.{a}"));
            keys.push(format!("done.{a}"));
        }
        for st in ["pending", "active", "off", "work", "error", "available", "in-use", "creating", "attaching"] {
            keys.push(format!("status.{st}"));
        }
        for d in ["created", "bulk", "volume_created", "volume_attach", "volume_detach", "volume_delete"] {
            keys.push(format!("done.{d}"));
        }
        for d in ["key_created", "key_deleted", "script_created", "script_deleted"] {
            keys.push(format!("done.{d}"));
        }
        for d in ["account_created", "quota", "enabled", "disabled", "key_created", "key_disabled", "clock"] {
            keys.push(format!("admin.done_{d}"));
        }
        for d in ["fault_added", "faults_cleared"] {
            keys.push(format!("admin.done_{d}"));
        }
        keys.push("nav.api_test".to_owned());
        for k in ["tester.path_params", "tester.query_params", "admin.enable", "admin.wrong_token"] {
            keys.push(k.to_owned());
        }
        for n in ["enabled", "disabled", "draining", "dead", "alive", "offline", "new"] {
            keys.push(format!("admin.host_{n}"));
        }
        for d in ["host_added", "host_enable", "host_disable", "host_drain", "host_evacuate", "host_dead"] {
            keys.push(format!("admin.done_{d}"));
        }
        for d in ["host_removed", "stray_destroyed", "overcommit"] {
            keys.push(format!("admin.done_{d}"));
        }
        for n in ["accounts", "catalog", "clock", "faults", "hosts", "label"] {
            keys.push(format!("admin.nav_{n}"));
        }
        for k in ["nav.firewalls", "nav.billing", "nav.api_keys", "billing.others", "billing.kind_server"] {
            keys.push(k.to_owned());
        }
        for k in ["billing.kind_volume", "billing.per_hour", "billing.per_month"] {
            keys.push(k.to_owned());
        }
        for d in ["created", "edited", "deleted", "rule_added", "rule_edited", "rule_deleted", "attached", "detached"] {
            keys.push(format!("done.fw_{d}"));
        }
        for d in ["disable", "enable", "allow"] {
            keys.push(format!("done.apikey_{d}"));
        }
        for k in keys {
            assert!(EN.contains_key(&k) && KO.contains_key(&k), "the text `{k}` is missing");
        }
    }

    #[test]
    fn accept_language_picks_korean_only_for_ko() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(Lang::of(&h), Lang::En);
        h.insert(ACCEPT_LANGUAGE, "ko-KR,ko;q=0.9,en;q=0.8".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::Ko);
        h.insert(ACCEPT_LANGUAGE, "en-US,ko;q=0.5".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::En);
        h.insert(COOKIE, "a=b; openwinv_lang=ko".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::Ko);
    }
}
