//! Metering and billing (spec §10).
//!
//! Usage intervals are written by the store in the transactions of the changes that start or
//! stop a charge (instance create, resize completion, instance removal; volume create and
//! removal), at the catalog prices of that moment: the catalog is the store's [`Prices`]. Money
//! is derived from intervals only, by `openwinv-billing`: the live bill rates the current month
//! up to the current second; the month close ([`close`]) rates each finished month once and
//! issues the bills; the handlers ([`handlers`]) show them.

pub mod close;
pub mod handlers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::routing::{get, post};
use jiff::tz::TimeZone;
use openwinv_billing::{ByDay, Ledger, Line, Month, Period, end_of_second, rate, rate_by_day, rate_total, total};
use openwinv_store::{Prices, Rate, Store, UsageChanges};

use crate::AppState;
use crate::catalog::CatalogFile;

impl Prices for CatalogFile {
    fn server(&self, flavor_id: &str) -> Option<Rate> {
        self.flavors.iter().find(|f| f.id == flavor_id).map(|f| Rate { hourly: f.price_hour, monthly: f.price_month })
    }

    fn volume_gb_month(&self, kind: &str) -> Option<i64> {
        self.block_storage_types.iter().find(|t| t.kind == kind).map(|t| t.price_gb_month)
    }
}

/// The live bill of an account at `now`: the current month's price up to and including the
/// second `now`, and with `explain` its lines.
///
/// The account's intervals of the month are kept in memory with the account's usage version
/// (bumped in every transaction that writes its usage, by any process); each read checks the
/// version first (one indexed row) and, when it changed, reloads only the resources changed since
/// the version held (migration 0015 keeps which resource each version changed), or all of them
/// when the held copy is too old; so the answer is always what the store holds, and an account
/// with thousands of resources is rated from memory even while it changes.
///
/// The price is kept with the copy for the second it was rated at: the reads of that second
/// share it, and a change of some resources moves it by what those resources owed before and
/// owe after ([`Ledger::rate_total_of`]: each resource is floored and capped on its own). So the
/// month is rated whole at most once per second per account, not once per read.
pub async fn live(
    store: &Store,
    cache: &LiveCache,
    account_id: &str,
    now: i64,
    tz: &TimeZone,
    explain: bool,
) -> openwinv_store::Result<(Month, i64, Option<Vec<Line>>)> {
    let month = Month::containing(now, tz);
    let period = month.period(tz);
    let upto = end_of_second(now).min(period.end);
    let entry = month_intervals(store, cache, account_id, month, &period).await?;
    if explain {
        let c = entry.read().expect("live bill copy");
        let lines = rate(&c.intervals, period, upto);
        return Ok((month, total(&lines), Some(lines)));
    }
    if let Some((at, price)) = entry.read().expect("live bill copy").price
        && at == upto
    {
        return Ok((month, price, None));
    }
    let mut c = entry.write().expect("live bill copy");
    let price = match c.price {
        Some((at, price)) if at == upto => price,
        _ => rate_total(&c.intervals, period, upto),
    };
    c.price = Some((upto, price));
    Ok((month, price, None))
}

/// The live bill's lines at `now` with each resource's amount split by day of the billing time
/// zone (the console's chart), rated in one pass from the same cached intervals as [`live`].
pub async fn live_by_day(
    store: &Store,
    cache: &LiveCache,
    account_id: &str,
    now: i64,
    tz: &TimeZone,
) -> openwinv_store::Result<(Month, ByDay)> {
    let month = Month::containing(now, tz);
    let period = month.period(tz);
    let entry = month_intervals(store, cache, account_id, month, &period).await?;
    let entry = entry.read().expect("live bill copy");
    Ok((month, rate_by_day(&entry.intervals, month, tz, end_of_second(now))))
}

/// The account's intervals of `month`, from the cache when it holds the store's usage version
/// (see [`live`]).
///
/// One statement reads the version and, for a held copy, which resources changed since; only
/// those are read again. A whole read (no copy, or one too far behind) is done by one request at
/// a time per account; the requests that waited for it then bring its copy up to date like any
/// other: after a restart, or after the account grew by thousands, 32 concurrent live bills of
/// an account with 10,000 resources each read all of them, and waited seconds for each other.
async fn month_intervals(
    store: &Store,
    cache: &LiveCache,
    account_id: &str,
    month: Month,
    period: &Period,
) -> openwinv_store::Result<Shared> {
    if let Some(c) = up_to_date(store, cache, account_id, month, period).await? {
        return Ok(c);
    }
    let _turn = cache.loading(account_id).lock().await;
    // Another request may have read the month whole meanwhile.
    if let Some(c) = up_to_date(store, cache, account_id, month, period).await? {
        return Ok(c);
    }
    // The version is read before the intervals: a write in between only makes the copy newer
    // than its version, and the next read reloads what it changed again.
    let version = store.usage_version(account_id).await?;
    let intervals = Ledger::new(store.account_intervals(account_id, period.start, period.end).await?);
    let c = Arc::new(RwLock::new(Cached { version, month, intervals, price: None }));
    cache.put(account_id, c.clone());
    Ok(c)
}

