//! Attachments of firewalls to instances: reads by instance, attach and detach with the
//! operation that applies them, their revert, and the attach of an instance create.

use super::{AttachOutcome, COLUMNS, FirewallRecord, FirewallRefused, FirewallRuleRecord, SyncOp, lock_firewall};
use crate::operations::{NewOperation, insert_operation};
use crate::records::InstanceStatus;
use crate::{Result, Store};

impl Store {
    /// Ids of the firewalls attached to an instance, in attach order (instance view, field 131072).
    pub async fn firewall_ids_of(&self, instance_id: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT firewall_id FROM firewall_attachments WHERE instance_id = $1 ORDER BY created_at, firewall_id",
        )
        .bind(instance_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The firewalls attached to an instance with their rules (what the compiler needs).
    pub async fn firewalls_of_instance(
        &self,
        instance_id: &str,
    ) -> Result<Vec<(FirewallRecord, Vec<FirewallRuleRecord>)>> {
        let firewalls: Vec<FirewallRecord> = sqlx::query_as(&format!(
            "SELECT {} FROM firewalls f WHERE f.firewall_id IN \
             (SELECT firewall_id FROM firewall_attachments WHERE instance_id = $1) ORDER BY f.firewall_id",
            COLUMNS.split(", ").map(|c| format!("f.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(instance_id)
        .fetch_all(self.pool())
        .await?;
        let ids: Vec<String> = firewalls.iter().map(|f| f.firewall_id.to_string()).collect();
        let mut rules = self.firewall_rules(&ids).await?;
        Ok(firewalls
            .into_iter()
            .map(|f| {
                let mine = rules.iter().filter(|r| r.firewall_id == f.firewall_id).cloned().collect();
                rules.retain(|r| r.firewall_id != f.firewall_id);
                (f, mine)
            })
            .collect())
    }

    /// Removes every attachment of an instance (when it is deleted). Idempotent.
    pub async fn detach_all(&self, instance_id: &str) -> Result<u64> {
        let r = sqlx::query("DELETE FROM firewall_attachments WHERE instance_id = $1")
            .bind(instance_id)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected())
    }

    /// Attaches (`attach`) or detaches a firewall and writes the operation that applies the
    /// result to the instance, atomically. The instance must be the account's and not busy
    /// (`pending`/`work`); an attach is refused past `max_per_instance`. Repeating the current
    /// state is accepted (`changed: false`) and still writes the operation, which re-applies.
    /// `params(changed)` gives the operation's params (the caller's saga knows their shape).
    #[allow(clippy::too_many_arguments)]
    pub async fn begin_firewall_attachment(
        &self,
        account_id: &str,
        firewall_id: &str,
        instance_id: &str,
        attach: bool,
        max_per_instance: i64,
        op: SyncOp<'_>,
        params: &(dyn Fn(bool) -> String + Sync),
    ) -> Result<Result<AttachOutcome, FirewallRefused>> {
        let mut tx = self.begin_write().await?;
        if !lock_firewall(&mut tx, account_id, firewall_id).await? {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::NotFound));
        }
        // The instance's row lock: its operations (a delete above all) serialize with this.
        let refused = match crate::volumes::lock_instance(&mut tx, account_id, instance_id).await? {
            None => Some(FirewallRefused::InstanceNotFound),
            Some((s @ (InstanceStatus::Pending | InstanceStatus::Work), _)) => Some(FirewallRefused::InstanceBusy(s)),
            Some(_) => None,
        };
        if let Some(r) = refused {
            tx.rollback().await?;
            return Ok(Err(r));
        }
        let (present,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM firewall_attachments WHERE firewall_id = $1 AND instance_id = $2")
                .bind(firewall_id)
                .bind(instance_id)
                .fetch_one(&mut *tx)
                .await?;
        let changed = (present > 0) != attach;
        if changed && attach {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM firewall_attachments WHERE instance_id = $1")
                .bind(instance_id)
                .fetch_one(&mut *tx)
                .await?;
            if n >= max_per_instance {
                tx.rollback().await?;
                return Ok(Err(FirewallRefused::TooManyFirewalls));
            }
            insert_attachment(&mut tx, firewall_id, instance_id, account_id, op.now_ms / 1000).await?;
        } else if changed {
            sqlx::query("DELETE FROM firewall_attachments WHERE firewall_id = $1 AND instance_id = $2")
                .bind(firewall_id)
                .bind(instance_id)
                .execute(&mut *tx)
                .await?;
        }
        let params = params(changed);
        insert_operation(
            &mut tx,
            &NewOperation {
                operation_id: op.operation_id,
                account_id,
                kind: op.kind,
                resource_id: firewall_id,
                params: &params,
                now_ms: op.now_ms,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(AttachOutcome { changed }))
    }

    /// Undoes an accepted attach or detach whose operation failed: removes (`attached: true`)
    /// or restores the pair. A restore is skipped when the firewall or the instance is gone.
    /// Idempotent.
    pub async fn revert_firewall_attachment(
        &self,
        firewall_id: &str,
        instance_id: &str,
        attached: bool,
        now: i64,
    ) -> Result<()> {
        if attached {
            sqlx::query("DELETE FROM firewall_attachments WHERE firewall_id = $1 AND instance_id = $2")
                .bind(firewall_id)
                .bind(instance_id)
                .execute(self.writer())
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO firewall_attachments (firewall_id, instance_id, account_id, created_at) \
                 SELECT f.firewall_id, i.instance_id, f.account_id, $3 FROM firewalls f, instances i \
                 WHERE f.firewall_id = $1 AND i.instance_id = $2 AND i.account_id = f.account_id \
                 ON CONFLICT (firewall_id, instance_id) DO NOTHING",
            )
            .bind(firewall_id)
            .bind(instance_id)
            .bind(now)
            .execute(self.writer())
            .await?;
        }
        Ok(())
    }

    /// Instances a firewall is attached to (for re-applying after a rule change).
    pub async fn instances_of_firewall(&self, firewall_id: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT instance_id FROM firewall_attachments WHERE firewall_id = $1 ORDER BY created_at, instance_id",
        )
        .bind(firewall_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

/// Attaches inside the caller's transaction, after the instance row is written (the deprecated
/// `security_group` of instance create). The caller has checked that the firewall is the
/// account's ([`Store::firewall_exists`]); a new instance has no other firewall, so the
/// per-instance limit cannot be reached. Idempotent.
pub async fn insert_attachment(
    conn: &mut sqlx::AnyConnection,
    firewall_id: &str,
    instance_id: &str,
    account_id: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO firewall_attachments (firewall_id, instance_id, account_id, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (firewall_id, instance_id) DO NOTHING",
    )
    .bind(firewall_id)
    .bind(instance_id)
    .bind(account_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
