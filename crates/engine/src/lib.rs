//! The openwinv runtime: the one clock and durable operations (sagas). The drivers the steps
//! call are in `openwinv-driver`, which knows no store.
//!
//! A request that changes something writes the resource row and an operation row in one
//! transaction and answers 202. Workers here claim operations with leases, run their steps in
//! order, persist progress after each step, retry transient failures with backoff, and on a
//! permanent failure undo every completed step in reverse. A worker that dies loses its lease; the
//! restarted process, or another one on the same database, resumes or unwinds its operations.

pub mod clock;
pub mod faults;
pub mod runner;
pub mod saga;
pub mod worker;

pub use clock::Clock;
pub use runner::{Engine, EngineConfig, StepScope};
pub use saga::{NoParams, Op, OpContext, Operation, Saga, StepDef, StepError, Steps, Typed};
pub use worker::WorkerIdentity;
