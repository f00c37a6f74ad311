//! The runner's tests: records, retries and polls against test drivers.

use openwinv_driver::{Pacing, SimDriver};

use super::*;

fn item(key: &str, call: &str) -> WorkItem {
    WorkItem {
        key: key.into(),
        call: call.into(),
        instance_id: Some("INSTANCE-a".into()),
        payload: json!({}),
        deliveries: 1,
    }
}

fn runs(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("work/runs.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_duplicate_delivery_is_answered_from_the_record_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sim: Arc<dyn ComputeDriver> = Arc::new(SimDriver::new(Pacing::Immediate));
    let runner = Runner::open(sim.clone(), dir.path(), Duration::ZERO).unwrap();
    let (first, report) = runner.process(&item("OP-1/5/run/0", "start")).await;
    assert_eq!(first.outcome, "ok");
    let report = report.expect("a start changes the machine");
    assert_eq!((report.state.as_str(), report.generation), ("running", 1));
    let (again, none) = runner.process(&item("OP-1/5/run/0", "start")).await;
    assert_eq!((again, none), (first.clone(), None));
    // A new runner on the same directory (the agent restarted) still knows the key.
    let runner = Runner::open(sim, dir.path(), Duration::ZERO).unwrap();
    assert_eq!(runner.process(&item("OP-1/5/run/0", "start")).await.0, first);
    let events: Vec<String> = runs(dir.path()).iter().map(|r| r["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(events, ["start", "done", "replayed", "replayed"]);
    // The next call on the machine gets a higher generation; a repeated state none.
    let (_, r) = runner.process(&item("OP-2/0/run/0", "stop")).await;
    assert_eq!(r.map(|r| (r.state, r.generation)), Some(("stopped".into(), 2)));
    let (_, r) = runner.process(&item("OP-3/0/run/0", "stop")).await;
    assert_eq!(r, None);
}

/// `--sim-refuse stop:2`: the second run of `stop` fails for good (recorded, so a redelivery
/// answers the same), the others and other calls run.
#[tokio::test]
async fn the_refused_run_fails_for_good_and_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::open(Arc::new(SimDriver::new(Pacing::Immediate)), dir.path(), Duration::ZERO)
        .unwrap()
        .with_refusal("stop".into(), 2);
    let outcome = |r: WorkResult| (r.outcome, r.error);
    assert_eq!(runner.process(&item("OP-1/0/run/0", "start")).await.0.outcome, "ok");
    assert_eq!(runner.process(&item("OP-2/0/run/0", "stop")).await.0.outcome, "ok");
    let refused = runner.process(&item("OP-3/0/run/0", "stop")).await.0;
    assert_eq!(outcome(refused.clone()), ("permanent".into(), Some("the simulated host refuses run 2 of stop".into())));
    assert_eq!(runner.process(&item("OP-3/0/run/0", "stop")).await.0, refused, "answered from the record");
    assert_eq!(runner.process(&item("OP-4/0/run/0", "stop")).await.0.outcome, "ok");
    assert_eq!(runner.process(&item("OP-5/0/run/0", "start")).await.0.outcome, "ok");
}

/// Peer lists of one network arriving out of order: an older version than the one applied is
/// answered without being applied, also after a restart; another network, or a list without a
/// version (an older control plane), is applied.
#[tokio::test]
async fn an_older_peer_list_never_replaces_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::open(Arc::new(SimDriver::new(Pacing::Immediate)), dir.path(), Duration::ZERO).unwrap();
    let peers = |key: &str, zone: &str, version: Option<i64>| WorkItem {
        key: key.into(),
        call: "set_peers".into(),
        instance_id: None,
        payload: json!({"account_id": "ACC-a", "zone_id": zone, "vni": 4097, "peers": ["192.0.2.1"], "version": version}),
        deliveries: 1,
    };
    let applied = |r: WorkResult| (r.outcome, r.result["applied"].clone());
    let ok = |b: bool| ("ok".to_owned(), json!(b));
    assert_eq!(applied(runner.process(&peers("OP-1/1/run/0/h", "KR1-Z01", Some(2))).await.0), ok(true));
    assert_eq!(applied(runner.process(&peers("OP-2/1/run/0/h", "KR1-Z01", Some(1))).await.0), ok(false));
    assert_eq!(applied(runner.process(&peers("OP-3/1/run/0/h", "KR1-Z01", Some(2))).await.0), ok(false), "the same");
    assert_eq!(applied(runner.process(&peers("OP-4/1/run/0/h", "KR1-Z02", Some(1))).await.0), ok(true));
    assert_eq!(applied(runner.process(&peers("OP-5/1/run/0/h", "KR1-Z01", Some(3))).await.0), ok(true));
    assert_eq!(applied(runner.process(&peers("OP-6/1/run/0/h", "KR1-Z01", None)).await.0), ok(true));
    // The agent started again still knows the versions it applied.
    let runner = Runner::open(Arc::new(SimDriver::new(Pacing::Immediate)), dir.path(), Duration::ZERO).unwrap();
    assert_eq!(applied(runner.process(&peers("OP-7/1/run/0/h", "KR1-Z01", Some(3))).await.0), ok(false));
    assert_eq!(applied(runner.process(&peers("OP-8/1/run/0/h", "KR1-Z02", Some(2))).await.0), ok(true));
}

#[tokio::test]
async fn transient_errors_are_not_recorded_and_unknown_calls_are_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::open(Arc::new(SimDriver::new(Pacing::Immediate)), dir.path(), Duration::ZERO).unwrap();
    let (r, _) = runner.process(&item("OP-1/0/run/0", "teleport")).await;
    assert_eq!(r.outcome, "permanent");
    assert!(r.error.unwrap().contains("teleport"));
    let (r, _) = runner.process(&item("OP-1/0/run/1", "create")).await;
    assert_eq!(r.outcome, "permanent", "a create without a spec: {r:?}");
    let flaky = Runner::open(Arc::new(Outside::busy()), dir.path(), Duration::ZERO).unwrap();
    for _ in 0..2 {
        assert_eq!(flaky.process(&item("OP-9/0/run/0", "start")).await.0.outcome, "transient");
    }
    let starts = runs(dir.path()).iter().filter(|r| r["key"] == "OP-9/0/run/0" && r["event"] == "start").count();
    assert_eq!(starts, 2, "a transient error runs again");
}

