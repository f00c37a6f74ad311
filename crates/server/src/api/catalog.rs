//! Catalog reads (spec §6), answered from the in-memory catalog.

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use openwinv_wire::catalog::{BlockStorageType, Flavor, Image, Zone, flavor_fields};
use openwinv_wire::{Envelope, ErrorCode};

use super::Reply;
use crate::AppState;
use crate::catalog::{CatalogFile, FLAVOR_TYPES, OS_FAMILIES, mask_flavor};
use crate::error::{ApiError, ApiResult};
use crate::input::{Path, Query, enum_error};

/// Answers catalog reads from the answers kept for the current catalog version, and keeps the
/// successful ones it had to build. Errors are not kept (they are cheap and rare).
pub async fn cached(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let answers = state.catalog.answers();
    let key = match req.uri().query() {
        Some(q) => format!("{}?{q}", req.uri().path()),
        None => req.uri().path().to_owned(),
    };
    if let Some(body) = answers.get(&key) {
        return super::kept_answer(body);
    }
    super::run_and_keep(req, next, |bytes| answers.put(key, bytes)).await
}

/// Zones.
#[utoipa::path(get, path = "/v1/zones", tag = "catalog",
    responses((status = 200, body = Envelope<Vec<Zone>>)))]
pub async fn zones(State(state): State<AppState>) -> Reply<Zone> {
    let c = state.catalog.get();
    Ok(Json(Envelope::rows(c.zones.iter().map(|z| z.to_wire()).collect())))
}

/// Ids in a csv filter must exist in the catalog, else `ID_INVALID`.
fn known_ids(name: &str, given: &[String], exists: impl Fn(&str) -> bool) -> ApiResult<()> {
    match given.iter().find(|id| !exists(id)) {
        Some(id) => Err(ApiError::new(ErrorCode::IdInvalid, format!("The {name} `{id}` does not exist."))),
        None => Ok(()),
    }
}

fn flavor_mask(q: &Query) -> ApiResult<u64> {
    match q.uint("fields")? {
        None => Ok(flavor_fields::ALL),
        Some(0) => Err(ApiError::param("The query parameter `fields` must be a positive bit mask (1-255).")),
        Some(m) => Ok(m),
    }
}

fn image_types(c: &CatalogFile) -> Vec<&str> {
    let mut t: Vec<&str> = vec!["os_linux", "os_windows"];
    t.extend(c.images.iter().map(|i| i.image_type.as_str()));
    t.sort_unstable();
    t.dedup();
    t
}

