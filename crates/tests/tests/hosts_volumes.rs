//! Volumes on hypervisor hosts (docs/hosts.md "Volumes"), through the real binaries: a control
//! plane in hosts mode (SQLite or PostgreSQL) and two sim agents. A volume's storage is made on
//! the host of the instance it is first attached to, stays there when detached, moves (export on
//! the old host, import on the new one, delete on the old) when it is attached to an instance on
//! another host, and is deleted on the host that keeps it. Evacuation leaves a machine with
//! volumes attached where it is, saying why.

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

    // Evacuating the host of an instance with a volume attached leaves it there, saying why.
    act(&s, &b, "shutdown").await;
    let ev = s.admin(Method::POST, &format!("/admin/v1/hosts/{}/evacuate", host_b.name), None).await;
    let ev = ev.ok_rows()[0].clone();
    assert_eq!(ev["moving"], json!([]), "{ev}");
    let left = &ev["left"][0];
    assert_eq!(left["instance_id"], json!(b), "{ev}");
    assert!(left["reason"].as_str().unwrap().contains(&v), "{ev}");

    // Deleted: on the host that keeps it, and nowhere else.
    succeeded(&s, s.call(Method::POST, &format!("/v1/block-storages/{v}/detach"), None).await).await;
    succeeded(&s, s.call(Method::DELETE, &format!("/v1/block-storages/{v}"), None).await).await;
    assert_eq!(count(host_b, "delete_volume"), 1, "{:?}", calls(host_b));
    assert_eq!(count(host_a, "delete_volume"), 1, "only the move's: {:?}", calls(host_a));
}
