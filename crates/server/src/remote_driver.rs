//! The remote driver (issue 18, part 2): with `serve --placement hosts`, saga steps call this
//! [`ComputeDriver`], which turns each call on an instance into a work item for the instance's
//! host (`host_work`), and waits for the host's agent to answer it.
//!
//! It lives in the server, not the engine: it needs the store's placements and work rows, the
//! server clock (a host's liveness) and the agent protocol's handlers (which wake it when an
//! answer arrives); the engine only hands it the step's identity ([`StepScope`]).
//!
//! **Idempotent by key.** The n-th driver call of a step run is keyed
//! `{operation}/{step}/{run|undo}/{n}`; a retried step (after a timeout, a lost answer, a crash of
//! this process) queues the same key, which finds the first attempt's row and, once answered,
//! its result: the call runs on the host once. The agent keeps the keys it has answered too, so
//! a duplicate delivery is answered from its record.
//!
//! **Bounded waits.** A call waits for its answer [`WAIT`] (woken at once when this process
//! receives the answer, else polling the row every [`POLL`]); then it fails transiently and tells
//! the runner it is waiting for a host, which retries it with backoff without counting an
//! attempt: an operation on a host that is away waits until the host returns (or is declared
//! dead, which fails its work items for good so the operation unwinds).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openwinv_driver::contract::BootFile;
use openwinv_driver::firewall::CompiledRules;
use openwinv_driver::{Capabilities, ComputeDriver, DriverError, MachineSpec, MachineState, Pacing, VolumeSpec};
use openwinv_engine::{Clock, StepScope};
use openwinv_store::Store;
use openwinv_store::host_work::{DONE, NewWork, WorkRecord};
use openwinv_store::hosts::DEAD;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// How long one attempt of a call waits for the host's answer.
pub const WAIT: Duration = Duration::from_secs(10);
/// How often a waiting call reads its row (answers that reach another control-plane process).
pub const POLL: Duration = Duration::from_secs(1);

/// Per host: work was queued for it in this process, its long polls look again. One `Notify`
/// per host, so that queueing an item wakes its host's poll, not every host's.
static QUEUED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>> =
    std::sync::LazyLock::new(Default::default);
/// An answer arrived in this process: waiting calls look again.
static ANSWERED: Notify = Notify::const_new();

fn queued_notify(host_id: &str) -> Arc<Notify> {
    let mut map = QUEUED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(host_id.to_owned()).or_default().clone()
}

/// Wakes the long polls of `host_id` in this process (work was queued for it).
pub fn work_queued(host_id: &str) {
    queued_notify(host_id).notify_waiters();
}

/// Wakes the calls of this process waiting for answers.
pub fn work_answered() {
    ANSWERED.notify_waiters();
}

/// What a long poll of `host_id` waits on: `notified()` completes at the next [`work_queued`].
pub fn queue_of(host_id: &str) -> Arc<Notify> {
    queued_notify(host_id)
}

pub struct RemoteDriver {
    store: Store,
    clock: Arc<Clock>,
    /// Deletes the storage of volumes no host keeps (made by this process's own driver before
    /// volumes had hosts).
    local: Arc<dyn ComputeDriver>,
    /// `<data>/disks`: where a volume moving between hosts passes (removed once it moved).
    disks: std::path::PathBuf,
    wait: Duration,
}

impl RemoteDriver {
    pub fn new(
        store: Store,
        clock: Arc<Clock>,
        local: Arc<dyn ComputeDriver>,
        disks: std::path::PathBuf,
    ) -> RemoteDriver {
        RemoteDriver { store, clock, local, disks, wait: WAIT }
    }

    /// Runs `call` on the host of `instance_id` and answers the driver's result.
    async fn call(&self, instance_id: &str, call: &str, payload: Value) -> Result<Value, DriverError> {
        let key = call_key();
        self.keyed(instance_id, call, &key, payload).await
    }

    /// [`RemoteDriver::call`] under a key the caller chose.
    async fn keyed(&self, instance_id: &str, call: &str, key: &str, payload: Value) -> Result<Value, DriverError> {
        let scope = StepScope::current();
        let undo = scope.as_ref().is_some_and(|s| s.undo);
        let host = self.store.host_of_instance(instance_id).await.map_err(store_error)?;
        // No host holds the machine (never placed, or its host was declared dead): nothing to
        // destroy, detach or undo there, and nothing else can run. (A volume detached from such
        // a machine stays `error` when its storage was on a dead host: `Store::settle_volume`.)
        let nothing_there = |why: String| {
            if undo || matches!(call, "destroy" | "detach_volume") {
                Ok(Value::Null)
            } else {
                Err(DriverError::Permanent(why))
            }
        };
        let Some(host) = host else {
            return nothing_there(format!(
                "instance {instance_id} is on no host (it was never placed, or its host was declared dead)"
            ));
        };
        if host.host_state == DEAD {
            return nothing_there(format!("the host {} of instance {instance_id} was declared dead", host.host_name));
        }
        let target = Target { host_id: &host.host_id, host_name: &host.host_name, instance_id: Some(instance_id) };
        run_on_host(&self.store, &self.clock, self.wait, &target, call, key, payload).await
    }

