//! `bill`: the live bill of the current month (optionally explained per resource), the regular
//! bills of closed months and one bill's lines. Amounts print as won (`₩1,234`) in tables and as
//! the server's integers with `--json`.

use clap::{Args, Subcommand};
use openwinv_sdk::wire::billing::{Bill, BillDetail, BillItem, LiveBill, LiveBillItem};
use openwinv_sdk::{BillQuery, Client, collect_pages};
use serde::Serialize;

use crate::output::{Column, Output, Tabular, long, number, or_dash, text, won};
use crate::paging::Paging;

#[derive(Debug, Subcommand)]
pub enum BillCommand {
    /// Show the charges of the current month so far (VAT excluded)
    Live {
        /// Add one line per resource; the amounts add up to the total
        #[arg(long)]
        explain: bool,
    },
    /// List the regular bills of closed months, oldest first
    List(BillFilters),
    /// Show one regular bill with its lines
    Show { id: String },
}

#[derive(Debug, Args)]
pub struct BillFilters {
    /// Billed on or after this day
    #[arg(long, value_name = "YYYY-MM-DD")]
    from: Option<String>,
    /// Billed on or before this day
    #[arg(long, value_name = "YYYY-MM-DD")]
    to: Option<String>,
    /// Price (VAT excluded) at least this many won
    #[arg(long, value_name = "WON")]
    min_price: Option<u64>,
    /// Price (VAT excluded) at most this many won
    #[arg(long, value_name = "WON")]
    max_price: Option<u64>,
    #[command(flatten)]
    paging: Paging,
}

pub async fn run(client: &Client, command: BillCommand, out: Output) -> anyhow::Result<()> {
    match command {
        BillCommand::Live { explain } => {
            let live = client.live_bill(explain).await?;
            out.record(&live)?;
            match &live.items {
                Some(items) if !out.machine() => out.list(items),
                _ => Ok(()),
            }
        }
        BillCommand::List(filters) => list(client, filters, out).await,
        BillCommand::Show { id } => {
            let detail = client.bill(&id).await?;
            out.record(&detail)?;
            if out.machine() {
                return Ok(());
            }
            let lines: Vec<Line> =
                detail.group.iter().flat_map(|g| g.item.iter().map(move |item| Line { kind: &g.kind, item })).collect();
            out.list(&lines)
        }
    }
}

async fn list(client: &Client, filters: BillFilters, out: Output) -> anyhow::Result<()> {
    let query = BillQuery {
        start_date: filters.from,
        end_date: filters.to,
        min_price: filters.min_price,
        max_price: filters.max_price,
        page_no: filters.paging.page,
        page_size: filters.paging.page_size,
    };
    if filters.paging.everything(out) {
        let page_size = Some(filters.paging.walk_size());
        let all = collect_pages(|page_no| {
            let query = BillQuery { page_no: Some(page_no), page_size, ..query.clone() };
            async move { client.bills(&query).await }
        })
        .await?;
        out.list(&all)
    } else {
        out.page(&client.bills(&query).await?)
    }
}

/// Seconds as `1d 2h 3m 4s`, leaving out leading zero units.
fn duration(seconds: i64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut left = seconds.max(0);
    let mut parts = Vec::new();
    for (size, unit) in units {
        let n = left / size;
        left %= size;
        if n > 0 || !parts.is_empty() || size == 1 {
            parts.push(format!("{n}{unit}"));
        }
    }
    parts.join(" ")
}

impl Tabular for LiveBill {
    const COLUMNS: &'static [Column] = &[text("ID"), text("FROM"), text("TO"), number("PRICE"), text("CURRENCY")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.bill_id.clone(),
            self.start_date.clone(),
            self.end_date.clone(),
            won(self.price),
            self.currency.clone(),
        ]
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ID", self.bill_id.clone()),
            ("FROM", self.start_date.clone()),
            ("TO", self.end_date.clone()),
            ("PRICE", format!("{} (VAT excluded)", won(self.price))),
        ]
    }
}

impl Tabular for LiveBillItem {
    const COLUMNS: &'static [Column] =
        &[text("ID"), long("NAME"), text("TYPE"), number("RATE"), number("TIME"), number("AMOUNT")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.kind.clone(),
            format!("{}/{}", won(self.rate), self.rate_unit),
            duration(self.seconds),
            won(self.amount),
        ]
    }
}

impl Tabular for Bill {
    const COLUMNS: &'static [Column] = &[
        text("ID"),
        long("NAME"),
        long("USAGE"),
        text("BILL DATE"),
        text("STATUS"),
        number("PRICE"),
        number("VAT"),
        number("TOTAL"),
        text("PAID ON"),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.bill_id.clone(),
            self.name.clone(),
            format!("{} – {}", self.usage_start, self.usage_end),
            self.bill_date.clone(),
            self.payment_status.clone(),
            won(self.price),
            won(self.vat),
            won(self.payment_price),
            or_dash(Some(&self.date_paid).filter(|d| !d.is_empty())),
        ]
    }
}

impl Tabular for BillDetail {
    const COLUMNS: &'static [Column] = Bill::COLUMNS;

    fn cells(&self) -> Vec<String> {
        self.bill.cells()
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        let mut details = self.bill.details();
        details
            .extend(self.group.iter().map(|g| ("SUBTOTAL", format!("{} ({}): {}", g.kind, g.count, won(g.sub_total)))));
        details
    }
}

/// One line of a bill, with the kind of its group.
#[derive(Debug, Serialize)]
struct Line<'a> {
    kind: &'a str,
    #[serde(flatten)]
    item: &'a BillItem,
}

impl Tabular for Line<'_> {
    const COLUMNS: &'static [Column] = &[text("KIND"), text("ID"), long("NAME"), long("USAGE"), number("PRICE")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.kind.to_owned(),
            self.item.service_id.clone(),
            self.item.name.clone(),
            format!("{} – {}", self.item.usage_start, self.item.usage_end),
            won(self.item.price),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_leave_out_leading_zero_units() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(7_200), "2h 0m 0s");
        assert_eq!(duration(90_061), "1d 1h 1m 1s");
    }
}
