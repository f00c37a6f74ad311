//! The openwinv runtime: the one clock, durable operations (sagas) and compute drivers.
//!
//! A request that changes something writes the resource row and an operation row in one
//! transaction and answers 202. Workers here claim operations with leases, run their steps in
//! order, persist progress after each step, retry transient failures with backoff, and on a
//! permanent failure undo every completed step in reverse. A worker that dies loses its lease; the
//! restarted process, or another one on the same database, resumes or unwinds its operations.

pub mod clock;
pub mod driver;
pub mod faults;
pub mod firewall;
pub mod runner;
pub mod saga;
pub mod worker;

pub use clock::Clock;
pub use driver::{
    BootImage, ComputeDriver, ConsoleEndpoints, DriverError, MachineInfo, MachineSpec, MachineState, Pacing, Power,
    SimDriver, VolumeSpec,
};
pub use runner::{Engine, EngineConfig};
pub use saga::{OpContext, Saga, StepDef, StepError};
pub use worker::WorkerIdentity;
