//! `admin clock`: show the server clock, set it, or move it forward (simulated driver only).

use clap::Subcommand;
use openwinv_sdk::AdminClient;
use openwinv_sdk::wire::admin::ClockState;

use super::accounts::yes_no;
use crate::output::{Column, Output, Tabular, number, text};

#[derive(Debug, Subcommand)]
pub enum ClockAction {
    /// Show the server clock
    Show,
    /// Set the clock to an instant, e.g. 2026-12-01T00:00:00+09:00
    Set {
        #[arg(value_name = "RFC3339")]
        now: String,
    },
    /// Move the clock forward, e.g. 90s, 1h30m, PT2H
    Advance {
        #[arg(value_name = "DURATION")]
        duration: String,
    },
}

pub async fn run(admin: &AdminClient, action: ClockAction, out: Output) -> anyhow::Result<()> {
    let state = match action {
        ClockAction::Show => admin.clock().await?,
        ClockAction::Set { now } => admin.set_clock(&now).await?,
        ClockAction::Advance { duration } => admin.advance_clock(&duration).await?,
    };
    out.record(&state)
}

impl Tabular for ClockState {
    const COLUMNS: &'static [Column] = &[text("NOW"), number("UNIX"), number("OFFSET MS"), text("SETTABLE")];

    fn cells(&self) -> Vec<String> {
        vec![self.now.clone(), self.unix.to_string(), self.offset_ms.to_string(), yes_no(self.settable)]
    }
}
