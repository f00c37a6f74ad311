//! Hypervisor hosts (issue 18): the hosts the operator added, their agents' registrations and
//! heartbeats, where each instance is placed, and what the agents report about their machines.
//!
//! **Placement** follows the shape of omicron's `sled_reservation_create`: in one transaction,
//! an instance that already has a reservation gets it back (idempotent per instance); otherwise
//! the hosts of the zone that are enabled, alive (a heartbeat within [`ALIVE_WITHIN_SECS`] of the
//! server clock) and capable, whose reserved vCPU/memory/disk plus the request fits their
//! capacity times the overcommit ratios, are candidates; the least loaded one (ties at random)
//! is chosen and the reservation row written.
//!
//! Concurrent placements must not overbook. On SQLite the transaction holds the database's write
//! lock from its first statement (`BEGIN IMMEDIATE`), so placements run one after another. On
//! PostgreSQL (READ COMMITTED) the chosen host's row is locked (`SELECT … FOR UPDATE`) and its
//! reserved sums are read again after the lock is held: every placement onto one host holds that
//! row's lock from its re-check to its commit, so the second of two racing placements sees the
//! first one's row. When the re-check refuses (the host filled up meanwhile) the transaction is
//! rolled back and placement starts over with fresh candidates, so a transaction never holds two
//! host locks and two placements cannot deadlock. Placements onto different hosts do not wait
//! for each other, which SERIALIZABLE would not promise (its read of every candidate's sums makes
//! concurrent placements in one zone conflict and retry).

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::{Backend, Result, Store, StoreError};

/// The operator's states of a host.
pub const ENABLED: &str = "enabled";
pub const DISABLED: &str = "disabled";
pub const DRAINING: &str = "draining";
/// Declared dead by the operator (`admin hosts declare-dead`): its machines are lost.
pub const DEAD: &str = "dead";

/// A host is alive when its last heartbeat is at most this many seconds behind the server clock.
pub const ALIVE_WITHIN_SECS: i64 = 20;

/// Attempts of one placement before it gives up (each failed attempt means another placement
/// took the capacity it had chosen).
const PLACE_ATTEMPTS: usize = 64;

/// Machine states an agent may report.
pub const RUNTIME_STATES: &[&str] = &["running", "stopped", "paused", "crashed", "absent"];

/// The overcommit key in `meta`.
const OVERCOMMIT_KEY: &str = "placement_overcommit";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HostRecord {
    pub host_id: String,
    pub name: String,
    pub zone_id: String,
    /// `enabled`, `disabled` or `draining`.
    pub state: String,
    pub address: Option<String>,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    pub driver: Option<String>,
    /// JSON array of strings.
    pub capabilities: String,
    pub agent_version: Option<String>,
    pub registered_at: Option<i64>,
    /// Server clock, Unix seconds.
    pub last_heartbeat_at: Option<i64>,
    /// Bumped by every change of the host's row other than a heartbeat.
    pub generation: i64,
    pub created_at: i64,
    /// Sums of the host's reservations.
    pub reserved_vcpus: i64,
    pub reserved_memory_mb: i64,
    pub reserved_disk_gb: i64,
    pub instances: i64,
    /// The agent's underlay address (`--underlay`), when it gave one (0024).
    pub underlay: Option<String>,
}

impl HostRecord {
    /// Whether a heartbeat arrived within [`ALIVE_WITHIN_SECS`] of `now` (server clock).
    pub fn alive(&self, now: i64) -> bool {
        self.last_heartbeat_at.is_some_and(|t| now - t <= ALIVE_WITHIN_SECS)
    }

    pub fn capability_list(&self) -> Vec<String> {
        serde_json::from_str(&self.capabilities).unwrap_or_default()
    }
}

const HOST_COLUMNS: &str = "h.host_id, h.name, h.zone_id, h.state, h.address, h.vcpus, h.memory_mb, h.disk_gb, \
     h.driver, h.capabilities, h.agent_version, h.registered_at, h.last_heartbeat_at, h.generation, h.created_at, \
     COALESCE(r.vcpus, 0) AS reserved_vcpus, COALESCE(r.memory_mb, 0) AS reserved_memory_mb, \
     COALESCE(r.disk_gb, 0) AS reserved_disk_gb, COALESCE(r.n, 0) AS instances, h.underlay";

