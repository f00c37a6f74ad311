//! What an operation kind must provide: ordered, idempotent steps, each with an undo.

use serde_json::{Map, Value};

/// One step of a saga.
#[derive(Debug, Clone, Copy)]
pub struct StepDef {
    /// Stable name, used by fault injection and shown in operation errors.
    pub name: &'static str,
    /// Hypervisor work: the simulated driver delays it (timed mode) or holds it until the operator
    /// steps it (explicit mode).
    pub paced: bool,
}

impl StepDef {
    pub const fn local(name: &'static str) -> StepDef {
        StepDef { name, paced: false }
    }

    pub const fn driver(name: &'static str) -> StepDef {
        StepDef { name, paced: true }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Worth retrying (with backoff, a bounded number of times when running forward).
    #[error("{0}")]
    Transient(String),
    /// The operation cannot complete: undo what was done.
    #[error("{0}")]
    Permanent(String),
}

impl From<openwinv_store::StoreError> for StepError {
    fn from(e: openwinv_store::StoreError) -> StepError {
        StepError::Transient(format!("store: {e}"))
    }
}

impl From<crate::driver::DriverError> for StepError {
    fn from(e: crate::driver::DriverError) -> StepError {
        match e {
            crate::driver::DriverError::Transient(m) => StepError::Transient(m),
            crate::driver::DriverError::Permanent(m) => StepError::Permanent(m),
        }
    }
}

/// The operation as a step sees it. `params` holds the saga's input and whatever earlier steps
/// recorded; it is persisted after every step, so a resumed operation sees the same values.
#[derive(Debug, Clone)]
pub struct OpContext {
    pub operation_id: String,
    pub account_id: String,
    pub kind: String,
    pub resource_id: String,
    pub params: Map<String, Value>,
}

impl OpContext {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(Value::as_str)
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.params.insert(key.to_owned(), value.into());
    }
}

/// An operation kind. Steps must be idempotent: a step may run again after a crash between its
/// effect and the write of its progress, and so may an undo.
#[async_trait::async_trait]
pub trait Saga: Send + Sync + 'static {
    /// e.g. `instance.create`.
    fn kind(&self) -> &'static str;
    fn steps(&self) -> &'static [StepDef];
    /// True when step `step` has nothing to do for this operation (a create without volumes has
    /// no volumes to attach). The engine then counts it done without running it and saves
    /// progress with the next step's; fault rules still apply to it. Only local (unpaced) steps
    /// are asked, and the answer must depend on the operation's input alone.
    fn noop(&self, _step: usize, _op: &OpContext) -> bool {
        false
    }
    async fn run(&self, step: usize, op: &mut OpContext) -> Result<(), StepError>;
    async fn undo(&self, step: usize, op: &mut OpContext) -> Result<(), StepError>;
    /// Called once every completed step has been undone: leave the resource in its failed state
    /// (for example `error`, or gone for a failed create). Must be idempotent.
    async fn failed(&self, op: &mut OpContext, error: &str) -> Result<(), StepError>;
}
