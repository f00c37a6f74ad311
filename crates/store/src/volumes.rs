//! Block storage volumes (spec §8).
//!
//! As with instances, every change that starts an operation is one transaction: the volume row
//! moves to its transitional status and the operation row is written together. Each of these
//! transactions takes the account's write lock (`lock_account`) first, then the instance row when
//! one is involved, then the volume rows: one lock order everywhere, so concurrent requests on an
//! account's volumes serialize and never deadlock, and the checks (instance state, zone, volumes
//! per instance, storage quota) hold at commit. An instance's delete, which checks no quota, skips
//! the account's lock and starts at the instance row: the same order, less of it.

use crate::accounts::lock_account;
use crate::operations::{NewOperation, finish_begin};
use crate::records::{InstanceStatus, Refused};
pub use crate::records::{VolumeRecord, VolumeStatus};
use crate::{PageQuery, Result, Store, StoreError, contains_pattern};

const COLUMNS: &str = "block_storage_id, account_id, name, description, type, size, status, zone_id, instance_id, \
     operation_id, error_reason, attached_at, created_at";

/// List filters, already validated.
#[derive(Debug, Clone, Default)]
pub struct VolumeFilter {
    pub zone_id: Option<String>,
    /// Case-insensitive substring.
    pub name: Option<String>,
    pub kind: Option<String>,
    pub instance_id: Option<String>,
}

/// Why a volume operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeRefused {
    VolumeNotFound,
    InstanceNotFound,
    /// The volume is in this status, attached (to an instance) or not.
    Volume {
        status: VolumeStatus,
        attached: bool,
    },
    /// The instance is in this status, which the operation does not accept.
    Instance(InstanceStatus),
    /// The volume and the instance are in different zones.
    OtherZone {
        volume: String,
        instance: String,
    },
    /// The instance has the most volumes it may have.
    TooMany,
    /// The account's block storage would exceed its quota; `used` GB are taken now.
    Quota {
        used: i64,
    },
}

/// The end state of an operation on a volume.
#[derive(Debug, Clone, Copy)]
pub struct VolumeSettle<'a> {
    pub status: VolumeStatus,
    /// Clears the volume's instance (it is detached).
    pub detach: bool,
    pub error_reason: Option<&'a str>,
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// A volume accepts attach and delete when it rests detached: `available`, or `error` after a
/// failed operation that left it detached.
fn rests_detached(v: &VolumeRecord) -> bool {
    v.instance_id.is_none() && matches!(v.status, VolumeStatus::Available | VolumeStatus::Error)
}

/// A volume accepts detach when it rests attached: `in-use`, or `error` after a failed detach.
fn rests_attached(v: &VolumeRecord) -> bool {
    v.instance_id.is_some() && matches!(v.status, VolumeStatus::InUse | VolumeStatus::Error)
}

fn volume_refused(v: &VolumeRecord) -> VolumeRefused {
    VolumeRefused::Volume { status: v.status, attached: v.instance_id.is_some() }
}

async fn volume_in(tx: &mut Tx<'_>, account_id: &str, id: &str) -> Result<Option<VolumeRecord>> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM volumes WHERE account_id = $1 AND block_storage_id = $2"))
        .bind(account_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?)
}

/// Takes the instance's row lock and returns its (status, zone): `FOR NO KEY UPDATE` on
/// PostgreSQL (a lock, no new row version, and so no view version bump for a change that is not
/// one); SQLite's write transaction already excludes every other writer.
pub(crate) async fn lock_instance(
    tx: &mut Tx<'_>,
    account_id: &str,
    instance_id: &str,
) -> Result<Option<(InstanceStatus, String)>> {
    let lock = if tx.backend_name() == "PostgreSQL" { " FOR NO KEY UPDATE" } else { "" };
    let row: Option<(String, String)> = sqlx::query_as(&format!(
        "SELECT status, zone_id FROM instances WHERE account_id = $1 AND instance_id = $2{lock}"
    ))
    .bind(account_id)
    .bind(instance_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|(s, zone)| {
        let status = s.parse().map_err(|e| StoreError::Corrupt(format!("instance {instance_id}: {e}")))?;
        Ok((status, zone))
    })
    .transpose()
}

