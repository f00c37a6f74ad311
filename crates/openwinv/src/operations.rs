//! `operations` (list, show, wait), and `--wait` for the commands that start one: following operations to their
//! end with a spinner on stderr (a final line only when stderr is not a terminal).

use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use openwinv_sdk::wire::operations::Operation;
use openwinv_sdk::{Accepted, Client, OperationQuery, PageRequest, operation_status};
use serde::Serialize;

use crate::output::{Column, Output, Tabular, emit, long, or_dash, text};
use crate::paging::{self, Paging};

/// How often a waiting command asks about the operation.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long `--wait` waits unless `--timeout` says otherwise.
const DEFAULT_TIMEOUT_SECS: u64 = 600;

#[derive(Debug, Subcommand)]
pub enum OperationsCommand {
    /// List the account's operations, newest first
    List {
        /// Only in this status
        #[arg(long, value_enum)]
        status: Option<StatusFilter>,
        /// Only those of this instance or volume (id)
        #[arg(long, value_name = "ID")]
        resource: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show an operation (the id an asynchronous command printed)
    Show { id: String },
    /// Wait for an operation to end, then show it (exit status 1 when it failed)
    Wait {
        id: String,
        /// Give up after this many seconds (the operation goes on) [default: 600]
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
}

/// The statuses an operation can be in.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusFilter {
    Running,
    Succeeded,
    Failed,
}

impl StatusFilter {
    fn wire(self) -> &'static str {
        match self {
            StatusFilter::Running => operation_status::RUNNING,
            StatusFilter::Succeeded => operation_status::SUCCEEDED,
            StatusFilter::Failed => operation_status::FAILED,
        }
    }
}

/// `--wait` and `--timeout`, for every command that starts an operation.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Wait for the operation to end, showing its progress, then print the result
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (the operation goes on) [default: 600]
    #[arg(long, value_name = "SECS", requires = "wait")]
    pub timeout: Option<u64>,
}

impl WaitArgs {
    pub fn timeout(&self) -> Duration {
        timeout(self.timeout)
    }
}

fn timeout(secs: Option<u64>) -> Duration {
    Duration::from_secs(secs.unwrap_or(DEFAULT_TIMEOUT_SECS))
}

/// An operation that ended `failed`: the command fails with its reason.
#[derive(Debug)]
pub struct OperationFailed(pub Operation);

impl std::fmt::Display for OperationFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = &self.0;
        write!(
            f,
            "{} of {} failed ({}): {}",
            op.kind,
            op.resource_id,
            op.operation_id,
            op.error.as_deref().unwrap_or("no reason given")
        )
    }
}

impl std::error::Error for OperationFailed {}

impl OperationFailed {
    /// The first failed operation of those that ended, if any.
    pub fn first(ended: &[Operation]) -> Option<OperationFailed> {
        ended.iter().find(|op| op.status == operation_status::FAILED).map(|op| OperationFailed(op.clone()))
    }
}

pub async fn run(client: &Client, command: OperationsCommand, out: Output) -> anyhow::Result<()> {
    match command {
        OperationsCommand::List { status, resource, paging } => {
            let fetch = |page: PageRequest| {
                let query = OperationQuery {
                    status: status.map(|s| s.wire().to_owned()),
                    resource_id: resource.clone(),
                    page_no: page.page_no,
                    page_size: page.page_size,
                };
                async move { client.operations(&query).await }
            };
            paging::show(&paging, fetch, out).await
        }
        OperationsCommand::Show { id } => out.record(&client.operation(&id).await?),
        OperationsCommand::Wait { id, timeout: secs } => {
            let ended = wait(client, std::slice::from_ref(&id), timeout(secs)).await?;
            out.forget_answers();
            out.record(&client.operation(&id).await?)?;
            match OperationFailed::first(&ended) {
                Some(failed) => Err(failed.into()),
                None => Ok(()),
            }
        }
    }
}

/// Polls the operations until every one has ended, with a spinner on a terminal, and prints one
/// line per operation on stderr. A failed operation is returned like the others; giving up after
/// `timeout` is an error.
pub async fn wait(client: &Client, ids: &[String], timeout: Duration) -> anyhow::Result<Vec<Operation>> {
    if ids.is_empty() {
        bail!("the server named no operation to wait for (no X-Operation-Id header)");
    }
    let started = Instant::now();
    let bar = spinner();
    bar.set_message(format!("waiting for {}", ids.join(", ")));
    // When each operation was seen ended.
    let mut ended = HashMap::new();
    let watched = client
        .watch_operations(ids, POLL_INTERVAL, timeout, |op| {
            if op.status != operation_status::RUNNING {
                ended.entry(op.operation_id.clone()).or_insert_with(|| started.elapsed());
            }
            bar.set_message(progress(op, ended.len(), ids.len()));
        })
        .await;
    bar.finish_and_clear();
    let ops = watched?;
    for op in &ops {
        let after = ended.get(&op.operation_id).copied();
        let secs = after.unwrap_or_else(|| started.elapsed()).as_secs_f64();
        eprintln!("{}", ended_line(op, secs));
    }
    Ok(ops)
}

/// A spinner on stderr showing the elapsed time, or nothing when stderr is not a terminal.
fn spinner() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("a valid template");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// The spinner's message after an answer about `op`.
fn progress(op: &Operation, ended: usize, total: usize) -> String {
    let this = format!("{} {}: {}", op.kind, op.resource_id, op.status);
    if total == 1 { this } else { format!("{ended} of {total} ended; {this}") }
}

