//! The worker side: claim due operations with leases, drive each step by step, persist progress,
//! retry transient failures with backoff, unwind on permanent ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openwinv_driver::Pacing;
use openwinv_store::batch::GroupCommit;
use openwinv_store::operations::{FAILED, MAX_PROGRESS_BATCH, PARKED, RUNNING, SUCCEEDED};
use openwinv_store::{FaultRecord, OperationRecord, Progress, Store, StoreError};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::faults;
use crate::saga::{OpContext, Saga, StepError};
use crate::worker::WorkerIdentity;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker tasks in this process.
    pub workers: usize,
    /// Operations one worker claims and drives at once.
    pub batch: i64,
    /// How often idle workers look for due operations (other processes, timers).
    pub poll: Duration,
    /// How long a claim lasts without progress before another worker may take over.
    pub lease: Duration,
    /// Forward attempts of a step that fails transiently before the operation unwinds.
    pub max_attempts: i64,
    /// Test hook: run every step (and undo) twice, to prove steps idempotent.
    pub repeat_steps: bool,
    /// Consult the fault rules (simulated driver only).
    pub faults: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 4,
            batch: 32,
            poll: Duration::from_millis(200),
            lease: Duration::from_secs(30),
            max_attempts: 5,
            repeat_steps: false,
            faults: false,
        }
    }
}

pub struct Engine {
    store: Store,
    clock: Arc<Clock>,
    pacing: Pacing,
    sagas: HashMap<&'static str, Arc<dyn Saga>>,
    config: EngineConfig,
    /// This run's lease owner id, and the previous run's (see `worker`).
    identity: std::sync::Mutex<WorkerIdentity>,
    owner: String,
    notify: Notify,
    /// Progress saves, written together: a busy engine pays one round trip per round of steps
    /// instead of one per operation and step.
    saves: GroupCommit<Progress, Result<bool, String>>,
    /// Held shared by every step and claim, exclusively by [`Engine::paused`]; holds the number of
    /// pauses so far, so that operations claimed before one are dropped rather than driven.
    gate: tokio::sync::RwLock<u64>,
}

tokio::task_local! {
    /// The step being run, for drivers that must make each of its calls idempotent across
    /// retries (the remote driver keys its work items by it).
    static STEP: Arc<StepScope>;
}

/// The step whose code is running: which operation, which step, forward or undo. A driver reads
/// it with [`StepScope::current`] to name each of its calls: the n-th call of a step run gets the
/// same key on every attempt, so a step retried after a lost answer finds the first attempt's
/// work instead of doing it again.
#[derive(Debug)]
pub struct StepScope {
    pub operation_id: String,
    pub step: usize,
    pub undo: bool,
    calls: std::sync::atomic::AtomicU32,
    patient: std::sync::atomic::AtomicBool,
}

impl StepScope {
    /// The scope of the step running on this task, if a step is running.
    pub fn current() -> Option<Arc<StepScope>> {
        STEP.try_with(Arc::clone).ok()
    }

    /// The key of the next driver call of this step run: `{operation}/{step}/{run|undo}/{n}`.
    pub fn next_call_key(&self) -> String {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = if self.undo { "undo" } else { "run" };
        format!("{}/{}/{dir}/{n}", self.operation_id, self.step)
    }