/// Hosts with their reserved sums; `{where}` filters `h`.
fn host_query(filter: &str) -> String {
    format!(
        "SELECT {HOST_COLUMNS} FROM hosts h LEFT JOIN (\
            SELECT host_id, CAST(SUM(vcpus) AS BIGINT) AS vcpus, CAST(SUM(memory_mb) AS BIGINT) AS memory_mb, \
                   CAST(SUM(disk_gb) AS BIGINT) AS disk_gb, CAST(SUM(1 - moving) AS BIGINT) AS n \
            FROM host_reservations GROUP BY host_id) r ON r.host_id = h.host_id \
         {filter}"
    )
}

/// A host the operator adds; the agent describes it when it registers.
#[derive(Debug, Clone)]
pub struct NewHost<'a> {
    pub name: &'a str,
    pub zone_id: &'a str,
    /// Hex SHA-256 of the host's token.
    pub token_sha256: &'a str,
    pub created_at: i64,
}

/// What an agent says about its host when it registers.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    pub address: &'a str,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    pub driver: &'a str,
    pub capabilities: &'a [String],
    pub agent_version: &'a str,
}

/// The host a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HostIdentity {
    pub host_id: String,
    pub name: String,
    pub zone_id: String,
    pub state: String,
    pub registered_at: Option<i64>,
}

/// What a heartbeat wrote and the host's current state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Beat {
    pub state: String,
    pub generation: i64,
}

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

/// What became of one runtime report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    Accepted,
    /// A report with this generation or a later one is stored already.
    Stale {
        stored_generation: i64,
    },
    /// The instance is not placed on the reporting host.
    NotPlaced,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RuntimeRecord {
    pub instance_id: String,
    pub host_id: String,
    pub state: String,
    pub generation: i64,
    pub reported_at: i64,
}