/// A hypervisor whose machine changes behind the agent's back: `state` answers what the
/// test set, `start` what it was asked, and a `start` can be held half way; a busy one
/// answers every `start` with a transient error.
struct Outside {
    power: std::sync::Mutex<Power>,
    hold: tokio::sync::Mutex<()>,
    busy: bool,
}

impl Outside {
    fn new(power: Power) -> Outside {
        Outside { power: std::sync::Mutex::new(power), hold: Default::default(), busy: false }
    }

    fn busy() -> Outside {
        Outside { busy: true, ..Outside::new(Power::Stopped) }
    }
}

#[async_trait::async_trait]
impl ComputeDriver for Outside {
    fn name(&self) -> &'static str {
        "outside"
    }
    fn pacing(&self) -> openwinv_driver::Pacing {
        Pacing::Immediate
    }
    async fn create(&self, _: &MachineSpec) -> Result<MachineState, DriverError> {
        unreachable!()
    }
    async fn start(&self, _: &str) -> Result<MachineState, DriverError> {
        if self.busy {
            return Err(DriverError::Transient("busy".into()));
        }
        let _held = self.hold.lock().await;
        *self.power.lock().unwrap() = Power::Running;
        Ok(MachineState { power: Power::Running, generation: 0 })
    }
    async fn stop(&self, _: &str) -> Result<MachineState, DriverError> {
        unreachable!()
    }
    async fn reboot(&self, _: &str, _: bool) -> Result<MachineState, DriverError> {
        unreachable!()
    }
    async fn rebuild(&self, _: &MachineSpec) -> Result<MachineState, DriverError> {
        unreachable!()
    }
    async fn resize(&self, _: &MachineSpec) -> Result<MachineState, DriverError> {
        unreachable!()
    }
    async fn destroy(&self, _: &str) -> Result<(), DriverError> {
        unreachable!()
    }
    async fn state(&self, _: &str) -> Result<MachineState, DriverError> {
        Ok(MachineState { power: *self.power.lock().unwrap(), generation: 0 })
    }
}

#[tokio::test]
async fn a_poll_reports_a_machine_that_changed_on_its_own_once_and_never_one_an_item_is_changing() {
    let dir = tempfile::tempdir().unwrap();
    let hv = Arc::new(Outside::new(Power::Stopped));
    let runner = Arc::new(Runner::open(hv.clone(), dir.path(), Duration::ZERO).unwrap());
    let (_, r) = runner.process(&item("OP-1/0/run/0", "start")).await;
    assert_eq!(r.map(|r| (r.state, r.generation)), Some(("running".into(), 1)));
    assert_eq!(runner.poll().await, vec![], "nothing changed");
    // The guest powered itself off: reported once, with the next generation, and recorded.
    *hv.power.lock().unwrap() = Power::Stopped;
    let polled = runner.poll().await;
    assert_eq!(polled.iter().map(|r| (r.state.as_str(), r.generation)).collect::<Vec<_>>(), [("stopped", 2)]);
    assert_eq!(runner.poll().await, vec![], "reported once");
    let again = Runner::open(hv.clone(), dir.path(), Duration::ZERO).unwrap();
    assert_eq!(again.full_report().await.0[0].state, "stopped", "persisted in machines.json");
    // A start held half way: the poll sees the machine running already but leaves it to the
    // item, whose own report carries the change.
    let held = hv.hold.lock().await;
    let r2 = runner.clone();
    let start = tokio::spawn(async move { r2.process(&item("OP-2/0/run/0", "start")).await });
    while runner.idle_epoch("INSTANCE-a").is_some() {
        tokio::task::yield_now().await;
    }
    *hv.power.lock().unwrap() = Power::Running;
    assert_eq!(runner.poll().await, vec![], "a machine an item is changing is not polled");
    drop(held);
    let (_, r) = start.await.unwrap();
    assert_eq!(r.map(|r| (r.state, r.generation)), Some(("running".into(), 3)));
    assert_eq!(runner.poll().await, vec![]);
    // Gone from the hypervisor: reported absent and forgotten.
    *hv.power.lock().unwrap() = Power::Absent;
    let polled = runner.poll().await;
    assert_eq!(polled.iter().map(|r| (r.state.as_str(), r.generation)).collect::<Vec<_>>(), [("absent", 4)]);
    assert!(runner.full_report().await.0.is_empty());
}
