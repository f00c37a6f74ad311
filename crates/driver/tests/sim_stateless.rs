//! The simulated driver keeps no state of its own (the store's rows are its machines and
//! volumes), so two server processes, each with its own simulator, accept any interleaving of
//! the calls their sagas make, and so does a restarted one.

use openwinv_driver::firewall::CompiledRules;
use openwinv_driver::{ComputeDriver, DriverError, Pacing, Power, SimDriver, VolumeSpec};

fn spec(id: &str) -> VolumeSpec {
    VolumeSpec { volume_id: id.into(), size: 20, kind: "ssd".into() }
}

#[tokio::test]
async fn two_simulators_accept_interleaved_volume_calls() {
    let (a, b) = (SimDriver::new(Pacing::Immediate), SimDriver::new(Pacing::Immediate));
    a.create_volume(&spec("BS-1")).await.unwrap();
    // Ten rounds of attach on one process and detach on the other, to alternating machines:
    // what one simulator did never makes the other refuse.
    for round in 0..10 {
        let (attacher, detacher) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let machine = format!("INSTANCE-{}", round % 3);
        attacher.attach_volume(&machine, &spec("BS-1")).await.unwrap();
        attacher.attach_volume(&machine, &spec("BS-1")).await.unwrap();
        detacher.detach_volume(&machine, "BS-1").await.unwrap();
    }
    b.delete_volume("BS-1").await.unwrap();
    a.delete_volume("BS-1").await.unwrap();
}

#[tokio::test]
async fn power_and_firewall_calls_need_no_memory_of_earlier_ones() {
    let (a, b) = (SimDriver::new(Pacing::Explicit), SimDriver::new(Pacing::Explicit));
    // A machine made by one process is started, stopped and destroyed by the other.
    let made = a.create(&machine("INSTANCE-x")).await.unwrap();
    assert_eq!(made.power, Power::Stopped);
    let started = b.start("INSTANCE-x").await.unwrap();
    assert_eq!(started.power, Power::Running);
    assert!(started.generation > made.generation, "generations increase across processes");
    assert_eq!(a.stop("INSTANCE-x").await.unwrap().power, Power::Stopped);
    b.apply_firewall("INSTANCE-x", &CompiledRules::open()).await.unwrap();
    b.destroy("INSTANCE-x").await.unwrap();
    a.destroy("INSTANCE-x").await.unwrap();
    // Nothing to report: the simulator is not asked to reconcile.
    assert!(!a.reconciles());
    assert!(matches!(a.state("INSTANCE-x").await, Err(DriverError::Permanent(_))));
}

fn machine(id: &str) -> openwinv_driver::MachineSpec {
    openwinv_driver::MachineSpec {
        instance_id: id.into(),
        hostname: "web".into(),
        vcpu: 1,
        memory: 1,
        disk: 20,
        image_id: "IMG-ubuntu-2404".into(),
        username: "root".into(),
        password: "pw".into(),
        ssh_keys: Vec::new(),
        user_script: None,
        boot: None,
        network: None,
    }
}
