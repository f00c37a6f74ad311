//! The openwinv driver crate: what the hypervisor side is, without a database.
//!
//! - [`contract`]: the [`ComputeDriver`] trait saga steps call, and the types it speaks;
//! - [`console`]: the [`ConsoleBroker`] port, the one way the HTTP layer reaches a machine;
//! - [`sim`]: the simulated hypervisor (a product feature) and its simulated serial console;
//! - [`firewall`]: the pure firewall compiler (attached firewalls → the rule set a host enforces).
//!
//! It depends on no store: the engine (which runs operations against the store) and the QEMU
//! driver both depend on it, and a host agent can link the drivers alone.

pub mod console;
pub mod contract;
pub mod firewall;
pub mod sim;

pub use console::{
    ConsoleAccess, ConsoleBroker, ConsoleEndpoints, ConsoleSocket, MachineFacts, MachineInfo, SerialHub,
    SimulatedSerial,
};
pub use contract::{
    BootImage, Capabilities, ComputeDriver, DriverError, MachineNetwork, MachineSpec, MachineState, Pacing, Power,
    VolumeSpec,
};
pub use sim::SimDriver;
