//! The agent's half of the work protocol (`docs/hosts.md`): pull the host's work items (long
//! poll), run each on this host's driver, report the machine's new state, answer the item.
//!
//! **Done once.** Every item has a key (`{operation}/{step}/{run|undo}/{n}`) that is the same on
//! every delivery. Before running an item the agent looks for its record in
//! `<data-dir>/work/done/`; a record is written (atomically: a temporary file renamed) after the
//! driver answered and before the answer is posted. So an item delivered again — the answer was
//! lost, the agent restarted, the control plane handed it out again — is answered from the record
//! and the driver does not run twice. A transient error is not recorded: the step's next attempt
//! queues the call again and it runs again. An agent killed while the driver ran has no record:
//! the item runs again after the restart (driver calls are idempotent per machine).
//!
//! `<data-dir>/work/runs.jsonl` logs every run (`start`, `done`) and every answer from a record
//! (`replayed`), one JSON object a line: the operator's (and the tests') view of what ran here.
//! `<data-dir>/machines.json` holds each machine's state and generation, which the agent reports
//! (`runtime`) after every change and in full when it registers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openwinv_driver::firewall::CompiledRules;
use openwinv_driver::{ComputeDriver, DriverError, MachineSpec, MachineState, Power, VolumeSpec};
use openwinv_wire::hosts::{MachineReport, WorkItem, WorkResult};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::files::{EventLog, write_atomically};

/// Records older than this are removed when the agent starts.
const KEEP_RECORDS: Duration = Duration::from_secs(7 * 24 * 3600);

/// A `set_peers` item: the other hosts holding machines of the (account, zone) network.
#[derive(Debug, Deserialize)]
struct SetPeers {
    account_id: String,
    zone_id: String,
    /// The underlay addresses of the other hosts of the network.
    peers: Vec<std::net::Ipv4Addr>,
    /// The list's version (higher: read later); absent from items of older control planes.
    #[serde(default)]
    version: Option<i64>,
}

/// What the agent remembers of its machines.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Machines {
    /// The next generation to hand out (one counter for every machine of the host).
    pub next_generation: i64,
    pub machines: BTreeMap<String, Machine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// `running`, `stopped` or `absent`.
    pub state: String,
    pub generation: i64,
}

/// Runs work items on a driver, once per key.
pub struct Runner {
    driver: Arc<dyn ComputeDriver>,
    dir: PathBuf,
    machines_file: PathBuf,
    machines: tokio::sync::Mutex<Machines>,
    /// How long each machine call takes on a simulated host (`--sim-delay`).
    delay: Duration,
    /// `work/runs.jsonl`.
    log: EventLog,
    /// Boot files by content, for drivers that boot real images (`None`: the simulator).
    images: Option<Arc<crate::images::ImageCache>>,
    /// The QEMU driver's real networks (`--network namespaces`), told their peers by
    /// `set_peers` items; `None`: nothing here spans hosts, and `set_peers` has nothing to do.
    networks: Option<Arc<openwinv_qemu::Networks>>,
    /// Per machine: items running on it now, and a counter bumped when one starts or ends, so
    /// that a poll of the driver never records a state read while an item changed the machine.
    activity: std::sync::Mutex<BTreeMap<String, (u32, u64)>>,
    /// The QEMU driver itself, for what only it does (a machine's disk exported and imported).
    qemu: Option<Arc<openwinv_qemu::QemuDriver>>,
    /// A simulated host's refusal (`--sim-refuse CALL:N`): the Nth run of CALL since the agent
    /// started fails for good, and the runs of CALL so far.
    refuse: Option<(String, u32)>,
    runs_of_refused: std::sync::atomic::AtomicU32,
    /// Per network (`{account}/{zone}`): the version of the peer list applied last
    /// (`set_peers`), kept in `work/peers.json` so that a restart does not forget it.
    peers_applied: tokio::sync::Mutex<BTreeMap<String, i64>>,
}

/// A machine's state as the agent reports it.
fn power_name(p: Power) -> &'static str {
    match p {
        Power::Running => "running",
        Power::Stopped => "stopped",
        Power::Absent => "absent",
    }
}

/// A JSON record of the agent's (`what`), or its default when the file is not there yet.
fn read_record<T: serde::de::DeserializeOwned + Default>(path: &Path, what: &str) -> anyhow::Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is not {what}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

