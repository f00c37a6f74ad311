//! `--page`, `--page-size` and `--all`, shared by the paginated list commands, and the rule of
//! which lists fetch every page: `--all`, and every `--output` format but the table unless
//! `--page` or `--page-size` asks for one page (a script reading `--json` must not stop silently
//! at the first page). The table shows one page and says on stderr where it is.

use std::future::Future;

use clap::Args;
use openwinv_sdk::{Page, PageRequest, collect_pages};

use crate::output::{Output, Tabular};

#[derive(Debug, Clone, Args)]
pub struct Paging {
    /// Page number, from 1 (one page only, in every format)
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub page: Option<u64>,
    /// Rows per page (server default 10, at most 100); alone, asks for the first page only
    #[arg(long, value_name = "N")]
    pub page_size: Option<u64>,
    /// Fetch every page (the default of every --output format but table)
    #[arg(long)]
    pub all: bool,
}

impl Paging {
    pub fn request(&self) -> PageRequest {
        PageRequest { page_no: self.page, page_size: self.page_size }
    }

    /// Whether the list fetches every page.
    pub fn everything(&self, out: Output) -> bool {
        self.all || (out.machine() && self.page.is_none() && self.page_size.is_none())
    }

    /// The page size of a walk over every page: as asked, else the largest.
    pub fn walk_size(&self) -> u64 {
        self.page_size.unwrap_or(openwinv_sdk::MAX_PAGE_SIZE)
    }
}

/// Prints one page as asked, or every page (see [`Paging::everything`]); `fetch` gets the page.
pub async fn show<T, F, Fut>(paging: &Paging, fetch: F, out: Output) -> anyhow::Result<()>
where
    T: Tabular,
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = openwinv_sdk::Result<Page<T>>>,
{
    if paging.everything(out) {
        let size = paging.walk_size();
        let rows = collect_pages(|no| fetch(PageRequest::new(no, size))).await?;
        out.list(&rows)
    } else {
        out.page(&fetch(paging.request()).await?)
    }
}
