//! Instances: the record, its reads and lists (here), creation (`create.rs`) and the
//! lifecycle of operations on one (`lifecycle.rs`).
//!
//! Every change that starts an operation is one transaction: the instance row changes state and
//! the operation row is written together, so a crash never leaves one without the other.

mod create;
mod lifecycle;

pub(crate) use self::create::{CreateBatches, create_batches};
pub use self::create::{Created, NewInstances, QuotaOverrides, Usage};
pub(crate) use self::lifecycle::start_work;
pub use self::lifecycle::{Reprice, Settle};
pub use crate::records::{InstanceKey, InstanceStatus, Power, Refused, VolumeRecord, VolumeStatus};
use crate::{PageQuery, Result, Store, StoreError, contains_pattern};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Deserialize)]
pub struct InstanceRecord {
    pub instance_id: crate::ids::InstanceId,
    pub account_id: crate::ids::AccountId,
    pub name: String,
    pub description: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: InstanceStatus,
    #[sqlx(try_from = "String")]
    pub power: Power,
    pub zone_id: String,
    pub flavor_id: String,
    pub image_id: String,
    pub username: String,
    pub password_sealed: String,
    pub user_script_id: Option<String>,
    #[sqlx(try_from = "crate::records::KeysColumn")]
    #[serde(deserialize_with = "crate::records::keys_from_json")]
    pub ssh_keys: Vec<InstanceKey>,
    #[sqlx(try_from = "crate::records::IntFlag")]
    #[serde(deserialize_with = "crate::records::flag_from_json")]
    pub attach_public_ip: bool,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub public_ip_num: Option<i64>,
    pub private_ip_num: Option<i64>,
    pub operation_id: Option<crate::ids::OperationId>,
    pub error_reason: Option<String>,
    pub generation: i64,
    pub created_at: i64,
    pub stop_date: Option<i64>,
    pub vcpu: i64,
}

const COLUMNS: &str = "instance_id, account_id, name, description, status, power, zone_id, flavor_id, image_id, \
     username, password_sealed, user_script_id, ssh_keys, attach_public_ip, public_ip, private_ip, public_ip_num, \
     private_ip_num, operation_id, error_reason, generation, created_at, stop_date, vcpu";

/// List filters, already validated; flavor-based filters arrive as a set of flavor ids.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    pub statuses: Option<Vec<InstanceStatus>>,
    pub name: Option<String>,
    pub zone_id: Option<String>,
    pub image_id: Option<String>,
    pub flavor_ids: Option<Vec<String>>,
    /// Inclusive integer ranges of addresses; an instance matches when its public or private
    /// address falls in one of them.
    pub ip_ranges: Option<Vec<(i64, i64)>>,
}

/// See [`Store::view_version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ViewVersion {
    pub account: i64,
    pub epoch: i64,
}

/// Which related rows an instance read brings along (see [`Store::instance_page`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Related {
    pub volumes: bool,
    pub firewalls: bool,
}

impl Related {
    pub const NONE: Related = Related { volumes: false, firewalls: false };
}

/// Pages starting at most this far from the start are read forward in one statement, the total
/// with them (further pages need the total first, to read from the nearer end).
const FORWARD_WITHOUT_TOTAL: i64 = 1000;

/// An instance with the account's instance count and its related rows (as JSON, see
/// [`InstanceWithRelated::volumes`] and [`InstanceWithRelated::firewalls`]).
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct InstanceWithRelated {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub record: InstanceRecord,
    total_n: i64,
    #[serde(deserialize_with = "crate::records::text_from_json")]
    related_volumes: Option<String>,
    #[serde(deserialize_with = "crate::records::text_from_json")]
    related_firewalls: Option<String>,
}

/// The names of the values `related_columns` selects, as a page read as JSON keys them.
fn related_names() -> Vec<&'static str> {
    COLUMNS.split(',').map(str::trim).chain(["total_n", "related_volumes", "related_firewalls"]).collect()
}

