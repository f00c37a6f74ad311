//! Usage intervals (spec §10): the store side of metering.
//!
//! An interval says "this resource was charged at this rate from `start_at` until `end_at`". The
//! functions here only run inside the transaction of the change that starts or stops a charge,
//! so a change and its usage are committed together or not at all: creating an instance or a
//! volume opens one, a completed resize closes the old one and opens one at the new rate, a
//! deletion closes it. Power changes do not touch usage. The arithmetic lives in
//! `openwinv-billing`; the seconds convention (a change during the second `t` ends the old rate
//! at `t + 1`) comes from there too.

use openwinv_billing::{Interval, Kind, end_of_second};

use crate::{Result, Store, StoreError};

/// The prices an interval opens at, from the catalog at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rate {
    /// Won per hour (servers; 0 for volumes).
    pub hourly: i64,
    /// Won per month: the cap (servers) or the price of the whole volume (volumes).
    pub monthly: i64,
}

/// The price list the store opens intervals at. The server implements it over its catalog; the
/// caller passes the same catalog snapshot it validated the request against.
pub trait Prices: Send + Sync {
    /// A flavor's hourly rate and monthly cap.
    fn server(&self, flavor_id: &str) -> Option<Rate>;
    /// A block-storage type's price in won per GB-month.
    fn volume_gb_month(&self, kind: &str) -> Option<i64>;
}

pub(crate) fn server_rate(prices: &dyn Prices, flavor_id: &str) -> Result<Rate> {
    prices.server(flavor_id).ok_or_else(|| StoreError::Corrupt(format!("the flavor {flavor_id} has no price")))
}

pub(crate) fn volume_rate(prices: &dyn Prices, kind: &str, size_gb: i64) -> Result<Rate> {
    let per_gb = prices
        .volume_gb_month(kind)
        .ok_or_else(|| StoreError::Corrupt(format!("the block-storage type {kind} has no price")))?;
    Ok(Rate { hourly: 0, monthly: per_gb.saturating_mul(size_gb) })
}

/// What a new interval records.
#[derive(Debug, Clone, Copy)]
pub struct OpenInterval<'a> {
    pub account_id: &'a str,
    pub resource_id: &'a str,
    pub kind: Kind,
    pub name: &'a str,
    /// The flavor id (server) or block-storage type (volume).
    pub product: &'a str,
    /// GB (volumes); 0 for servers.
    pub size: i64,
    pub rate: Rate,
    /// The first charged second.
    pub start: i64,
}

/// Opens an interval. Call it inside the transaction of the change that starts the charge.
pub async fn open_interval(conn: &mut sqlx::AnyConnection, iv: &OpenInterval<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO usage_intervals (interval_id, account_id, resource_id, kind, name, product, size, hourly, \
         monthly, start_at, end_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
    )
    .bind(crate::ids::new_id("USAGE"))
    .bind(iv.account_id)
    .bind(iv.resource_id)
    .bind(iv.kind.as_str())
    .bind(iv.name)
    .bind(iv.product)
    .bind(iv.size)
    .bind(iv.rate.hourly)
    .bind(iv.rate.monthly)
    .bind(iv.start)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Opens a volume's interval at its type's price × its size (a volume that was just created).
pub async fn open_volume_interval(
    conn: &mut sqlx::AnyConnection,
    v: &crate::records::VolumeRecord,
    prices: &dyn Prices,
) -> Result<()> {
    let rate = volume_rate(prices, &v.kind, v.size)?;
    open_interval(
        conn,
        &OpenInterval {
            account_id: &v.account_id,
            resource_id: &v.block_storage_id,
            kind: Kind::Volume,
            name: &v.name,
            product: &v.kind,
            size: v.size,
            rate,
            start: v.created_at,
        },
    )
    .await
}

/// Closes the resource's open interval because of a change during the second `now` (that second
/// stays charged). Running it again changes nothing. Returns how many intervals it closed.
pub async fn close_intervals(conn: &mut sqlx::AnyConnection, resource_id: &str, now: i64) -> Result<u64> {
    let r = sqlx::query("UPDATE usage_intervals SET end_at = $1 WHERE resource_id = $2 AND end_at IS NULL")
        .bind(end_of_second(now))
        .bind(resource_id)
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected())
}

