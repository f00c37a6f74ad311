//! Volumes on hypervisor hosts (docs/hosts.md "Volumes"), through the real binaries: a control
//! plane in hosts mode (SQLite or PostgreSQL) and two sim agents. A volume's storage is made on
//! the host of the instance it is first attached to, stays there when detached, moves (export on
//! the old host, import on the new one, delete on the old) when it is attached to an instance on
//! another host, and is deleted on the host that keeps it. Evacuation moves a stopped machine's
//! attached volumes with it (a failed move leaves both on the source). A host declared dead takes
//! its volumes with it: they are `error` at once, and can be deleted.

use openwinv_tests::hosts::{SimAgent, act, create_succeeded, hosts_mode, placements};
use openwinv_tests::{Body, Server};
use reqwest::Method;
use serde_json::{Value, json};

/// How many runs of `call` the agent finished.
fn count(agent: &SimAgent, call: &str) -> usize {
    agent.done().iter().filter(|(c, _)| c == call).count()
}

/// The calls the agent finished, in order.
fn calls(agent: &SimAgent) -> Vec<String> {
    agent.done().into_iter().map(|(c, _)| c).collect()
}

/// Waits for the operation of an accepted request; its final row.
async fn accepted(s: &Server, r: openwinv_tests::Resp) -> Value {
    assert_eq!(r.status, 202, "{}", r.text);
    s.wait_operation(r.header("x-operation-id").unwrap()).await
}

async fn succeeded(s: &Server, r: openwinv_tests::Resp) {
    let op = accepted(s, r).await;
    assert_eq!(op["status"], "succeeded", "{op}");
}

/// The host (by name) that keeps the volume's storage, as the store records it.
async fn kept_on(s: &Server, volume: &str) -> Option<String> {
    let hosts = s.admin(Method::GET, "/admin/v1/hosts", None).await.ok_rows().clone();
    for h in hosts {
        let name = h["name"].as_str().unwrap();
        let n = s
            .db_count(&format!(
                "SELECT COUNT(*) FROM volumes v JOIN hosts h ON h.host_id = v.host_id \
                 WHERE v.block_storage_id = '{volume}' AND h.name = '{name}'"
            ))
            .await;
        if n == 1 {
            return Some(name.to_owned());
        }
    }
    None
}

#[tokio::test]
async fn a_volume_is_kept_on_its_instances_host_and_moves_with_its_next_attach() {
    let s = hosts_mode(&[]).await;
    let agents = [SimAgent::start(&s, "h1", &[]).await, SimAgent::start(&s, "h2", &[]).await];
    // Two instances, one after another: equal hosts fill evenly, one each.
    let a = create_succeeded(&s, "vm0", "IMG-ubuntu-2404").await;
    let b = create_succeeded(&s, "vm1", "IMG-ubuntu-2404").await;
    let placed = placements(&s).await;
    assert_ne!(placed[&a], placed[&b], "{placed:?}");
    let agent = |host: &str| agents.iter().find(|g| g.name == host).unwrap();
    let (host_a, host_b) = (agent(&placed[&a]), agent(&placed[&b]));

    // Made with the instance: the storage is made on the instance's host, and kept there.
    let body = json!({"instance_id": a, "type": "ssd", "size": 10, "name": "data"});
    let r = s.call(Method::POST, "/v1/block-storages", Some(Body::Json(body))).await;
    let v = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
    succeeded(&s, r).await;
    assert_eq!(kept_on(&s, &v).await.as_deref(), Some(host_a.name.as_str()));
    assert_eq!((count(host_a, "create_volume"), count(host_a, "attach_volume")), (1, 1), "{:?}", calls(host_a));
    assert_eq!(count(host_b, "create_volume") + count(host_b, "attach_volume"), 0, "{:?}", calls(host_b));

    // Detached, it stays where it is; attached to the same instance again, nothing moves.
    succeeded(&s, s.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await).await;
    assert_eq!(kept_on(&s, &v).await.as_deref(), Some(host_a.name.as_str()));
    succeeded(&s, s.call(Method::POST, &format!("/v1/block-storages/{v}/attach/{a}"), None).await).await;
    assert_eq!(count(host_a, "export_volume"), 0, "{:?}", calls(host_a));
    assert_eq!(count(host_a, "create_volume"), 1, "made once: {:?}", calls(host_a));

    // Attached to an instance on the other host, it moves there first: exported on its host,
    // imported on the new one, deleted on the old one, then attached.
    succeeded(&s, s.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await).await;
    succeeded(&s, s.call(Method::POST, &format!("/v1/block-storages/{v}/attach/{b}"), None).await).await;
    assert_eq!(kept_on(&s, &v).await.as_deref(), Some(host_b.name.as_str()));
    assert_eq!((count(host_a, "export_volume"), count(host_a, "delete_volume")), (1, 1), "{:?}", calls(host_a));
    let on_b = calls(host_b);
    let at = |call: &str| on_b.iter().position(|c| c == call).unwrap_or_else(|| panic!("no {call} on b: {on_b:?}"));
    assert!(at("import_volume") < at("attach_volume"), "{on_b:?}");
    assert_eq!(count(host_b, "create_volume"), 0, "{on_b:?}");
    let shown = s.get(&format!("/v1/block-storages/{v}")).await.ok_rows()[0].clone();
    assert_eq!(shown["instance_id"], json!(b), "{shown}");

    // Deleted: on the host that keeps it, and nowhere else.
    succeeded(&s, s.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await).await;
    succeeded(&s, s.call(Method::DELETE, &format!("/v1/block-storages/{v}"), None).await).await;
    assert_eq!(count(host_b, "delete_volume"), 1, "{:?}", calls(host_b));
    assert_eq!(count(host_a, "delete_volume"), 1, "only the move's: {:?}", calls(host_a));
}

