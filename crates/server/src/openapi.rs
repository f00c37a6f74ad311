//! The OpenAPI document, generated from the handlers' annotations. A checked-in copy lives at
//! `docs/openapi.json`; a test fails when the two drift (`OPENWINV_UPDATE_OPENAPI=1` rewrites it).
//!
//! What every operation of a family shares is added here by modifiers rather than repeated on
//! each handler: the signature headers and the 401/403/429 answers of every signed `/v1`
//! operation ([`Signed`]), the form encodings and the 400/413 answers of every request body
//! ([`Bodies`]), the `Idempotency-Key` header of every write ([`OpenApiDoc`]). Each handler's
//! annotation declares what is its own: its body schema and the answers its logic gives.
//! `scripts/schemathesis` checks the result against the live server.

pub mod schemas;

use openwinv_store::operations::{FAILED, RUNNING, SUCCEEDED};
use openwinv_wire::envelope::Page;

use serde_json::json;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Required, Response, ResponseBuilder, Type};

use crate::api::{catalog, firewalls, instances, scripts, ssh_keys, volumes};
use crate::billing::handlers as bills;
use crate::idempotency::OpenApiDoc;
use crate::{admin, admin_hosts, admin_sim, admin_state, images, internal, reference};

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
        instances::remote_console, crate::api::reachability::reachability,
        volumes::list, volumes::detail, volumes::create, volumes::delete, volumes::attach, volumes::detach,
        firewalls::sg_list, firewalls::sg_detail, firewalls::sg_create, firewalls::sg_edit, firewalls::sg_delete,
        firewalls::sg_rules, firewalls::sg_add_rule, firewalls::sg_edit_rule, firewalls::sg_delete_rule,
        firewalls::sg_instances, firewalls::sg_attach, firewalls::sg_detach,
        firewalls::fw_list, firewalls::fw_detail, firewalls::fw_create, firewalls::fw_edit, firewalls::fw_delete,
        firewalls::fw_instances, firewalls::fw_attach, firewalls::fw_detach,
        reference::healthz, reference::readyz, reference::error_page,
        reference::instance_fields_page, reference::flavor_fields_page,
        admin::list_accounts, admin::create_account, admin::disable_account, admin::enable_account, admin::set_quota, admin::create_key, admin::list_keys, admin::update_key, admin::disable_key, admin::delete_key, admin::import_catalog, admin::list_ssh_keys, admin::create_ssh_key, admin::delete_ssh_key, admin::list_scripts, admin::create_script, admin::delete_script, crate::web::admin_users::list, crate::web::admin_users::create, admin::show_clock, admin::list_networks, admin::set_clock, admin::advance_clock, admin::export_catalog,
        crate::api::operations::list, crate::api::operations::show,
        bills::live, bills::list, bills::detail, bills::pay,
        admin_sim::add_fault, admin_sim::list_faults, admin_sim::clear_faults, admin_sim::delete_fault, admin_sim::step,
        images::list_files, images::upload_files,
        admin_state::reset, admin_state::save_snapshot, admin_state::list_snapshots, admin_state::restore_snapshot,
        admin_state::delete_snapshot, admin_state::seed::seed,
        admin_hosts::list_hosts, admin_hosts::add_host, admin_hosts::show_host, admin_hosts::enable_host,
        admin_hosts::disable_host, admin_hosts::drain_host, admin_hosts::remove_host,
        admin_hosts::list_placements, admin_hosts::place, admin_hosts::show_placement, admin_hosts::release,
        admin_hosts::show_overcommit, admin_hosts::set_overcommit,
        admin_hosts::declare_dead, admin_hosts::evacuate, admin_hosts::destroy_stray,
        internal::register, internal::heartbeat, internal::runtime, internal::work, internal::work_result,
        internal::images::image_file, internal::console::claim_socket, internal::disks::put_disk, internal::disks::get_disk,
    ),
    components(schemas(
        schemas::NewInstanceForm, schemas::NewFirewallForm, schemas::FirewallChangesForm,
        openwinv_wire::ErrorEnvelope,
    )),
    modifiers(&Security, &OpenApiDoc, &Signed, &FieldRules, &Bodies, &QueryParams),
    security(("timestamp" = [], "credential" = [], "signature" = [])),
)]
struct ApiDoc;