/// Closes a volume's interval (the volume was deleted during the second `now`).
pub async fn close_volume_interval(conn: &mut sqlx::AnyConnection, volume_id: &str, now: i64) -> Result<u64> {
    close_intervals(conn, volume_id, now).await
}

/// Whether the resource has an open interval (it is being charged).
pub async fn accrues(conn: &mut sqlx::AnyConnection, resource_id: &str) -> Result<bool> {
    let open: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM usage_intervals WHERE resource_id = $1 AND end_at IS NULL LIMIT 1")
            .bind(resource_id)
            .fetch_optional(conn)
            .await?;
    Ok(open.is_some())
}

/// Forgets a resource's usage entirely: a create that failed leaves no trace, on the bill either.
pub async fn discard_intervals(conn: &mut sqlx::AnyConnection, resource_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM usage_intervals WHERE resource_id = $1").bind(resource_id).execute(conn).await?;
    Ok(())
}

/// Renames the resource on its open interval (bill lines show the latest name).
pub(crate) async fn rename(conn: &mut sqlx::AnyConnection, resource_id: &str, name: &str) -> Result<()> {
    sqlx::query("UPDATE usage_intervals SET name = $1 WHERE resource_id = $2 AND end_at IS NULL")
        .bind(name)
        .bind(resource_id)
        .execute(conn)
        .await?;
    Ok(())
}

type IntervalRow = (String, String, String, i64, i64, i64, Option<i64>);
type AccountIntervalRow = (String, String, String, String, i64, i64, i64, Option<i64>);

fn to_interval((resource_id, kind, name, hourly, monthly, start, end): IntervalRow) -> Option<Interval> {
    Some(Interval { resource_id, kind: Kind::parse(&kind)?, name, hourly, monthly, start, end })
}

/// What changed in an account's usage after a version ([`Store::usage_changes_since`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UsageChanges {
    /// The resources whose usage changed, in id order.
    pub resources: Vec<String>,
    /// Their intervals overlapping the period asked for, by resource then start.
    pub intervals: Vec<Interval>,
}

/// Usage versions of an account whose changed resource is kept (migration 0015).
const USAGE_CHANGES_KEPT: i64 = 1024;

/// Intervals overlapping [from, to) with at least one charged second: `AND`-ed to a filter.
const OVERLAPS: &str = "start_at < $2 AND (end_at IS NULL OR (end_at > $3 AND end_at > start_at))";

impl Store {
    /// How many times the account's usage has been written (0 before the first time).
    pub async fn usage_version(&self, account_id: &str) -> Result<i64> {
        let v: Option<(i64,)> = sqlx::query_as("SELECT version FROM usage_versions WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(v.map_or(0, |(v,)| v))
    }

    /// The account's intervals that overlap [from, to), by resource.
    pub async fn account_intervals(&self, account_id: &str, from: i64, to: i64) -> Result<Vec<Interval>> {
        let rows: Vec<IntervalRow> = sqlx::query_as(&format!(
            "SELECT resource_id, kind, name, hourly, monthly, start_at, end_at FROM usage_intervals \
             WHERE account_id = $1 AND {OVERLAPS} ORDER BY resource_id, start_at"
        ))
        .bind(account_id)
        .bind(to)
        .bind(from)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().filter_map(to_interval).collect())
    }