    /// Says that this run's failure is a wait for a host that is away, not a fault of the step:
    /// the runner retries it with backoff without counting an attempt.
    pub fn waiting_for_host(&self) {
        self.patient.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn patient(&self) -> bool {
        self.patient.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Runs `fut` (one run of a step or its undo) inside a fresh [`StepScope`]; answers whether the
/// run asked to wait for a host.
async fn in_scope<T>(operation_id: &str, step: usize, undo: bool, fut: impl Future<Output = T>) -> (T, bool) {
    let scope = Arc::new(StepScope {
        operation_id: operation_id.to_owned(),
        step,
        undo,
        calls: Default::default(),
        patient: Default::default(),
    });
    let out = STEP.scope(scope.clone(), fut).await;
    (out, scope.patient())
}

fn host_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

enum Next {
    /// Keep driving this operation.
    Continue,
    /// Stop driving: it finished, waits, or belongs to someone else now.
    Stop,
}

impl Engine {
    /// An engine whose workers have a fresh identity (no previous run to recover from).
    pub fn new(store: Store, clock: Arc<Clock>, pacing: Pacing, config: EngineConfig) -> Engine {
        Engine::with_identity(store, clock, pacing, config, WorkerIdentity::ephemeral())
    }

    /// An engine whose workers are `identity`: the leases of its previous run are released as
    /// the workers start.
    pub fn with_identity(
        store: Store,
        clock: Arc<Clock>,
        pacing: Pacing,
        config: EngineConfig,
        identity: WorkerIdentity,
    ) -> Engine {
        Engine {
            store,
            clock,
            pacing,
            sagas: HashMap::new(),
            config,
            owner: identity.owner.clone(),
            identity: std::sync::Mutex::new(identity),
            notify: Notify::new(),
            saves: GroupCommit::new(MAX_PROGRESS_BATCH),
            gate: tokio::sync::RwLock::new(0),
        }
    }

    pub fn register(&mut self, saga: Arc<dyn Saga>) {
        self.sagas.insert(saga.kind(), saga);
    }

    pub fn pacing(&self) -> Pacing {
        self.pacing
    }

    /// Wakes idle workers: a new operation was written, a permit granted, or the clock moved.
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Runs `change` (a reset or restore of the store under the workers) while no step runs:
    /// steps under way finish first, and operations claimed before are dropped by their workers
    /// instead of driven on against the new state.
    pub async fn paused<T>(&self, change: impl Future<Output = T>) -> T {
        let mut pauses = self.gate.write().await;
        let out = change.await;
        *pauses += 1;
        drop(pauses);
        self.wake();
        out
    }

    /// Runs `work` (a background job that reads and writes the store's state, like the month
    /// close) between two state replacements: a reset or restore waits for it, and it waits for
    /// one under way. `work` is told how many replacements this process has made so far, so that
    /// it can forget what it remembered of a state that was replaced.
    pub async fn between_pauses<T, F: Future<Output = T>>(&self, work: impl FnOnce(u64) -> F) -> T {
        let gate = self.gate.read().await;
        let out = work(*gate).await;
        drop(gate);
        out
    }

    /// Starts the workers of this process, once the leases its previous run died with are free.
    pub fn spawn(self: &Arc<Self>) {
        let engine = self.clone();
        tokio::spawn(async move {
            engine.recover().await;
            for _ in 0..engine.config.workers.max(1) {
                let engine = engine.clone();
                tokio::spawn(async move { engine.work().await });
            }
        });
    }

    /// Releases the leases the previous run of this process held when it died (they would
    /// otherwise block its operations for a whole lease), then records this run's id as the one
    /// the next run recovers from. A store error leaves those leases to expire as usual.
    async fn recover(&self) {
        let previous = self.identity.lock().expect("worker identity").previous.clone();
        if let Some(previous) = previous {
            match self.store.release_leases_of(&previous).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(released = n, previous = %previous, "took back the leases of the previous run"),
                Err(e) => tracing::warn!(error = %e, "could not release the previous run's leases; they expire"),
            }
        }
        if let Err(e) = self.identity.lock().expect("worker identity").record() {
            tracing::warn!(error = %e, "could not record this run's worker id: a restart recovers its leases late");
        }
    }

    async fn work(self: Arc<Self>) {
        loop {
            let notified = self.notify.notified();
            let gate = self.gate.read().await;
            let epoch = *gate;
            let claimed = self.claim().await;
            drop(gate);
            let claimed = match claimed {
                Ok(ops) => ops,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim operations");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                let _ = tokio::time::timeout(self.config.poll, notified).await;
                continue;
            }
            // The fault rules are read once per claim, not before every step (they are almost
            // always empty, and steps are the hot path).
            let rules = if self.config.faults {
                match self.store.faults().await {
                    Ok(rules) => Arc::new(rules),
                    Err(e) => {
                        // The steps' own writes will meet the same store trouble and retry.
                        tracing::warn!(error = %e, "could not read the fault rules");
                        Arc::default()
                    }
                }
            } else {
                Arc::default()
            };
            let mut set = tokio::task::JoinSet::new();
            for op in claimed {
                let (engine, rules) = (self.clone(), rules.clone());
                set.spawn(async move { engine.drive(op, &rules, epoch).await });
            }
            while set.join_next().await.is_some() {}
        }
    }

    async fn claim(&self) -> openwinv_store::Result<Vec<OperationRecord>> {
        let now = host_ms();
        self.store
            .claim_operations(
                &self.owner,
                now,
                now + self.config.lease.as_millis() as i64,
                self.clock.unix_ms(),
                self.config.batch,
            )
            .await
    }

    /// Drives one claimed operation until it finishes, waits, or loses its lease.
    async fn drive(&self, mut op: OperationRecord, rules: &[FaultRecord], epoch: u64) {
        let Some(saga) = self.sagas.get(op.kind.as_str()).cloned() else {
            tracing::error!(kind = %op.kind, operation = %op.operation_id, "no saga for this operation kind");
            return;
        };
        let ctx = OpContext {
            operation_id: op.operation_id.to_string(),
            account_id: op.account_id.to_string(),
            kind: op.kind.clone(),
            resource_id: op.resource_id.clone(),
            params: op.params.clone(),
        };
        loop {
            let gate = self.gate.read().await;
            if *gate != epoch {
                // The store was reset or restored under this operation: it is not ours to drive.
                return;
            }
            let next = if op.undoing != 0 {
                self.undo_step(&*saga, &mut op, &ctx).await
            } else {
                self.forward_step(&*saga, &mut op, &ctx, rules).await
            };
            drop(gate);
            match next {
                Ok(Next::Continue) => continue,
                Ok(Next::Stop) => return,
                Err(e) => {
                    // The store failed while saving: leave the lease to expire; we or another
                    // worker resume from the last saved step.
                    tracing::warn!(operation = %op.operation_id, error = %e, "could not save progress");
                    return;
                }
            }
        }
    }

    async fn forward_step(
        &self,
        saga: &dyn Saga,
        op: &mut OperationRecord,
        ctx: &OpContext,
        rules: &[FaultRecord],
    ) -> openwinv_store::Result<Next> {
        let steps = saga.steps();
        // Steps with nothing to do for this operation pass without a save of their own.
        while let Some(step) = steps.get(op.step as usize).filter(|s| !s.paced)
            && saga.noop(op.step as usize, ctx)
        {
            if let Some(err) = self.fault(rules, op, step.name).await? {
                return self.fail(op, ctx, step.name, err, 0).await;
            }
            op.step += 1;
        }
        let i = op.step as usize;
        if i >= steps.len() {
            op.status = SUCCEEDED.into();
            return self.save(op, ctx, None, 0).await;
        }
        let step = steps[i];
        let mut permits_used = 0;
        if step.paced {
            match self.pacing {
                Pacing::Immediate => {}
                Pacing::Timed(d) => {
                    if op.waited_step != op.step && !d.is_zero() {
                        op.waited_step = op.step;
                        op.next_run_at = self.clock.unix_ms() + d.as_millis() as i64;
                        self.save(op, ctx, None, 0).await?;
                        return Ok(Next::Stop);
                    }
                }
                Pacing::Explicit => {
                    if op.permits <= 0 {
                        op.next_run_at = PARKED;
                        self.save(op, ctx, None, 0).await?;
                        return Ok(Next::Stop);
                    }
                    permits_used = 1;
                    op.permits -= 1;
                }
            }
        }
        let mut result = match self.fault(rules, op, step.name).await? {
            Some(err) => Err(err),
            None => Ok(()),
        };
        let mut patient = false;
        if result.is_ok() {
            (result, patient) =
                in_scope(&op.operation_id, i, false, self.holding_lease(&op.operation_id, saga.run(i, ctx))).await;
            if result.is_ok() && self.config.repeat_steps {
                (result, patient) =
                    in_scope(&op.operation_id, i, false, self.holding_lease(&op.operation_id, saga.run(i, ctx))).await;
            }
        }
        match result {
            Ok(()) => {
                op.step += 1;
                op.attempts = 0;
                op.next_run_at = self.clock.unix_ms();
                if op.step as usize >= steps.len() {
                    // The last step's save also ends the operation.
                    op.status = SUCCEEDED.into();
                }
                self.save(op, ctx, None, permits_used).await
            }
            Err(StepError::Transient(msg)) if patient => {
                // Waiting for a host that is away: no attempt counted, the operation waits.
                op.next_run_at = self.clock.unix_ms() + backoff_ms(3);
                tracing::info!(operation = %op.operation_id, step = step.name, error = %msg, "step waits for its host");
                self.save(op, ctx, Some(&msg), permits_used).await?;
                Ok(Next::Stop)
            }
            Err(err) => self.fail(op, ctx, step.name, err, permits_used).await,
        }
    }

    /// The fault rule that fires at `step` of `op`, if fault injection is on.
    async fn fault(
        &self,
        rules: &[FaultRecord],
        op: &OperationRecord,
        step: &str,
    ) -> openwinv_store::Result<Option<StepError>> {
        if !self.config.faults {
            return Ok(None);
        }
        faults::check(&self.store, rules, &op.kind, step, &op.operation_id).await
    }

    /// Step `op.step` (named `step`) failed: retry it later if the error is transient and
    /// attempts remain, else start unwinding from the step before it.
    async fn fail(
        &self,
        op: &mut OperationRecord,
        ctx: &OpContext,
        step: &str,
        err: StepError,
        permits_used: i64,
    ) -> openwinv_store::Result<Next> {
        match err {
            StepError::Transient(msg) if op.attempts + 1 < self.config.max_attempts => {
                op.attempts += 1;
                op.next_run_at = self.clock.unix_ms() + backoff_ms(op.attempts);
                tracing::info!(operation = %op.operation_id, step, attempt = op.attempts, error = %msg, "step failed; retrying");
                self.save(op, ctx, Some(&msg), permits_used).await?;
                Ok(Next::Stop)
            }
            StepError::Transient(msg) | StepError::Permanent(msg) => {
                let msg = format!("step `{step}` failed: {msg}");
                tracing::info!(operation = %op.operation_id, error = %msg, "operation unwinding");
                op.undoing = 1;
                op.step -= 1;
                op.attempts = 0;
                op.error = Some(msg.clone());
                op.next_run_at = self.clock.unix_ms();
                self.save(op, ctx, Some(&msg), permits_used).await
            }
        }
    }

    async fn undo_step(
        &self,
        saga: &dyn Saga,
        op: &mut OperationRecord,
        ctx: &OpContext,
    ) -> openwinv_store::Result<Next> {
        let error = op.error.clone().unwrap_or_else(|| "failed".into());
        let result = if op.step < 0 {
            self.holding_lease(&op.operation_id, saga.failed(ctx, &error)).await
        } else {
            let i = op.step as usize;
            let mut r =
                in_scope(&op.operation_id, i, true, self.holding_lease(&op.operation_id, saga.undo(i, ctx))).await.0;
            if r.is_ok() && self.config.repeat_steps {
                r = in_scope(&op.operation_id, i, true, self.holding_lease(&op.operation_id, saga.undo(i, ctx)))
                    .await
                    .0;
            }
            r
        };
        match result {
            Ok(()) if op.step < 0 => {
                op.status = FAILED.into();
                self.save(op, ctx, Some(&error), 0).await
            }
            Ok(()) => {
                op.step -= 1;
                op.attempts = 0;
                self.save(op, ctx, Some(&error), 0).await
            }
            Err(e) => {
                // Undo must happen eventually: keep retrying, with a capped backoff.
                op.attempts += 1;
                op.next_run_at = self.clock.unix_ms() + backoff_ms(op.attempts.min(8));
                tracing::warn!(operation = %op.operation_id, step = op.step, error = %e, "undo failed; retrying");
                self.save(op, ctx, Some(&error), 0).await?;
                Ok(Next::Stop)
            }
        }
    }

    /// Runs a step, renewing the operation's lease while it runs, so that a step that takes longer
    /// than the lease (a real machine's soft reboot) is not taken over by another worker.
    async fn holding_lease<T>(&self, operation_id: &str, step: impl Future<Output = T>) -> T {
        let every = (self.config.lease / 3).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(step);
        loop {
            tokio::select! {
                out = &mut step => return out,
                _ = tick.tick() => {
                    let until = host_ms() + self.config.lease.as_millis() as i64;
                    match self.store.renew_lease(operation_id, &self.owner, until).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(operation = %operation_id, "lease lost while a step ran"),
                        Err(e) => tracing::warn!(operation = %operation_id, error = %e, "could not renew the lease"),
                    }
                }
            }
        }
    }

    /// Persists `op`; keeps the lease while the operation is due now, else releases it.
    async fn save(
        &self,
        op: &mut OperationRecord,
        ctx: &OpContext,
        error: Option<&str>,
        permits_used: i64,
    ) -> openwinv_store::Result<Next> {
        let finished = op.status != RUNNING;
        let due_now = !finished && op.next_run_at <= self.clock.unix_ms();
        let progress = Progress {
            operation_id: op.operation_id.clone(),
            status: op.status.clone(),
            step: op.step,
            undoing: op.undoing,
            params: ctx.params.clone(),
            error: error.map(str::to_owned),
            attempts: op.attempts,
            waited_step: op.waited_step,
            permits_used,
            next_run_at: op.next_run_at,
            finished_at: finished.then(|| self.clock.unix()),
            lease_until: due_now.then(|| host_ms() + self.config.lease.as_millis() as i64),
        };
        let saved = self.save_batched(progress).await.map_err(StoreError::Batch)?;
        if !saved {
            tracing::warn!(operation = %op.operation_id, "lease lost; another worker has the operation");
            return Ok(Next::Stop);
        }
        if !due_now {
            // Someone may be waiting on this (a timer elsewhere, a test): let idle workers look.
            self.notify.notify_waiters();
        }
        Ok(if due_now { Next::Continue } else { Next::Stop })
    }
}

impl Engine {
    /// Queues `progress` and waits until it is written with the others queued meanwhile. False:
    /// the lease was lost.
    async fn save_batched(&self, progress: Progress) -> Result<bool, String> {
        let (store, owner) = (self.store.clone(), self.owner.clone());
        let flush = move |rows: Vec<Progress>| {
            let (store, owner) = (store.clone(), owner.clone());
            async move {
                match store.save_progress(&owner, &rows).await {
                    Ok(saved) => {
                        let saved: std::collections::HashSet<String> = saved.into_iter().collect();
                        rows.iter().map(|row| Ok(saved.contains(row.operation_id.as_str()))).collect()
                    }
                    Err(e) => vec![Err(e.to_string()); rows.len()],
                }
            }
        };
        self.saves.submit(progress, flush).await.unwrap_or_else(|| Err("the progress save did not finish".into()))
    }
}

fn backoff_ms(attempt: i64) -> i64 {
    100 * (1 << attempt.clamp(0, 9))
}