impl Runner {
    pub fn open(driver: Arc<dyn ComputeDriver>, data_dir: &Path, delay: Duration) -> anyhow::Result<Runner> {
        let dir = data_dir.join("work");
        std::fs::create_dir_all(dir.join("done")).with_context(|| format!("cannot create {}", dir.display()))?;
        let machines_file = data_dir.join("machines.json");
        let machines: Machines = read_record(&machines_file, "the agent's machine record")?;
        let peers_applied = read_record(&dir.join("peers.json"), "the agent's record of peer lists")?;
        let runner = Runner {
            driver,
            dir,
            machines_file,
            machines: tokio::sync::Mutex::new(machines),
            delay,
            log: EventLog::new(data_dir.join("work").join("runs.jsonl"), "the run log"),
            images: None,
            networks: None,
            activity: Default::default(),
            qemu: None,
            refuse: None,
            runs_of_refused: Default::default(),
            peers_applied: tokio::sync::Mutex::new(peers_applied),
        };
        runner.prune();
        Ok(runner)
    }

    /// Resolves each machine spec's boot files to this host's copies (fetched by SHA-256)
    /// before the driver sees it.
    pub fn with_images(mut self, images: Arc<crate::images::ImageCache>) -> Runner {
        self.images = Some(images);
        self
    }

    /// Converges the real networks' peers as the control plane's `set_peers` items say.
    pub fn with_networks(mut self, networks: Arc<openwinv_qemu::Networks>) -> Runner {
        self.networks = Some(networks);
        self
    }

    /// The `nth` run of `call` (counted from 1 since the agent started) fails for good, as if
    /// the host refused it (`--sim-refuse`: a fault for tests of what the control plane undoes).
    pub fn with_refusal(mut self, call: String, nth: u32) -> Runner {
        self.refuse = Some((call, nth));
        self
    }

    /// The refusal of this run of `item`, when it is the one `--sim-refuse` names.
    fn refused(&self, item: &WorkItem) -> Option<DriverError> {
        let (call, nth) = self.refuse.as_ref().filter(|(call, _)| *call == item.call)?;
        let run = self.runs_of_refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        (run == *nth).then(|| DriverError::Permanent(format!("the simulated host refuses run {run} of {call}")))
    }

    /// Evacuation moves this QEMU driver's machines with their disks.
    pub fn with_qemu(mut self, qemu: Arc<openwinv_qemu::QemuDriver>) -> Runner {
        self.qemu = Some(qemu);
        self
    }

    /// The work item's spec, its boot files resolved to this host's copies when it has a cache.
    async fn spec_for(&self, item: &WorkItem) -> Result<MachineSpec, DriverError> {
        let spec = spec(item)
            .map_err(|e| DriverError::Permanent(format!("the {} item's payload does not read: {e}", item.call)))?;
        match &self.images {
            Some(cache) => cache.prepare(spec, &item.payload).await,
            None => Ok(spec),
        }
    }

