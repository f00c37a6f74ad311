//! Instances, their addresses and their console links.
//!
//! Every change that starts an operation is one transaction: the instance row changes state and
//! the operation row is written together, so a crash never leaves one without the other.

use std::collections::HashMap;
use std::sync::Arc;

use crate::accounts::lock_account;
use crate::batch::GroupCommit;
use crate::operations::{NewOperation, finish_begin, insert_operation};
pub use crate::records::{InstanceKey, InstanceStatus, Power, Refused, VolumeRecord, VolumeStatus};
use crate::usage::{self, Prices, Rate};
use crate::{PageQuery, Result, Store, StoreError, contains_pattern};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InstanceRecord {
    pub instance_id: String,
    pub account_id: String,
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
    pub ssh_keys: Vec<InstanceKey>,
    #[sqlx(try_from = "crate::records::IntFlag")]
    pub attach_public_ip: bool,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub public_ip_num: Option<i64>,
    pub private_ip_num: Option<i64>,
    pub operation_id: Option<String>,
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
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InstanceWithRelated {
    #[sqlx(flatten)]
    pub record: InstanceRecord,
    total_n: i64,
    related_volumes: Option<String>,
    related_firewalls: Option<String>,
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

/// Resources a new instance would bring the account to, for quota checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub instances: i64,
    pub vcpu: i64,
    /// GB of block storage.
    pub storage_gb: i64,
}

/// An account's quota overrides as stored (`None`: the server's default applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaOverrides {
    pub instances: Option<i64>,
    pub vcpu: Option<i64>,
    pub storage_gb: Option<i64>,
}

/// A create request: instances (each with its create operation's id in `operation_id`), the
/// volumes made with them, and what their operations carry.
pub struct NewInstances {
    pub rows: Vec<InstanceRecord>,
    pub volumes: Vec<VolumeRecord>,
    /// The operations' kind and parameters (one operation per instance).
    pub op_kind: &'static str,
    pub op_params: String,
    /// Server clock, ms.
    pub now_ms: i64,
    /// Rates of the usage intervals opened with the rows.
    pub prices: Arc<dyn Prices>,
    /// Whether the account's usage after the addition is within its quota.
    pub fits: fn(Usage, QuotaOverrides) -> bool,
}

/// What became of a create request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Yes,
    /// Over quota: the usage it would have brought the account to, and the account's overrides.
    OverQuota {
        usage: Usage,
        quota: QuotaOverrides,
    },
}

/// Most create requests written in one transaction.
const MAX_CREATE_BATCH: usize = 64;

pub(crate) type CreateBatches = GroupCommit<NewInstances, std::result::Result<Created, String>>;

pub(crate) fn create_batches() -> Arc<CreateBatches> {
    Arc::new(GroupCommit::new(MAX_CREATE_BATCH))
}

impl Store {
    /// Creates instances, the volumes made with them and their create operations atomically, if
    /// `fits` accepts the account's usage after the addition, given the account's quota overrides
    /// (both read under the account's write lock). Each instance and volume starts accruing at its
    /// `created_at` (usage intervals, in the same transaction).
    ///
    /// Concurrent requests share one transaction (group commit): requests of the same account
    /// are checked against its usage in order, each seeing the ones before it. Should that
    /// transaction fail, each request is retried in a transaction of its own, so that one bad
    /// request fails alone.
    pub async fn create_instances(&self, req: NewInstances) -> Result<Created> {
        if req.rows.is_empty() {
            return Ok(Created::Yes);
        }
        let store = self.clone();
        let flush = move |batch: Vec<NewInstances>| {
            let store = store.clone();
            async move { store.create_round(batch).await }
        };
        match self.creates.submit(req, flush).await {
            Some(Ok(created)) => Ok(created),
            Some(Err(e)) => Err(StoreError::Batch(e)),
            None => Err(StoreError::Batch("the create transaction did not finish".into())),
        }
    }