/// What an instance's row shows of an attached volume.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct AttachedVolume {
    pub block_storage_id: String,
    pub name: String,
    pub kind: String,
    pub size: i64,
    pub status: VolumeStatus,
}

impl InstanceWithRelated {
    /// The volumes attached to (or being attached to or detached from) the instance, in attach
    /// order; empty when not asked for.
    pub fn volumes(&self) -> Result<Vec<AttachedVolume>> {
        let Some(json) = self.related_volumes.as_deref() else { return Ok(Vec::new()) };
        let rows: Vec<(String, String, String, i64, VolumeStatus)> = serde_json::from_str(json)
            .map_err(|e| StoreError::Corrupt(format!("volumes of {}: {e}", self.record.instance_id)))?;
        Ok(rows
            .into_iter()
            .map(|(block_storage_id, name, kind, size, status)| AttachedVolume {
                block_storage_id,
                name,
                kind,
                size,
                status,
            })
            .collect())
    }

    /// The ids of the firewalls attached to the instance, in attach order; empty when not asked for.
    pub fn firewalls(&self) -> Result<Vec<String>> {
        let Some(json) = self.related_firewalls.as_deref() else { return Ok(Vec::new()) };
        serde_json::from_str(json)
            .map_err(|e| StoreError::Corrupt(format!("firewalls of {}: {e}", self.record.instance_id)))
    }
}

impl Store {
    pub async fn instance(&self, account_id: &str, id: &str) -> Result<Option<InstanceRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM instances WHERE account_id = $1 AND instance_id = $2"))
            .bind(account_id)
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The instance as the engine sees it (no account scoping).
    pub async fn instance_by_id(&self, id: &str) -> Result<Option<InstanceRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM instances WHERE instance_id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn list_instances(
        &self,
        account_id: &str,
        f: &InstanceFilter,
        page: PageQuery,
    ) -> Result<(Vec<InstanceRecord>, i64)> {
        let (rows, total) = self.instance_page(account_id, f, page, Related::NONE).await?;
        Ok((rows.into_iter().map(|r| r.record).collect(), total))
    }

    /// A page of the account's instances (as [`Store::list_instances`]) with the related rows
    /// `related` asks for, read in one statement: the total (without a filter), the rows and,
    /// aggregated per row, their volumes and firewalls. Pages far from the start take a second
    /// statement for the total first (they are read from whichever end is nearer).
    pub async fn instance_page(
        &self,
        account_id: &str,
        f: &InstanceFilter,
        page: PageQuery,
        related: Related,
    ) -> Result<(Vec<InstanceWithRelated>, i64)> {
        let mut filter = crate::listing::Filter::for_account(account_id);
        if let Some(list) = &f.statuses {
            let list: Vec<String> = list.iter().map(|s| s.as_str().to_owned()).collect();
            filter.text_in("status", &list);
        }
        if let Some(name) = &f.name {
            filter.text("lower(name) LIKE ? ESCAPE '\\'", [contains_pattern(name)]);
        }
        if let Some(z) = &f.zone_id {
            filter.text("zone_id = ?", [z.clone()]);
        }
        if let Some(i) = &f.image_id {
            filter.text("image_id = ?", [i.clone()]);
        }
        if let Some(ids) = &f.flavor_ids {
            if ids.is_empty() {
                return Ok((Vec::new(), 0));
            }
            filter.text_in("flavor_id", ids);
        }
        if let Some(ranges) = &f.ip_ranges {
            filter.int_ranges("(public_ip_num BETWEEN {lo} AND {hi} OR private_ip_num BETWEEN {lo} AND {hi})", ranges);
        }
        let columns = self.related_columns(related);
        // Without a filter the total is the account's kept count (migration 0003), not a scan; a
        // page near the start is read forward whatever the total, so the count comes with it.
        if filter.is_account_only() && page.offset <= FORWARD_WITHOUT_TOTAL {
            let rows = self.instances_as_json(&columns, &filter, None, page).await?;
            let total = match rows.first() {
                Some(r) => r.total_n,
                None => self.instance_count(account_id).await?,
            };
            return Ok((rows, total));
        }
        let total = if filter.is_account_only() {
            self.instance_count(account_id).await?
        } else {
            self.count_rows("instances", &filter).await?
        };
        let rows = self.instances_as_json(&columns, &filter, Some(total), page).await?;
        Ok((rows, total))
    }

