//! Regular bills (spec §10): one per account and month, issued exactly once.
//!
//! "Exactly once" rests on the database: `bills` is unique on (account_id, month), and a bill is
//! written with `INSERT … ON CONFLICT (account_id, month) DO NOTHING` and its items in the same
//! transaction, so with any number of server processes closing the same month, one bill per
//! account wins and the others change nothing.

use std::collections::HashSet;

use crate::{PageQuery, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BillRecord {
    pub bill_id: String,
    pub account_id: String,
    /// `YYYY-MM` in the billing time zone.
    pub month: String,
    /// `YYYY-MM-DD`: the first and last day of the month.
    pub usage_start: String,
    pub usage_end: String,
    /// `YYYY-MM-DD`: the first day of the next month.
    pub bill_date: String,
    pub name: String,
    /// Won, VAT excluded.
    pub price: i64,
    pub vat: i64,
    pub payment_price: i64,
    /// `YYYY-MM-DD`, or `None` while unpaid.
    pub date_paid: Option<String>,
    pub paid_at: Option<i64>,
    pub created_at: i64,
}

const COLUMNS: &str = "bill_id, account_id, month, usage_start, usage_end, bill_date, name, price, vat, \
     payment_price, date_paid, paid_at, created_at";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BillItemRecord {
    pub bill_id: String,
    pub position: i64,
    /// `server` or `volume`.
    pub kind: String,
    pub service_id: String,
    pub name: String,
    pub rate: i64,
    pub seconds: i64,
    pub price: i64,
    pub usage_start: String,
    pub usage_end: String,
}

const ITEM_COLUMNS: &str = "bill_id, position, kind, service_id, name, rate, seconds, price, usage_start, usage_end";

/// Bill-list filters, already validated; bounds are inclusive.
#[derive(Debug, Clone, Default)]
pub struct BillFilter {
    /// `YYYY-MM-DD`, on `bill_date`.
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    /// Won, on `price`.
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
}

/// Rows per INSERT statement (13 and 10 parameters each, well under every backend's limit).
const BILLS_PER_INSERT: usize = 20;
const ITEMS_PER_INSERT: usize = 50;

/// `($n, $n+1, …)` for row `row` of a multi-row INSERT of `columns` columns.
fn placeholders(row: usize, columns: usize) -> String {
    let p: Vec<String> = (1..=columns).map(|c| format!("${}", row * columns + c)).collect();
    format!("({})", p.join(", "))
}

impl Store {
    /// Writes each bill with its items unless its account already has a bill for that month, all
    /// in one transaction. Returns how many were written.
    pub async fn insert_bills_if_absent(&self, bills: &[(BillRecord, Vec<BillItemRecord>)]) -> Result<usize> {
        let mut tx = self.begin_write().await?;
        let mut written = HashSet::new();
        for chunk in bills.chunks(BILLS_PER_INSERT) {
            let values: Vec<String> = (0..chunk.len()).map(|i| placeholders(i, 13)).collect();
            let sql = format!(
                "INSERT INTO bills ({COLUMNS}) VALUES {} ON CONFLICT (account_id, month) DO NOTHING RETURNING bill_id",
                values.join(", ")
            );
            let mut q = sqlx::query_as::<_, (String,)>(&sql);
            for (b, _) in chunk {
                q = q
                    .bind(&b.bill_id)
                    .bind(&b.account_id)
                    .bind(&b.month)
                    .bind(&b.usage_start)
                    .bind(&b.usage_end)
                    .bind(&b.bill_date)
                    .bind(&b.name)
                    .bind(b.price)
                    .bind(b.vat)
                    .bind(b.payment_price)
                    .bind(&b.date_paid)
                    .bind(b.paid_at)
                    .bind(b.created_at);
            }
            written.extend(q.fetch_all(&mut *tx).await?.into_iter().map(|(id,)| id));
        }
        // Items only for the bills this transaction wrote.
        let items: Vec<&BillItemRecord> = bills
            .iter()
            .filter(|(b, _)| written.contains(&b.bill_id))
            .flat_map(|(b, items)| items.iter().filter(move |i| i.bill_id == b.bill_id))
            .collect();
        for chunk in items.chunks(ITEMS_PER_INSERT) {
            let values: Vec<String> = (0..chunk.len()).map(|i| placeholders(i, 10)).collect();
            let sql = format!("INSERT INTO bill_items ({ITEM_COLUMNS}) VALUES {}", values.join(", "));
            let mut q = sqlx::query(&sql);
            for it in chunk {
                q = q
                    .bind(&it.bill_id)
                    .bind(it.position)
                    .bind(&it.kind)
                    .bind(&it.service_id)
                    .bind(&it.name)
                    .bind(it.rate)
                    .bind(it.seconds)
                    .bind(it.price)
                    .bind(&it.usage_start)
                    .bind(&it.usage_end);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(written.len())
    }

    /// The accounts among `first..=last` that already have their bill for `month`.
    pub async fn billed_accounts(&self, month: &str, first: &str, last: &str) -> Result<HashSet<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT account_id FROM bills WHERE month = $1 AND account_id >= $2 AND account_id <= $3")
                .bind(month)
                .bind(first)
                .bind(last)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(a,)| a).collect())
    }

    /// One page of the account's bills, oldest first (bill date, then id), and the total.
    pub async fn list_bills(
        &self,
        account_id: &str,
        f: &BillFilter,
        page: PageQuery,
    ) -> Result<(Vec<BillRecord>, i64)> {
        let mut clauses = vec!["account_id = $1".to_owned()];
        let mut texts = vec![account_id.to_owned()];
        for (clause, v) in [("bill_date >= ", &f.start_date), ("bill_date <= ", &f.end_date)] {
            if let Some(v) = v {
                texts.push(v.clone());
                clauses.push(format!("{clause}${}", texts.len()));
            }
        }
        let mut ints = Vec::new();
        for (clause, v) in [("price >= ", f.min_price), ("price <= ", f.max_price)] {
            if let Some(v) = v {
                ints.push(v);
                clauses.push(format!("{clause}${}", texts.len() + ints.len()));
            }
        }
        let filter = clauses.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) FROM bills WHERE {filter}");
        let mut count = sqlx::query_as::<_, (i64,)>(&count_sql);
        for t in &texts {
            count = count.bind(t);
        }
        for i in &ints {
            count = count.bind(*i);
        }
        let (total,) = count.fetch_one(self.pool()).await?;
        let n = texts.len() + ints.len();
        let sql = format!(
            "SELECT {COLUMNS} FROM bills WHERE {filter} ORDER BY bill_date, bill_id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let mut q = sqlx::query_as::<_, BillRecord>(&sql);
        for t in &texts {
            q = q.bind(t);
        }
        for i in &ints {
            q = q.bind(*i);
        }
        let rows = q.bind(page.limit).bind(page.offset).fetch_all(self.pool()).await?;
        Ok((rows, total))
    }

    /// The account's bill; another account's or an unknown id is `None`.
    pub async fn bill(&self, account_id: &str, bill_id: &str) -> Result<Option<BillRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM bills WHERE account_id = $1 AND bill_id = $2"))
            .bind(account_id)
            .bind(bill_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The bill of `account_id` for `month` (`YYYY-MM`).
    pub async fn bill_for_month(&self, account_id: &str, month: &str) -> Result<Option<BillRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM bills WHERE account_id = $1 AND month = $2"))
            .bind(account_id)
            .bind(month)
            .fetch_optional(self.pool())
            .await?)
    }

    /// A bill's lines, in order.
    pub async fn bill_items(&self, bill_id: &str) -> Result<Vec<BillItemRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {ITEM_COLUMNS} FROM bill_items WHERE bill_id = $1 ORDER BY position"))
            .bind(bill_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Marks a bill paid on `date` (`YYYY-MM-DD`) unless it already is; returns the bill as it is
    /// now, or `None` when it does not exist.
    pub async fn pay_bill(&self, bill_id: &str, date: &str, now: i64) -> Result<Option<BillRecord>> {
        sqlx::query("UPDATE bills SET date_paid = $1, paid_at = $2 WHERE bill_id = $3 AND paid_at IS NULL")
            .bind(date)
            .bind(now)
            .bind(bill_id)
            .execute(self.writer())
            .await?;
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM bills WHERE bill_id = $1"))
            .bind(bill_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Months (`YYYY-MM`) whose close ran to the end.
    pub async fn closed_months(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT month FROM billing_months ORDER BY month").fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(|(m,)| m).collect())
    }

    /// Records that every account with usage in `month` has its bill.
    pub async fn mark_month_closed(&self, month: &str, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO billing_months (month, closed_at) VALUES ($1, $2) ON CONFLICT (month) DO NOTHING")
            .bind(month)
            .bind(now)
            .execute(self.writer())
            .await?;
        Ok(())
    }
}