    async fn create_round(&self, batch: Vec<NewInstances>) -> Vec<std::result::Result<Created, String>> {
        match self.create_in_one_transaction(&batch).await {
            Ok(created) => created.into_iter().map(Ok).collect(),
            Err(e) if batch.len() == 1 => vec![Err(e.to_string())],
            Err(e) => {
                tracing::warn!(error = %e, requests = batch.len(), "a shared create transaction failed; writing each alone");
                let mut out = Vec::with_capacity(batch.len());
                for req in &batch {
                    let one = self.create_in_one_transaction(std::slice::from_ref(req)).await;
                    out.push(one.map(|mut c| c.remove(0)).map_err(|e| e.to_string()));
                }
                out
            }
        }
    }

    async fn create_in_one_transaction(&self, batch: &[NewInstances]) -> Result<Vec<Created>> {
        let mut tx = self.begin_write().await?;
        // The accounts are locked in one order (two processes' batches cannot deadlock), then
        // each request is checked against its account's usage so far.
        let mut ids: Vec<&String> = batch.iter().filter_map(|r| r.rows.first()).map(|r| &r.account_id).collect();
        ids.sort();
        ids.dedup();
        let mut accounts: HashMap<String, (Usage, QuotaOverrides)> = HashMap::new();
        for account_id in ids {
            lock_account(self.backend(), &mut tx, account_id).await?;
            accounts.insert(account_id.clone(), account_usage(&mut tx, account_id).await?);
        }
        let mut out = Vec::with_capacity(batch.len());
        for req in batch {
            let Some(first) = req.rows.first() else {
                out.push(Created::Yes);
                continue;
            };
            let account_id = &first.account_id;
            let (current, quota) = accounts[account_id];
            let usage = Usage {
                instances: current.instances + req.rows.len() as i64,
                vcpu: current.vcpu + req.rows.iter().map(|r| r.vcpu).sum::<i64>(),
                storage_gb: current.storage_gb + req.volumes.iter().map(|v| v.size).sum::<i64>(),
            };
            if !(req.fits)(usage, quota) {
                out.push(Created::OverQuota { usage, quota });
                continue;
            }
            accounts.insert(account_id.clone(), (usage, quota));
            for r in &req.rows {
                insert_instance(&mut tx, r).await?;
                open_server_interval(&mut tx, r, &r.flavor_id, &*req.prices, r.created_at).await?;
            }
            for v in &req.volumes {
                crate::volumes::insert_volume(&mut tx, v).await?;
                usage::open_volume_interval(&mut tx, v, &*req.prices).await?;
            }
            for r in &req.rows {
                let operation_id = r.operation_id.as_deref().ok_or_else(|| {
                    StoreError::Corrupt(format!("the new instance {} has no operation", r.instance_id))
                })?;
                let op = NewOperation {
                    operation_id,
                    account_id,
                    kind: req.op_kind,
                    resource_id: &r.instance_id,
                    params: &req.op_params,
                    now_ms: req.now_ms,
                };
                insert_operation(&mut tx, &op).await?;
            }
            out.push(Created::Yes);
        }
        tx.commit().await?;
        Ok(out)
    }

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
            let rows: Vec<InstanceWithRelated> = self.first_pages(&columns, &filter, page).await?;
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
        let rows = self.page_of("instances", &columns, "instance_id", &filter, total, page).await?;
        Ok((rows, total))
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

    /// A page read forward from the start (`ORDER BY created_at, instance_id`).
    async fn first_pages(
        &self,
        columns: &str,
        filter: &crate::listing::Filter,
        page: PageQuery,
    ) -> Result<Vec<InstanceWithRelated>> {
        if page.limit <= 0 {
            return Ok(Vec::new());
        }
        self.page_forward("instances", columns, "instance_id", filter, page).await
    }

