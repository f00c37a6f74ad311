//! Filters of the catalog lists (spec §6) and of the instance list (spec §7). Every field is
//! optional; unset ones are left out of the query string. Fields marked csv take comma-separated
//! values.

use serde::Serialize;

/// Filters of `GET /v1/flavors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlavorQuery {
    /// csv of zone ids.
    pub zone_id: Option<String>,
    /// csv of image ids the flavor must support.
    pub image_id: Option<String>,
    /// csv of flavor types (`standard`, `cpu`, `memory`, `gpu`, …).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Flavors supporting an image of this type, e.g. `os_linux`.
    pub image_type: Option<String>,
    pub min_vcpu: Option<u32>,
    pub max_vcpu: Option<u32>,
    /// GB.
    pub min_memory: Option<u32>,
    pub max_memory: Option<u32>,
    /// GB.
    pub min_disk: Option<u32>,
    pub max_disk: Option<u32>,
    pub min_gpu: Option<u32>,
    pub max_gpu: Option<u32>,
    pub page_no: Option<u64>,
    pub page_size: Option<u64>,
    /// Bit mask of the fields to return (`openwinv_wire::catalog::flavor_fields`).
    pub fields: Option<u64>,
}

/// Filters of `GET /v1/images`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageQuery {
    /// csv of zone ids.
    pub zone_id: Option<String>,
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    /// csv of OS families (`ubuntu`, `rocky`, `windows`, …).
    pub os: Option<String>,
    /// Image type, e.g. `os_linux`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `public` or `private`.
    pub visibility: Option<String>,
    pub page_no: Option<u64>,
    pub page_size: Option<u64>,
}

/// Filters of `GET /v1/instances`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstanceQuery {
    /// csv of `pending`, `active`, `off`, `work`, `error`.
    pub status: Option<String>,
    /// csv of IPv4 addresses or CIDRs, public or private.
    pub ip: Option<String>,
    /// Substring of the name.
    pub name: Option<String>,
    pub zone_id: Option<String>,
    pub image_id: Option<String>,
    /// csv of flavor types (`standard`, `cpu`, `memory`, `gpu`, …).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// One flavor type.
    pub core_type: Option<String>,
    pub min_vcpu: Option<u32>,
    pub max_vcpu: Option<u32>,
    /// GB.
    pub min_memory: Option<u32>,
    pub max_memory: Option<u32>,
    /// GB.
    pub min_disk: Option<u32>,
    pub max_disk: Option<u32>,
    pub min_gpu: Option<u32>,
    pub max_gpu: Option<u32>,
    pub page_no: Option<u64>,
    pub page_size: Option<u64>,
    /// Bit mask of the fields to return (`openwinv_wire::catalog::instance_fields`); the server
    /// default leaves out `default_account` and `vnc`.
    pub fields: Option<u64>,
}

/// Filters of `GET /v1/operations` [ext].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OperationQuery {
    /// `running`, `succeeded` or `failed`.
    pub status: Option<String>,
    /// Only the operations of this instance or volume.
    pub resource_id: Option<String>,
    pub page_no: Option<u64>,
    pub page_size: Option<u64>,
}

/// Filters of `GET /v1/block-storages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VolumeQuery {
    pub zone_id: Option<String>,
    /// Substring of the name.
    pub name: Option<String>,
    /// One block-storage type (`ssd`, `sata`, …).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Only those attached to this instance.
    pub instance_id: Option<String>,
    pub page_no: Option<u64>,
    pub page_size: Option<u64>,
}

/// Filters of `GET /v1/bill`. Dates are `YYYY-MM-DD`, inclusive, on `bill_date`; prices are
/// won, inclusive, on `price`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BillQuery {
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub min_price: Option<u64>,
    pub max_price: Option<u64>,
    pub page_no: Option<u64>,
    pub page_size: Option<u64>,
}

/// Query of the name-filtered lists (SSH keys, user scripts).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct NameQuery<'a> {
    pub name: Option<&'a str>,
    pub page_no: Option<u64>,
    pub page_size: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode<T: Serialize>(q: &T) -> String {
        let r = reqwest::Client::new().get("http://h/").query(q).build().unwrap();
        r.url().query().unwrap_or_default().to_owned()
    }

    #[test]
    fn unset_fields_are_left_out() {
        assert_eq!(encode(&FlavorQuery::default()), "");
        let q = FlavorQuery {
            zone_id: Some("KR1-Z01,KR1-Z02".into()),
            kind: Some("standard".into()),
            min_vcpu: Some(2),
            page_size: Some(100),
            ..Default::default()
        };
        assert_eq!(encode(&q), "zone_id=KR1-Z01%2CKR1-Z02&type=standard&min_vcpu=2&page_size=100");
        let q = ImageQuery { os: Some("ubuntu".into()), kind: Some("os_linux".into()), ..Default::default() };
        assert_eq!(encode(&q), "os=ubuntu&type=os_linux");
        let q = InstanceQuery {
            status: Some("active,off".into()),
            ip: Some("10.16.0.0/16".into()),
            kind: Some("gpu".into()),
            max_memory: Some(8),
            fields: Some(3),
            ..Default::default()
        };
        assert_eq!(encode(&q), "status=active%2Coff&ip=10.16.0.0%2F16&type=gpu&max_memory=8&fields=3");
        assert_eq!(encode(&()), "");
        assert_eq!(encode(&[("type", None::<&str>)]), "");
        assert_eq!(encode(&[("fields", Some(3))]), "fields=3");
    }
}
