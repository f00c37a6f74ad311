//! The month close: when a calendar month (billing time zone) is over on the server clock, every
//! account with usage in it gets one `regular` bill for it.
//!
//! - Exactly once: bills are unique per (account, month) and written insert-if-absent with their
//!   items in one transaction, so any number of processes may close the same month at once.
//! - Nothing missed: a month is recorded in `billing_months` only after every account's bill is
//!   written; at start, and every second after, each process closes every finished month not
//!   recorded yet (a month that ended while no server ran is closed when one comes back).
//! - Consistent with the live bill: a bill rates the same intervals the live bill read at the
//!   month's last second, with the same arithmetic (`openwinv-billing`).
//! - A change that read the clock just before the month ended may still be committing when the
//!   clock passes the end (or is moved past it): a month is closed only after it has been seen
//!   over for [`GRACE`] of host time.

use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use openwinv_billing::{Interval, Line, Month, date_of, groups, rate, total, vat};
use openwinv_store::{BillItemRecord, BillRecord, Store, ids};

use crate::AppState;

/// Host time a finished month waits before it is closed.
pub const GRACE: Duration = Duration::from_secs(2);
/// Accounts rated and written per transaction.
const BATCH: i64 = 500;

/// What one close did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReport {
    pub month: Month,
    /// Accounts with usage in the month.
    pub accounts: usize,
    /// Bills this call wrote (the others existed already).
    pub issued: usize,
}

/// Issues the bills of `month` for every account with usage in it that has none yet, and records
/// the month as closed. `now` is the issue time; with `paid_on_issue` the bills are issued paid.
pub async fn close_month(
    store: &Store,
    month: Month,
    tz: &TimeZone,
    paid_on_issue: bool,
    now: i64,
) -> openwinv_store::Result<CloseReport> {
    let period = month.period(tz);
    let key = month.key();
    let mut report = CloseReport { month, accounts: 0, issued: 0 };
    let mut after = String::new();
    loop {
        let accounts = store.accounts_with_usage(period.start, period.end, &after, BATCH).await?;
        let (Some(first), Some(last)) = (accounts.first(), accounts.last()) else { break };
        report.accounts += accounts.len();
        let billed = store.billed_accounts(&key, first, last).await?;
        let rows = store.intervals_of_accounts(first, last, period.start, period.end).await?;
        let mut bills = Vec::new();
        let mut rest = rows.as_slice();
        while let Some((account, _)) = rest.first() {
            let n = rest.iter().take_while(|(a, _)| a == account).count();
            let (mine, tail) = rest.split_at(n);
            rest = tail;
            if billed.contains(account) {
                continue;
            }
            let intervals: Vec<Interval> = mine.iter().map(|(_, iv)| iv.clone()).collect();
            let lines = rate(&intervals, period, period.end);
            if !lines.is_empty() {
                bills.push(bill(account, month, &lines, tz, paid_on_issue, now));
            }
        }
        report.issued += store.insert_bills_if_absent(&bills).await?;
        after = last.clone();
    }
    store.mark_month_closed(&key, now).await?;
    Ok(report)
}

/// The bill of `account` for `month` from its lines.
pub fn bill(
    account: &str,
    month: Month,
    lines: &[Line],
    tz: &TimeZone,
    paid_on_issue: bool,
    now: i64,
) -> (BillRecord, Vec<BillItemRecord>) {
    let bill_id = ids::new_id("BILL");
    let price = total(lines);
    let vat = vat(price);
    let record = BillRecord {
        bill_id: bill_id.clone(),
        account_id: account.to_owned(),
        month: month.key(),
        usage_start: month.first_day().to_string(),
        usage_end: month.last_day().to_string(),
        bill_date: month.next().first_day().to_string(),
        name: month.bill_name(),
        price,
        vat,
        payment_price: price.saturating_add(vat),
        date_paid: paid_on_issue.then(|| date_of(now, tz).to_string()),
        paid_at: paid_on_issue.then_some(now),
        created_at: now,
    };
    let items = groups(lines)
        .into_iter()
        .flat_map(|g| g.lines)
        .enumerate()
        .map(|(i, l)| BillItemRecord {
            bill_id: bill_id.clone(),
            position: i as i64,
            kind: l.kind.as_str().to_owned(),
            service_id: l.resource_id.clone(),
            name: l.name.clone(),
            rate: l.rate,
            seconds: l.seconds,
            price: l.amount,
            usage_start: date_of(l.first, tz).to_string(),
            usage_end: date_of(l.last, tz).to_string(),
        })
        .collect();
    (record, items)
}

/// Closes finished months for as long as the server runs.
pub async fn run(state: AppState) {
    let mut closer = Closer::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A reset or restore waits for a close under way, and a close never runs during one.
        let out = state
            .engine
            .between_pauses(|epoch| {
                if closer.epoch != epoch {
                    // The state was replaced since the closer last looked: what it knew of closed
                    // months described the old state (a restored snapshot may hold finished
                    // months without their bills).
                    closer = Closer { epoch, ..Closer::default() };
                }
                closer.tick(&state)
            })
            .await;
        if let Err(e) = out {
            tracing::warn!(error = %e, "month close failed; retrying");
        }
    }
}

/// The close loop's memory: which months are known closed, and since when the latest finished
/// month has been seen over.
#[derive(Default)]
struct Closer {
    /// Every month up to this one is closed.
    done_through: Option<Month>,
    /// The latest finished month, and the host instant it was first seen finished.
    seen: Option<(Month, Instant)>,
    /// The engine's count of state replacements this memory belongs to.
    epoch: u64,
}

