//! Catalog reads (spec §6): zones, flavors, images and block-storage types.

use openwinv_wire::catalog::{BlockStorageType, Flavor, Image, Zone};
use reqwest::Method;

use crate::client::Client;
use crate::error::Result;
use crate::pages::{MAX_PAGE_SIZE, Page, PageRequest, collect_pages};
use crate::query::{FlavorQuery, ImageQuery};

impl Client {
    /// Every zone (not paginated).
    pub async fn zones(&self) -> Result<Vec<Zone>> {
        Ok(self.get("/v1/zones", &()).await?.result)
    }

    /// One page of flavors.
    pub async fn flavors(&self, query: &FlavorQuery) -> Result<Page<Flavor>> {
        let env = self.get("/v1/flavors", query).await?;
        Ok(Page::from_envelope(env, PageRequest { page_no: query.page_no, page_size: query.page_size }))
    }

    /// Every flavor matching `query`, fetched page by page (100 rows a page unless the query
    /// sets a size; its `page_no` is ignored).
    pub async fn all_flavors(&self, query: &FlavorQuery) -> Result<Vec<Flavor>> {
        collect_pages(|page_no| {
            let query = FlavorQuery {
                page_no: Some(page_no),
                page_size: query.page_size.or(Some(MAX_PAGE_SIZE)),
                ..query.clone()
            };
            async move { self.flavors(&query).await }
        })
        .await
    }

    /// One flavor, with the fields of the `fields` mask (all by default); `None` when the id is
    /// unknown, which the API answers with an empty list.
    pub async fn flavor(&self, flavor_id: &str, fields: Option<u64>) -> Result<Option<Flavor>> {
        let request = self.request_of(Method::GET, &["v1", "flavors", flavor_id]).query(&[("fields", fields)]);
        let env = self.execute::<Vec<Flavor>>(request).await?;
        Ok(env.result.into_iter().next())
    }

    /// One page of images.
    pub async fn images(&self, query: &ImageQuery) -> Result<Page<Image>> {
        let env = self.get("/v1/images", query).await?;
        Ok(Page::from_envelope(env, PageRequest { page_no: query.page_no, page_size: query.page_size }))
    }

    /// Every image matching `query`, fetched page by page (see [`Client::all_flavors`]).
    pub async fn all_images(&self, query: &ImageQuery) -> Result<Vec<Image>> {
        collect_pages(|page_no| {
            let query = ImageQuery {
                page_no: Some(page_no),
                page_size: query.page_size.or(Some(MAX_PAGE_SIZE)),
                ..query.clone()
            };
            async move { self.images(&query).await }
        })
        .await
    }

    /// One image; an unknown id is the API error `ID_INVALID`.
    pub async fn image(&self, image_id: &str) -> Result<Image> {
        let request = self.request_of(Method::GET, &["v1", "images", image_id]);
        crate::response::first_row(self.execute(request).await?)
    }

    /// Block-storage (volume) types, optionally only the one named `kind`.
    pub async fn block_storage_types(&self, kind: Option<&str>) -> Result<Vec<BlockStorageType>> {
        Ok(self.get("/v1/block-storages/types", &[("type", kind)]).await?.result)
    }
}
