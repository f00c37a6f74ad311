//! Creating instances: quota checks under the account lock, the rows, their volumes, usage
//! intervals and create operations in one transaction, shared by concurrent requests.

use std::collections::HashMap;
use std::sync::Arc;

use super::{COLUMNS, InstanceRecord};
use crate::accounts::lock_account;
use crate::batch::GroupCommit;
use crate::operations::{NewOperation, insert_operation};
use crate::records::VolumeRecord;
use crate::usage::{self, Prices, Rate};
use crate::{Result, Store, StoreError};

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
        let mut ids: Vec<&crate::ids::AccountId> =
            batch.iter().filter_map(|r| r.rows.first()).map(|r| &r.account_id).collect();
        ids.sort();
        ids.dedup();
        let mut accounts: HashMap<crate::ids::AccountId, (Usage, QuotaOverrides)> = HashMap::new();
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

pub(super) async fn open_server_interval_at(
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
