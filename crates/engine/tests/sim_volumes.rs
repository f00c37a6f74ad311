//! The simulated driver's block storage: every call is idempotent, an attachment belongs to one
//! machine, and a restarted simulator (empty memory) accepts the calls a resumed saga makes.

use openwinv_engine::driver::VolumeSpec;
use openwinv_engine::{ComputeDriver, DriverError, Pacing, SimDriver};

fn spec(id: &str) -> VolumeSpec {
    VolumeSpec { volume_id: id.into(), size: 20, kind: "ssd".into() }
}

#[tokio::test]
async fn volume_calls_are_idempotent() {
    let d = SimDriver::new(Pacing::Immediate);
    for _ in 0..2 {
        d.create_volume(&spec("BS-1")).await.unwrap();
    }
    assert_eq!(d.volume("BS-1").unwrap().attached_to, None);
    for _ in 0..2 {
        d.attach_volume("INSTANCE-a", &spec("BS-1")).await.unwrap();
    }
    assert_eq!(d.volume("BS-1").unwrap().attached_to.as_deref(), Some("INSTANCE-a"));
    // Attached elsewhere: refused; attached volumes cannot be deleted.
    assert!(matches!(d.attach_volume("INSTANCE-b", &spec("BS-1")).await, Err(DriverError::Permanent(_))));
    assert!(matches!(d.delete_volume("BS-1").await, Err(DriverError::Permanent(_))));
    // Detaching from another machine changes nothing; from its own, twice, detaches once.
    d.detach_volume("INSTANCE-b", "BS-1").await.unwrap();
    assert_eq!(d.volume("BS-1").unwrap().attached_to.as_deref(), Some("INSTANCE-a"));
    for _ in 0..2 {
        d.detach_volume("INSTANCE-a", "BS-1").await.unwrap();
    }
    assert_eq!(d.volume("BS-1").unwrap().attached_to, None);
    for _ in 0..2 {
        d.delete_volume("BS-1").await.unwrap();
    }
    assert!(d.volume("BS-1").is_none());
}

#[tokio::test]
async fn destroying_a_machine_keeps_its_volumes() {
    let d = SimDriver::new(Pacing::Immediate);
    d.create_volume(&spec("BS-1")).await.unwrap();
    d.attach_volume("INSTANCE-a", &spec("BS-1")).await.unwrap();
    d.destroy("INSTANCE-a").await.unwrap();
    assert_eq!(d.volume("BS-1").unwrap().attached_to, None);
    d.attach_volume("INSTANCE-b", &spec("BS-1")).await.unwrap();
}

#[tokio::test]
async fn a_restarted_simulator_accepts_resumed_steps() {
    // Nothing in memory: attach learns the volume, detach and delete of the unknown succeed.
    let d = SimDriver::new(Pacing::Explicit);
    d.attach_volume("INSTANCE-a", &spec("BS-9")).await.unwrap();
    assert_eq!(d.volume("BS-9").unwrap().spec, spec("BS-9"));
    let fresh = SimDriver::new(Pacing::Explicit);
    fresh.detach_volume("INSTANCE-a", "BS-9").await.unwrap();
    fresh.delete_volume("BS-9").await.unwrap();
}
