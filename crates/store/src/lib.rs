//! Persistence for openwinv.
//!
//! One code path for SQLite (the default, embedded, WAL) and PostgreSQL (several server processes):
//! queries go through sqlx's `Any` driver with `$N` placeholders, which both backends accept, and
//! stay in the SQL subset the two (and CockroachDB) share. Each backend has its own embedded
//! migrations, kept equivalent. Times are Unix seconds, money is integer won, ids are text.

mod accounts;
pub mod addresses;
pub mod batch;
pub mod bills;
mod catalog;
pub mod console_tokens;
pub mod crypto;
mod faults;
pub mod firewalls;
pub mod host_work;
pub mod hosts;
pub mod idempotency;
pub mod ids;
pub mod instances;
mod keys;
mod listing;
mod meta;
pub mod named_text;
pub mod networks;
pub mod operations;
mod rate_limits;
pub mod records;
mod reset;
mod scripts;
pub mod snapshot;
mod ssh_keys;
pub mod statistics;
pub mod usage;
mod users;
pub mod volumes;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use accounts::AccountRecord;
pub use bills::{BillFilter, BillItemRecord, BillRecord};
pub use catalog::CatalogEntry;
pub use faults::FaultRecord;
pub use firewalls::{FirewallRecord, FirewallRefused, FirewallRuleRecord};
pub use idempotency::{Claim, IdempotencyRecord};
pub use instances::{
    AttachedVolume, Created, InstanceFilter, InstanceRecord, InstanceWithRelated, NewInstances, QuotaOverrides,
    Refused, Related, Reprice, Settle, Usage, ViewVersion,
};
pub use keys::{Bootstrap, KeyRecord, NewKeyRecord};
pub use operations::{NewOperation, OperationRecord, Progress};
pub use rate_limits::RateDecision;
pub use reset::ResetReport;
pub use scripts::ScriptRecord;
pub use snapshot::{SavedSnapshot, Snapshot, TableRows};
pub use ssh_keys::SshKeyRecord;
pub use usage::{Prices, Rate, UsageChanges};
pub use users::{SessionRecord, UserRecord};
pub use volumes::{VolumeFilter, VolumeRecord, VolumeRefused, VolumeSettle};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with the same unique key exists.
    #[error("already exists")]
    Conflict,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Corrupt(String),
    /// A write batched with other callers' failed (the message of the shared error).
    #[error("batched write failed: {0}")]
    Batch(String),
}

impl StoreError {
    fn from_insert(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A page request already validated by the caller.
#[derive(Debug, Clone, Copy)]
pub struct PageQuery {
    pub limit: i64,
    pub offset: i64,
}

impl PageQuery {
    /// From the wire's unsigned page size and offset. SQL takes signed 64-bit integers; a value
    /// past `i64::MAX` (`page_no=18446744073709551615`) becomes `i64::MAX`, which is past the end
    /// of every table, so the page is empty as spec §4 says, never a negative `OFFSET`.
    pub fn new(limit: u64, offset: u64) -> PageQuery {
        PageQuery { limit: i64::try_from(limit).unwrap_or(i64::MAX), offset: i64::try_from(offset).unwrap_or(i64::MAX) }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where writes go. On SQLite one connection: the database has one writer at a time anyway,
    /// and writers queued on the pool wait in order instead of each retrying a locked file with
    /// SQLite's sleeping busy handler (which made concurrent commits take milliseconds). On
    /// PostgreSQL the same pool as reads.
    writer: AnyPool,
    backend: Backend,
    /// Instance creates waiting for the shared create transaction.
    creates: std::sync::Arc<instances::CreateBatches>,
}

/// How long a PostgreSQL connection may sit in the pool and still be used without a ping first
/// (a connection is pinged when it comes back to the pool).
pub const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

impl Store {
    /// Connects to `sqlite://…` or `postgres://…` and runs the embedded migrations.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Corrupt("database URL must start with sqlite: or postgres:".into()));
        };
        let options = AnyConnectOptions::from_str(url)?;
        let sqlite = |connections: u32| {
            AnyPoolOptions::new()
                .acquire_timeout(Duration::from_secs(10))
                .max_connections(connections)
                // A file cannot drop a connection: no ping (a round trip to the connection's
                // thread) before every statement.
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                             PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                        Ok(())
                    })
                })
        };
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                // The writer first: it creates the file and switches it to WAL.
                let writer = sqlite(1).connect_with(options.clone()).await?;
                (sqlite(8).connect_with(options).await?, writer)
            }
            Backend::Postgres => {
                // sqlx pings a connection when it goes back to the pool; pinging it again when it
                // is taken was one more round trip for every statement (docs/perf.md: 11-15% of
                // the mixed load's throughput). A connection idle for less than a second was
                // alive when it came back; one idle for longer (the database restarted, a proxy
                // closed it) is pinged and replaced before use.
                let pool = AnyPoolOptions::new()
                    .acquire_timeout(Duration::from_secs(10))
                    .max_connections(16)
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= PING_WHEN_IDLE_FOR {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    });
                let pool = pool.connect_with(options).await?;
                (pool.clone(), pool)
            }
        };
        let store = Store { pool, writer, backend, creates: instances::create_batches() };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.writer).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&self.writer).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Connections for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Connections for writes and read-write transactions.
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// A write transaction. On SQLite it takes the database's write lock at once (`BEGIN
    /// IMMEDIATE`), so reads inside it are never followed by a refused upgrade and quota checks
    /// need no extra lock; on PostgreSQL a plain `BEGIN` (row locks do the rest).
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        })
    }

    /// Succeeds when the database answers a query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// `%…%` pattern for a case-insensitive substring match with `lower(col) LIKE $n ESCAPE '\'`.
pub(crate) fn contains_pattern(needle: &str) -> String {
    let mut p = String::from("%");
    for c in needle.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}