/// The volume's row as the API shows it.
async fn volume(s: &Server, v: &str) -> Value {
    s.get(&format!("/v1/block-storages/{v}")).await.ok_rows()[0].clone()
}

/// Makes a volume attached to `instance`; its id.
async fn volume_on(s: &Server, instance: &str, name: &str) -> String {
    let body = json!({"instance_id": instance, "type": "ssd", "size": 10, "name": name});
    let r = s.call(Method::POST, "/v1/block-storages", Some(Body::Json(body))).await;
    let v = r.result()[0]["block_storage_id"].as_str().unwrap().to_owned();
    succeeded(s, r).await;
    v
}

/// Open (charging) usage intervals of a resource.
async fn open_intervals(s: &Server, id: &str) -> i64 {
    s.db_count(&format!("SELECT COUNT(*) FROM usage_intervals WHERE resource_id = '{id}' AND end_at IS NULL")).await
}

/// `declare-dead` turns every volume the dead host kept to `error` at once, detached or
/// attached, and leaves a volume on another host alone; such a volume can be detached (it stays
/// `error`) and deleted (nothing to delete on the dead host), which ends its charge.
#[tokio::test]
async fn the_volumes_of_a_host_declared_dead_are_error_at_once_and_can_be_deleted() {
    let mut s = hosts_mode(&[]).await;
    let mut agents = [SimAgent::start(&s, "h1", &[]).await, SimAgent::start(&s, "h2", &[]).await];
    let a = create_succeeded(&s, "doomed", "IMG-ubuntu-2404").await;
    let b = create_succeeded(&s, "spared", "IMG-ubuntu-2404").await;
    let placed = placements(&s).await;
    assert_ne!(placed[&a], placed[&b], "{placed:?}");
    let (dead, alive) = (placed[&a].clone(), placed[&b].clone());

    let attached = volume_on(&s, &a, "attached").await;
    let detached = volume_on(&s, &a, "detached").await;
    let with_instance = volume_on(&s, &a, "with-instance").await;
    let elsewhere = volume_on(&s, &b, "elsewhere").await;
    succeeded(&s, s.call(Method::POST, &format!("/v1/block-storages/{detached}/detach"), None).await).await;
    assert_eq!(volume(&s, &detached).await["status"], "available");
    for v in [&attached, &detached, &with_instance] {
        assert_eq!(kept_on(&s, v).await.as_deref(), Some(dead.as_str()), "{v}");
    }

    // The host's agent stops; once offline the operator declares it dead.
    agents.iter_mut().find(|g| g.name == dead).unwrap().kill9().await;
    s.cli_run(&["admin", "clock", "advance", "21s"]).await.ok();
    openwinv_tests::hosts::wait_host(&s, &dead, "offline").await;
    let r = s.admin(Method::POST, &format!("/admin/v1/hosts/{dead}/declare-dead"), None).await;
    assert_eq!(r.ok_rows()[0]["host"]["state"], "dead", "{}", r.text);
    let mut lost: Vec<&str> = r.ok_rows()[0]["volumes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    lost.sort_unstable();
    let mut kept = [attached.as_str(), detached.as_str(), with_instance.as_str()];
    kept.sort_unstable();
    assert_eq!(lost, kept, "the answer lists the volumes it kept, not the other host's: {}", r.text);

    // Right after, with no operation in between: the volumes it kept are `error`, those
    // attached still attached to their instance (itself `error`); the other host's is untouched.
    for (v, on) in [(&attached, Some(&a)), (&detached, None), (&with_instance, Some(&a))] {
        let row = volume(&s, v).await;
        assert_eq!(row["status"], "error", "{row}");
        assert_eq!(row["instance_id"], json!(on), "{row}");
        let why = format!(
            "SELECT COUNT(*) FROM volumes WHERE block_storage_id = '{v}' \
             AND error_reason LIKE '%{dead} was declared dead%its data is lost%'"
        );
        assert_eq!(s.db_count(&why).await, 1, "{v}: the reason names the host and the loss");
    }
    assert_eq!(s.wait_status(&a, "error").await["status"], "error");
    let row = volume(&s, &elsewhere).await;
    assert_eq!((row["status"].as_str(), row["instance_id"].as_str()), (Some("in-use"), Some(b.as_str())), "{row}");
    assert_eq!(kept_on(&s, &elsewhere).await.as_deref(), Some(alive.as_str()));

    // Attaching it elsewhere fails (its data is lost) and leaves it `error`.
    let op = accepted(&s, s.call(Method::POST, &format!("/v1/block-storages/{detached}/attach/{b}"), None).await).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert!(op.to_string().contains("its data is lost"), "{op}");
    assert_eq!(volume(&s, &detached).await["status"], "error");

    // The detached one is deleted: the row goes and its charge ends (its bill line stays,
    // frozen).
    assert_eq!(open_intervals(&s, &detached).await, 1);
    succeeded(&s, s.call(Method::DELETE, &format!("/v1/block-storages/{detached}"), None).await).await;
    s.get(&format!("/v1/block-storages/{detached}")).await.assert_error(404, "NOT_FOUND");
    assert_eq!(open_intervals(&s, &detached).await, 0);
    s.sync_clock().await;
    let line = |bill: &Value, id: &str| {
        bill["items"].as_array().unwrap().iter().find(|i| i["id"] == id).cloned().unwrap_or_else(|| panic!("{bill}"))
    };
    let before = line(&s.get("/v1/bill/live?explain=1").await.ok_rows()[0], &detached)["seconds"].clone();
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "1h"}))).await.ok_rows();
    s.sync_clock().await;
    let bill = s.get("/v1/bill/live?explain=1").await.ok_rows()[0].clone();
    assert_eq!(line(&bill, &detached)["seconds"], before, "no charge after the delete: {bill}");
    assert!(line(&bill, &elsewhere)["seconds"].as_i64().unwrap() >= 3600, "the other still charges: {bill}");

    // The attached one: detached from its dead instance (nothing to detach there), it stays
    // `error`, and is deleted.
    succeeded(&s, s.call(Method::POST, &format!("/v1/block-storages/{attached}/detach"), None).await).await;
    let row = volume(&s, &attached).await;
    assert_eq!((row["status"].as_str(), row["instance_id"].as_str()), (Some("error"), None), "{row}");
    succeeded(&s, s.call(Method::DELETE, &format!("/v1/block-storages/{attached}"), None).await).await;
    assert_eq!(open_intervals(&s, &attached).await, 0);

    // Deleting the dead instance detaches the last one, which stays `error`, and is deleted.
    succeeded(&s, s.call(Method::DELETE, &format!("/v1/instances/{a}"), None).await).await;
    let row = volume(&s, &with_instance).await;
    assert_eq!((row["status"].as_str(), row["instance_id"].as_str()), (Some("error"), None), "{row}");
    succeeded(&s, s.call(Method::DELETE, &format!("/v1/block-storages/{with_instance}"), None).await).await;
    assert_eq!(open_intervals(&s, &with_instance).await, 0);

    // Nothing of it reached the living host; its own volume is as it was.
    let living = agents.iter().find(|g| g.name == alive).unwrap();
    assert_eq!(count(living, "delete_volume") + count(living, "import_volume"), 0, "{:?}", calls(living));
    assert_eq!(volume(&s, &elsewhere).await["status"], "in-use");
    assert_eq!(open_intervals(&s, &elsewhere).await, 1);
}

