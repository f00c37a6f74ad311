//! Billing (spec §10): the live bill of the current month, the regular bills of closed months
//! and their lines, and the operator's "mark paid".

use openwinv_wire::billing::{Bill, BillDetail, LiveBill};
use reqwest::Method;

use crate::admin::AdminClient;
use crate::client::Client;
use crate::error::Result;
use crate::pages::{Page, PageRequest};
use crate::query::BillQuery;
use crate::response::first_row;

const BILLS: &str = "/v1/bill";
const LIVE: &str = "/v1/bill/live";

impl Client {
    /// The charges of the current month so far, VAT excluded. With `explain`, its `items` give
    /// one line per resource, summing to `price`.
    pub async fn live_bill(&self, explain: bool) -> Result<LiveBill> {
        let query = [("explain", explain.then_some("1"))];
        first_row(self.get(LIVE, &query).await?)
    }

    /// One page of the account's regular bills, oldest first. Filters that match nothing are the
    /// API error `EMPTY_SET`.
    pub async fn bills(&self, query: &BillQuery) -> Result<Page<Bill>> {
        let env = self.get(BILLS, query).await?;
        Ok(Page::from_envelope(env, PageRequest { page_no: query.page_no, page_size: query.page_size }))
    }

    /// One regular bill with its lines grouped by kind; an unknown id is the API error `NOT_FOUND`.
    pub async fn bill(&self, bill_id: &str) -> Result<BillDetail> {
        first_row(self.execute(self.request_of(Method::GET, &["v1", "bill", bill_id])).await?)
    }
}

impl AdminClient {
    /// Marks a bill paid today (billing time zone); a bill already paid keeps its date.
    pub async fn pay_bill(&self, bill_id: &str) -> Result<Bill> {
        first_row(self.execute(self.request(Method::POST, &["bills", bill_id, "pay"])).await?)
    }
}