/// The three signature headers (spec §2), as security schemes and as header parameters.
const SIGNATURE_HEADERS: [(&str, &str, &str); 3] = [
    ("timestamp", "X-iwinv-Timestamp", "Unix time in seconds, decimal; within 300 s of the server's clock."),
    ("credential", "X-iwinv-Credential", "The access key."),
    (
        "signature",
        "X-iwinv-Signature",
        "Hex HMAC-SHA256, keyed with the secret key, of the timestamp followed by the request path as sent \
         (percent-encoded, without the query).",
    ),
];

/// Paths that answer without any credential (spec §12).
fn is_public(path: &str) -> bool {
    !path.starts_with("/v1/") && !path.starts_with("/admin/")
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch, &mut item.head]
        .into_iter()
        .flatten()
}

/// An error answer: the iwinv error envelope, described.
fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorEnvelope"))).build())
        .build()
        .into()
}

/// Adds an error answer for `status` unless the operation declares one already.
pub(crate) fn add_error(op: &mut Operation, status: &str, description: &str) {
    op.responses.responses.entry(status.into()).or_insert_with(|| error_response(description));
}

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        for (name, header, description) in SIGNATURE_HEADERS {
            c.add_security_scheme(
                name,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(header, description))),
            );
        }
        c.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(utoipa::openapi::security::Http::new(
                utoipa::openapi::security::HttpAuthScheme::Bearer,
            )),
        );
        // The agent protocol: `Authorization: Bearer <host token>`.
        c.add_security_scheme(
            "host_token",
            SecurityScheme::Http(utoipa::openapi::security::Http::new(
                utoipa::openapi::security::HttpAuthScheme::Bearer,
            )),
        );
    }
}

/// Signed `/v1` operations: the signature headers as parameters, and the answers of the
/// signature check (401), the key's allowlist (403 `CHECK_IP`) and its rate limit (429).
/// Unsigned pages say they need no security.
struct Signed;

impl utoipa::Modify for Signed {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            if is_public(path) {
                for op in operations_mut(item) {
                    op.security = Some(Vec::new());
                }
                continue;
            }
            if !path.starts_with("/v1/") {
                continue;
            }
            for op in operations_mut(item) {
                let params = op.parameters.get_or_insert_with(Vec::new);
                for (_, header, description) in SIGNATURE_HEADERS {
                    params.push(
                        ParameterBuilder::new()
                            .name(header)
                            .parameter_in(ParameterIn::Header)
                            .required(Required::True)
                            .description(Some(description))
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                            .build(),
                    );
                }
                add_error(
                    op,
                    "401",
                    "A signature header is missing or malformed, the timestamp is outside the window \
                     (CHECK_SIGNATURE), the key is unknown or disabled (CHECK_CREDENTIAL), or the signature \
                     does not match (INVALID_SIGNATURE).",
                );
                add_error(op, "403", "The client address is not in the key's allowlist (CHECK_IP).");
                add_error(op, "429", "The key's rate limit is exhausted (LIMIT_EXCEEDED); see Retry-After.");
            }
        }
    }
}

/// Request bodies: every JSON body is also accepted as a form and as `multipart/form-data`
/// (spec §1), with the flat twin of [`schemas::FORM_TWINS`] where the JSON body nests lists. A
/// body can be malformed (400 `CHECK_PARAM`) or too large (413).
struct Bodies;