    fn record_path(&self, key: &str) -> PathBuf {
        let name: String =
            key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '~' }).collect();
        self.dir.join("done").join(format!("{name}.json"))
    }

    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("done")) else { return };
        for e in entries.flatten() {
            let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if old.is_some_and(|age| age > KEEP_RECORDS) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn log(&self, event: &str, item: &WorkItem, extra: Value) {
        let fields = json!({"key": item.key, "call": item.call, "instance_id": item.instance_id});
        self.log.append(event, fields, extra);
    }

    /// Every machine's state, for a full report.
    pub async fn all_reports(&self) -> Vec<MachineReport> {
        let m = self.machines.lock().await;
        m.machines
            .iter()
            .map(|(id, s)| MachineReport { instance_id: id.clone(), state: s.state.clone(), generation: s.generation })
            .collect()
    }

    /// Every machine's state and the host's generation counter when they were read, for the full
    /// report after a registration.
    pub async fn full_report(&self) -> (Vec<MachineReport>, i64) {
        let m = self.machines.lock().await;
        let rows = m
            .machines
            .iter()
            .map(|(id, s)| MachineReport { instance_id: id.clone(), state: s.state.clone(), generation: s.generation })
            .collect();
        (rows, m.next_generation)
    }

    /// Runs `item` unless it ran before; answers the result to post and the machine report the
    /// run made (if the machine's state changed).
    pub async fn process(&self, item: &WorkItem) -> (WorkResult, Option<MachineReport>) {
        let path = self.record_path(&item.key);
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(stored) = serde_json::from_slice::<WorkResult>(&bytes)
        {
            self.log("replayed", item, json!({"deliveries": item.deliveries}));
            return (stored, None);
        }
        self.log("start", item, json!({"deliveries": item.deliveries}));
        // The delay stands for a machine's work; `set_peers` names no machine.
        if !self.delay.is_zero() && item.instance_id.is_some() {
            tokio::time::sleep(self.delay).await;
        }
        self.busy(item, true);
        let answer = match self.refused(item) {
            Some(refusal) => Err(refusal),
            None => self.execute(item).await,
        };
        let result = match &answer {
            Ok(v) => WorkResult { key: item.key.clone(), outcome: "ok".into(), result: v.clone(), error: None },
            Err(DriverError::Transient(e)) => WorkResult {
                key: item.key.clone(),
                outcome: "transient".into(),
                result: Value::Null,
                error: Some(e.clone()),
            },
            Err(DriverError::Permanent(e)) => WorkResult {
                key: item.key.clone(),
                outcome: "permanent".into(),
                result: Value::Null,
                error: Some(e.clone()),
            },
        };
        let report = match &answer {
            Ok(v) => self.machine_changed(item, v).await,
            Err(_) => None,
        };
        self.busy(item, false);
        if result.outcome != "transient"
            && let Err(e) = write_atomically(&path, &serde_json::to_vec(&result).expect("a result serializes"))
        {
            tracing::warn!(key = %item.key, error = %e, "cannot record a finished item; a redelivery runs it again");
        }
        self.log("done", item, json!({"outcome": result.outcome}));
        (result, report)
    }

    /// Marks the item's machine busy (`true`) or done with it.
    fn busy(&self, item: &WorkItem, on: bool) {
        let Some(id) = &item.instance_id else { return };
        let mut a = self.activity.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = a.entry(id.clone()).or_default();
        if on {
            e.0 += 1;
        } else {
            e.0 = e.0.saturating_sub(1);
        }
        e.1 += 1;
    }

    /// The machine's (items running, counter), `None` while an item runs on it.
    fn idle_epoch(&self, id: &str) -> Option<u64> {
        let a = self.activity.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match a.get(id) {
            Some((n, _)) if *n > 0 => None,
            Some((_, epoch)) => Some(*epoch),
            None => Some(0),
        }
    }

    /// Reads each machine's state from the driver (for drivers whose machines change on their
    /// own: a guest powered off from inside, a QEMU process killed) and records those that
    /// changed since the agent last knew, with a new generation: the reports to send. A machine
    /// an item is changing is skipped, and so is a state read while one started or ended: that
    /// item's own report carries the change.
    pub async fn poll(&self) -> Vec<MachineReport> {
        let known: Vec<(String, String)> =
            self.machines.lock().await.machines.iter().map(|(id, m)| (id.clone(), m.state.clone())).collect();
        let mut out = Vec::new();
        for (id, before) in known {
            let Some(epoch) = self.idle_epoch(&id) else { continue };
            let power = match self.driver.state(&id).await {
                Ok(s) => power_name(s.power),
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "could not read a machine's state");
                    continue;
                }
            };
            if power == before {
                continue;
            }
            let mut m = self.machines.lock().await;
            if self.idle_epoch(&id) != Some(epoch) || m.machines.get(&id).is_none_or(|s| s.state != before) {
                continue;
            }
            m.next_generation += 1;
            let generation = m.next_generation;
            if power == "absent" {
                m.machines.remove(&id);
            } else {
                m.machines.insert(id.clone(), Machine { state: power.into(), generation });
            }
            if let Err(e) = write_atomically(&self.machines_file, &serde_json::to_vec_pretty(&*m).expect("serializes"))
            {
                tracing::warn!(error = %e, "cannot write the machine record");
            }
            tracing::warn!(instance = %id, from = %before, to = power, generation, "a machine changed on its own");
            out.push(MachineReport { instance_id: id, state: power.into(), generation });
        }
        out
    }

    async fn execute(&self, item: &WorkItem) -> Result<Value, DriverError> {
        let id = item.instance_id.as_deref().unwrap_or_default();
        let bad = |e: serde_json::Error| {
            DriverError::Permanent(format!("the {} item's payload does not read: {e}", item.call))
        };
        let state = |s: MachineState| serde_json::to_value(s).expect("a state serializes");
        let d = &self.driver;
        match item.call.as_str() {
            "create" | "rebuild" | "resize" => {
                let spec = self.spec_for(item).await?;
                let answer = match item.call.as_str() {
                    "create" => d.create(&spec).await,
                    "rebuild" => d.rebuild(&spec).await,
                    _ => d.resize(&spec).await,
                }?;
                if let Some(cache) = &self.images {
                    cache.settle(&spec).await;
                }
                Ok(state(answer))
            }
            "start" => d.start(id).await.map(state),
            "stop" => d.stop(id).await.map(state),
            "reboot" => d.reboot(id, item.payload["hard"].as_bool().unwrap_or(false)).await.map(state),
            "destroy" => {
                d.destroy(id).await?;
                if let Some(cache) = &self.images {
                    cache.release(id).await;
                }
                Ok(Value::Null)
            }
            // Evacuation (docs/hosts.md): a stopped machine leaves this host. On the simulated
            // hypervisor the machine record is its disk; a QEMU host flattens the machine's
            // disk (its backing image merged in), hands it to the control plane under its
            // SHA-256 and answers the digest, which the target fetches.
            "export" => {
                let generation = {
                    let m = self.machines.lock().await;
                    match m.machines.get(id) {
                        None => return Err(DriverError::Permanent(format!("this host has no machine {id} to export"))),
                        Some(s) if s.state != "stopped" => {
                            return Err(DriverError::Permanent(format!(
                                "the machine {id} is {}: only a stopped machine is moved",
                                s.state
                            )));
                        }
                        Some(s) => s.generation,
                    }
                };
                let (Some(qemu), Some(images)) = (&self.qemu, &self.images) else {
                    return Ok(json!({"format": "sim", "instance_id": id, "generation": generation}));
                };
                let out = self.dir.join(format!("export-{id}.qcow2"));
                qemu.export_disk(id, &out).await?;
                let uploaded = images.upload_disk(&out).await;
                let _ = std::fs::remove_file(&out);
                let (sha256, size) = uploaded?;
                Ok(json!({"format": "qcow2", "instance_id": id,
                    "files": [{"role": "root", "sha256": sha256, "size": size}]}))
            }
            "import" => {
                let export = &item.payload["export"];
                let format = export["format"].as_str().unwrap_or_default();
                let spec: MachineSpec = serde_json::from_value(item.payload["spec"].clone()).map_err(bad)?;
                match (format, &self.qemu, &self.images) {
                    ("sim", None, _) if d.name() == "sim" => d.create(&spec).await.map(state),
                    ("qcow2", Some(qemu), Some(images)) => {
                        let root = export["files"]
                            .as_array()
                            .and_then(|f| f.iter().find(|f| f["role"] == "root"))
                            .ok_or_else(|| DriverError::Permanent("the export names no root disk".into()))?;
                        let sha256 = root["sha256"].as_str().unwrap_or_default();
                        let size = root["size"].as_u64().unwrap_or_default();
                        // The kernel and initrd (if any) by content, as a create fetches them.
                        let spec = images.prepare(spec, &item.payload["spec"]).await?;
                        let disk = self.dir.join(format!("import-{id}.qcow2"));
                        images.fetch_disk(sha256, size, &disk).await?;
                        let made = qemu.import_disk(&spec, &disk).await;
                        let _ = std::fs::remove_file(&disk);
                        let made = made?;
                        images.settle(&spec).await;
                        Ok(state(made))
                    }
                    _ => Err(DriverError::Permanent(format!(
                        "this {} host cannot import a machine exported as `{format}`",
                        d.name()
                    ))),
                }
            }
            "apply_firewall" => {
                let rules: CompiledRules = serde_json::from_value(item.payload["rules"].clone()).map_err(bad)?;
                d.apply_firewall(id, &rules).await.map(|()| Value::Null)
            }
            "attach_volume" => {
                let v: VolumeSpec = serde_json::from_value(item.payload["volume"].clone()).map_err(bad)?;
                d.attach_volume(id, &v).await.map(|()| Value::Null)
            }
            "detach_volume" => {
                let v = item.payload["volume_id"].as_str().unwrap_or_default();
                d.detach_volume(id, v).await.map(|()| Value::Null)
            }
            // A volume's storage lives on the host of the instance it was last attached to
            // (docs/hosts.md "Volumes"): made here at its first attach, moved here from another
            // host (export there, import here by content), deleted here with the volume.
            "create_volume" => {
                let v: VolumeSpec = serde_json::from_value(item.payload["volume"].clone()).map_err(bad)?;
                d.create_volume(&v).await.map(|()| Value::Null)
            }
            "delete_volume" => {
                let v = item.payload["volume_id"].as_str().unwrap_or_default();
                d.delete_volume(v).await.map(|()| Value::Null)
            }
            "export_volume" => {
                let v = item.payload["volume_id"].as_str().unwrap_or_default();
                let (Some(qemu), Some(images)) = (&self.qemu, &self.images) else {
                    return Ok(json!({"format": "sim", "volume_id": v}));
                };
                let out = self.dir.join(format!("export-{v}.qcow2"));
                qemu.export_volume(v, &out).await?;
                let uploaded = images.upload_disk(&out).await;
                let _ = std::fs::remove_file(&out);
                let (sha256, size) = uploaded?;
                Ok(json!({"format": "qcow2", "volume_id": v,
                    "files": [{"role": "volume", "sha256": sha256, "size": size}]}))
            }
            "import_volume" => {
                let v: VolumeSpec = serde_json::from_value(item.payload["volume"].clone()).map_err(bad)?;
                let export = &item.payload["export"];
                let format = export["format"].as_str().unwrap_or_default();
                match (format, &self.qemu, &self.images) {
                    // A simulated volume holds no data: it arrives as fresh storage; a
                    // simulated host keeps none.
                    ("sim", _, _) | (_, None, _) => d.create_volume(&v).await.map(|()| Value::Null),
                    ("qcow2", Some(qemu), Some(images)) => {
                        let file = export["files"]
                            .as_array()
                            .and_then(|f| f.iter().find(|f| f["role"] == "volume"))
                            .ok_or_else(|| DriverError::Permanent("the export names no volume file".into()))?;
                        let sha256 = file["sha256"].as_str().unwrap_or_default();
                        let size = file["size"].as_u64().unwrap_or_default();
                        let disk = self.dir.join(format!("import-{}.qcow2", v.volume_id));
                        images.fetch_disk(sha256, size, &disk).await?;
                        let made = qemu.import_volume(&v, &disk).await;
                        let _ = std::fs::remove_file(&disk);
                        made.map(|()| Value::Null)
                    }
                    _ => Err(DriverError::Permanent(format!(
                        "this {} host cannot import a volume exported as `{format}`",
                        d.name()
                    ))),
                }
            }
            "set_peers" => {
                let p: SetPeers = serde_json::from_value(item.payload.clone()).map_err(bad)?;
                // One list at a time, and never an older one after a newer (items run
                // concurrently, so two lists of a network can arrive in either order).
                let mut applied = self.peers_applied.lock().await;
                let network = format!("{}/{}", p.account_id, p.zone_id);
                if let (Some(v), Some(held)) = (p.version, applied.get(&network))
                    && v <= *held
                {
                    return Ok(json!({ "peers": p.peers.len(), "applied": false, "newer": held }));
                }
                // The simulator and user-mode networking keep no network to span hosts.
                if let Some(nets) = &self.networks {
                    nets.set_peers(&p.account_id, &p.zone_id, &p.peers).await?;
                }
                if let Some(v) = p.version {
                    applied.insert(network, v);
                    let file = self.dir.join("peers.json");
                    if let Err(e) = write_atomically(&file, &serde_json::to_vec(&*applied).expect("versions serialize"))
                    {
                        tracing::warn!(error = %e, "cannot record the peer lists applied; a restart forgets them");
                    }
                }
                Ok(json!({ "peers": p.peers.len(), "applied": true }))
            }
            other => Err(DriverError::Permanent(format!("this agent does not know the call `{other}`"))),
        }
    }

    /// Records the machine's new state after a call; the report to send, if it changed.
    async fn machine_changed(&self, item: &WorkItem, answer: &Value) -> Option<MachineReport> {
        let id = item.instance_id.clone()?;
        let mut m = self.machines.lock().await;
        let before = m.machines.get(&id).map(|s| s.state.clone());
        let power = serde_json::from_value::<MachineState>(answer.clone()).ok().map(|s| s.power);
        let after = match (item.call.as_str(), power) {
            ("destroy", _) => "absent".to_owned(),
            // The simulator keeps no power of its own across a rebuild or resize: the machine
            // keeps the state it had.
            ("rebuild" | "resize", _) if before.is_some() => before.clone()?,
            (_, Some(p)) => power_name(p).into(),
            (_, None) => return None,
        };
        if before.as_deref() == Some(after.as_str()) {
            return None;
        }
        m.next_generation += 1;
        let generation = m.next_generation;
        if after == "absent" {
            m.machines.remove(&id);
        } else {
            m.machines.insert(id.clone(), Machine { state: after.clone(), generation });
        }
        if let Err(e) = write_atomically(&self.machines_file, &serde_json::to_vec_pretty(&*m).expect("serializes")) {
            tracing::warn!(error = %e, "cannot write the machine record");
        }
        Some(MachineReport { instance_id: id, state: after, generation })
    }
}

fn spec(item: &WorkItem) -> Result<MachineSpec, serde_json::Error> {
    serde_json::from_value(item.payload.clone())
}

#[cfg(test)]
mod tests;
