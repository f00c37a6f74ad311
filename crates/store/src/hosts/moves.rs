//! Moves of instances between hosts (`admin hosts evacuate`): the target's reservation beside
//! the placement, the source's export answer, the switch.

use super::PLACE_ATTEMPTS;
use super::placement::{Placed, PlacementRequest};
use crate::{Result, Store, StoreError};

/// The source of a move (`admin hosts evacuate`), for [`Store::reserve_move`].
#[derive(Debug, Clone, Copy)]
pub struct MoveFrom<'a> {
    pub source_host_id: &'a str,
    pub operation_id: &'a str,
}

/// An instance on its way to another host.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MoveRecord {
    pub instance_id: String,
    /// The target.
    pub host_id: String,
    pub host_name: String,
    pub source_host_id: String,
    pub operation_id: String,
    /// The source agent's answer to `export`, once it came.
    pub export: Option<String>,
}

impl Store {
    /// Reserves room for an instance on a host other than `mv.source_host_id`, as placement does
    /// (the same candidates, fit and choice, the chosen host's row locked on PostgreSQL), written
    /// beside its placement as a move. Idempotent per instance: a pending move is the answer.
    pub async fn reserve_move(&self, req: &PlacementRequest<'_>, mv: &MoveFrom<'_>, now: i64) -> Result<Placed> {
        let ratios = self.overcommit().await?;
        for _ in 0..PLACE_ATTEMPTS {
            if let Some(done) = self.place_once(req, now, &ratios, Some(mv)).await? {
                return Ok(done);
            }
        }
        Err(StoreError::Corrupt(format!(
            "the move of {} found capacity {PLACE_ATTEMPTS} times and lost it each time",
            req.instance_id
        )))
    }

    pub async fn pending_move(&self, instance_id: &str) -> Result<Option<MoveRecord>> {
        Ok(sqlx::query_as(
            "SELECT m.instance_id, m.host_id, h.name AS host_name, m.source_host_id, m.operation_id, m.export \
             FROM placement_moves m JOIN hosts h ON h.host_id = m.host_id WHERE m.instance_id = $1",
        )
        .bind(instance_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Keeps the source agent's export answer with the move; false when the move is gone.
    pub async fn record_export(&self, instance_id: &str, operation_id: &str, export: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE placement_moves SET export = $3 WHERE instance_id = $1 AND operation_id = $2")
            .bind(instance_id)
            .bind(operation_id)
            .bind(export)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Drops a move that will not happen (its target's reservation is released).
    pub async fn cancel_move(&self, instance_id: &str, operation_id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM placement_moves WHERE instance_id = $1 AND operation_id = $2")
            .bind(instance_id)
            .bind(operation_id)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The move's pivot, in one transaction: the instance's placement names the target with the
    /// move's sizes (so the source's reservation is released only now), the move row goes, and
    /// the source's runtime report with it; the volumes attached to the instance that the source
    /// kept are kept by the target from now on (evacuation copied them before the switch).
    /// `None` when there is no such move (switched already, or cancelled); otherwise the source's
    /// host id.
    pub async fn switch_move(&self, instance_id: &str, operation_id: &str) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        let mv: Option<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT host_id, source_host_id, vcpus, memory_mb, disk_gb FROM placement_moves \
             WHERE instance_id = $1 AND operation_id = $2",
        )
        .bind(instance_id)
        .bind(operation_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((target, source, vcpus, memory_mb, disk_gb)) = mv else { return Ok(None) };
        let r = sqlx::query(
            "UPDATE placements SET host_id = $2, vcpus = $3, memory_mb = $4, disk_gb = $5 WHERE instance_id = $1",
        )
        .bind(instance_id)
        .bind(&target)
        .bind(vcpus)
        .bind(memory_mb)
        .bind(disk_gb)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Corrupt(format!("{instance_id} is moving but has no placement")));
        }
        sqlx::query("DELETE FROM placement_moves WHERE instance_id = $1").bind(instance_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM instance_runtime WHERE instance_id = $1").bind(instance_id).execute(&mut *tx).await?;
        // The volumes attached to it were copied to the target with it: the target keeps them now.
        sqlx::query("UPDATE volumes SET host_id = $2 WHERE instance_id = $1 AND host_id = $3")
            .bind(instance_id)
            .bind(&target)
            .bind(&source)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(source))
    }
}
