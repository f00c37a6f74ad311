//! The versions of a network's peer lists (`Store::network_peers`, migration 0030): each list
//! read gets a higher one than the last, also after the network's row was deleted (an
//! `admin reset`) or put back older (a restored snapshot), so an agent that applied a list
//! before takes the next.

mod common;
use common::{close, open};

#[tokio::test]
async fn peer_list_versions_only_grow_across_a_reset_and_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    assert_eq!(store.network_peers("ACC-n", "KR1-Z01", None, 1_000).await.unwrap(), None, "no network yet");
    let vni = store.network_vni("ACC-n", "KR1-Z01", 0).await.unwrap();
    let version = |now_ms: i64| {
        let store = &store;
        async move {
            let (v, version, hosts) = store.network_peers("ACC-n", "KR1-Z01", None, now_ms).await.unwrap().unwrap();
            assert_eq!((v, hosts.len()), (vni, 0));
            version
        }
    };
    assert_eq!(version(1_000).await, 1_000, "the host's time");
    assert_eq!(version(1_000).await, 1_001, "one more in the same millisecond");
    assert_eq!(version(900).await, 1_002, "one more when the clock is behind");
    assert_eq!(version(5_000).await, 5_000);

    // A restored snapshot puts an older version back: the next is still higher.
    sqlx::query("UPDATE networks SET peers_version = 3").execute(store.writer()).await.unwrap();
    assert!(version(6_000).await > 5_000);
    // A reset deletes the row; the network made again starts from the host's time.
    sqlx::query("DELETE FROM networks").execute(store.writer()).await.unwrap();
    let vni = store.network_vni("ACC-n", "KR1-Z01", 0).await.unwrap();
    let (_, after_reset, _) = store.network_peers("ACC-n", "KR1-Z01", None, 7_000).await.unwrap().unwrap();
    assert!(after_reset > 6_000, "{after_reset} for VNI {vni}");
    close(&store).await;
}