impl utoipa::Modify for Bodies {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut forms = FormTwins { schemas: &mut components.schemas };
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for op in operations_mut(item) {
                let Some(body) = op.request_body.as_mut() else { continue };
                let Some(json) = body.content.get_mut("application/json") else { continue };
                // An optional body is described by its object; `null` is no body the server takes.
                let is_null = |s: &RefOr<Schema>| serde_json::to_value(s).is_ok_and(|v| v == json!({"type": "null"}));
                let optional = match &json.schema {
                    Some(RefOr::T(Schema::OneOf(one_of))) => match &one_of.items[..] {
                        [a, b] if is_null(a) => Some(b.clone()),
                        [a, b] if is_null(b) => Some(a.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(object) = optional {
                    json.schema = Some(object);
                }
                let json = json.clone();
                let form = match &json.schema {
                    Some(RefOr::Ref(r)) => {
                        let name = r.ref_location.rsplit('/').next().unwrap_or_default().to_owned();
                        let twin = match schemas::FORM_TWINS.iter().find(|(json, _)| *json == name) {
                            Some((_, twin)) => twin.to_string(),
                            None => flat_twin(&mut forms, &name),
                        };
                        ContentBuilder::new().schema(Some(Ref::from_schema_name(twin))).build()
                    }
                    _ => json.clone(),
                };
                // A part's name travels in a header, where control characters cannot go.
                let part_names = ObjectBuilder::new().property_names(Some(
                    ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[^\u0000-\u001f\u007f]*$")),
                ));
                let mut parts = AllOfBuilder::new();
                if let Some(s) = form.schema.clone() {
                    parts = parts.item(s);
                }
                parts = parts.item(part_names);
                if URL_ENCODED_PARTS.contains(&path.as_str()) {
                    parts = parts.item(escape_free_names());
                }
                let multipart = ContentBuilder::new().schema(Some(RefOr::<Schema>::from(parts))).build();
                // No field name may hold a NUL (the input layer refuses it, as in any text).
                let form = ContentBuilder::new()
                    .schema(
                        form.schema
                            .map(|s| -> RefOr<Schema> { AllOfBuilder::new().item(s).item(names_without_nul()).into() }),
                    )
                    .build();
                body.content.insert("application/x-www-form-urlencoded".into(), form);
                body.content.insert("multipart/form-data".into(), multipart);
                add_error(op, "400", "A field is missing, malformed or out of range, or the body is malformed.");
                add_error(op, "413", "The body is larger than 1 MiB (CHECK_PARAM).");
            }
        }
    }
}

/// An object whose property names hold no NUL.
fn names_without_nul() -> ObjectBuilder {
    ObjectBuilder::new()
        .property_names(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[^\u0000]*$"))))
}

/// Instance writes whose multipart `name` and `description` arrive URL-encoded and are decoded once
/// (spec §1).
const URL_ENCODED_PARTS: [&str; 2] = ["/v1/instances", "/v1/instances/{instance_id}"];

/// For those writes, the document describes `name` and `description` parts without `%` or `+`,
/// whose decoding changes nothing, so the text rules above hold for what the server decodes (a
/// client may send any URL encoding of a valid text; the server decodes it, strictly).
fn escape_free_names() -> ObjectBuilder {
    let plain = || ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[^%+]*$"));
    ObjectBuilder::new().property("name", plain()).property("description", plain())
}

/// Query parameters whose bounds the handlers check the same way on every operation that takes
/// them (spec §4, §7, §10): the schema of each, by name, and whether an empty value is taken as
/// absent (everything but `page_no` and `page_size`). Integers are read as u64 (prices as i64).
fn query_schema(path: &str, name: &str) -> Option<(serde_json::Value, bool)> {
    let lenient = !matches!(name, "page_no" | "page_size");
    let schema = match name {
        "page_no" | "fields" => json!({"type": "integer", "minimum": 1, "maximum": u64::MAX}),
        "page_size" => json!({"type": "integer", "minimum": 1, "maximum": Page::MAX_SIZE}),
        "min_price" | "max_price" => json!({"type": "integer", "minimum": 0, "maximum": i64::MAX}),
        n if n.starts_with("min_") || n.starts_with("max_") => {
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})
        }
        "explain" => json!({"type": "string", "enum": ["", "0", "1", "false", "true"]}),
        "visibility" => json!({"type": "string", "enum": ["", "public", "private"]}),
        "status" if path == "/v1/operations" => {
            json!({"type": "string", "enum": ["", RUNNING, SUCCEEDED, FAILED]})
        }
        // `GET /v1/instances/{id}/reachability` [ext]: both are required and an empty one is missing.
        "from" if path.ends_with("/reachability") => json!({"type": "string", "minLength": 1}),
        "protocol" if path.ends_with("/reachability") => json!({"type": "string", "enum": ["TCP", "UDP", "ICMP"]}),
        "start_date" | "end_date" => json!({"type": "string", "pattern": r"^(\s*[0-9]{4}-[0-9]{2}-[0-9]{2}\s*)?$"}),
        _ => return None,
    };
    Some((schema, lenient))
}

