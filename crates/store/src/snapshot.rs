//! Whole-database snapshots for the stand-in (`openwinv admin snapshot`): every table's rows,
//! read in one consistent transaction, and written back in one transaction.
//!
//! The tables and their columns are discovered from the database (SQLite's catalog, PostgreSQL's
//! `information_schema`), not listed here: a table added by a later migration is saved and
//! restored without a change to this file. Only the order matters, for foreign keys: the known
//! tables are written parents first ([`TABLE_ORDER`]); unknown ones after them, deleted before
//! them. Derived tables that triggers keep (instance counts, usage versions) come after their
//! sources and are emptied right before their own rows go in, so the snapshot's values win over
//! what the triggers wrote while their sources were inserted.
//!
//! Saved snapshots live in the database too ([`SAVED`]), outside the state they save: every
//! server process on the database sees the same ones, a snapshot never contains another and a
//! reset or restore keeps them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use crate::{Backend, Result, Store, StoreError};

/// Version of the snapshot document.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Known tables, parents before the tables that reference them.
pub(crate) const TABLE_ORDER: &[&str] = &[
    "meta",
    "accounts",
    "access_keys",
    "catalog_entries",
    "users",
    "web_sessions",
    "signin_failures",
    "ssh_keys",
    "user_scripts",
    "operations",
    "faults",
    "idempotency_keys",
    "instances",
    "ip_addresses",
    "console_tokens",
    "volumes",
    "firewalls",
    "firewall_rules",
    "firewall_attachments",
    "usage_intervals",
    "usage_versions",
    "bills",
    "bill_items",
    "billing_months",
    "instance_counts",
];

/// The table of saved snapshots: outside the state (never saved, restored or reset).
pub(crate) const SAVED: &str = "saved_snapshots";

/// The versions of accounts' instance views (migration 0025): outside the state too, so that
/// they only grow; a reset or a restore moves their epoch on ([`bump_view_epoch`]).
pub(crate) const VIEW_VERSIONS: &str = "view_versions";

/// Rows of one multi-row INSERT: at most this many parameters per statement.
const PARAMS_PER_INSERT: usize = 900;

/// The whole state of a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub tables: Vec<TableRows>,
}

/// One table: its column names and its rows (integers, strings or null, in column order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRows {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Snapshot {
    /// Rows across all tables.
    pub fn row_count(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    /// Stored as an integer (everything else here is text).
    pub integer: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub name: String,
    pub columns: Vec<Column>,
}

/// Makes PostgreSQL's deferred triggers (migrations 0025 and 0028: the kept counts, the usage
/// and view versions) run at the end of each statement in this transaction instead of at commit:
/// a reset or a restore writes those derived tables itself, after their sources, and its own
/// values must be the last word. SQLite's triggers always run with their statement.
pub(crate) async fn triggers_row_by_row(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SET CONSTRAINTS ALL IMMEDIATE").execute(conn).await?;
    }
    Ok(())
}

