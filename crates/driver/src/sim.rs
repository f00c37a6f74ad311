//! The simulated hypervisor and its simulated serial console.

use async_trait::async_trait;

use crate::console::{ConsoleAccess, ConsoleBroker, SimulatedSerial};
use crate::contract::{Capabilities, ComputeDriver, DriverError, MachineSpec, MachineState, Pacing, Power, VolumeSpec};
use crate::firewall::CompiledRules;

/// The simulated hypervisor: a product feature, not a mock. Every call succeeds (faults come
/// from the engine's fault rules), and its pacing makes lifecycles take realistic time on the
/// server clock, or advance only when the operator steps them.
///
/// It keeps no state of its own. Its machines are the instance rows, its volumes and their
/// attachments the volume rows, its firewall rule sets what the attachment rows compile to: the
/// store, which every server process on the database shares, is its only truth. So any process
/// may run any step of any operation (a volume attached by one process and detached by another
/// is detached for both), and a restarted process finds every machine where it was. What a
/// hypervisor would refuse (a volume attached to two machines, an attached volume deleted) the
/// requests already refuse against those rows, in the transaction that starts the operation.
pub struct SimDriver {
    pacing: Pacing,
}

impl SimDriver {
    pub fn new(pacing: Pacing) -> SimDriver {
        SimDriver { pacing }
    }

    /// The state a call leaves the machine in. The generation is the host time of the change
    /// (µs): it increases with every change whichever process makes it.
    fn changed(power: Power) -> Result<MachineState, DriverError> {
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Ok(MachineState { power, generation })
    }
}

#[async_trait]
impl ComputeDriver for SimDriver {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn pacing(&self) -> Pacing {
        self.pacing
    }

    /// The simulated hypervisor offers everything (its firewalls are answered by the evaluator).
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn create(&self, _spec: &MachineSpec) -> Result<MachineState, DriverError> {
        Self::changed(Power::Stopped)
    }

    async fn start(&self, _id: &str) -> Result<MachineState, DriverError> {
        Self::changed(Power::Running)
    }

    async fn stop(&self, _id: &str) -> Result<MachineState, DriverError> {
        Self::changed(Power::Stopped)
    }

    async fn reboot(&self, _id: &str, _hard: bool) -> Result<MachineState, DriverError> {
        Self::changed(Power::Running)
    }

    /// Keeps the power the machine had, which its instance row records (the sagas settle the
    /// instance from the row); the simulator has no power of its own to report, and says stopped.
    async fn rebuild(&self, _spec: &MachineSpec) -> Result<MachineState, DriverError> {
        Self::changed(Power::Stopped)
    }

    async fn resize(&self, spec: &MachineSpec) -> Result<MachineState, DriverError> {
        self.rebuild(spec).await
    }

    async fn destroy(&self, _id: &str) -> Result<(), DriverError> {
        Ok(())
    }

    /// Never asked (the simulator does not reconcile): the instance row is the machine.
    async fn state(&self, id: &str) -> Result<MachineState, DriverError> {
        Err(DriverError::Permanent(format!(
            "the simulated driver keeps no machines: the record of {id} is its only state"
        )))
    }

    async fn apply_firewall(&self, _id: &str, _rules: &CompiledRules) -> Result<(), DriverError> {
        Ok(())
    }

    async fn create_volume(&self, _spec: &VolumeSpec) -> Result<(), DriverError> {
        Ok(())
    }

    async fn delete_volume(&self, _volume_id: &str) -> Result<(), DriverError> {
        Ok(())
    }

    async fn attach_volume(&self, _instance_id: &str, _spec: &VolumeSpec) -> Result<(), DriverError> {
        Ok(())
    }

    async fn detach_volume(&self, _instance_id: &str, _volume_id: &str) -> Result<(), DriverError> {
        Ok(())
    }
}

/// Simulated machines have no sockets: their serial console is played from the records.
#[async_trait]
impl ConsoleBroker for SimDriver {
    async fn console(&self, _instance_id: &str) -> Option<ConsoleAccess> {
        Some(ConsoleAccess::Simulated(SimulatedSerial))
    }
}