/// Applies [`query_schema`] to every query parameter it knows.
struct QueryParams;

impl utoipa::Modify for QueryParams {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            for op in operations_mut(item) {
                for param in op.parameters.iter_mut().flatten() {
                    if param.parameter_in != ParameterIn::Query {
                        continue;
                    }
                    let Some((schema, empty_is_absent)) = query_schema(path, &param.name) else { continue };
                    let integer = schema["type"] == "integer";
                    let schema = from_json(schema);
                    param.schema = Some(if empty_is_absent && integer {
                        let empty = ObjectBuilder::new().schema_type(Type::String).enum_values(Some([""]));
                        AnyOfBuilder::new().item(schema).item(empty).into()
                    } else {
                        schema
                    });
                }
            }
        }
    }
}

/// Body fields: [`schemas::field_rules`] merged into the components, and `PUT
/// /v1/instances/{id}` needing `name` or `description` (either or both).
struct FieldRules;

impl utoipa::Modify for FieldRules {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, property, keywords) in schemas::field_rules() {
            let schema = components.schemas.get_mut(name).unwrap_or_else(|| panic!("no schema {name}"));
            let mut json = serde_json::to_value(&*schema).expect("a schema serializes");
            let field = json["properties"][property]
                .as_object_mut()
                .unwrap_or_else(|| panic!("no property {property} in {name}"));
            field.extend(keywords.as_object().expect("keywords").clone());
            *schema = from_json(json);
        }
        let changes = components.schemas.get_mut("InstanceChanges").expect("InstanceChanges");
        let given = |field: &str| {
            ObjectBuilder::new().property(field, ObjectBuilder::new().schema_type(Type::String)).required(field)
        };
        let either = AnyOfBuilder::new().item(given("name")).item(given("description"));
        *changes = AllOfBuilder::new().item(changes.clone()).item(either).into();
    }
}

/// A schema written as JSON, for what the derive cannot say (bounds beyond u32, patterns built
/// from the handlers' constants).
pub(crate) fn from_json(schema: serde_json::Value) -> RefOr<utoipa::openapi::Schema> {
    serde_json::from_value(schema).expect("a valid schema")
}

/// The components, to add the form twins of flat JSON bodies to.
struct FormTwins<'a> {
    schemas: &'a mut std::collections::BTreeMap<String, RefOr<Schema>>,
}

/// `{name}Form`: the JSON body `name` without `null`, which a form field cannot carry (an
/// absent field is the form's way to say nothing). Made once, returns its name.
fn flat_twin(forms: &mut FormTwins, name: &str) -> String {
    let twin = format!("{name}Form");
    if !forms.schemas.contains_key(&twin) {
        let schema = forms.schemas.get(name).unwrap_or_else(|| panic!("no schema {name}"));
        let mut json = serde_json::to_value(schema).expect("a schema serializes");
        strip_null_properties(&mut json);
        forms.schemas.insert(twin.clone(), from_json(json));
    }
    twin
}

/// [`strip_null`] on every property of an object schema, or of each part of an `allOf`.
fn strip_null_properties(schema: &mut serde_json::Value) {
    if let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        properties.values_mut().for_each(strip_null);
    }
    if let Some(parts) = schema.get_mut("allOf").and_then(|a| a.as_array_mut()) {
        parts.iter_mut().for_each(strip_null_properties);
    }
}

/// `{"type": ["string", "null"]}` → `{"type": "string"}`; `{"oneOf": [{"type": "null"}, X]}` → X.
fn strip_null(schema: &mut serde_json::Value) {
    if let Some(types) = schema.get("type").and_then(|t| t.as_array()) {
        let types: Vec<_> = types.iter().filter(|t| *t != "null").cloned().collect();
        schema["type"] = if types.len() == 1 { types[0].clone() } else { types.into() };
    }
    if let Some(items) = schema.get("oneOf").and_then(|o| o.as_array())
        && let [a, b] = &items[..]
    {
        let null = json!({"type": "null"});
        if *a == null {
            *schema = b.clone();
        } else if *b == null {
            *schema = a.clone();
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /openapi.json`, unauthenticated.
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/json")], document_json()).into_response()
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