/// The tables of the database, parents first.
pub(crate) async fn tables(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<Vec<Table>> {
    let names: Vec<(String,)> = match backend {
        Backend::Sqlite => {
            sqlx::query_as(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\'",
            )
            .fetch_all(&mut *conn)
            .await?
        }
        Backend::Postgres => {
            sqlx::query_as(
                "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                 AND table_name NOT LIKE '\\_sqlx%'",
            )
            .fetch_all(&mut *conn)
            .await?
        }
    };
    let mut names: Vec<String> = names.into_iter().map(|(n,)| n).filter(|n| n != SAVED && n != VIEW_VERSIONS).collect();
    let rank = |n: &str| TABLE_ORDER.iter().position(|t| *t == n).unwrap_or(TABLE_ORDER.len());
    names.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        let cols: Vec<(String, String)> = match backend {
            Backend::Sqlite => {
                sqlx::query_as("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                    .bind(&name)
                    .fetch_all(&mut *conn)
                    .await?
            }
            Backend::Postgres => {
                sqlx::query_as(
                    "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(&name)
                .fetch_all(&mut *conn)
                .await?
            }
        };
        let columns = cols
            .into_iter()
            .map(|(n, t)| Column { integer: t.to_ascii_uppercase().contains("INT"), name: n })
            .collect();
        tables.push(Table { name, columns });
    }
    Ok(tables)
}

/// `"name"`: identifiers come from the database's own catalog, quoted all the same.
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Store {
    /// Every table's rows, read in one transaction that sees one moment of the database.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let mut tx = match self.backend() {
            // A write transaction: the one writer connection, so no write lands between two reads.
            Backend::Sqlite => self.begin_write().await?,
            Backend::Postgres => {
                let mut tx = self.pool().begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
                tx
            }
        };
        let mut out = Vec::new();
        for table in tables(&mut tx, self.backend()).await? {
            let list: Vec<String> = table.columns.iter().map(|c| quoted(&c.name)).collect();
            let rows = sqlx::query(&format!("SELECT {} FROM {}", list.join(", "), quoted(&table.name)))
                .fetch_all(&mut *tx)
                .await?;
            let mut values = Vec::with_capacity(rows.len());
            for row in rows {
                let mut v = Vec::with_capacity(table.columns.len());
                for (i, c) in table.columns.iter().enumerate() {
                    v.push(if c.integer {
                        row.try_get::<Option<i64>, _>(i)?.map_or(Value::Null, Value::from)
                    } else {
                        row.try_get::<Option<String>, _>(i)?.map_or(Value::Null, Value::from)
                    });
                }
                values.push(v);
            }
            out.push(TableRows {
                name: table.name,
                columns: table.columns.into_iter().map(|c| c.name).collect(),
                rows: values,
            });
        }
        tx.rollback().await?;
        Ok(Snapshot { format: SNAPSHOT_FORMAT, tables: out })
    }

    /// Replaces the whole database with `snap`, atomically. The catalog version moves past every
    /// version any process has seen, so every process reloads its catalog. A snapshot naming a
    /// table or column this database lacks is refused before anything changes.
    pub async fn restore(&self, snap: &Snapshot) -> Result<()> {
        if snap.format != SNAPSHOT_FORMAT {
            return Err(StoreError::Corrupt(format!(
                "the snapshot has format {}; this server reads format {SNAPSHOT_FORMAT}",
                snap.format
            )));
        }
        let mut tx = self.begin_write().await?;
        triggers_row_by_row(&mut tx, self.backend()).await?;
        let tables = tables(&mut tx, self.backend()).await?;
        for t in &snap.tables {
            let Some(have) = tables.iter().find(|h| h.name == t.name) else {
                return Err(StoreError::Corrupt(format!("the snapshot has a table `{}` this database lacks", t.name)));
            };
            if let Some(c) = t.columns.iter().find(|c| !have.columns.iter().any(|h| &h.name == *c)) {
                return Err(StoreError::Corrupt(format!(
                    "the snapshot has a column `{}.{c}` this database lacks",
                    t.name
                )));
            }
            if let Some(r) = t.rows.iter().find(|r| r.len() != t.columns.len()) {
                return Err(StoreError::Corrupt(format!(
                    "a row of `{}` has {} values for {} columns",
                    t.name,
                    r.len(),
                    t.columns.len()
                )));
            }
        }
        let before: i64 = catalog_version(&mut tx).await?;
        for t in tables.iter().rev() {
            sqlx::query(&format!("DELETE FROM {}", quoted(&t.name))).execute(&mut *tx).await?;
        }
        for have in &tables {
            let Some(t) = snap.tables.iter().find(|t| t.name == have.name) else { continue };
            // Triggers may have filled a derived table while its sources went in.
            sqlx::query(&format!("DELETE FROM {}", quoted(&t.name))).execute(&mut *tx).await?;
            let integer: Vec<bool> =
                t.columns.iter().map(|c| have.columns.iter().any(|h| &h.name == c && h.integer)).collect();
            insert_rows(&mut tx, &t.name, &t.columns, &integer, &t.rows).await?;
        }
        if tables.iter().any(|t| t.name == "operations") {
            // Leases held when the snapshot was read belong to workers that dropped those
            // operations: the restored ones are free to claim at once.
            sqlx::query("UPDATE operations SET lease_owner = NULL, lease_until = NULL WHERE status = 'running'")
                .execute(&mut *tx)
                .await?;
        }
        let restored = catalog_version(&mut tx).await?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('catalog_version', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind((before.max(restored) + 1).to_string())
        .execute(&mut *tx)
        .await?;
        bump_view_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A saved snapshot, without its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSnapshot {
    pub name: String,
    /// Server-clock time of the save.
    pub saved_at: i64,
    pub rows: u64,
    /// Size of the document, bytes.
    pub size_bytes: u64,
}

const SAVED_COLUMNS: &str = "name, saved_at, row_count, size_bytes";

fn saved(row: (String, i64, i64, i64)) -> SavedSnapshot {
    let (name, saved_at, rows, size) = row;
    SavedSnapshot { name, saved_at, rows: rows.max(0) as u64, size_bytes: size.max(0) as u64 }
}

impl Store {
    /// Reads the whole state and keeps it under `name` (replacing a snapshot of that name).
    pub async fn save_snapshot(&self, name: &str, saved_at: i64) -> Result<SavedSnapshot> {
        let snap = self.snapshot().await?;
        let body = serde_json::to_string(&snap).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let row = SavedSnapshot {
            name: name.to_owned(),
            saved_at,
            rows: snap.row_count() as u64,
            size_bytes: body.len() as u64,
        };
        drop(snap);
        self.keep_snapshot(&row, &body).await?;
        Ok(row)
    }

    /// Keeps a snapshot document under `row.name`, replacing one of that name.
    pub async fn keep_snapshot(&self, row: &SavedSnapshot, body: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO {SAVED} ({SAVED_COLUMNS}, body) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET saved_at = excluded.saved_at, row_count = excluded.row_count, \
             size_bytes = excluded.size_bytes, body = excluded.body"
        ))
        .bind(&row.name)
        .bind(row.saved_at)
        .bind(i64::try_from(row.rows).unwrap_or(i64::MAX))
        .bind(i64::try_from(row.size_bytes).unwrap_or(i64::MAX))
        .bind(body)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The saved snapshots, by name.
    pub async fn saved_snapshots(&self) -> Result<Vec<SavedSnapshot>> {
        let rows: Vec<(String, i64, i64, i64)> =
            sqlx::query_as(&format!("SELECT {SAVED_COLUMNS} FROM {SAVED} ORDER BY name"))
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(saved).collect())
    }

    /// A saved snapshot and its document, if there is one of that name.
    pub async fn saved_snapshot(&self, name: &str) -> Result<Option<(SavedSnapshot, Snapshot)>> {
        let row: Option<(String, i64, i64, i64, String)> =
            sqlx::query_as(&format!("SELECT {SAVED_COLUMNS}, body FROM {SAVED} WHERE name = $1"))
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        let Some((n, at, rows, size, body)) = row else { return Ok(None) };
        let snap: Snapshot = serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("the snapshot `{name}` is not a snapshot document: {e}")))?;
        Ok(Some((saved((n, at, rows, size)), snap)))
    }

    /// Deletes a saved snapshot; `None` when there was none of that name.
    pub async fn delete_saved_snapshot(&self, name: &str) -> Result<Option<SavedSnapshot>> {
        let mut tx = self.begin_write().await?;
        let row: Option<(String, i64, i64, i64)> =
            sqlx::query_as(&format!("DELETE FROM {SAVED} WHERE name = $1 RETURNING {SAVED_COLUMNS}"))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(row.map(saved))
    }
}

