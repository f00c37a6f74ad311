//! The OpenAPI document, generated from the handlers' annotations. A checked-in copy lives at
//! `docs/openapi.json`; a test fails when the two drift (`OPENWINV_UPDATE_OPENAPI=1` rewrites it).

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};

use crate::api::{catalog, firewalls, instances, scripts, ssh_keys, volumes};
use crate::billing::handlers as bills;
use crate::idempotency::OpenApiDoc;
use crate::{admin, admin_sim, admin_state, images, reference};

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
        instances::list, instances::detail, instances::create, instances::edit, instances::delete,
        instances::start, instances::shutdown, instances::reboot, instances::rebuild, instances::resize,
        instances::remote_console,
        volumes::list, volumes::detail, volumes::create, volumes::delete, volumes::attach, volumes::detach,
        firewalls::sg_list, firewalls::sg_detail, firewalls::sg_create, firewalls::sg_edit, firewalls::sg_delete,
        firewalls::sg_rules, firewalls::sg_add_rule, firewalls::sg_edit_rule, firewalls::sg_delete_rule,
        firewalls::sg_instances, firewalls::sg_attach, firewalls::sg_detach,
        firewalls::fw_list, firewalls::fw_detail, firewalls::fw_create, firewalls::fw_edit, firewalls::fw_delete,
        firewalls::fw_instances, firewalls::fw_attach, firewalls::fw_detach,
        reference::healthz, reference::readyz, reference::error_page,
        reference::instance_fields_page, reference::flavor_fields_page,
        admin::list_accounts, admin::create_account, admin::disable_account, admin::enable_account, admin::set_quota, admin::create_key, admin::list_keys, admin::update_key, admin::disable_key, admin::delete_key, admin::import_catalog, admin::list_ssh_keys, admin::create_ssh_key, admin::delete_ssh_key, admin::list_scripts, admin::create_script, admin::delete_script, admin::show_clock, admin::set_clock, admin::advance_clock, admin::export_catalog,
        crate::api::operations::list, crate::api::operations::show,
        bills::live, bills::list, bills::detail, bills::pay,
        admin_sim::add_fault, admin_sim::list_faults, admin_sim::clear_faults, admin_sim::delete_fault, admin_sim::step,
        images::list_files, images::upload_files,
        admin_state::reset, admin_state::save_snapshot, admin_state::list_snapshots, admin_state::restore_snapshot,
        admin_state::delete_snapshot, admin_state::seed,
    ),
    modifiers(&Security, &OpenApiDoc),
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
        c.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(utoipa::openapi::security::Http::new(
                utoipa::openapi::security::HttpAuthScheme::Bearer,
            )),
        );
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