    /// Runs `call` about no instance (a volume's storage) on the host `host_id`, keyed `key`.
    async fn on_host(
        &self,
        host_id: &str,
        host_name: &str,
        call: &str,
        key: &str,
        payload: Value,
    ) -> Result<Value, DriverError> {
        let target = Target { host_id, host_name, instance_id: None };
        run_on_host(&self.store, &self.clock, self.wait, &target, call, key, payload).await
    }

    /// Runs `call` about `instance_id` on the host `host_id`, wherever the instance is placed
    /// (evacuation drives a move's source and target by name; the operator destroys a stray).
    /// Keyed by the current step's next call key, or an ad-hoc key outside a step.
    pub(crate) async fn call_on(
        &self,
        host_id: &str,
        host_name: &str,
        instance_id: &str,
        call: &str,
        payload: Value,
    ) -> Result<Value, DriverError> {
        let key = call_key();
        let target = Target { host_id, host_name, instance_id: Some(instance_id) };
        run_on_host(&self.store, &self.clock, self.wait, &target, call, &key, payload).await
    }

    /// Runs `call` on the host `host_id` under a key the caller chose, about `instance_id` (a
    /// machine there) or about no instance (a volume's storage): evacuation moves a machine's
    /// volumes with it, each call keyed by the volume.
    pub(crate) async fn keyed_on(
        &self,
        host_id: &str,
        host_name: &str,
        instance_id: Option<&str>,
        call: &str,
        key: &str,
        payload: Value,
    ) -> Result<Value, DriverError> {
        let target = Target { host_id, host_name, instance_id };
        run_on_host(&self.store, &self.clock, self.wait, &target, call, key, payload).await
    }

    async fn machine(&self, instance_id: &str, call: &str, payload: Value) -> Result<MachineState, DriverError> {
        let v = self.call(instance_id, call, payload).await?;
        if v.is_null() {
            // A call that found nothing to do (no host holds the machine).
            return Ok(MachineState { power: openwinv_driver::Power::Absent, generation: 0 });
        }
        serde_json::from_value(v.clone()).map_err(|e| {
            DriverError::Permanent(format!("the agent answered {call} with {v}, not a machine state: {e}"))
        })
    }
}

/// Where a work item goes: a host, and the instance it is about (if any).
struct Target<'a> {
    host_id: &'a str,
    host_name: &'a str,
    instance_id: Option<&'a str>,
}