    /// The account's usage version now and, when the kept changes (migration 0015: the last
    /// 1,024 versions of each account) reach back to `held`, what changed after it: the resources
    /// whose usage changed and their intervals that overlap [from, to) (None when the kept changes
    /// do not reach back). One statement, so one round trip and one snapshot: the changes listed
    /// are exactly those up to the version returned, and the intervals are read at that version.
    pub async fn usage_changes_since(
        &self,
        account_id: &str,
        held: i64,
        from: i64,
        to: i64,
    ) -> Result<(i64, Option<UsageChanges>)> {
        type Row =
            (i64, Option<String>, Option<String>, Option<String>, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT v.version, c.resource_id, i.kind, i.name, i.hourly, i.monthly, i.start_at, i.end_at \
             FROM usage_versions v \
             LEFT JOIN (SELECT DISTINCT resource_id FROM usage_changes WHERE account_id = $1 AND version > $4) c \
               ON v.version - $4 < $5 \
             LEFT JOIN usage_intervals i ON i.account_id = $1 AND i.resource_id = c.resource_id \
               AND i.start_at < $2 AND (i.end_at IS NULL OR (i.end_at > $3 AND i.end_at > i.start_at)) \
             WHERE v.account_id = $1 ORDER BY c.resource_id, i.start_at",
        )
        .bind(account_id)
        .bind(to)
        .bind(from)
        .bind(held)
        .bind(USAGE_CHANGES_KEPT)
        .fetch_all(self.pool())
        .await?;
        let Some(&(version, ..)) = rows.first() else { return Ok((0, Some(UsageChanges::default()))) };
        if version > held && version - held >= USAGE_CHANGES_KEPT {
            return Ok((version, None));
        }
        let mut changes = UsageChanges::default();
        for (_, resource, kind, name, hourly, monthly, start, end) in rows {
            let Some(resource_id) = resource else { continue };
            if changes.resources.last() != Some(&resource_id) {
                changes.resources.push(resource_id.clone());
            }
            if let (Some(kind), Some(name), Some(hourly), Some(monthly), Some(start)) =
                (kind, name, hourly, monthly, start)
                && let Some(interval) = to_interval((resource_id, kind, name, hourly, monthly, start, end))
            {
                changes.intervals.push(interval);
            }
        }
        Ok((version, Some(changes)))
    }

    /// Accounts with usage in [from, to), in id order, after `after` (exclusive), at most `limit`.
    pub async fn accounts_with_usage(&self, from: i64, to: i64, after: &str, limit: i64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT DISTINCT account_id FROM usage_intervals WHERE account_id > $1 AND {OVERLAPS} \
             ORDER BY account_id LIMIT $4"
        ))
        .bind(after)
        .bind(to)
        .bind(from)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(a,)| a).collect())
    }

    /// The intervals overlapping [from, to) of the accounts `first..=last`: (account id, interval),
    /// by account.
    pub async fn intervals_of_accounts(
        &self,
        first: &str,
        last: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, Interval)>> {
        let rows: Vec<AccountIntervalRow> = sqlx::query_as(&format!(
            "SELECT account_id, resource_id, kind, name, hourly, monthly, start_at, end_at FROM usage_intervals \
             WHERE account_id >= $1 AND account_id <= $4 AND {OVERLAPS} ORDER BY account_id, resource_id, start_at"
        ))
        .bind(first)
        .bind(to)
        .bind(from)
        .bind(last)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(a, r, k, n, h, m, s, e)| to_interval((r, k, n, h, m, s, e)).map(|iv| (a, iv)))
            .collect())
    }

    /// The first second any usage was recorded, if any.
    pub async fn first_usage(&self) -> Result<Option<i64>> {
        let (t,): (Option<i64>,) =
            sqlx::query_as("SELECT MIN(start_at) FROM usage_intervals").fetch_one(self.pool()).await?;
        Ok(t)
    }
}

/// Ends a volume's usage as its row goes during the second `now`: a deleted volume's interval
/// closes; a volume whose create failed (still `creating`) leaves no usage at all.
pub async fn end_volume_usage(conn: &mut sqlx::AnyConnection, volume_id: &str, now: i64) -> Result<()> {
    let status: Option<(String,)> = sqlx::query_as("SELECT status FROM volumes WHERE block_storage_id = $1")
        .bind(volume_id)
        .fetch_optional(&mut *conn)
        .await?;
    match status {
        Some((s,)) if s.parse() == Ok(crate::records::VolumeStatus::Creating) => {
            discard_intervals(conn, volume_id).await
        }
        _ => close_volume_interval(conn, volume_id, now).await.map(drop),
    }
}

/// Forgets the usage of the volumes a failed instance create was making (still `creating`).
pub async fn discard_volumes_of_operation(conn: &mut sqlx::AnyConnection, operation_id: &str) -> Result<()> {
    sqlx::query(
        "DELETE FROM usage_intervals WHERE resource_id IN \
         (SELECT block_storage_id FROM volumes WHERE operation_id = $1 AND status = 'creating')",
    )
    .bind(operation_id)
    .execute(conn)
    .await?;
    Ok(())
}
