//! The lifecycle of an instance after its create: operations begin (`start_work`), end
//! (`settle_instance`), are corrected by reconciling with the machine, and the row goes.

use super::create::open_server_interval_at;
use super::{COLUMNS, InstanceRecord, InstanceStatus, Power, Refused};
use crate::operations::{NewOperation, finish_begin};
use crate::usage::{self, Rate};
use crate::{Result, Store, StoreError};

impl Store {
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

async fn instance_in(conn: &mut sqlx::AnyConnection, instance_id: &str) -> Result<Option<InstanceRecord>> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM instances WHERE instance_id = $1"))
        .bind(instance_id)
        .fetch_optional(conn)
        .await?)
}
