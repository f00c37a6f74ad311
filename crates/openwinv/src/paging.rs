//! `--page`, `--page-size` and `--all`, shared by the paginated list commands.

use clap::Args;
use openwinv_sdk::PageRequest;

#[derive(Debug, Clone, Args)]
pub struct Paging {
    /// Page number, from 1
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub page: Option<u64>,
    /// Rows per page (server default 10, at most 100)
    #[arg(long, value_name = "N")]
    pub page_size: Option<u64>,
    /// Fetch every page
    #[arg(long)]
    pub all: bool,
}

impl Paging {
    pub fn request(&self) -> PageRequest {
        PageRequest { page_no: self.page, page_size: self.page_size }
    }
}
