//! Paginated answers (spec §4) and walking them to the end.

use std::future::Future;

use openwinv_wire::Envelope;
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;

/// The page a list call asks for; unset values take the server defaults (page 1, 10 rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PageRequest {
    pub page_no: Option<u64>,
    pub page_size: Option<u64>,
}

impl PageRequest {
    pub fn new(page_no: u64, page_size: u64) -> PageRequest {
        PageRequest { page_no: Some(page_no), page_size: Some(page_size) }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub rows: Vec<T>,
    /// 1-based.
    pub page_no: u64,
    pub page_size: u64,
    /// Rows matching the filter over all pages, when the server says (flavors, images, instances,
    /// volumes and scripts; SSH keys, firewalls and bills never do).
    pub total: Option<u64>,
    /// Rows in this page.
    pub count: u64,
}

/// The server default page size (spec §4).
pub const DEFAULT_PAGE_SIZE: u64 = openwinv_wire::envelope::Page::DEFAULT_SIZE;
/// The largest page the server gives (spec §4).
pub const MAX_PAGE_SIZE: u64 = openwinv_wire::envelope::Page::MAX_SIZE;

impl<T> Page<T> {
    /// Reads the page fields, which may be numbers or numeric strings (the bill list); missing
    /// ones are taken from what was asked.
    pub(crate) fn from_envelope(env: Envelope<Vec<T>>, asked: PageRequest) -> Page<T> {
        let count = env.count.unwrap_or(env.result.len() as u64);
        Page {
            page_no: number(env.page_no.as_ref()).or(asked.page_no).unwrap_or(1),
            page_size: number(env.page_size.as_ref()).or(asked.page_size).unwrap_or(DEFAULT_PAGE_SIZE),
            total: env.total,
            count,
            rows: env.result,
        }
    }

    /// Whether no page follows this one, given how many rows all pages so far held.
    fn is_last(&self, rows_so_far: u64) -> bool {
        self.rows.is_empty()
            || (self.rows.len() as u64) < self.page_size
            || self.total.is_some_and(|t| rows_so_far >= t)
    }
}

fn number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Fetches pages 1, 2, … with `fetch(page_no)` and concatenates their rows, stopping after a page
/// that is empty, shorter than its page size, or reaches the reported total.
pub async fn collect_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<Page<T>>>,
{
    let mut all = Vec::new();
    for page_no in 1.. {
        let page = fetch(page_no).await?;
        let rows_so_far = (all.len() + page.rows.len()) as u64;
        let last = page.is_last(rows_so_far);
        all.extend(page.rows);
        if last {
            break;
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(rows: Vec<u32>, page_no: u64, page_size: u64, total: Option<u64>) -> Page<u32> {
        Page { count: rows.len() as u64, rows, page_no, page_size, total }
    }

    #[test]
    fn page_numbers_may_be_strings_or_missing() {
        let mut env = Envelope::rows(vec![1u32, 2]);
        env.page_no = Some(Value::String("3".into()));
        env.page_size = Some(Value::from(2));
        let p = Page::from_envelope(env, PageRequest::default());
        assert_eq!((p.page_no, p.page_size, p.count, p.total), (3, 2, 2, None));
        let p = Page::from_envelope(Envelope::rows(vec![1u32]), PageRequest::new(4, 50));
        assert_eq!((p.page_no, p.page_size), (4, 50));
    }

    /// Walks `len` rows served 3 a page without `total`; answers the rows and the calls made.
    async fn walk_without_total(len: u32) -> (Vec<u32>, Vec<u32>, u32) {
        let data: Vec<u32> = (1..=len).collect();
        let mut calls = 0;
        let all = collect_pages(|n| {
            calls += 1;
            let first = (n - 1) * 3 + 1;
            let rows = data.iter().copied().filter(|r| (first..first + 3).contains(&u64::from(*r))).collect();
            async move { Ok(page(rows, n, 3, None)) }
        })
        .await
        .unwrap();
        (all, data, calls)
    }

    #[tokio::test]
    async fn walks_until_a_short_page() {
        let (all, data, calls) = walk_without_total(7).await;
        assert_eq!(all, data);
        assert_eq!(calls, 3);
    }

    /// Lists without `total` (SSH keys, firewalls, bills): a full last page costs one more call,
    /// which answers an empty page.
    #[tokio::test]
    async fn walks_a_list_without_total_that_fills_its_last_page() {
        let (all, data, calls) = walk_without_total(6).await;
        assert_eq!(all, data);
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn stops_at_the_total_without_an_extra_call() {
        let mut calls = 0;
        let all = collect_pages(|n| {
            calls += 1;
            let rows = vec![n as u32 * 10, n as u32 * 10 + 1];
            async move { Ok(page(rows, n, 2, Some(4))) }
        })
        .await
        .unwrap();
        assert_eq!(all, vec![10, 11, 20, 21]);
        assert_eq!(calls, 2);
    }
}