/// The line printed when an operation has ended.
fn ended_line(op: &Operation, secs: f64) -> String {
    let mut line = format!("{} {} {} after {secs:.1} s", op.kind, op.resource_id, op.status);
    if let Some(error) = &op.error {
        line.push_str(": ");
        line.push_str(error);
    }
    line
}

impl Tabular for Operation {
    const COLUMNS: &'static [Column] =
        &[text("ID"), text("KIND"), text("RESOURCE"), text("STATUS"), long("ERROR"), text("CREATED"), text("FINISHED")];

    fn cells(&self) -> Vec<String> {
        vec![
            self.operation_id.clone(),
            self.kind.clone(),
            self.resource_id.clone(),
            self.status.clone(),
            or_dash(self.error.as_ref()),
            self.created_at.clone(),
            or_dash(self.finished_at.as_ref()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(status: &str, error: Option<&str>) -> Operation {
        Operation {
            operation_id: "OP-1".into(),
            kind: "instance.start".into(),
            resource_id: "INSTANCE-1".into(),
            status: status.into(),
            error: error.map(String::from),
            created_at: "2026-01-01 00:00:00".into(),
            finished_at: None,
        }
    }

    #[test]
    fn progress_and_final_lines_name_the_operation() {
        assert_eq!(progress(&op("running", None), 0, 1), "instance.start INSTANCE-1: running");
        assert_eq!(progress(&op("running", None), 1, 3), "1 of 3 ended; instance.start INSTANCE-1: running");
        assert_eq!(ended_line(&op("succeeded", None), 1.25), "instance.start INSTANCE-1 succeeded after 1.2 s");
        assert_eq!(
            ended_line(&op("failed", Some("step `power_on` failed: boom")), 0.0),
            "instance.start INSTANCE-1 failed after 0.0 s: step `power_on` failed: boom"
        );
    }

    #[test]
    fn the_first_failure_is_the_error() {
        let ended = [op("succeeded", None), op("failed", Some("boom"))];
        let failed = OperationFailed::first(&ended).unwrap();
        assert_eq!(failed.to_string(), "instance.start of INSTANCE-1 failed (OP-1): boom");
        assert!(OperationFailed::first(&ended[..1]).is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// The follow-up after an accepted request

/// A receipt row and the operation it started, as a command run without `--wait` records it.
#[derive(Debug, Serialize)]
pub struct Started<R> {
    #[serde(flatten)]
    pub receipt: R,
    pub operation_id: Option<String>,
}

/// After an accepted request, without `--wait`: the receipt and its operation, then (for
/// people) whether the answer was replayed and how to follow the operation.
pub fn record_started<R: Clone>(accepted: &Accepted<R>, out: Output) -> anyhow::Result<()>
where
    Started<R>: Tabular,
{
    let started = Started { operation_id: accepted.operation_id().map(String::from), receipt: accepted.rows.clone() };
    out.record(&started)?;
    if !out.machine() {
        replay_note(accepted);
    }
    follow_note(accepted, out)
}

/// After an accepted request that changes one resource: without `--wait` the receipt and its
/// operation ([`record_started`]); with `--wait` the resource as the operation left it (`show`,
/// never polled otherwise), or, for a delete that succeeded (`deleting` names the resource),
/// "ID deleted" (the ended operations with `--json`). Fails when an operation failed.
pub async fn follow_up<R: Clone>(
    client: &Client,
    accepted: &Accepted<R>,
    wait: &WaitArgs,
    deleting: Option<&str>,
    show: impl Future<Output = anyhow::Result<()>>,
    out: Output,
) -> anyhow::Result<()>
where
    Started<R>: Tabular,
{
    if !wait.wait {
        return record_started(accepted, out);
    }
    let ended = self::wait(client, &accepted.operation_ids, wait.timeout()).await?;
    out.forget_answers();
    match deleting.filter(|_| OperationFailed::first(&ended).is_none()) {
        None => show.await?,
        Some(_) if out.machine() => {
            let mut ops = Vec::new();
            for op in &ended {
                ops.push(client.operation(&op.operation_id).await?);
            }
            out.list(&ops)?;
        }
        Some(id) => emit(&format!("{id} deleted\n"))?,
    }
    fail_if_any_failed(&ended)
}

/// The command's result once its operations ended: the first failure, if any.
pub fn fail_if_any_failed(ended: &[Operation]) -> anyhow::Result<()> {
    match OperationFailed::first(ended) {
        Some(failed) => Err(failed.into()),
        None => Ok(()),
    }
}

/// On stderr, how to follow the operations of a command run without `--wait`; a server that
/// named none cannot be followed.
pub fn follow_note<T>(accepted: &Accepted<T>, out: Output) -> anyhow::Result<()> {
    if out.machine() {
        return Ok(());
    }
    match accepted.operation_ids.as_slice() {
        [] => {}
        [id] => eprintln!("Follow it with `openwinv operations wait {id}` (or pass --wait)."),
        ids => {
            eprintln!("Follow them with `openwinv operations wait ID` for each of {} (or pass --wait).", ids.join(", "))
        }
    }
    Ok(())
}

pub fn replay_note<T>(accepted: &Accepted<T>) {
    if accepted.replayed {
        eprintln!(
            "The server replayed its answer to an earlier request with this Idempotency-Key; \
             nothing new was started."
        );
    }
}