/// The calls of `agent` about volume `v` (its storage, or its attachment), in order.
fn volume_calls(agent: &SimAgent, v: &str) -> Vec<String> {
    agent
        .runs()
        .iter()
        .filter(|r| r["event"] == "done" && r["key"].as_str().unwrap_or("").contains(&format!("/volumes/{v}/")))
        .map(|r| r["call"].as_str().unwrap().to_owned())
        .collect()
}

/// Evacuation moves a stopped machine with the volumes attached to it: each is detached and
/// exported on the source, imported and attached on the target, and after the switch the target
/// keeps it and the source's copy is deleted. A move that fails (a fault at the switch) unwinds
/// to the source: the target's copies are dropped and the volumes attached there again.
#[tokio::test]
async fn evacuate_moves_a_stopped_machine_with_its_volumes() {
    let s = hosts_mode(&[]).await;
    let src = SimAgent::start(&s, "src", &[]).await;
    let id = create_succeeded(&s, "mover", "IMG-ubuntu-2404").await;
    let dst = SimAgent::start(&s, "dst", &[]).await;
    let vols = [volume_on(&s, &id, "one").await, volume_on(&s, &id, "two").await];
    for v in &vols {
        assert_eq!(kept_on(&s, v).await.as_deref(), Some("src"));
    }
    act(&s, &id, "shutdown").await;

    // A move that fails at the switch: machine and volumes stay on the source.
    let fault = json!({"kind": "instance.evacuate", "step": "switch", "mode": "once"});
    s.admin(Method::POST, "/admin/v1/faults", Some(fault)).await.ok_rows();
    let ev = s.admin(Method::POST, "/admin/v1/hosts/src/evacuate", None).await.ok_rows()[0].clone();
    assert_eq!(ev["left"], json!([]), "{ev}");
    let op = s.wait_operation(ev["moving"][0]["operation_id"].as_str().unwrap()).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert_eq!(placements(&s).await[&id], "src");
    assert_eq!(openwinv_tests::hosts::instance(&s, &id).await["status"], "off");
    for v in &vols {
        assert_eq!(kept_on(&s, v).await.as_deref(), Some("src"), "{v}");
        let row = volume(&s, v).await;
        assert_eq!((row["status"].as_str(), row["instance_id"].as_str()), (Some("in-use"), Some(id.as_str())), "{row}");
        // Copied to the target, then taken back: dropped there, attached on the source again.
        let on_src = volume_calls(&src, v);
        assert_eq!(&on_src[..2], ["detach_volume", "export_volume"], "{on_src:?}");
        assert!(on_src[2..].iter().all(|c| c == "attach_volume") && on_src.len() > 2, "{on_src:?}");
        let on_dst = volume_calls(&dst, v);
        assert_eq!(&on_dst[..2], ["import_volume", "attach_volume"], "{on_dst:?}");
        let dropped = on_dst.iter().position(|c| c == "delete_volume").unwrap_or_else(|| panic!("{on_dst:?}"));
        assert!(on_dst[2..dropped].iter().all(|c| c == "detach_volume"), "{on_dst:?}");
    }
    assert!(!dst.machines().contains_key(&id), "the target's copy of the machine is destroyed");
    assert_eq!(src.machines().get(&id).map(String::as_str), Some("stopped"));
    assert_eq!(count(&src, "delete_volume"), 0, "the source keeps every volume: {:?}", calls(&src));

    // Again, without the fault: the machine and both volumes move.
    let ev = s.admin(Method::POST, "/admin/v1/hosts/src/evacuate", None).await.ok_rows()[0].clone();
    let op = s.wait_operation(ev["moving"][0]["operation_id"].as_str().unwrap()).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert_eq!(placements(&s).await[&id], "dst");
    for v in &vols {
        assert_eq!(kept_on(&s, v).await.as_deref(), Some("dst"), "{v}");
        let row = volume(&s, v).await;
        assert_eq!((row["status"].as_str(), row["instance_id"].as_str()), (Some("in-use"), Some(id.as_str())), "{row}");
        let on_src = volume_calls(&src, v);
        assert_eq!(on_src.last().map(String::as_str), Some("delete_volume"), "the source's copy goes: {on_src:?}");
        let on_dst = volume_calls(&dst, v);
        assert_eq!(&on_dst[on_dst.len() - 2..], ["import_volume", "attach_volume"], "{on_dst:?}");
    }
    assert_eq!(count(&src, "delete_volume"), 2, "{:?}", calls(&src));
    assert!(!src.machines().contains_key(&id), "the source's copy of the machine is destroyed");
    assert_eq!(s.db_count("SELECT COUNT(*) FROM placement_moves").await, 0);

    // On the target they work as any volume: the machine starts there, a volume detaches and is
    // deleted there.
    act(&s, &id, "start").await;
    assert_eq!(dst.did("start", &id), 1);
    let v = &vols[0];
    let dropped = count(&dst, "delete_volume");
    succeeded(&s, s.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await).await;
    succeeded(&s, s.call(Method::DELETE, &format!("/v1/block-storages/{v}"), None).await).await;
    assert_eq!(count(&dst, "delete_volume"), dropped + 1, "{:?}", calls(&dst));
    assert_eq!(count(&src, "delete_volume"), 2, "{:?}", calls(&src));
}

