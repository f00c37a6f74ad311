//! `admin sim`: driving the simulated hypervisor by hand.

use clap::Subcommand;
use openwinv_sdk::AdminClient;
use openwinv_sdk::wire::operations::SimStep;

use crate::output::{Column, Output, Tabular, number, text};

#[derive(Debug, Subcommand)]
pub enum SimAction {
    /// Let a running operation take one more step (what `serve --sim-mode explicit` waits for)
    Step {
        #[arg(value_name = "OPERATION_ID")]
        operation_id: String,
    },
}

pub async fn run(admin: &AdminClient, action: SimAction, out: Output) -> anyhow::Result<()> {
    match action {
        SimAction::Step { operation_id } => out.record(&admin.sim_step(&operation_id).await?),
    }
}

impl Tabular for SimStep {
    const COLUMNS: &'static [Column] =
        &[text("OPERATION"), text("KIND"), text("RESOURCE"), text("STATUS"), number("PERMITS")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.operation_id.clone(),
            self.kind.clone(),
            self.resource_id.clone(),
            self.status.clone(),
            self.permits.to_string(),
        ]
    }
}
