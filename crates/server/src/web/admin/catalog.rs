//! The catalog, read-only: zones, flavors, images and block-storage types, as
//! `GET /admin/v1/catalog` reads them (the catalog cache, refreshed from the store first).

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::Operator;
use crate::AppState;
use crate::web::Shown;
use crate::web::layout::badge;

pub async fn page(State(state): State<AppState>, op: Operator) -> Response {
    let lang = op.lang;
    let error: Option<Shown> =
        state.catalog.refresh(&state.store).await.err().map(|e| crate::error::ApiError::internal(e).into());
    let c = state.catalog.get();
    let body = html! {
        p class="muted" { (lang.t("admin.catalog_note")) }
        h2 id="zones-title" { (lang.t("admin.zones")) }
        table aria-labelledby="zones-title" id="catalog-zones" {
            thead { tr { th { "ID" } th { (lang.t("instances.name")) } th { (lang.t("instances.status")) } th { (lang.t("admin.public_pool")) } } }
            tbody { @for z in &c.zones { tr { td { code { (z.id) } } td { (z.name) } td { (badge(lang, if z.status == "on" { "active" } else { "off" })) } td { (z.public_pool.as_deref().unwrap_or("")) } } } }
        }
        h2 id="flavors-title" { (lang.t("admin.flavors")) }
        table aria-labelledby="flavors-title" id="catalog-flavors" {
            thead { tr {
                th { "ID" } th { (lang.t("volumes.type")) } th class="num" { "vCPU" } th class="num" { (lang.t("admin.memory")) }
                th class="num" { (lang.t("admin.disk")) } th class="num" { "GPU" } th class="num" { (lang.t("price.per_month")) }
                th class="num" { (lang.t("price.per_hour")) } th { (lang.t("instances.zone")) }
            } }
            tbody { @for f in &c.flavors { tr {
                td { code { (f.id) } } td { (f.kind) } td class="num" { (f.vcpu) } td class="num" { (f.memory) }
                td class="num" { (f.disk) } td class="num" { (f.gpu.unwrap_or(0)) } td class="num" { (f.price_month) }
                td class="num" { (f.price_hour) } td { (f.zones.join(", ")) }
            } } }
        }
        h2 id="images-title" { (lang.t("admin.images")) }
        table aria-labelledby="images-title" id="catalog-images" {
            thead { tr { th { "ID" } th { (lang.t("instances.name")) } th { "OS" } th { (lang.t("volumes.type")) } th { (lang.t("instances.status")) } th { (lang.t("instances.zone")) } } }
            tbody { @for i in &c.images { tr {
                td { code { (i.id) } } td { (i.name) } td { (i.os_name) " " (i.version) } td { (i.image_type) }
                td { (i.status) } td { (i.zones.join(", ")) }
            } } }
        }
        h2 id="bst-title" { (lang.t("admin.block_storage_types")) }
        table aria-labelledby="bst-title" id="catalog-block-storage" {
            thead { tr { th { (lang.t("volumes.type")) } th class="num" { "min GB" } th class="num" { "max GB" } th class="num" { (lang.t("admin.price_gb_month")) } th { (lang.t("instances.zone")) } } }
            tbody { @for b in &c.block_storage_types { tr {
                td { (b.kind) } td class="num" { (b.min) } td class="num" { (b.max) } td class="num" { (b.price_gb_month) }
                td { (b.zones.as_ref().map(|z| z.join(", ")).unwrap_or_else(|| lang.t_owned("admin.every_zone"))) }
            } } }
        }
    };
    op.page(&state, "catalog", lang.t("admin.catalog_title")).error(error).body(body).render()
}