pub(crate) async fn catalog_version(conn: &mut sqlx::AnyConnection) -> Result<i64> {
    let v: Option<(String,)> =
        sqlx::query_as("SELECT value FROM meta WHERE key = 'catalog_version'").fetch_optional(&mut *conn).await?;
    Ok(v.and_then(|(v,)| v.parse().ok()).unwrap_or(0))
}

/// Moves the epoch of every account's instance views on: no page a server kept before the
/// change that calls this (a reset, a restore) is answered after it.
pub(crate) async fn bump_view_epoch(conn: &mut sqlx::AnyConnection) -> Result<()> {
    sqlx::query(&format!("UPDATE {VIEW_VERSIONS} SET v = v + 1 WHERE account_id = '*'")).execute(&mut *conn).await?;
    Ok(())
}

/// Inserts `rows` into `table` with multi-row INSERTs, binding each value by its column's type.
pub(crate) async fn insert_rows(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    columns: &[String],
    integer: &[bool],
    rows: &[Vec<Value>],
) -> Result<()> {
    if rows.is_empty() || columns.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = columns.iter().map(|c| quoted(c)).collect();
    let per = (PARAMS_PER_INSERT / columns.len()).max(1);
    for chunk in rows.chunks(per) {
        let groups: Vec<String> = (0..chunk.len())
            .map(|r| {
                let p: Vec<String> = (1..=columns.len()).map(|c| format!("${}", r * columns.len() + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!("INSERT INTO {} ({}) VALUES {}", quoted(table), list.join(", "), groups.join(", "));
        let mut q = sqlx::query(&sql);
        for row in chunk {
            for (v, int) in row.iter().zip(integer) {
                q = match (v, int) {
                    (Value::Null, true) => q.bind(None::<i64>),
                    (Value::Null, false) => q.bind(None::<String>),
                    (Value::Number(n), true) => q.bind(n.as_i64().ok_or_else(|| not_integer(table, v))?),
                    (Value::Bool(b), true) => q.bind(i64::from(*b)),
                    (Value::String(s), false) => q.bind(s.clone()),
                    (Value::Number(n), false) => q.bind(n.to_string()),
                    _ => return Err(not_integer(table, v)),
                };
            }
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn not_integer(table: &str, v: &Value) -> StoreError {
    StoreError::Corrupt(format!("the snapshot has `{v}` in `{table}` where an integer or text belongs"))
}