    /// Every instance at rest (`active` or `off`) with its status, for reconciling with a driver.
    pub async fn instances_at_rest(&self) -> Result<Vec<(String, InstanceStatus)>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT instance_id, status FROM instances WHERE status IN ($1, $2) ORDER BY instance_id")
                .bind(InstanceStatus::Active.as_str())
                .bind(InstanceStatus::Off.as_str())
                .fetch_all(self.pool())
                .await?;
        rows.into_iter()
            .map(|(id, s)| {
                let status = s.parse().map_err(|e| StoreError::Corrupt(format!("instance {id}: {e}")))?;
                Ok((id, status))
            })
            .collect()
    }

    /// Corrects an instance at rest to what its machine really is, unless it changed meanwhile
    /// (an operation began). `status` is `active`, `off` or `error` (with `reason`).
    pub async fn reconcile_instance(
        &self,
        instance_id: &str,
        from: InstanceStatus,
        status: InstanceStatus,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let power = Power::of(status);
        let r = sqlx::query(
            "UPDATE instances SET status = $1, power = $2, error_reason = $3, \
             stop_date = CASE WHEN $7 = 1 THEN $4 ELSE stop_date END \
             WHERE instance_id = $5 AND status = $6",
        )
        .bind(status.as_str())
        .bind(power.as_str())
        .bind(reason)
        .bind(now)
        .bind(instance_id)
        .bind(from.as_str())
        .bind(i64::from(power == Power::Off))
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Moves an instance from one of `from` to `work` and writes the operation, atomically.
    pub async fn begin_instance_operation(
        &self,
        account_id: &str,
        instance_id: &str,
        from: &[InstanceStatus],
        op: &NewOperation<'_>,
    ) -> Result<Result<(), Refused>> {
        let mut tx = self.begin_write().await?;
        let checked = start_work(&mut tx, account_id, instance_id, from, op.operation_id).await?;
        finish_begin(tx, op, checked).await
    }

    /// Renames or re-describes an instance; false when it does not exist.
    pub async fn edit_instance(
        &self,
        account_id: &str,
        instance_id: &str,
        name: Option<&str>,
        description: Option<Option<&str>>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE instances SET name = COALESCE($1, name), \
             description = CASE WHEN $2 = 1 THEN $3 ELSE description END \
             WHERE account_id = $4 AND instance_id = $5",
        )
        .bind(name)
        .bind(i64::from(description.is_some()))
        .bind(description.flatten())
        .bind(account_id)
        .bind(instance_id)
        .execute(&mut *tx)
        .await?;
        // Bill lines show the latest name.
        if r.rows_affected() > 0
            && let Some(name) = name
        {
            usage::rename(&mut tx, instance_id, name).await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    /// Ends an operation on an instance: sets the fields given, clears `operation_id`; only while
    /// `operation_id` still names this operation (a finished step run twice changes nothing).
    /// A completed resize (`flavor_id` with `reprice`) switches the usage interval to the new
    /// flavor's rate in the same transaction.
    pub async fn settle_instance(&self, instance_id: &str, operation_id: &str, change: &Settle<'_>) -> Result<()> {
        let repricing = change.flavor_id.is_some() && change.reprice.is_some();
        if !repricing && !change.discard_usage && change.accrue.is_none() {
            // One statement: no transaction to open and commit (the common end of an operation).
            settle_row(self.writer(), instance_id, operation_id, change).await?;
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        if settle_row(&mut *tx, instance_id, operation_id, change).await? == 0 {
            // Settled before (a step run twice) or no longer this operation's: nothing else either.
            return Ok(());
        }
        if change.discard_usage {
            usage::discard_intervals(&mut tx, instance_id).await?;
        }
        if let Some(inst) = instance_in(&mut tx, instance_id).await? {
            if let (Some(flavor_id), Some(reprice)) = (change.flavor_id, change.reprice) {
                usage::close_intervals(&mut tx, instance_id, reprice.now).await?;
                let start = openwinv_billing::end_of_second(reprice.now);
                open_server_interval_at(&mut tx, &inst, flavor_id, reprice.rate, start).await?;
            }
            if let Some(accrue) = change.accrue
                && !usage::accrues(&mut tx, instance_id).await?
            {
                open_server_interval_at(&mut tx, &inst, &inst.flavor_id, accrue.rate, accrue.now).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes the instance row (the end of a delete, during the second `now`, when its usage
    /// stops); volumes still attached to it are kept, detached.
    pub async fn remove_instance(&self, instance_id: &str, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE volumes SET status = 'available', instance_id = NULL, attached_at = NULL, operation_id = NULL \
             WHERE instance_id = $1",
        )
        .bind(instance_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM ip_addresses WHERE instance_id = $1").bind(instance_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM console_tokens WHERE instance_id = $1").bind(instance_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM instances WHERE instance_id = $1").bind(instance_id).execute(&mut *tx).await?;
        usage::close_intervals(&mut tx, instance_id, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The end state of an operation on an instance. `None` keeps a field; [`Settle::to`] gives the
/// one that changes only the status.
#[derive(Debug, Clone)]
pub struct Settle<'a> {
    pub status: InstanceStatus,
    pub power: Option<Power>,
    pub error_reason: Option<&'a str>,
    /// `Some(None)` clears it.
    pub stop_date: Option<Option<i64>>,
    pub image_id: Option<&'a str>,
    pub password_sealed: Option<&'a str>,
    pub flavor_id: Option<&'a str>,
    pub vcpu: Option<i64>,
    /// With `flavor_id` (a completed resize): the new flavor's rate and the second the resize
    /// completed. The usage interval switches to the new rate from the next second.
    pub reprice: Option<Reprice>,
    /// A create that failed: the instance's usage is dropped (it is not charged for a machine it
    /// never had).
    pub discard_usage: bool,
    /// Start accruing at this rate from `now` unless the instance already accrues (an instance
    /// whose create failed, started later).
    pub accrue: Option<Reprice>,
}

impl Settle<'_> {
    /// An end in `status` that keeps every other field.
    pub fn to(status: InstanceStatus) -> Self {
        Settle {
            status,
            power: None,
            error_reason: None,
            stop_date: None,
            image_id: None,
            password_sealed: None,
            flavor_id: None,
            vcpu: None,
            reprice: None,
            discard_usage: false,
            accrue: None,
        }
    }
}

/// A rate change at the end of a resize.
#[derive(Debug, Clone, Copy)]
pub struct Reprice {
    pub rate: Rate,
    pub now: i64,
}

/// The row update of `settle_instance`; rows changed (0 when the operation no longer owns it).
async fn settle_row<'e>(
    conn: impl sqlx::Executor<'e, Database = sqlx::Any>,
    instance_id: &str,
    operation_id: &str,
    change: &Settle<'_>,
) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE instances SET status = $1, power = COALESCE($2, power), error_reason = $3, \
             stop_date = CASE WHEN $4 = 1 THEN $5 ELSE stop_date END, \
             image_id = COALESCE($6, image_id), password_sealed = COALESCE($7, password_sealed), \
             flavor_id = COALESCE($8, flavor_id), vcpu = COALESCE($9, vcpu), generation = generation + 1, \
             operation_id = NULL WHERE instance_id = $10 AND operation_id = $11",
    )
    .bind(change.status.as_str())
    .bind(change.power.map(Power::as_str))
    .bind(change.error_reason)
    .bind(i64::from(change.stop_date.is_some()))
    .bind(change.stop_date.flatten())
    .bind(change.image_id)
    .bind(change.password_sealed)
    .bind(change.flavor_id)
    .bind(change.vcpu)
    .bind(instance_id)
    .bind(operation_id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Moves an instance from one of `from` to `work`, owned by `operation_id`, unless one of its
/// volumes is in the middle of an operation: the check every instance operation begins with.
pub(crate) async fn start_work(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    account_id: &str,
    instance_id: &str,
    from: &[InstanceStatus],
    operation_id: &str,
) -> Result<Result<(), Refused>> {
    let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 5)).collect();
    let sql = format!(
        "UPDATE instances SET status = $1, operation_id = $2, error_reason = NULL \
         WHERE account_id = $3 AND instance_id = $4 AND status IN ({})",
        placeholders.join(", ")
    );
    let mut q =
        sqlx::query(&sql).bind(InstanceStatus::Work.as_str()).bind(operation_id).bind(account_id).bind(instance_id);
    for s in from {
        q = q.bind(s.as_str());
    }
    if q.execute(&mut **tx).await?.rows_affected() == 0 {
        let current: Option<(String,)> =
            sqlx::query_as("SELECT status FROM instances WHERE account_id = $1 AND instance_id = $2")
                .bind(account_id)
                .bind(instance_id)
                .fetch_optional(&mut **tx)
                .await?;
        return Ok(Err(match current {
            None => Refused::NotFound,
            Some((s,)) => {
                Refused::From(s.parse().map_err(|e| StoreError::Corrupt(format!("instance {instance_id}: {e}")))?)
            }
        }));
    }
    // Volumes being attached or detached keep the instance busy.
    if crate::volumes::busy_volumes(tx, instance_id).await? > 0 {
        return Ok(Err(Refused::Busy));
    }
    Ok(Ok(()))
}

/// The account's usage (instances and vCPUs kept by triggers, migration 0003; block storage
/// summed) and quota overrides, in one round trip.
async fn account_usage(conn: &mut sqlx::AnyConnection, account_id: &str) -> Result<(Usage, QuotaOverrides)> {
    type Counts = (i64, i64, i64, Option<i64>, Option<i64>, Option<i64>);
    let (instances, vcpu, storage_gb, quota_instances, quota_vcpu, quota_storage_gb): Counts = sqlx::query_as(
        "SELECT COALESCE((SELECT n FROM instance_counts WHERE account_id = $1), 0), \
         COALESCE((SELECT vcpu FROM instance_counts WHERE account_id = $1), 0), \
         CAST(COALESCE((SELECT SUM(size) FROM volumes WHERE account_id = $1), 0) AS BIGINT), \
         (SELECT quota_instances FROM accounts WHERE account_id = $1), \
         (SELECT quota_vcpu FROM accounts WHERE account_id = $1), \
         (SELECT quota_storage_gb FROM accounts WHERE account_id = $1)",
    )
    .bind(account_id)
    .fetch_one(conn)
    .await?;
    Ok((
        Usage { instances, vcpu, storage_gb },
        QuotaOverrides { instances: quota_instances, vcpu: quota_vcpu, storage_gb: quota_storage_gb },
    ))
}

async fn instance_in(conn: &mut sqlx::AnyConnection, instance_id: &str) -> Result<Option<InstanceRecord>> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM instances WHERE instance_id = $1"))
        .bind(instance_id)
        .fetch_optional(conn)
        .await?)
}

/// Opens an instance's usage interval at `flavor_id`'s price.
async fn open_server_interval(
    conn: &mut sqlx::AnyConnection,
    r: &InstanceRecord,
    flavor_id: &str,
    prices: &dyn Prices,
    start: i64,
) -> Result<()> {
    let rate = usage::server_rate(prices, flavor_id)?;
    open_server_interval_at(conn, r, flavor_id, rate, start).await
}

async fn open_server_interval_at(
    conn: &mut sqlx::AnyConnection,
    r: &InstanceRecord,
    flavor_id: &str,
    rate: Rate,
    start: i64,
) -> Result<()> {
    usage::open_interval(
        conn,
        &usage::OpenInterval {
            account_id: &r.account_id,
            resource_id: &r.instance_id,
            kind: openwinv_billing::Kind::Server,
            name: &r.name,
            product: flavor_id,
            size: 0,
            rate,
            start,
        },
    )
    .await
}

async fn insert_instance(tx: &mut sqlx::Transaction<'_, sqlx::Any>, r: &InstanceRecord) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO instances ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19, $20, $21, $22, $23, $24)"
    ))
    .bind(&r.instance_id)
    .bind(&r.account_id)
    .bind(&r.name)
    .bind(&r.description)
    .bind(r.status.as_str())
    .bind(r.power.as_str())
    .bind(&r.zone_id)
    .bind(&r.flavor_id)
    .bind(&r.image_id)
    .bind(&r.username)
    .bind(&r.password_sealed)
    .bind(&r.user_script_id)
    .bind(crate::records::keys_column(&r.ssh_keys))
    .bind(crate::flag(r.attach_public_ip))
    .bind(&r.public_ip)
    .bind(&r.private_ip)
    .bind(r.public_ip_num)
    .bind(r.private_ip_num)
    .bind(&r.operation_id)
    .bind(&r.error_reason)
    .bind(r.generation)
    .bind(r.created_at)
    .bind(r.stop_date)
    .bind(r.vcpu)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
