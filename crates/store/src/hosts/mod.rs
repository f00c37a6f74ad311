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

mod moves;
mod placement;
mod runtime;
mod volumes;

use crate::{Backend, Result, Store, StoreError};

pub use moves::{MoveFrom, MoveRecord};
pub use placement::{Overcommit, Placed, PlacementRecord, PlacementRequest, Resized};
pub use runtime::{HostInstance, ReportOutcome, RuntimeRecord, StrayRecord};
pub use volumes::VolumeHost;

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

/// `host removed`, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed(Box<HostRecord>),
    NotFound,
    /// Instances are placed on it.
    Busy(i64),
}

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
    /// The volumes whose storage it kept, turned `error` (their data is lost).
    pub volumes: Vec<String>,
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
    /// of an operation end `error` when the operation unwinds. The volumes at rest whose storage
    /// it kept become `error` in the same transaction, detached or attached; one in the middle of
    /// an operation ends `error` when the operation settles ([`Store::settle_volume`] never
    /// settles a volume of a dead host to anything else). `None`: no such host.
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
        let volumes = crate::volumes::error_volumes_of_dead_host(&mut tx, &host_id, reason).await?;
        sqlx::query("DELETE FROM placements WHERE host_id = $1").bind(&host_id).execute(&mut *tx).await?;
        // Moves onto the dead host lose their target (their operations unwind on the failed work).
        sqlx::query("DELETE FROM placement_moves WHERE host_id = $1").bind(&host_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM host_strays WHERE host_id = $1").bind(&host_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM instance_runtime WHERE host_id = $1").bind(&host_id).execute(&mut *tx).await?;
        tx.commit().await?;
        let host = self.host(&host_id).await?.ok_or_else(|| StoreError::Corrupt(format!("host {host_id} vanished")))?;
        Ok(Some(DeclaredDead { host, instances, volumes, failed_work: failed }))
    }
}