/// Queues `call` for the host under `key` (finding the row of an earlier attempt) and waits for
/// its answer; a host that does not answer within `wait` fails the call transiently and marks
/// the step as waiting for a host.
async fn run_on_host(
    store: &Store,
    clock: &Clock,
    wait: Duration,
    target: &Target<'_>,
    call: &str,
    key: &str,
    payload: Value,
) -> Result<Value, DriverError> {
    let scope = StepScope::current();
    let about = target.instance_id.map_or_else(|| "the host".to_owned(), str::to_owned);
    let payload = payload.to_string();
    let new = NewWork {
        work_key: key,
        host_id: target.host_id,
        instance_id: target.instance_id,
        call,
        payload: &payload,
        now_ms: host_ms(),
    };
    let row = store.queue_work(&new).await.map_err(store_error)?;
    if row.state != DONE {
        work_queued(target.host_id);
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut row = row;
    loop {
        if row.state == DONE {
            return outcome(row);
        }
        let notified = ANSWERED.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Read again now that a wake-up cannot be missed.
        row = store
            .work(key)
            .await
            .map_err(store_error)?
            .ok_or_else(|| DriverError::Transient(format!("work {key} vanished from the queue (a reset?)")))?;
        if row.state == DONE {
            return outcome(row);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(POLL.min(deadline - now)) => {}
        }
    }
    if let Some(s) = &scope {
        s.waiting_for_host();
    }
    let now = clock.unix();
    let (name, state, beat) = store.host_liveness(target.host_id).await.map_err(store_error)?.unwrap_or((
        target.host_name.to_owned(),
        String::new(),
        None,
    ));
    let why = match beat {
        Some(t) if now - t > openwinv_store::hosts::ALIVE_WITHIN_SECS => {
            format!("is unreachable (no heartbeat for {} s)", now - t)
        }
        None => "has never registered".to_owned(),
        Some(_) if state == DEAD => "was declared dead".to_owned(),
        Some(_) => format!("has not answered within {} s", wait.as_secs()),
    };
    Err(DriverError::Transient(format!("host {name} {why}: {call} of {about} ({key}) waits for it")))
}

/// Tells every host holding machines of the (account, zone) network which other hosts hold
/// some (their underlay addresses), so that each host's copy of the network floods to exactly
/// those (`set_peers` work items, `docs/hosts.md`). `except` leaves out an instance on its way
/// out (a create being undone, a delete). Called after a placement is made and when one is
/// released; a network without a VNI yet (no address given) has nothing to tell.
///
/// Each host's item is keyed by the step's first call key and the host, so a retried step finds
/// the same rows whichever hosts the network has by then; answered rows are not queued again.
pub async fn tell_peers(
    store: &Store,
    clock: &Clock,
    account_id: &str,
    zone_id: &str,
    except: Option<&str>,
) -> Result<(), DriverError> {
    let Some((vni, version, hosts)) =
        store.network_peers(account_id, zone_id, except, host_ms()).await.map_err(store_error)?
    else {
        return Ok(());
    };
    let underlays: Vec<(String, Option<std::net::Ipv4Addr>)> = hosts
        .iter()
        .map(|h| {
            let ip = h.underlay.as_deref().and_then(|a| a.parse().ok());
            if ip.is_none() {
                tracing::warn!(host = %h.host_name, underlay = ?h.underlay,
                    "the host has no IPv4 underlay address: no other host sends it this network's frames");
            }
            (h.host_id.clone(), ip)
        })
        .collect();
    let base = call_key();
    let calls = hosts.iter().map(|h| {
        let peers: Vec<String> = underlays
            .iter()
            .filter(|(id, _)| *id != h.host_id)
            .filter_map(|(_, ip)| ip.map(|ip| ip.to_string()))
            .collect();
        let payload =
            json!({ "account_id": account_id, "zone_id": zone_id, "vni": vni, "peers": peers, "version": version });
        let key = format!("{base}/{}", h.host_id);
        async move {
            let target = Target { host_id: &h.host_id, host_name: &h.host_name, instance_id: None };
            run_on_host(store, clock, WAIT, &target, "set_peers", &key, payload).await
        }
    });
    for r in futures_util::future::join_all(calls).await {
        r?;
    }
    Ok(())
}

/// The key of the next driver call of the current step run (see the module's doc), or an ad-hoc
/// key outside a step.
fn call_key() -> String {
    match StepScope::current() {
        Some(s) => s.next_call_key(),
        None => format!("adhoc/{}", openwinv_store::ids::new_id("W")),
    }
}

fn host_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn store_error(e: openwinv_store::StoreError) -> DriverError {
    DriverError::Transient(format!("store: {e}"))
}

fn outcome(row: WorkRecord) -> Result<Value, DriverError> {
    let error = || row.error.clone().unwrap_or_else(|| "failed".into());
    match row.error_kind.as_deref() {
        Some("transient") => Err(DriverError::Transient(error())),
        Some(_) => Err(DriverError::Permanent(error())),
        None => Ok(row.result.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null)),
    }
}

/// The spec as a host receives it: the spec itself, and beside it `boot_files`, each file of
/// its boot image named by content (SHA-256 and size), which the agent fetches from
/// `GET /internal/v1/images/{sha256}` and boots its own copy of (`docs/hosts.md`). The spec keeps
/// the control plane's paths (the agent maps them), so old payloads without `boot_files` read
/// the same.
pub(crate) async fn spec_json(spec: &MachineSpec) -> Result<Value, DriverError> {
    let mut v = serde_json::to_value(spec).expect("a machine spec serializes");
    let Some(boot) = &spec.boot else { return Ok(v) };
    let mut files = Vec::new();
    for path in boot.files() {
        let (sha256, size) = crate::images::file_digest(path).await.map_err(|e| {
            DriverError::Permanent(format!(
                "image {}: cannot read its file {} ({e}); import the image's files again",
                spec.image_id,
                path.display()
            ))
        })?;
        files.push(BootFile { path: path.to_owned(), sha256, size });
    }
    v["boot_files"] = serde_json::to_value(files).expect("boot files serialize");
    Ok(v)
}

