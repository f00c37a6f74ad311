//! The OpenAPI document, generated from the handlers' annotations. A checked-in copy lives at
//! `docs/openapi.json`; a test fails when the two drift (`OPENWINV_UPDATE_OPENAPI=1` rewrites it).

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};

use crate::api::{catalog, scripts, ssh_keys};
use crate::reference;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "openwinv — iwinv IaaS API v1",
        description = "The iwinv IaaS API v1 as served by openwinv. Every /v1 request is signed: \
            X-iwinv-Timestamp (Unix seconds), X-iwinv-Credential (access key) and X-iwinv-Signature \
            (hex HMAC-SHA256 of timestamp + path with the secret key).",
    ),
    paths(
        catalog::zones, catalog::flavors, catalog::flavor, catalog::images, catalog::image,
        catalog::block_storage_types,
        ssh_keys::list, ssh_keys::create, ssh_keys::delete,
        scripts::list, scripts::create, scripts::delete,
        reference::healthz, reference::readyz, reference::error_page,
        reference::instance_fields_page, reference::flavor_fields_page,
    ),
    modifiers(&Security),
    security(("timestamp" = [], "credential" = [], "signature" = [])),
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        for (name, header) in [
            ("timestamp", "X-iwinv-Timestamp"),
            ("credential", "X-iwinv-Credential"),
            ("signature", "X-iwinv-Signature"),
        ] {
            c.add_security_scheme(name, SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(header))));
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub fn document_json() -> String {
    let mut s = document().to_pretty_json().expect("the OpenAPI document serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_copy_matches() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let generated = super::document_json();
        if std::env::var_os("OPENWINV_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json is out of date; run `OPENWINV_UPDATE_OPENAPI=1 cargo test -p openwinv-server openapi`"
        );
    }
}
