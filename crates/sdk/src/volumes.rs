//! Block storage (spec §8): volumes, created attached to an instance and moved between the
//! instances of a zone. Every change is asynchronous (202 and `X-Operation-Id`).

use openwinv_wire::volumes::{BlockStorage, BlockStorageReceipt};
use reqwest::{Method, RequestBuilder};
use serde::Serialize;

use crate::client::Client;
use crate::error::Result;
use crate::instances::{Accepted, accepted};
use crate::pages::{MAX_PAGE_SIZE, Page, PageRequest, collect_pages};
use crate::query::VolumeQuery;
use crate::response::{first_of, first_row};

const VOLUMES: &str = "/v1/block-storages";

/// The body of `POST /v1/block-storages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewVolume {
    /// The instance to attach the new volume to; the volume is made in its zone.
    pub instance_id: String,
    /// The block-storage type (`ssd`, `sata`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// GB, within the type's limits.
    pub size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl NewVolume {
    /// A volume of `size` GB of `kind` for `instance_id`, named by the server.
    pub fn new(instance_id: impl Into<String>, kind: impl Into<String>, size: u32) -> NewVolume {
        NewVolume { instance_id: instance_id.into(), kind: kind.into(), size, ..NewVolume::default() }
    }
}

impl Client {
    /// One page of the account's volumes.
    pub async fn volumes(&self, query: &VolumeQuery) -> Result<Page<BlockStorage>> {
        let env = self.get(VOLUMES, query).await?;
        Ok(Page::from_envelope(env, PageRequest { page_no: query.page_no, page_size: query.page_size }))
    }

    /// Every volume matching `query`, fetched page by page (its `page_no` is ignored).
    pub async fn all_volumes(&self, query: &VolumeQuery) -> Result<Vec<BlockStorage>> {
        collect_pages(|page_no| {
            let query = VolumeQuery {
                page_no: Some(page_no),
                page_size: query.page_size.or(Some(MAX_PAGE_SIZE)),
                ..query.clone()
            };
            async move { self.volumes(&query).await }
        })
        .await
    }

    /// One volume; an unknown id is the API error `NOT_FOUND`.
    pub async fn volume(&self, volume_id: &str) -> Result<BlockStorage> {
        first_row(self.execute(self.request_of(Method::GET, &["v1", "block-storages", volume_id])).await?)
    }

    /// Creates a volume attached to an instance (receipt status `creating`).
    pub async fn create_volume(&self, new: &NewVolume) -> Result<Accepted<BlockStorageReceipt>> {
        self.volume_change(self.request(Method::POST, VOLUMES).json(new)).await
    }

    /// Deletes a volume that is not attached (receipt status `deleting`).
    pub async fn delete_volume(&self, volume_id: &str) -> Result<Accepted<BlockStorageReceipt>> {
        self.volume_change(self.request_of(Method::DELETE, &["v1", "block-storages", volume_id])).await
    }

    /// Attaches an available volume to an instance of its zone (receipt status `attaching`).
    pub async fn attach_volume(&self, volume_id: &str, instance_id: &str) -> Result<Accepted<BlockStorageReceipt>> {
        let path = ["v1", "block-storages", volume_id, "attach", instance_id];
        self.volume_change(self.request_of(Method::POST, &path)).await
    }

    /// Detaches a volume from its instance (receipt status `detaching`).
    pub async fn detach_volume(&self, volume_id: &str) -> Result<Accepted<BlockStorageReceipt>> {
        let path = ["v1", "block-storages", volume_id, "detach"];
        self.volume_change(self.request_of(Method::POST, &path)).await
    }

    async fn volume_change(&self, request: RequestBuilder) -> Result<Accepted<BlockStorageReceipt>> {
        accepted::<BlockStorageReceipt>(&self.answer(request).await?)?.map(first_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_volumes_leave_out_unset_fields() {
        let new = NewVolume::new("INSTANCE-1", "ssd", 20);
        assert_eq!(
            serde_json::to_value(&new).unwrap(),
            serde_json::json!({"instance_id": "INSTANCE-1", "type": "ssd", "size": 20})
        );
    }
}
