//! Placement: reservations of hosts' capacity for instances (see the module documentation of
//! [`super`]), resizes of a reservation, the overcommit ratios.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::moves::MoveFrom;
use super::{ALIVE_WITHIN_SECS, ENABLED, OVERCOMMIT_KEY, PLACE_ATTEMPTS};
use crate::{Backend, Result, Store, StoreError};

/// Overcommit ratios in thousandths (`4000` = 4.0 vCPUs reserved per host vCPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overcommit {
    pub vcpu_milli: i64,
    pub memory_milli: i64,
    pub disk_milli: i64,
}

impl Default for Overcommit {
    /// 4 vCPUs per host thread, memory and disk not overcommitted.
    fn default() -> Overcommit {
        Overcommit { vcpu_milli: 4000, memory_milli: 1000, disk_milli: 1000 }
    }
}

/// What one instance needs.
#[derive(Debug, Clone)]
pub struct PlacementRequest<'a> {
    pub instance_id: &'a str,
    pub zone_id: &'a str,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    /// Capabilities the host must have (e.g. `kvm`, `gpu`).
    pub capabilities: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PlacementRecord {
    pub instance_id: String,
    pub host_id: String,
    pub host_name: String,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    pub created_at: i64,
}

/// A placement's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// A reservation was written.
    New(PlacementRecord),
    /// The instance already had one (placement is idempotent per instance).
    Existing(PlacementRecord),
    /// No host of the zone can take the instance; `hosts` is how many hosts the zone has,
    /// `usable` how many are enabled, alive and capable.
    NoHost { hosts: usize, usable: usize },
}

/// A resize's check of the instance's own host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resized {
    /// The reservation now has the new size.
    Done(PlacementRecord),
    /// The host cannot take the new size (beside everything else placed on it).
    NoRoom(PlacementRecord),
    /// The instance has no reservation.
    NotPlaced,
}

#[derive(sqlx::FromRow)]
struct Candidate {
    host_id: String,
    vcpus: i64,
    memory_mb: i64,
    disk_gb: i64,
    capabilities: String,
    reserved_vcpus: i64,
    reserved_memory_mb: i64,
    reserved_disk_gb: i64,
}

impl Candidate {
    /// The largest share of the host's (overcommitted) capacity, in millionths, once `req` is
    /// added; `None` when it does not fit.
    fn load_after(&self, req: &PlacementRequest<'_>, ratios: &Overcommit) -> Option<i128> {
        let dims = [
            (self.reserved_vcpus, req.vcpus, self.vcpus, ratios.vcpu_milli),
            (self.reserved_memory_mb, req.memory_mb, self.memory_mb, ratios.memory_milli),
            (self.reserved_disk_gb, req.disk_gb, self.disk_gb, ratios.disk_milli),
        ];
        let mut load = 0i128;
        for (reserved, wanted, capacity, milli) in dims {
            let used = i128::from(reserved) + i128::from(wanted);
            let room = i128::from(capacity) * i128::from(milli);
            if used * 1000 > room {
                return None;
            }
            if room > 0 {
                load = load.max(used * 1000 * 1_000_000 / room);
            }
        }
        Some(load)
    }

    fn capable(&self, wanted: &[String]) -> bool {
        let has: Vec<String> = serde_json::from_str(&self.capabilities).unwrap_or_default();
        wanted.iter().all(|c| has.contains(c))
    }
}

const PLACEMENT_COLUMNS: &str =
    "p.instance_id, p.host_id, h.name AS host_name, p.vcpus, p.memory_mb, p.disk_gb, p.created_at";

impl Store {
    /// The overcommit ratios placement uses (defaults until the operator sets them).
    pub async fn overcommit(&self) -> Result<Overcommit> {
        Ok(match self.meta_get(OVERCOMMIT_KEY).await? {
            Some(v) => serde_json::from_str(&v).map_err(|e| StoreError::Corrupt(format!("{OVERCOMMIT_KEY}: {e}")))?,
            None => Overcommit::default(),
        })
    }

    pub async fn set_overcommit(&self, ratios: &Overcommit) -> Result<()> {
        self.meta_set(OVERCOMMIT_KEY, &serde_json::to_string(ratios).expect("serializes")).await
    }