/// `host removed`, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed(Box<HostRecord>),
    NotFound,
    /// Instances are placed on it.
    Busy(i64),
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
    /// Adds a host; `Conflict` when the name is taken.
    pub async fn create_host(&self, host: &NewHost<'_>) -> Result<HostRecord> {
        let host_id = crate::ids::new_id("HOST");
        sqlx::query(
            "INSERT INTO hosts (host_id, name, zone_id, state, token_sha256, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&host_id)
        .bind(host.name)
        .bind(host.zone_id)
        .bind(ENABLED)
        .bind(host.token_sha256)
        .bind(host.created_at)
        .execute(self.writer())
        .await
        .map_err(StoreError::from_insert)?;
        self.host(&host_id).await?.ok_or_else(|| StoreError::Corrupt(format!("host {host_id} vanished")))
    }

    /// Every host, by name.
    pub async fn hosts(&self) -> Result<Vec<HostRecord>> {
        Ok(sqlx::query_as(&host_query("ORDER BY h.name")).fetch_all(self.pool()).await?)
    }

    pub async fn host(&self, host_id: &str) -> Result<Option<HostRecord>> {
        Ok(sqlx::query_as(&host_query("WHERE h.host_id = $1")).bind(host_id).fetch_optional(self.pool()).await?)
    }

    pub async fn host_by_name(&self, name: &str) -> Result<Option<HostRecord>> {
        Ok(sqlx::query_as(&host_query("WHERE h.name = $1")).bind(name).fetch_optional(self.pool()).await?)
    }

    /// The host whose token hashes to `token_sha256`.
    pub async fn host_by_token(&self, token_sha256: &str) -> Result<Option<HostIdentity>> {
        Ok(sqlx::query_as("SELECT host_id, name, zone_id, state, registered_at FROM hosts WHERE token_sha256 = $1")
            .bind(token_sha256)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Sets a host's state (`enabled`, `disabled`, `draining`); `None` for an unknown name.
    pub async fn set_host_state(&self, name: &str, state: &str) -> Result<Option<HostRecord>> {
        let r = sqlx::query("UPDATE hosts SET state = $2, generation = generation + 1 WHERE name = $1")
            .bind(name)
            .bind(state)
            .execute(self.writer())
            .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        self.host_by_name(name).await
    }

    /// Removes a host that holds no reservation.
    pub async fn remove_host(&self, name: &str) -> Result<Removal> {
        let mut tx = self.begin_write().await?;
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE OF h",
            Backend::Sqlite => "",
        };
        let host: Option<HostRecord> = sqlx::query_as(&format!(
            "SELECT {HOST_COLUMNS} FROM hosts h LEFT JOIN (SELECT host_id, CAST(SUM(vcpus) AS BIGINT) AS vcpus, \
             CAST(SUM(memory_mb) AS BIGINT) AS memory_mb, CAST(SUM(disk_gb) AS BIGINT) AS disk_gb, \
             CAST(SUM(1 - moving) AS BIGINT) AS n FROM host_reservations GROUP BY host_id) r ON r.host_id = h.host_id \
             WHERE h.name = $1{lock}"
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(host) = host else { return Ok(Removal::NotFound) };
        let (n,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM host_reservations WHERE host_id = $1")
            .bind(&host.host_id)
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Ok(Removal::Busy(n));
        }
        sqlx::query("DELETE FROM instance_runtime WHERE host_id = $1").bind(&host.host_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM host_strays WHERE host_id = $1").bind(&host.host_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM hosts WHERE host_id = $1").bind(&host.host_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Removal::Removed(Box::new(host)))
    }

    /// Records an agent's description of its host; it counts as a heartbeat too.
    pub async fn register_host(&self, host_id: &str, reg: &Registration<'_>, now: i64) -> Result<Option<HostRecord>> {
        let caps = serde_json::to_string(reg.capabilities).expect("strings serialize");
        let r = sqlx::query(
            "UPDATE hosts SET address = $2, vcpus = $3, memory_mb = $4, disk_gb = $5, driver = $6, \
             capabilities = $7, agent_version = $8, registered_at = $9, last_heartbeat_at = $9, \
             generation = generation + 1 WHERE host_id = $1",
        )
        .bind(host_id)
        .bind(reg.address)
        .bind(reg.vcpus)
        .bind(reg.memory_mb)
        .bind(reg.disk_gb)
        .bind(reg.driver)
        .bind(&caps)
        .bind(reg.agent_version)
        .bind(now)
        .execute(self.writer())
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        self.host(host_id).await
    }

    /// A heartbeat: one UPDATE of the host's row. `None` when the host is gone or has not
    /// registered since it was added.
    pub async fn heartbeat(&self, host_id: &str, now: i64) -> Result<Option<Beat>> {
        Ok(sqlx::query_as(
            "UPDATE hosts SET last_heartbeat_at = $2 WHERE host_id = $1 AND registered_at IS NOT NULL \
             RETURNING state, generation",
        )
        .bind(host_id)
        .bind(now)
        .fetch_optional(self.writer())
        .await?)
    }

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
    async fn place_once(
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
        let inserted = match mv {
            None => {
                sqlx::query(
                    "INSERT INTO placements (instance_id, host_id, vcpus, memory_mb, disk_gb, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(req.instance_id)
                .bind(&chosen.host_id)
                .bind(req.vcpus)
                .bind(req.memory_mb)
                .bind(req.disk_gb)
                .bind(now)
                .execute(&mut *tx)
                .await
            }
            Some(m) => {
                sqlx::query(
                    "INSERT INTO placement_moves (instance_id, host_id, source_host_id, operation_id, vcpus, \
                     memory_mb, disk_gb, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(req.instance_id)
                .bind(&chosen.host_id)
                .bind(m.source_host_id)
                .bind(m.operation_id)
                .bind(req.vcpus)
                .bind(req.memory_mb)
                .bind(req.disk_gb)
                .bind(now)
                .execute(&mut *tx)
                .await
            }
        };
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

    /// Stores an agent's reports of its machines, each only when it is newer than the stored one
    /// and the instance is placed on `host_id`.
    pub async fn report_runtime(
        &self,
        host_id: &str,
        reports: &[(String, String, i64)],
        now: i64,
    ) -> Result<Vec<ReportOutcome>> {
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(reports.len());
        for (instance_id, state, generation) in reports {
            let r = sqlx::query(
                "INSERT INTO instance_runtime (instance_id, host_id, state, generation, reported_at) \
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS \
                    (SELECT 1 FROM placements WHERE instance_id = $1 AND host_id = $2) \
                 ON CONFLICT (instance_id) DO UPDATE SET host_id = excluded.host_id, state = excluded.state, \
                    generation = excluded.generation, reported_at = excluded.reported_at \
                 WHERE instance_runtime.generation < excluded.generation",
            )
            .bind(instance_id)
            .bind(host_id)
            .bind(state)
            .bind(*generation)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() > 0 {
                out.push(ReportOutcome::Accepted);
                continue;
            }
            let placed: Option<(i64,)> =
                sqlx::query_as("SELECT 1 FROM placements WHERE instance_id = $1 AND host_id = $2")
                    .bind(instance_id)
                    .bind(host_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if placed.is_none() {
                out.push(ReportOutcome::NotPlaced);
                continue;
            }
            let (stored,): (i64,) = sqlx::query_as("SELECT generation FROM instance_runtime WHERE instance_id = $1")
                .bind(instance_id)
                .fetch_one(&mut *tx)
                .await?;
            out.push(ReportOutcome::Stale { stored_generation: stored });
        }
        tx.commit().await?;
        Ok(out)
    }

    pub async fn runtime(&self, instance_id: &str) -> Result<Option<RuntimeRecord>> {
        Ok(sqlx::query_as(
            "SELECT instance_id, host_id, state, generation, reported_at FROM instance_runtime WHERE instance_id = $1",
        )
        .bind(instance_id)
        .fetch_optional(self.pool())
        .await?)
    }
}

/// An instance's host as the API and the remote driver see it (the `instance_hosts` view).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InstanceHost {
    pub instance_id: String,
    pub host_id: String,
    pub host_name: String,
    pub host_state: String,
    pub last_heartbeat_at: Option<i64>,
}

impl InstanceHost {
    /// Whether a heartbeat arrived within [`ALIVE_WITHIN_SECS`] of `now` (server clock).
    pub fn alive(&self, now: i64) -> bool {
        self.last_heartbeat_at.is_some_and(|t| now - t <= ALIVE_WITHIN_SECS)
    }
}

/// What declaring a host dead did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredDead {
    pub host: HostRecord,
    /// The instances that were placed on it (their reservations are released).
    pub instances: Vec<String>,
    /// Work items failed (their steps unwind).
    pub failed_work: u64,
}

const INSTANCE_HOST_COLUMNS: &str = "v.instance_id, v.host_id, v.host_name, v.host_state, v.last_heartbeat_at";

impl Store {
    /// The host of an instance of `account_id`, if it is placed.
    pub async fn instance_host(&self, account_id: &str, instance_id: &str) -> Result<Option<InstanceHost>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {INSTANCE_HOST_COLUMNS} FROM instance_hosts v JOIN instances i ON i.instance_id = v.instance_id \
             WHERE v.instance_id = $1 AND i.account_id = $2"
        ))
        .bind(instance_id)
        .bind(account_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The host of an instance, whoever owns it (the remote driver's lookup).
    pub async fn host_of_instance(&self, instance_id: &str) -> Result<Option<InstanceHost>> {
        Ok(sqlx::query_as(&format!("SELECT {INSTANCE_HOST_COLUMNS} FROM instance_hosts v WHERE v.instance_id = $1"))
            .bind(instance_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The hosts of many instances (those placed), for instance lists.
    pub async fn hosts_of_instances(&self, instance_ids: &[String]) -> Result<Vec<InstanceHost>> {
        let mut out = Vec::new();
        for chunk in instance_ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {INSTANCE_HOST_COLUMNS} FROM instance_hosts v WHERE v.instance_id IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query_as(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            out.extend(q.fetch_all(self.pool()).await?);
        }
        Ok(out)
    }

    /// A host's state and last heartbeat, by id.
    pub async fn host_liveness(&self, host_id: &str) -> Result<Option<(String, String, Option<i64>)>> {
        Ok(sqlx::query_as("SELECT name, state, last_heartbeat_at FROM hosts WHERE host_id = $1")
            .bind(host_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The operator declares a host dead (its machines are lost): the host becomes `dead` (no
    /// placement chooses it), its unanswered work items fail for good with `reason` (the steps
    /// waiting on them unwind), its reservations and runtime reports are released, and its
    /// instances at rest (`active`, `off`) become `error` with `reason`. Instances in the middle
    /// of an operation end `error` when the operation unwinds. `None`: no such host.
    pub async fn declare_host_dead(&self, name: &str, reason: &str, now_ms: i64) -> Result<Option<DeclaredDead>> {
        let mut tx = self.begin_write().await?;
        let host: Option<(String,)> = sqlx::query_as(
            "UPDATE hosts SET state = $2, generation = generation + 1 \
             WHERE name = $1 RETURNING host_id",
        )
        .bind(name)
        .bind(DEAD)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((host_id,)) = host else { return Ok(None) };
        let failed = sqlx::query(
            "UPDATE host_work SET state = 'done', error = $2, error_kind = 'permanent', done_at = $3 \
             WHERE host_id = $1 AND state <> 'done'",
        )
        .bind(&host_id)
        .bind(reason)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let instances: Vec<(String,)> =
            sqlx::query_as("SELECT instance_id FROM placements WHERE host_id = $1 ORDER BY instance_id")
                .bind(&host_id)
                .fetch_all(&mut *tx)
                .await?;
        let instances: Vec<String> = instances.into_iter().map(|(i,)| i).collect();
        sqlx::query(
            "UPDATE instances SET status = 'error', error_reason = $2 \
             WHERE instance_id IN (SELECT instance_id FROM placements WHERE host_id = $1) AND status IN ('active', 'off')",
        )
        .bind(&host_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM placements WHERE host_id = $1").bind(&host_id).execute(&mut *tx).await?;
        // Moves onto the dead host lose their target (their operations unwind on the failed work).
        sqlx::query("DELETE FROM placement_moves WHERE host_id = $1").bind(&host_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM host_strays WHERE host_id = $1").bind(&host_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM instance_runtime WHERE host_id = $1").bind(&host_id).execute(&mut *tx).await?;
        tx.commit().await?;
        let host = self.host(&host_id).await?.ok_or_else(|| StoreError::Corrupt(format!("host {host_id} vanished")))?;
        Ok(Some(DeclaredDead { host, instances, failed_work: failed }))
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

/// An instance placed on a host, as evacuation and reconciliation see it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HostInstance {
    pub instance_id: String,
    pub account_id: String,
    pub status: String,
    pub zone_id: String,
    pub flavor_id: String,
    /// The generation of the host's last report of the machine, if it reported one.
    pub reported_generation: Option<i64>,
}

/// A machine a host has that no placement on it names.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StrayRecord {
    pub host_id: String,
    pub instance_id: String,
    pub state: String,
    pub reported_at: i64,
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
    /// the source's runtime report with it. `None` when there is no such move (switched already,
    /// or cancelled); otherwise the source's host id.
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
        tx.commit().await?;
        Ok(Some(source))
    }

    /// The instances placed on a host, oldest placement first.
    pub async fn host_instances(&self, host_id: &str) -> Result<Vec<HostInstance>> {
        Ok(sqlx::query_as(
            "SELECT i.instance_id, i.account_id, i.status, i.zone_id, i.flavor_id, \
                    r.generation AS reported_generation \
             FROM placements p JOIN instances i ON i.instance_id = p.instance_id \
             LEFT JOIN instance_runtime r ON r.instance_id = p.instance_id AND r.host_id = p.host_id \
             WHERE p.host_id = $1 ORDER BY p.created_at, p.instance_id",
        )
        .bind(host_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Replaces a host's strays with those of its latest full report: `(instance_id, state)`.
    /// Machines that are the target of a move onto this host are not strays (the move is under
    /// way). Answers the strays kept.
    pub async fn replace_strays(&self, host_id: &str, reported: &[(String, String)], now: i64) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM host_strays WHERE host_id = $1").bind(host_id).execute(&mut *tx).await?;
        let mut kept = Vec::new();
        for (instance_id, state) in reported {
            let r = sqlx::query(
                "INSERT INTO host_strays (host_id, instance_id, state, reported_at) SELECT $1, $2, $3, $4 \
                 WHERE NOT EXISTS (SELECT 1 FROM placements WHERE instance_id = $2 AND host_id = $1) \
                   AND NOT EXISTS (SELECT 1 FROM placement_moves WHERE instance_id = $2 AND host_id = $1)",
            )
            .bind(host_id)
            .bind(instance_id)
            .bind(state)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() > 0 {
                kept.push(instance_id.clone());
            }
        }
        tx.commit().await?;
        Ok(kept)
    }

    /// Every stray, or one host's, by host and instance.
    pub async fn strays(&self, host_id: Option<&str>) -> Result<Vec<StrayRecord>> {
        let base = "SELECT host_id, instance_id, state, reported_at FROM host_strays";
        Ok(match host_id {
            Some(h) => {
                sqlx::query_as(&format!("{base} WHERE host_id = $1 ORDER BY instance_id"))
                    .bind(h)
                    .fetch_all(self.pool())
                    .await?
            }
            None => sqlx::query_as(&format!("{base} ORDER BY host_id, instance_id")).fetch_all(self.pool()).await?,
        })
    }

    /// Forgets a stray (it was destroyed); false when there was none.
    pub async fn remove_stray(&self, host_id: &str, instance_id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM host_strays WHERE host_id = $1 AND instance_id = $2")
            .bind(host_id)
            .bind(instance_id)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
