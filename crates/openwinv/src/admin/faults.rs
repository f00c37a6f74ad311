//! `admin faults`: fault rules of the simulated driver, which make matching steps of matching
//! operations fail.

use clap::{Args, Subcommand};
use openwinv_sdk::AdminClient;
use openwinv_sdk::wire::operations::{Cleared, Fault, NewFault};

use crate::output::{Column, Output, Tabular, number, text};

#[derive(Debug, Subcommand)]
pub enum FaultAction {
    /// Add a rule: matching steps of matching operations fail
    Add(NewFaultArgs),
    /// List the rules, oldest first
    List,
    /// Remove one rule, or every rule without an id
    Clear { id: Option<String> },
}

#[derive(Debug, Args)]
pub struct NewFaultArgs {
    /// The operation kind, e.g. instance.create, or * for every kind
    #[arg(long)]
    kind: String,
    /// A step of that kind, e.g. power_on, or * for every step
    #[arg(long)]
    step: String,
    #[command(flatten)]
    mode: FaultMode,
    /// With --random: the seed; the same seed fails the same steps of the same operations
    #[arg(long, value_name = "N", requires = "random", allow_negative_numbers = true)]
    seed: Option<i64>,
    /// Retry the failed step instead of failing the operation, which unwinds by default
    #[arg(long)]
    transient: bool,
}

/// How often the rule fires; `--once` when none is given.
#[derive(Debug, Args)]
#[group(multiple = false)]
struct FaultMode {
    /// Fail the next matching step only (the default)
    #[arg(long)]
    once: bool,
    /// Fail the next N matching steps
    #[arg(long, value_name = "N")]
    count: Option<i64>,
    /// Fail every matching step until the rule is cleared
    #[arg(long)]
    sticky: bool,
    /// Fail each matching step with probability P (0.001 to 1)
    #[arg(long, value_name = "P")]
    random: Option<f64>,
}

impl NewFaultArgs {
    fn body(&self) -> NewFault {
        let m = &self.mode;
        let mode = if m.count.is_some() {
            "count"
        } else if m.sticky {
            "sticky"
        } else if m.random.is_some() {
            "random"
        } else {
            "once"
        };
        NewFault {
            kind: self.kind.clone(),
            step: self.step.clone(),
            mode: mode.into(),
            count: m.count,
            probability: m.random,
            seed: self.seed,
            effect: self.transient.then(|| "transient".into()),
        }
    }
}

pub async fn run(admin: &AdminClient, action: FaultAction, out: Output) -> anyhow::Result<()> {
    match action {
        FaultAction::Add(args) => out.record(&admin.add_fault(&args.body()).await?),
        FaultAction::List => out.list(&admin.faults().await?),
        FaultAction::Clear { id: Some(id) } => out.record(&admin.clear_fault(&id).await?),
        FaultAction::Clear { id: None } => out.record(&admin.clear_faults().await?),
    }
}

/// What `remaining` means for the rule's mode.
fn left(f: &Fault) -> String {
    match f.mode.as_str() {
        "once" | "count" => format!("{} left", f.remaining),
        "random" => format!("p = {}", f.remaining as f64 / 1000.0),
        _ => "always".into(),
    }
}

impl Tabular for Fault {
    const COLUMNS: &'static [Column] = &[
        text("ID"),
        text("KIND"),
        text("STEP"),
        text("MODE"),
        text("FIRES"),
        text("EFFECT"),
        number("SEED"),
        number("HITS"),
        text("CREATED"),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.fault_id.clone(),
            self.kind.clone(),
            self.step.clone(),
            self.mode.clone(),
            left(self),
            self.effect.clone(),
            if self.mode == "random" { self.seed.to_string() } else { "-".into() },
            self.hits.to_string(),
            self.created_at.clone(),
        ]
    }
}

impl Tabular for Cleared {
    const COLUMNS: &'static [Column] = &[number("CLEARED")];

    fn cells(&self) -> Vec<String> {
        vec![self.cleared.to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        action: FaultAction,
    }

    fn body(args: &[&str]) -> Result<NewFault, clap::Error> {
        let base = ["x", "add", "--kind", "instance.create", "--step", "power_on"];
        match Cli::try_parse_from(base.iter().chain(args))?.action {
            FaultAction::Add(a) => Ok(a.body()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_mode_flags_make_the_body() {
        let once = body(&[]).unwrap();
        assert_eq!((once.mode.as_str(), once.effect), ("once", None));
        let count = body(&["--count", "3", "--transient"]).unwrap();
        assert_eq!(count.mode, "count");
        assert_eq!(count.count, Some(3));
        assert_eq!(count.effect.as_deref(), Some("transient"));
        assert_eq!(body(&["--sticky"]).unwrap().mode, "sticky");
        let random = body(&["--random", "0.25", "--seed", "7"]).unwrap();
        assert_eq!((random.mode.as_str(), random.probability, random.seed), ("random", Some(0.25), Some(7)));
        assert!(body(&["--sticky", "--once"]).is_err());
        assert!(body(&["--seed", "7"]).is_err(), "a seed needs --random");
    }

    #[test]
    fn fires_reads_by_mode() {
        let fault = |mode: &str, remaining| Fault {
            fault_id: "FAULT-1".into(),
            kind: "*".into(),
            step: "*".into(),
            mode: mode.into(),
            remaining,
            effect: "permanent".into(),
            seed: 0,
            hits: 0,
            created_at: "2026-01-01 00:00:00".into(),
        };
        assert_eq!(left(&fault("count", 2)), "2 left");
        assert_eq!(left(&fault("random", 250)), "p = 0.25");
        assert_eq!(left(&fault("sticky", 0)), "always");
    }
}