    /// Places an instance (see the module documentation). `now` is the server clock.
    pub async fn place(&self, req: &PlacementRequest<'_>, now: i64) -> Result<Placed> {
        let ratios = self.overcommit().await?;
        for _ in 0..PLACE_ATTEMPTS {
            if let Some(done) = self.place_once(req, now, &ratios, None).await? {
                return Ok(done);
            }
        }
        Err(StoreError::Corrupt(format!(
            "placement of {} found capacity {PLACE_ATTEMPTS} times and lost it each time",
            req.instance_id
        )))
    }

    /// One attempt; `None` when the chosen host filled up meanwhile (try again).
    /// With `mv`, the reservation is the target of a move: a row of `placement_moves`, on a host
    /// other than the move's source, beside the instance's placement.
    pub(super) async fn place_once(
        &self,
        req: &PlacementRequest<'_>,
        now: i64,
        ratios: &Overcommit,
        mv: Option<&MoveFrom<'_>>,
    ) -> Result<Option<Placed>> {
        let mut tx = self.begin_write().await?;
        let existing = match mv {
            None => placement_in(&mut tx, req.instance_id).await?,
            Some(_) => move_in(&mut tx, req.instance_id).await?,
        };
        if let Some(p) = existing {
            return Ok(Some(Placed::Existing(p)));
        }
        let candidates: Vec<Candidate> = sqlx::query_as(
            "SELECT h.host_id, h.vcpus, h.memory_mb, h.disk_gb, h.capabilities, \
                    COALESCE(r.vcpus, 0) AS reserved_vcpus, COALESCE(r.memory_mb, 0) AS reserved_memory_mb, \
                    COALESCE(r.disk_gb, 0) AS reserved_disk_gb \
             FROM hosts h LEFT JOIN (\
                SELECT host_id, CAST(SUM(vcpus) AS BIGINT) AS vcpus, CAST(SUM(memory_mb) AS BIGINT) AS memory_mb, \
                       CAST(SUM(disk_gb) AS BIGINT) AS disk_gb \
                FROM host_reservations WHERE host_id IN (SELECT host_id FROM hosts WHERE zone_id = $1) \
                GROUP BY host_id) r ON r.host_id = h.host_id \
             WHERE h.zone_id = $1 AND h.state = $2 AND h.registered_at IS NOT NULL AND h.last_heartbeat_at >= $3 \
               AND h.host_id <> $4",
        )
        .bind(req.zone_id)
        .bind(ENABLED)
        .bind(now - ALIVE_WITHIN_SECS)
        .bind(mv.map_or("", |m| m.source_host_id))
        .fetch_all(&mut *tx)
        .await?;
        let usable: Vec<&Candidate> = candidates.iter().filter(|c| c.capable(req.capabilities)).collect();
        let mut fitting: Vec<(i128, &Candidate)> =
            usable.iter().filter_map(|c| c.load_after(req, ratios).map(|l| (l, *c))).collect();
        // Ties at random: shuffle, then a stable sort by load.
        fitting.shuffle(&mut rand::thread_rng());
        fitting.sort_by_key(|(load, _)| *load);
        let Some((_, chosen)) = fitting.first() else {
            // On PostgreSQL a concurrent call for the same instance may have committed its
            // reservation after our first look and before the candidates were read (which then
            // counted it): that reservation is the answer.
            let existing = match mv {
                None => placement_in(&mut tx, req.instance_id).await?,
                Some(_) => move_in(&mut tx, req.instance_id).await?,
            };
            if let Some(p) = existing {
                return Ok(Some(Placed::Existing(p)));
            }
            let (hosts,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM hosts WHERE zone_id = $1")
                .bind(req.zone_id)
                .fetch_one(&mut *tx)
                .await?;
            return Ok(Some(Placed::NoHost { hosts: usize::try_from(hosts).unwrap_or(0), usable: usable.len() }));
        };
        if self.backend() == Backend::Postgres {
            // Lock the chosen host, then read its sums again: they include every placement that
            // held the lock before us.
            let locked: Option<(String, Option<i64>)> =
                sqlx::query_as("SELECT state, last_heartbeat_at FROM hosts WHERE host_id = $1 FOR UPDATE")
                    .bind(&chosen.host_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let still = locked
                .is_some_and(|(state, beat)| state == ENABLED && beat.is_some_and(|b| b >= now - ALIVE_WITHIN_SECS));
            if !still {
                return Ok(None);
            }
            let (v, m, d): (i64, i64, i64) = sqlx::query_as(
                "SELECT COALESCE(CAST(SUM(vcpus) AS BIGINT), 0), COALESCE(CAST(SUM(memory_mb) AS BIGINT), 0), \
                        COALESCE(CAST(SUM(disk_gb) AS BIGINT), 0) FROM host_reservations WHERE host_id = $1",
            )
            .bind(&chosen.host_id)
            .fetch_one(&mut *tx)
            .await?;
            let fresh = Candidate {
                host_id: chosen.host_id.clone(),
                vcpus: chosen.vcpus,
                memory_mb: chosen.memory_mb,
                disk_gb: chosen.disk_gb,
                capabilities: chosen.capabilities.clone(),
                reserved_vcpus: v,
                reserved_memory_mb: m,
                reserved_disk_gb: d,
            };
            if fresh.load_after(req, ratios).is_none() {
                return Ok(None);
            }
        }
        // Both tables hold the reservation's six columns; a move's row adds where the instance
        // comes from and the operation moving it.
        let sql = match mv {
            None => {
                "INSERT INTO placements (instance_id, host_id, vcpus, memory_mb, disk_gb, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)"
            }
            Some(_) => {
                "INSERT INTO placement_moves (instance_id, host_id, vcpus, memory_mb, disk_gb, created_at, \
                 source_host_id, operation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            }
        };
        let mut insert = sqlx::query(sql)
            .bind(req.instance_id)
            .bind(&chosen.host_id)
            .bind(req.vcpus)
            .bind(req.memory_mb)
            .bind(req.disk_gb)
            .bind(now);
        if let Some(m) = mv {
            insert = insert.bind(m.source_host_id).bind(m.operation_id);
        }
        let inserted = insert.execute(&mut *tx).await;
        match inserted.map_err(StoreError::from_insert) {
            Ok(_) => {}
            Err(StoreError::Conflict) => {
                // The same instance placed by a concurrent call: answer with its reservation.
                drop(tx);
                let mut conn = self.writer().acquire().await?;
                let existing = match mv {
                    None => placement_in(&mut conn, req.instance_id).await?,
                    Some(_) => move_in(&mut conn, req.instance_id).await?,
                };
                return Ok(existing.map(Placed::Existing));
            }
            Err(e) => return Err(e),
        }
        let placed = match mv {
            None => placement_in(&mut tx, req.instance_id).await?,
            Some(_) => move_in(&mut tx, req.instance_id).await?,
        };
        tx.commit().await?;
        Ok(placed.map(Placed::New))
    }

    /// Changes the size of an instance's reservation on the host it is on (resize checks the
    /// same host first), if that host has room for the new size beside the rest of its
    /// reservations. A size no larger than the reservation on every dimension is always taken
    /// (it frees room, even on a host overbooked since by lowered overcommit ratios). The host
    /// may be disabled, draining or offline: the instance is there already. Locks the host's row
    /// on PostgreSQL, as placement does.
    pub async fn resize_placement(
        &self,
        instance_id: &str,
        vcpus: i64,
        memory_mb: i64,
        disk_gb: i64,
    ) -> Result<Resized> {
        let ratios = self.overcommit().await?;
        let mut tx = self.begin_write().await?;
        let size = (vcpus, memory_mb, disk_gb);
        let checked = self.resize_check(&mut tx, instance_id, size, &ratios, true).await?;
        let Resized::Done(_) = checked else { return Ok(checked) };
        sqlx::query("UPDATE placements SET vcpus = $2, memory_mb = $3, disk_gb = $4 WHERE instance_id = $1")
            .bind(instance_id)
            .bind(vcpus)
            .bind(memory_mb)
            .bind(disk_gb)
            .execute(&mut *tx)
            .await?;
        let done = placement_in(&mut tx, instance_id).await?;
        tx.commit().await?;
        Ok(done.map_or(Resized::NotPlaced, Resized::Done))
    }

    /// Whether [`Store::resize_placement`] would take this size now, without writing:
    /// `Done` carries the reservation as it is. A request's check before it starts a resize;
    /// the operation reserves for good.
    pub async fn resize_room(&self, instance_id: &str, vcpus: i64, memory_mb: i64, disk_gb: i64) -> Result<Resized> {
        let ratios = self.overcommit().await?;
        let mut conn = self.pool().acquire().await?;
        self.resize_check(&mut conn, instance_id, (vcpus, memory_mb, disk_gb), &ratios, false).await
    }

    async fn resize_check(
        &self,
        conn: &mut sqlx::AnyConnection,
        instance_id: &str,
        (vcpus, memory_mb, disk_gb): (i64, i64, i64),
        ratios: &Overcommit,
        lock: bool,
    ) -> Result<Resized> {
        let Some(current) = placement_in(conn, instance_id).await? else { return Ok(Resized::NotPlaced) };
        if vcpus <= current.vcpus && memory_mb <= current.memory_mb && disk_gb <= current.disk_gb {
            return Ok(Resized::Done(current));
        }
        let lock = if lock && self.backend() == Backend::Postgres { " FOR UPDATE" } else { "" };
        let (cap_v, cap_m, cap_d): (i64, i64, i64) =
            sqlx::query_as(&format!("SELECT vcpus, memory_mb, disk_gb FROM hosts WHERE host_id = $1{lock}"))
                .bind(&current.host_id)
                .fetch_one(&mut *conn)
                .await?;
        let (v, m, d): (i64, i64, i64) = sqlx::query_as(
            "SELECT COALESCE(CAST(SUM(vcpus) AS BIGINT), 0), COALESCE(CAST(SUM(memory_mb) AS BIGINT), 0), \
                    COALESCE(CAST(SUM(disk_gb) AS BIGINT), 0) FROM host_reservations WHERE host_id = $1 AND instance_id <> $2",
        )
        .bind(&current.host_id)
        .bind(instance_id)
        .fetch_one(&mut *conn)
        .await?;
        let others = Candidate {
            host_id: current.host_id.clone(),
            vcpus: cap_v,
            memory_mb: cap_m,
            disk_gb: cap_d,
            capabilities: "[]".into(),
            reserved_vcpus: v,
            reserved_memory_mb: m,
            reserved_disk_gb: d,
        };
        let req = PlacementRequest { instance_id, zone_id: "", vcpus, memory_mb, disk_gb, capabilities: &[] };
        Ok(if others.load_after(&req, ratios).is_none() { Resized::NoRoom(current) } else { Resized::Done(current) })
    }

    /// Releases an instance's reservation; the released row, if there was one.
    pub async fn release(&self, instance_id: &str) -> Result<Option<PlacementRecord>> {
        let mut tx = self.begin_write().await?;
        let existing = placement_in(&mut tx, instance_id).await?;
        if existing.is_some() {
            sqlx::query("DELETE FROM placements WHERE instance_id = $1").bind(instance_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM placement_moves WHERE instance_id = $1")
                .bind(instance_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM instance_runtime WHERE instance_id = $1")
                .bind(instance_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(existing)
    }

    pub async fn placement(&self, instance_id: &str) -> Result<Option<PlacementRecord>> {
        let mut conn = self.pool().acquire().await?;
        placement_in(&mut conn, instance_id).await
    }

    /// Every reservation, or those of one host (by name), oldest first.
    pub async fn placements(&self, host_name: Option<&str>) -> Result<Vec<PlacementRecord>> {
        let base = format!("SELECT {PLACEMENT_COLUMNS} FROM placements p JOIN hosts h ON h.host_id = p.host_id");
        Ok(match host_name {
            Some(name) => {
                sqlx::query_as(&format!("{base} WHERE h.name = $1 ORDER BY p.created_at, p.instance_id"))
                    .bind(name)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                sqlx::query_as(&format!("{base} ORDER BY p.created_at, p.instance_id")).fetch_all(self.pool()).await?
            }
        })
    }

    /// The zone and flavor of an instance, for placing it.
    pub async fn instance_zone_flavor(&self, instance_id: &str) -> Result<Option<(String, String)>> {
        Ok(sqlx::query_as("SELECT zone_id, flavor_id FROM instances WHERE instance_id = $1")
            .bind(instance_id)
            .fetch_optional(self.pool())
            .await?)
    }
}

async fn placement_in(conn: &mut sqlx::AnyConnection, instance_id: &str) -> Result<Option<PlacementRecord>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PLACEMENT_COLUMNS} FROM placements p JOIN hosts h ON h.host_id = p.host_id WHERE p.instance_id = $1"
    ))
    .bind(instance_id)
    .fetch_optional(&mut *conn)
    .await?)
}

async fn move_in(conn: &mut sqlx::AnyConnection, instance_id: &str) -> Result<Option<PlacementRecord>> {
    Ok(sqlx::query_as(
        "SELECT m.instance_id, m.host_id, h.name AS host_name, m.vcpus, m.memory_mb, m.disk_gb, m.created_at \
         FROM placement_moves m JOIN hosts h ON h.host_id = m.host_id WHERE m.instance_id = $1",
    )
    .bind(instance_id)
    .fetch_optional(&mut *conn)
    .await?)
}