/// Flavors, filtered and paginated, with `total`.
#[utoipa::path(get, path = "/v1/flavors", tag = "catalog",
    params(
        ("zone_id" = Option<String>, Query, description = "csv of zone ids"),
        ("image_id" = Option<String>, Query, description = "csv of image ids the flavor must support"),
        ("type" = Option<String>, Query, description = "csv of standard, cpu, memory, gpu"),
        ("image_type" = Option<String>, Query, description = "flavors supporting an image of this type"),
        ("min_vcpu" = Option<u32>, Query), ("max_vcpu" = Option<u32>, Query),
        ("min_memory" = Option<u32>, Query), ("max_memory" = Option<u32>, Query),
        ("min_disk" = Option<u32>, Query), ("max_disk" = Option<u32>, Query),
        ("min_gpu" = Option<u32>, Query), ("max_gpu" = Option<u32>, Query),
        ("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query),
        ("fields" = Option<u32>, Query, description = "bit mask, see /fields/v1/flavors"),
    ),
    responses((status = 200, body = Envelope<Vec<Flavor>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn flavors(State(state): State<AppState>, q: Query) -> Reply<Flavor> {
    let c = state.catalog.get();
    let page = q.page(openwinv_wire::envelope::Page::DEFAULT_SIZE)?;
    let mask = flavor_mask(&q)?;
    let zones = q.csv("zone_id");
    if let Some(z) = &zones {
        known_ids("zone_id", z, |id| c.zones.iter().any(|x| x.id == id))?;
    }
    let images = q.csv("image_id");
    if let Some(i) = &images {
        known_ids("image_id", i, |id| c.images.iter().any(|x| x.id == id))?;
    }
    let types = q.csv("type");
    if let Some(types) = &types {
        let mut known: Vec<&str> = FLAVOR_TYPES.to_vec();
        known.extend(c.flavors.iter().map(|f| f.kind.as_str()));
        known.sort_unstable();
        known.dedup();
        if let Some(bad) = types.iter().find(|t| !known.contains(&t.as_str())) {
            return Err(enum_error("type", bad, &known));
        }
    }
    let image_type = q.one_of("image_type", &image_types(&c))?;
    let bound = |name: &str| q.uint(name);
    let (min_vcpu, max_vcpu) = (bound("min_vcpu")?, bound("max_vcpu")?);
    let (min_memory, max_memory) = (bound("min_memory")?, bound("max_memory")?);
    let (min_disk, max_disk) = (bound("min_disk")?, bound("max_disk")?);
    let (min_gpu, max_gpu) = (bound("min_gpu")?, bound("max_gpu")?);
    let within = |v: u32, lo: Option<u64>, hi: Option<u64>| {
        lo.is_none_or(|lo| u64::from(v) >= lo) && hi.is_none_or(|hi| u64::from(v) <= hi)
    };
    let matching: Vec<_> = c
        .flavors
        .iter()
        .filter(|f| zones.as_ref().is_none_or(|z| f.zones.iter().any(|fz| z.contains(fz))))
        .filter(|f| images.as_ref().is_none_or(|ids| c.images.iter().any(|i| ids.contains(&i.id) && f.supports(i))))
        .filter(|f| types.as_ref().is_none_or(|t| t.contains(&f.kind)))
        .filter(|f| image_type.as_ref().is_none_or(|t| c.images.iter().any(|i| &i.image_type == t && f.supports(i))))
        .filter(|f| within(f.vcpu, min_vcpu, max_vcpu))
        .filter(|f| within(f.memory, min_memory, max_memory))
        .filter(|f| within(f.disk, min_disk, max_disk))
        .filter(|f| within(f.gpu.unwrap_or(0), min_gpu, max_gpu))
        .collect();
    let total = matching.len() as u64;
    let rows = page.slice(&matching).into_iter().map(|f| mask_flavor(f.to_wire(&c), mask)).collect();
    Ok(Json(Envelope::page(rows, page, total)))
}

/// One flavor; an unknown id answers an empty list, as iwinv does.
#[utoipa::path(get, path = "/v1/flavors/{flavor_id}", tag = "catalog",
    params(("flavor_id" = String, Path), ("fields" = Option<u32>, Query)),
    responses((status = 200, body = Envelope<Vec<Flavor>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn flavor(State(state): State<AppState>, Path(id): Path<String>, q: Query) -> Reply<Flavor> {
    let c = state.catalog.get();
    let mask = flavor_mask(&q)?;
    let rows = c.flavors.iter().filter(|f| f.id == id).map(|f| mask_flavor(f.to_wire(&c), mask)).collect();
    Ok(Json(Envelope::rows(rows)))
}

/// Images, filtered and paginated.
#[utoipa::path(get, path = "/v1/images", tag = "catalog",
    params(
        ("zone_id" = Option<String>, Query, description = "csv of zone ids"),
        ("name" = Option<String>, Query, description = "substring, case-insensitive"),
        ("os" = Option<String>, Query, description = "csv of OS families"),
        ("type" = Option<String>, Query, description = "image_type, e.g. os_linux"),
        ("visibility" = Option<String>, Query, description = "public or private"),
        ("page_no" = Option<u32>, Query), ("page_size" = Option<u32>, Query),
    ),
    responses((status = 200, body = Envelope<Vec<Image>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn images(State(state): State<AppState>, q: Query) -> Reply<Image> {
    let c = state.catalog.get();
    let page = q.page(openwinv_wire::envelope::Page::DEFAULT_SIZE)?;
    let zones = q.csv("zone_id");
    if let Some(z) = &zones {
        known_ids("zone_id", z, |id| c.zones.iter().any(|x| x.id == id))?;
    }
    let os = q.csv("os");
    if let Some(bad) = os.iter().flatten().find(|o| !OS_FAMILIES.contains(&o.as_str())) {
        return Err(enum_error("os", bad, OS_FAMILIES));
    }
    let kind = q.one_of("type", &image_types(&c))?;
    let visibility = q.one_of("visibility", &["public", "private"])?;
    let name = q.str("name").map(str::to_lowercase);
    let matching: Vec<_> = c
        .images
        .iter()
        .filter(|i| zones.as_ref().is_none_or(|z| i.zones.iter().any(|iz| z.contains(iz))))
        .filter(|i| name.as_ref().is_none_or(|n| i.name.to_lowercase().contains(n)))
        .filter(|i| os.as_ref().is_none_or(|o| o.contains(&i.family)))
        .filter(|i| kind.as_ref().is_none_or(|k| &i.image_type == k))
        .filter(|i| visibility.as_ref().is_none_or(|v| &i.visibility == v))
        .collect();
    let total = matching.len() as u64;
    let rows = page.slice(&matching).into_iter().map(|i| i.to_wire()).collect();
    Ok(Json(Envelope::page(rows, page, total)))
}

/// One image; an unknown id is `ID_INVALID`, as iwinv does.
#[utoipa::path(get, path = "/v1/images/{image_id}", tag = "catalog",
    params(("image_id" = String, Path)),
    responses((status = 200, body = Envelope<Vec<Image>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn image(State(state): State<AppState>, Path(id): Path<String>) -> Reply<Image> {
    let c = state.catalog.get();
    match c.images.iter().find(|i| i.id == id) {
        Some(i) => Ok(Json(Envelope::rows(vec![i.to_wire()]))),
        None => Err(ApiError::new(ErrorCode::IdInvalid, format!("The image `{id}` does not exist."))),
    }
}

/// Block-storage types with their size bounds and per-GB monthly price.
#[utoipa::path(get, path = "/v1/block-storages/types", tag = "catalog",
    params(("type" = Option<String>, Query, description = "exact type name")),
    responses((status = 200, body = Envelope<Vec<BlockStorageType>>), (status = 400, body = openwinv_wire::ErrorEnvelope)))]
pub async fn block_storage_types(State(state): State<AppState>, q: Query) -> Reply<BlockStorageType> {
    let c = state.catalog.get();
    let wanted = q.str("type");
    if let Some(t) = wanted
        && !c.block_storage_types.iter().any(|x| x.kind == t)
    {
        return Err(ApiError::param(format!("The query parameter `type` names no block storage type: `{t}`.")));
    }
    let rows =
        c.block_storage_types.iter().filter(|t| wanted.is_none_or(|w| t.kind == w)).map(|t| t.to_wire()).collect();
    Ok(Json(Envelope::rows(rows)))
}