impl Closer {
    async fn tick(&mut self, state: &AppState) -> openwinv_store::Result<()> {
        let tz = &state.config.billing_timezone;
        let now = state.clock.unix();
        let finished = Month::containing(now, tz).prev();
        if self.done_through.is_some_and(|d| d >= finished) {
            return Ok(());
        }
        match self.seen {
            Some((m, since)) if m == finished => {
                if since.elapsed() < GRACE {
                    return Ok(());
                }
            }
            _ => {
                self.seen = Some((finished, Instant::now()));
                return Ok(());
            }
        }
        let Some(first) = state.store.first_usage().await? else {
            self.done_through = Some(finished);
            return Ok(());
        };
        let closed = state.store.closed_months().await?;
        let mut month = Month::containing(first, tz);
        if let Some(d) = self.done_through {
            month = month.max(d.next());
        }
        while month <= finished {
            if !closed.contains(&month.key()) {
                let started = Instant::now();
                let r =
                    close_month(&state.store, month, tz, state.config.bills_paid_on_issue, state.clock.unix()).await?;
                tracing::info!(
                    month = %month.key(),
                    accounts = r.accounts,
                    issued = r.issued,
                    ms = started.elapsed().as_millis() as u64,
                    "month closed"
                );
            }
            self.done_through = Some(month);
            month = month.next();
        }
        self.done_through = Some(finished);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openwinv_billing::Kind;
    use openwinv_store::Rate;
    use openwinv_store::usage::{OpenInterval, close_intervals, open_interval};

    use super::*;

    /// A private store: SQLite in a temporary file, or a fresh PostgreSQL database when the
    /// suite runs on PostgreSQL (`OPENWINV_TEST_STORE=postgres`).
    enum Private {
        File(std::path::PathBuf),
        Database { base: String, name: String },
    }

    async fn private_store() -> (Store, Private) {
        use sqlx::Connection;
        let name = format!("owt_close_{}", rand::random::<u64>());
        if std::env::var("OPENWINV_TEST_STORE").as_deref() == Ok("postgres") {
            let base = std::env::var("OPENWINV_TEST_DATABASE_URL").expect("OPENWINV_TEST_DATABASE_URL");
            let mut c = sqlx::postgres::PgConnection::connect(&base).await.expect("connect to the test PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
            let (prefix, _) = base.rsplit_once('/').unwrap();
            (Store::open(&format!("{prefix}/{name}")).await.unwrap(), Private::Database { base, name })
        } else {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            (Store::open(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap(), Private::File(path))
        }
    }

    async fn drop_store(store: Store, private: Private) {
        use sqlx::Connection;
        store.close().await;
        match private {
            Private::File(f) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
                }
            }
            Private::Database { base, name } => {
                let mut c = sqlx::postgres::PgConnection::connect(&base).await.unwrap();
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_closes_issue_each_bill_once() {
        let (store, private) = private_store().await;
        let tz = TimeZone::get("Asia/Seoul").unwrap();
        let month = Month { year: 2026, month: 11 };
        let p = month.period(&tz);
        // More accounts than one batch; each with a server running all month and a volume that
        // lived ten days of it.
        const ACCOUNTS: usize = 1100;
        let mut conn = store.pool().acquire().await.unwrap();
        for i in 0..ACCOUNTS {
            let a = store.create_account(&format!("a{i}"), p.start).await.unwrap();
            for (id, kind, rate, start, end) in [
                (format!("INSTANCE-{i}"), Kind::Server, Rate { hourly: 14, monthly: 9900 }, p.start - 99, None),
                (
                    format!("BS-{i}"),
                    Kind::Volume,
                    Rate { hourly: 0, monthly: 3000 },
                    p.start,
                    Some(p.start + 10 * 86_400 - 1),
                ),
            ] {
                let iv = OpenInterval {
                    account_id: &a.account_id,
                    resource_id: &id,
                    kind,
                    name: "r",
                    product: "p",
                    size: 0,
                    rate,
                    start,
                };
                open_interval(&mut conn, &iv).await.unwrap();
                if let Some(end) = end {
                    close_intervals(&mut conn, &id, end).await.unwrap();
                }
            }
        }
        drop(conn);
        let closers: Vec<_> = (0..4)
            .map(|_| {
                let (store, tz) = (store.clone(), tz.clone());
                tokio::spawn(async move { close_month(&store, month, &tz, false, p.end + 5).await.unwrap() })
            })
            .collect();
        let mut issued = 0;
        for c in closers {
            let r = c.await.unwrap();
            assert_eq!(r.accounts, ACCOUNTS);
            issued += r.issued;
        }
        assert_eq!(issued, ACCOUNTS, "every bill written exactly once");
        assert_eq!(store.billed_accounts("2026-11", "", "~").await.unwrap().len(), ACCOUNTS);
        assert_eq!(store.closed_months().await.unwrap(), ["2026-11"]);
        let a = store.account_by_name("a7").await.unwrap().unwrap();
        let b = store.bill_for_month(&a.account_id, "2026-11").await.unwrap().unwrap();
        assert_eq!((b.price, b.vat, b.payment_price), (9900 + 1000, 1090, 11_990));
        assert_eq!(
            (b.usage_start.as_str(), b.usage_end.as_str(), b.bill_date.as_str()),
            ("2026-11-01", "2026-11-30", "2026-12-01")
        );
        let items = store.bill_items(&b.bill_id).await.unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].kind.as_str(), items[0].price), ("server", 9900));
        assert_eq!(
            (items[1].kind.as_str(), items[1].price, items[1].usage_end.as_str()),
            ("volume", 1000, "2026-11-10")
        );
        // Closing again writes nothing.
        assert_eq!(close_month(&store, month, &tz, false, p.end + 9).await.unwrap().issued, 0);
        drop_store(store, private).await;
    }
}