    /// The version of what the account's instance views show, and the epoch of every account's
    /// (migration 0025), in one statement: a change to any row an instance list or detail shows
    /// gives the account a new version, in the same transaction, whichever process made it; a
    /// reset or a restore moves the epoch on. Neither ever goes back.
    pub async fn view_version(&self, account_id: &str) -> Result<ViewVersion> {
        let (account, epoch): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE((SELECT v FROM view_versions WHERE account_id = $1), 0), \
             COALESCE((SELECT v FROM view_versions WHERE account_id = '*'), 0)",
        )
        .bind(account_id)
        .fetch_one(self.pool())
        .await?;
        Ok(ViewVersion { account, epoch })
    }

    /// The account's instance count (migration 0003's kept count).
    async fn instance_count(&self, account_id: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COALESCE((SELECT n FROM instance_counts WHERE account_id = $1), 0)")
            .bind(account_id)
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }

    /// One instance of the account with the related rows `related` asks for, in one statement.
    pub async fn instance_with_related(
        &self,
        account_id: &str,
        id: &str,
        related: Related,
    ) -> Result<Option<InstanceWithRelated>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {} FROM instances WHERE account_id = $1 AND instance_id = $2",
            self.related_columns(related)
        ))
        .bind(account_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The instance columns, the account's count (`$1` is the account in every caller), and the
    /// related rows as JSON arrays: volumes as `[id, name, type, size, status]` in attach order,
    /// firewall ids in attach order.
    fn related_columns(&self, related: Related) -> String {
        let (volumes, firewalls) = match self.backend() {
            crate::Backend::Sqlite => (
                "(SELECT json_group_array(json_array(v.block_storage_id, v.name, v.type, v.size, v.status) \
                 ORDER BY v.attached_at, v.block_storage_id) FROM volumes v WHERE v.instance_id = instances.instance_id)",
                "(SELECT json_group_array(a.firewall_id ORDER BY a.created_at, a.firewall_id) \
                 FROM firewall_attachments a WHERE a.instance_id = instances.instance_id)",
            ),
            crate::Backend::Postgres => (
                "(SELECT CAST(json_agg(json_build_array(v.block_storage_id, v.name, v.type, v.size, v.status) \
                 ORDER BY v.attached_at, v.block_storage_id) AS TEXT) FROM volumes v WHERE v.instance_id = instances.instance_id)",
                "(SELECT CAST(json_agg(a.firewall_id ORDER BY a.created_at, a.firewall_id) AS TEXT) \
                 FROM firewall_attachments a WHERE a.instance_id = instances.instance_id)",
            ),
        };
        format!(
            "{COLUMNS}, COALESCE((SELECT n FROM instance_counts WHERE account_id = $1), 0) AS total_n, \
             {} AS related_volumes, {} AS related_firewalls",
            if related.volumes { volumes } else { "NULL" },
            if related.firewalls { firewalls } else { "NULL" },
        )
    }

    /// A page of instances with their related rows, read as one JSON value
    /// ([`Store::page_as_json`]); without `total`, read forward from the start.
    async fn instances_as_json(
        &self,
        columns: &str,
        filter: &crate::listing::Filter,
        total: Option<i64>,
        page: PageQuery,
    ) -> Result<Vec<InstanceWithRelated>> {
        let names = related_names();
        let rows = crate::listing::JsonRows { table: "instances", columns, names: &names, id_column: "instance_id" };
        let json = self.page_as_json(&rows, filter, total, page).await?;
        let Some(json) = json else { return Ok(Vec::new()) };
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("a page of instances: {e}")))
    }
}