async fn count_on_instance(tx: &mut Tx<'_>, instance_id: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM volumes WHERE instance_id = $1")
        .bind(instance_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(n)
}

/// GB of block storage the account holds, in every status.
pub(crate) async fn storage_used(conn: &mut sqlx::AnyConnection, account_id: &str) -> Result<i64> {
    // SUM of a BIGINT is NUMERIC on PostgreSQL: cast it back.
    let (n,): (i64,) =
        sqlx::query_as("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM volumes WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(conn)
            .await?;
    Ok(n)
}

pub(crate) async fn insert_volume(conn: &mut sqlx::AnyConnection, r: &VolumeRecord) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO volumes ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&r.block_storage_id)
    .bind(&r.account_id)
    .bind(&r.name)
    .bind(&r.description)
    .bind(&r.kind)
    .bind(r.size)
    .bind(r.status.as_str())
    .bind(&r.zone_id)
    .bind(&r.instance_id)
    .bind(&r.operation_id)
    .bind(&r.error_reason)
    .bind(r.attached_at)
    .bind(r.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Instance statuses a volume may be attached in (spec §8).
const ATTACHABLE: &[InstanceStatus] = &[InstanceStatus::Active, InstanceStatus::Off];
/// Instance statuses a volume may be detached in: not busy.
const DETACHABLE: &[InstanceStatus] = &[InstanceStatus::Active, InstanceStatus::Off, InstanceStatus::Error];

impl Store {
    pub async fn volume(&self, account_id: &str, id: &str) -> Result<Option<VolumeRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM volumes WHERE account_id = $1 AND block_storage_id = $2"))
            .bind(account_id)
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The volume as the engine sees it (no account scoping).
    pub async fn volume_by_id(&self, id: &str) -> Result<Option<VolumeRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM volumes WHERE block_storage_id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn list_volumes(
        &self,
        account_id: &str,
        f: &VolumeFilter,
        page: PageQuery,
    ) -> Result<(Vec<VolumeRecord>, i64)> {
        let mut filter = crate::listing::Filter::for_account(account_id);
        if let Some(z) = &f.zone_id {
            filter.text("zone_id = ?", [z.clone()]);
        }
        if let Some(n) = &f.name {
            filter.text("lower(name) LIKE ? ESCAPE '\\'", [contains_pattern(n)]);
        }
        if let Some(k) = &f.kind {
            filter.text("type = ?", [k.clone()]);
        }
        if let Some(i) = &f.instance_id {
            filter.text("instance_id = ?", [i.clone()]);
        }
        let total = self.count_rows("volumes", &filter).await?;
        let rows = self.page_of("volumes", COLUMNS, "block_storage_id", &filter, total, page).await?;
        Ok((rows, total))
    }

    /// The volumes attached to an instance (or on their way to or from it), in attach order.
    pub async fn volumes_of_instance(&self, instance_id: &str) -> Result<Vec<VolumeRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM volumes WHERE instance_id = $1 ORDER BY attached_at, block_storage_id"
        ))
        .bind(instance_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// The volumes an operation currently owns, in attach order.
    pub async fn volumes_of_operation(&self, operation_id: &str) -> Result<Vec<VolumeRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM volumes WHERE operation_id = $1 ORDER BY attached_at, block_storage_id"
        ))
        .bind(operation_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Creates a volume attached to (the future of) `rec.instance_id`, with its operation, if the
    /// instance is active or off, has fewer than `max_per_instance` volumes, is in the volume's
    /// zone, and the account stays within `quota_gb`.
    pub async fn create_attached_volume(
        &self,
        rec: &VolumeRecord,
        op: &NewOperation<'_>,
        max_per_instance: i64,
        quota_gb: i64,
        prices: &dyn crate::usage::Prices,
    ) -> Result<Result<(), VolumeRefused>> {
        let instance_id = rec.instance_id.as_deref().unwrap_or("");
        let mut tx = self.begin_write().await?;
        lock_account(self.backend(), &mut tx, &rec.account_id).await?;
        let refused = match lock_instance(&mut tx, &rec.account_id, instance_id).await? {
            None => Some(VolumeRefused::InstanceNotFound),
            Some((_, zone)) if zone != rec.zone_id => {
                Some(VolumeRefused::OtherZone { volume: rec.zone_id.clone(), instance: zone })
            }
            Some((s, _)) if !ATTACHABLE.contains(&s) => Some(VolumeRefused::Instance(s)),
            Some(_) if count_on_instance(&mut tx, instance_id).await? >= max_per_instance => {
                Some(VolumeRefused::TooMany)
            }
            Some(_) => {
                let used = storage_used(&mut tx, &rec.account_id).await?;
                (used + rec.size > quota_gb).then_some(VolumeRefused::Quota { used })
            }
        };
        if let Some(r) = refused {
            return finish_begin(tx, op, Err(r)).await;
        }
        insert_volume(&mut tx, rec).await?;
        crate::usage::open_volume_interval(&mut tx, rec, prices).await?;
        finish_begin(tx, op, Ok(())).await
    }

    /// Starts attaching a detached volume to an active or off instance of the same zone.
    pub async fn begin_volume_attach(
        &self,
        account_id: &str,
        volume_id: &str,
        instance_id: &str,
        op: &NewOperation<'_>,
        max_per_instance: i64,
    ) -> Result<Result<(), VolumeRefused>> {
        let mut tx = self.begin_write().await?;
        lock_account(self.backend(), &mut tx, account_id).await?;
        let refused = match volume_in(&mut tx, account_id, volume_id).await? {
            None => Some(VolumeRefused::VolumeNotFound),
            Some(v) => match lock_instance(&mut tx, account_id, instance_id).await? {
                None => Some(VolumeRefused::InstanceNotFound),
                Some(_) if !rests_detached(&v) => Some(volume_refused(&v)),
                Some((_, zone)) if zone != v.zone_id => {
                    Some(VolumeRefused::OtherZone { volume: v.zone_id.clone(), instance: zone })
                }
                Some((s, _)) if !ATTACHABLE.contains(&s) => Some(VolumeRefused::Instance(s)),
                Some(_) if count_on_instance(&mut tx, instance_id).await? >= max_per_instance => {
                    Some(VolumeRefused::TooMany)
                }
                Some(_) => None,
            },
        };
        if let Some(r) = refused {
            return finish_begin(tx, op, Err(r)).await;
        }
        sqlx::query(
            "UPDATE volumes SET status = 'attaching', instance_id = $1, operation_id = $2, error_reason = NULL, \
             attached_at = $3 WHERE block_storage_id = $4 AND instance_id IS NULL",
        )
        .bind(instance_id)
        .bind(op.operation_id)
        .bind(op.now_ms)
        .bind(volume_id)
        .execute(&mut *tx)
        .await?;
        finish_begin(tx, op, Ok(())).await
    }

    /// Starts detaching an attached volume from an instance that is not busy; returns the
    /// instance's id.
    pub async fn begin_volume_detach(
        &self,
        account_id: &str,
        volume_id: &str,
        op: &NewOperation<'_>,
    ) -> Result<Result<String, VolumeRefused>> {
        let mut tx = self.begin_write().await?;
        lock_account(self.backend(), &mut tx, account_id).await?;
        let v = match volume_in(&mut tx, account_id, volume_id).await? {
            None => Err(VolumeRefused::VolumeNotFound),
            Some(v) if !rests_attached(&v) => Err(volume_refused(&v)),
            Some(v) => Ok(v),
        };
        let v = match v {
            Ok(v) => v,
            Err(r) => return finish_begin(tx, op, Err(r)).await,
        };
        let instance_id = v.instance_id.clone().map(String::from).unwrap_or_default();
        // An attachment whose instance row is gone can always be undone.
        if let Some((s, _)) = lock_instance(&mut tx, account_id, &instance_id).await?
            && !DETACHABLE.contains(&s)
        {
            return finish_begin(tx, op, Err(VolumeRefused::Instance(s))).await;
        }
        sqlx::query(
            "UPDATE volumes SET status = 'detaching', operation_id = $1, error_reason = NULL WHERE block_storage_id = $2",
        )
        .bind(op.operation_id)
        .bind(volume_id)
        .execute(&mut *tx)
        .await?;
        finish_begin(tx, op, Ok(instance_id)).await
    }

    /// Starts deleting a detached volume.
    pub async fn begin_volume_delete(
        &self,
        account_id: &str,
        volume_id: &str,
        op: &NewOperation<'_>,
    ) -> Result<Result<(), VolumeRefused>> {
        let mut tx = self.begin_write().await?;
        lock_account(self.backend(), &mut tx, account_id).await?;
        let refused = match volume_in(&mut tx, account_id, volume_id).await? {
            None => Some(VolumeRefused::VolumeNotFound),
            Some(v) if !rests_detached(&v) => Some(volume_refused(&v)),
            Some(_) => None,
        };
        if let Some(r) = refused {
            return finish_begin(tx, op, Err(r)).await;
        }
        sqlx::query(
            "UPDATE volumes SET status = 'deleting', operation_id = $1, error_reason = NULL WHERE block_storage_id = $2",
        )
        .bind(op.operation_id)
        .bind(volume_id)
        .execute(&mut *tx)
        .await?;
        finish_begin(tx, op, Ok(())).await
    }

    /// Starts deleting an instance (from one of `from`): the instance goes to `work`, and every
    /// volume attached to it to `detaching`, owned by the delete operation. Refused with
    /// `Refused::Busy` while one of its volumes is mid-operation. Returns the volumes' ids.
    pub async fn begin_instance_delete(
        &self,
        account_id: &str,
        instance_id: &str,
        from: &[InstanceStatus],
        op: &NewOperation<'_>,
    ) -> Result<Result<Vec<String>, Refused>> {
        // No account lock: the instance's row (taken first, by `start_work`) orders this against
        // every other change of the instance and its volumes; no quota is checked.
        let mut tx = self.begin_write().await?;
        if let Err(refused) =
            crate::instances::start_work(&mut tx, account_id, instance_id, from, op.operation_id).await?
        {
            return finish_begin(tx, op, Err(refused)).await;
        }
        sqlx::query(
            "UPDATE volumes SET status = 'detaching', operation_id = $1, error_reason = NULL \
             WHERE instance_id = $2 AND status IN ('in-use', 'error')",
        )
        .bind(op.operation_id)
        .bind(instance_id)
        .execute(&mut *tx)
        .await?;
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT block_storage_id FROM volumes WHERE operation_id = $1 ORDER BY attached_at, block_storage_id",
        )
        .bind(op.operation_id)
        .fetch_all(&mut *tx)
        .await?;
        finish_begin(tx, op, Ok(ids.into_iter().map(|(id,)| id).collect())).await
    }

    /// Ends an operation on a volume, only while `operation_id` still names it (a finished step
    /// run twice changes nothing). A volume whose storage was kept on a host declared dead ends
    /// `error` whatever the operation did (its data is lost): a detach from an instance of that
    /// host, or one whose call was answered just before the host died, leaves no volume looking
    /// healthy.
    pub async fn settle_volume(&self, volume_id: &str, operation_id: &str, change: &VolumeSettle<'_>) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE volumes SET {SETTLE_STATUS}, \
             instance_id = CASE WHEN $3 = 1 THEN NULL ELSE instance_id END, \
             attached_at = CASE WHEN $3 = 1 THEN NULL ELSE attached_at END, \
             operation_id = NULL WHERE block_storage_id = $4 AND operation_id = $5",
        ))
        .bind(change.status.as_str())
        .bind(change.error_reason)
        .bind(i64::from(change.detach))
        .bind(volume_id)
        .bind(operation_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Ends an operation on every volume it owns (the volumes of an instance create or delete);
    /// those of a dead host end `error`, as in [`Store::settle_volume`].
    pub async fn settle_volumes_of_operation(&self, operation_id: &str, change: &VolumeSettle<'_>) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE volumes SET {SETTLE_STATUS}, \
             instance_id = CASE WHEN $3 = 1 THEN NULL ELSE instance_id END, \
             attached_at = CASE WHEN $3 = 1 THEN NULL ELSE attached_at END, \
             operation_id = NULL WHERE operation_id = $4",
        ))
        .bind(change.status.as_str())
        .bind(change.error_reason)
        .bind(i64::from(change.detach))
        .bind(operation_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Removes a volume row (the end of a delete during the second `now`, or of a failed create)
    /// and ends its usage.
    pub async fn remove_volume(&self, volume_id: &str, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        crate::usage::end_volume_usage(&mut tx, volume_id, now).await?;
        sqlx::query("DELETE FROM volumes WHERE block_storage_id = $1").bind(volume_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the volumes a create operation was making (a failed instance create).
    pub async fn remove_volumes_of_operation(&self, operation_id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        crate::usage::discard_volumes_of_operation(&mut tx, operation_id).await?;
        sqlx::query("DELETE FROM volumes WHERE operation_id = $1 AND status = 'creating'")
            .bind(operation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The status and reason a settle writes (`$1`, `$2`): those asked for, or `error` for a volume
/// whose storage was kept on a host declared dead (a failed operation's own reason is kept).
const SETTLE_STATUS: &str = "\
    status = CASE WHEN volumes.host_id IN (SELECT d.host_id FROM hosts d WHERE d.state = 'dead') \
        THEN 'error' ELSE $1 END, \
    error_reason = CASE WHEN $1 <> 'error' AND volumes.host_id IN (SELECT d.host_id FROM hosts d WHERE d.state = 'dead') \
        THEN (SELECT 'the host ' || d.name || ' that kept the volume''s storage was declared dead: its data is lost' \
              FROM hosts d WHERE d.host_id = volumes.host_id) \
        ELSE $2 END";

/// At `declare-dead`, in its transaction: every volume at rest whose storage `host_id` kept
/// becomes `error` with why, attached or not (an attached one stays attached; its instance is
/// `error` too). Volumes in an operation end `error` when it settles (`SETTLE_STATUS`). Answers
/// the volumes changed.
pub(crate) async fn error_volumes_of_dead_host(tx: &mut Tx<'_>, host_id: &str, reason: &str) -> Result<Vec<String>> {
    let why = format!("{reason}; the volume's storage was kept there: its data is lost");
    let ids: Vec<(String,)> = sqlx::query_as(
        "UPDATE volumes SET status = 'error', error_reason = $2 \
         WHERE host_id = $1 AND operation_id IS NULL RETURNING block_storage_id",
    )
    .bind(host_id)
    .bind(&why)
    .fetch_all(&mut **tx)
    .await?;
    let mut ids: Vec<String> = ids.into_iter().map(|(id,)| id).collect();
    ids.sort();
    Ok(ids)
}

/// Volumes of an instance that are mid-operation.
pub(crate) async fn busy_volumes(conn: &mut sqlx::AnyConnection, instance_id: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM volumes WHERE instance_id = $1 AND status IN ('creating', 'attaching', 'detaching', 'deleting')",
    )
    .bind(instance_id)
    .fetch_one(conn)
    .await?;
    Ok(n)
}