/// A move that fails after some of the machine's volumes moved: the target refuses the second
/// volume's import (`--sim-refuse`), after the first was imported and attached there. The move
/// unwinds: the first volume's copy on the target is dropped, both volumes are kept on the
/// source and attached to the machine there, which stays on the source, stopped.
#[tokio::test]
async fn a_move_that_fails_after_one_volume_moved_takes_it_back() {
    let s = hosts_mode(&[]).await;
    let src = SimAgent::start(&s, "src", &[]).await;
    let id = create_succeeded(&s, "mover", "IMG-ubuntu-2404").await;
    let dst = SimAgent::start(&s, "dst", &["--sim-refuse", "import_volume:2"]).await;
    let vols = [volume_on(&s, &id, "one").await, volume_on(&s, &id, "two").await];
    act(&s, &id, "shutdown").await;

    let ev = s.admin(Method::POST, "/admin/v1/hosts/src/evacuate", None).await.ok_rows()[0].clone();
    let op = s.wait_operation(ev["moving"][0]["operation_id"].as_str().unwrap()).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert!(op.to_string().contains("the simulated host refuses run 2 of import_volume"), "{op}");
    let imports: Vec<String> = vols.iter().filter(|v| !volume_calls(&dst, v).is_empty()).cloned().collect();
    assert_eq!(count(&dst, "import_volume"), 2, "{:?}", calls(&dst));
    assert_eq!(imports.len(), 2, "both imports were tried: {:?}", calls(&dst));
    // The volume that moved (imported and attached there) was taken back, and the one refused
    // is cleaned up alike: each detached and dropped on the target.
    let moved: Vec<&String> =
        vols.iter().filter(|v| volume_calls(&dst, v).contains(&"attach_volume".to_owned())).collect();
    assert_eq!(moved.len(), 1, "one volume moved before the refusal: {:?}", calls(&dst));
    for v in &vols {
        let on_dst = volume_calls(&dst, v);
        assert_eq!(&on_dst[on_dst.len() - 2..], ["detach_volume", "delete_volume"], "{v}: {on_dst:?}");
    }
    for v in &vols {
        assert_eq!(kept_on(&s, v).await.as_deref(), Some("src"), "{v}");
        let row = volume(&s, v).await;
        assert_eq!((row["status"].as_str(), row["instance_id"].as_str()), (Some("in-use"), Some(id.as_str())), "{row}");
        let on_src = volume_calls(&src, v);
        assert_eq!(
            on_src.last().map(String::as_str),
            Some("attach_volume"),
            "attached on the source again: {on_src:?}"
        );
    }
    assert_eq!(count(&src, "delete_volume"), 0, "the source keeps every volume: {:?}", calls(&src));
    assert_eq!(placements(&s).await[&id], "src");
    assert_eq!(openwinv_tests::hosts::instance(&s, &id).await["status"], "off");
    assert!(!dst.machines().contains_key(&id), "the target's copy of the machine is destroyed");
    assert_eq!(src.machines().get(&id).map(String::as_str), Some("stopped"));
    assert_eq!(s.db_count("SELECT COUNT(*) FROM placement_moves").await, 0);

    // It starts where it is, with both volumes.
    let starts = src.did("start", &id);
    act(&s, &id, "start").await;
    assert_eq!(src.did("start", &id), starts + 1);
}