/// The held copy brought up to the store's version by reading only the resources changed since,
/// or None when there is no copy or it is too far behind (or ahead: a snapshot restored by
/// another process took the store back).
///
/// The copy is changed in place, resource by resource ([`Ledger`]): a change costs the
/// resources it touched, not a copy of the account's month (10,000 intervals cloned and sorted
/// for every live bill read after a change, under the mixed load of docs/perf.md).
async fn up_to_date(
    store: &Store,
    cache: &LiveCache,
    account_id: &str,
    month: Month,
    period: &Period,
) -> openwinv_store::Result<Option<Shared>> {
    let Some(entry) = cache.get(account_id) else { return Ok(None) };
    let held = {
        let c = entry.read().expect("live bill copy");
        if c.month != month {
            return Ok(None);
        }
        c.version
    };
    let (version, changes) = store.usage_changes_since(account_id, held, period.start, period.end).await?;
    if held == version {
        return Ok(Some(entry));
    }
    let Some(UsageChanges { resources: changed, intervals: fresh }) = changes.filter(|_| held < version) else {
        return Ok(None);
    };
    {
        let mut c = entry.write().expect("live bill copy");
        // Another request may have brought the copy on meanwhile: what it read is older than
        // this (read after `version`) unless it reached `version` or beyond.
        if c.version < version {
            let ids = || changed.iter().map(String::as_str);
            let before = c.price.map(|(at, _)| c.intervals.rate_total_of(ids(), *period, at));
            c.intervals.replace(ids(), fresh);
            c.price = match (c.price, before) {
                (Some((at, price)), Some(before)) => {
                    Some((at, price - before + c.intervals.rate_total_of(ids(), *period, at)))
                }
                _ => None,
            };
            c.version = version;
        }
    }
    Ok(Some(entry))
}

/// An account's copy of the month, shared by the requests that rate it.
type Shared = Arc<RwLock<Cached>>;

/// Accounts' intervals of the current month, at a usage version (see [`live`]).
pub struct LiveCache {
    entries: Mutex<HashMap<String, (u64, Shared)>>,
    clock: AtomicU64,
    /// Whose turn it is to bring an account's copy up to date: one lock per stripe of accounts.
    turns: Box<[tokio::sync::Mutex<()>; TURN_STRIPES]>,
}

impl Default for LiveCache {
    fn default() -> Self {
        LiveCache {
            entries: Mutex::default(),
            clock: AtomicU64::default(),
            turns: Box::new(std::array::from_fn(|_| tokio::sync::Mutex::new(()))),
        }
    }
}

/// Stripes of [`LiveCache::loading`]: accounts sharing one wait for each other's reloads only.
const TURN_STRIPES: usize = 64;

struct Cached {
    version: i64,
    month: Month,
    intervals: Ledger,
    /// The price rated at a second (`upto`), kept up to date with `intervals`.
    price: Option<(i64, i64)>,
}

/// Accounts kept; the least recently used goes first.
const CACHED_ACCOUNTS: usize = 256;

impl LiveCache {
    /// Forgets every account (after a reset or restore replaced the store's usage).
    pub fn clear(&self) {
        self.entries.lock().expect("live bill cache").clear();
    }

    /// The lock held while an account's copy is brought up to date.
    fn loading(&self, account_id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(account_id);
        &self.turns[(h % TURN_STRIPES as u64) as usize]
    }

    fn get(&self, account_id: &str) -> Option<Shared> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.lock().expect("live bill cache");
        entries.get_mut(account_id).map(|(used, c)| {
            *used = tick;
            c.clone()
        })
    }

    fn put(&self, account_id: &str, c: Shared) {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.lock().expect("live bill cache");
        if entries.len() >= CACHED_ACCOUNTS
            && !entries.contains_key(account_id)
            && let Some(oldest) = entries.iter().min_by_key(|(_, (used, _))| *used).map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(account_id.to_owned(), (tick, c));
    }
}

/// `/v1/bill…`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/bill", get(handlers::list))
        .route("/v1/bill/live", get(handlers::live))
        .route("/v1/bill/{bill_id}", get(handlers::detail))
}

/// `/admin/v1/bills…`.
pub fn admin_routes() -> Router<AppState> {
    Router::new().route("/admin/v1/bills/{bill_id}/pay", post(handlers::pay))
}