#[async_trait]
impl ComputeDriver for RemoteDriver {
    fn name(&self) -> &'static str {
        "remote"
    }

    /// The agents' drivers take the time they take.
    fn pacing(&self) -> Pacing {
        Pacing::Immediate
    }

    fn capabilities(&self) -> Capabilities {
        self.local.capabilities()
    }

    async fn create(&self, spec: &MachineSpec) -> Result<MachineState, DriverError> {
        self.machine(&spec.instance_id, "create", spec_json(spec).await?).await
    }

    async fn start(&self, instance_id: &str) -> Result<MachineState, DriverError> {
        self.machine(instance_id, "start", json!({})).await
    }

    async fn stop(&self, instance_id: &str) -> Result<MachineState, DriverError> {
        self.machine(instance_id, "stop", json!({})).await
    }

    async fn reboot(&self, instance_id: &str, hard: bool) -> Result<MachineState, DriverError> {
        self.machine(instance_id, "reboot", json!({ "hard": hard })).await
    }

    async fn rebuild(&self, spec: &MachineSpec) -> Result<MachineState, DriverError> {
        self.machine(&spec.instance_id, "rebuild", spec_json(spec).await?).await
    }

    async fn resize(&self, spec: &MachineSpec) -> Result<MachineState, DriverError> {
        self.machine(&spec.instance_id, "resize", spec_json(spec).await?).await
    }

    async fn destroy(&self, instance_id: &str) -> Result<(), DriverError> {
        self.call(instance_id, "destroy", json!({})).await.map(drop)
    }

    /// States come from the agents' runtime reports, not from calls.
    async fn state(&self, instance_id: &str) -> Result<MachineState, DriverError> {
        Err(DriverError::Permanent(format!(
            "the state of {instance_id} comes from its host's runtime reports, not from a call"
        )))
    }

    async fn apply_firewall(&self, instance_id: &str, rules: &CompiledRules) -> Result<(), DriverError> {
        self.call(instance_id, "apply_firewall", json!({ "rules": rules })).await.map(drop)
    }

    /// Nothing yet: a volume's storage is made on the host of the instance it is first
    /// attached to ([`RemoteDriver::attach_volume`]), which a volume not yet attached has not.
    async fn create_volume(&self, _spec: &VolumeSpec) -> Result<(), DriverError> {
        Ok(())
    }

    /// On the host that keeps the volume's storage; a volume no host keeps was never attached
    /// in hosts mode (or was made by this process's own driver before volumes had hosts).
    async fn delete_volume(&self, volume_id: &str) -> Result<(), DriverError> {
        match self.store.volume_host(volume_id).await.map_err(store_error)? {
            // Its host was declared dead: the storage went with it.
            Some(h) if h.host_state == DEAD => Ok(()),
            Some(h) => {
                let key = format!("{}/delete", call_key());
                let payload = json!({ "volume_id": volume_id });
                self.on_host(&h.host_id, &h.host_name, "delete_volume", &key, payload).await.map(drop)
            }
            None => self.local.delete_volume(volume_id).await,
        }
    }

    /// Makes sure the instance's host keeps the volume's storage, then attaches it there. The
    /// storage is made there at the volume's first attach; a volume kept on another host moves
    /// (exported there by content, imported here, deleted there) before it is attached. Each of
    /// these calls has a key of its own under the step's first key, so a retried step finds the
    /// answered ones whichever of them it needs.
    async fn attach_volume(&self, instance_id: &str, spec: &VolumeSpec) -> Result<(), DriverError> {
        let base = call_key();
        if let Some(to) = self.store.host_of_instance(instance_id).await.map_err(store_error)? {
            let volume = json!({ "volume": spec });
            match self.store.volume_host(&spec.volume_id).await.map_err(store_error)? {
                Some(from) if from.host_id == to.host_id => {}
                Some(from) if from.host_state == DEAD => {
                    return Err(DriverError::Permanent(format!(
                        "the storage of volume {} was kept on the host {}, which was declared dead: its data is lost",
                        spec.volume_id, from.host_name
                    )));
                }
                Some(from) => {
                    let id = json!({ "volume_id": spec.volume_id });
                    let export = self
                        .on_host(&from.host_id, &from.host_name, "export_volume", &format!("{base}/export"), id.clone())
                        .await?;
                    let payload = json!({ "volume": spec, "export": export });
                    self.on_host(&to.host_id, &to.host_name, "import_volume", &format!("{base}/import"), payload)
                        .await?;
                    crate::internal::disks::remove_exported(&self.disks, &export);
                    self.store.set_volume_host(&spec.volume_id, &to.host_id).await.map_err(store_error)?;
                    self.on_host(&from.host_id, &from.host_name, "delete_volume", &format!("{base}/drop"), id).await?;
                    tracing::info!(volume = %spec.volume_id, from = %from.host_name, to = %to.host_name,
                        "volume storage moved between hosts");
                }
                None => {
                    self.on_host(&to.host_id, &to.host_name, "create_volume", &format!("{base}/create"), volume)
                        .await?;
                    self.store.set_volume_host(&spec.volume_id, &to.host_id).await.map_err(store_error)?;
                }
            }
        }
        let key = format!("{base}/attach");
        self.keyed(instance_id, "attach_volume", &key, json!({ "volume": spec })).await.map(drop)
    }

    async fn detach_volume(&self, instance_id: &str, volume_id: &str) -> Result<(), DriverError> {
        self.call(instance_id, "detach_volume", json!({ "volume_id": volume_id })).await.map(drop)
    }
}
