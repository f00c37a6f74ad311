//! Planner statistics follow a table that grows faster than autovacuum looks
//! (`Store::refresh_statistics`, docs/perf.md "Load that grows").

use std::time::Duration;

use openwinv_store::Backend;
use openwinv_store::statistics::MIN_CHANGED;

mod common;
use common::{close, open};

#[tokio::test]
async fn a_table_that_doubled_is_analyzed_at_once_and_then_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    if store.backend() == Backend::Sqlite {
        // SQLite plans from the index's order without statistics: nothing to refresh.
        assert_eq!(store.refresh_statistics().await.unwrap(), Vec::<String>::new());
        close(&store).await;
        return;
    }
    // More changed rows than the table held at its last analyze (never, here): a doubling.
    sqlx::query(
        "INSERT INTO usage_changes (account_id, version, resource_id) \
         SELECT 'ACC-grow', v, 'INSTANCE-x' FROM generate_series(1, $1) AS v",
    )
    .bind(MIN_CHANGED * 2)
    .execute(store.pool())
    .await
    .unwrap();
    // The server's statistics reach pg_stat_user_tables within a second or so of the insert.
    let mut analyzed = Vec::new();
    for _ in 0..100 {
        analyzed = store.refresh_statistics().await.unwrap();
        if analyzed.iter().any(|t| t == "usage_changes") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(analyzed.iter().any(|t| t == "usage_changes"), "analyzed: {analyzed:?}");
    let (reltuples,): (f64,) =
        sqlx::query_as("SELECT CAST(reltuples AS DOUBLE PRECISION) FROM pg_class WHERE relname = 'usage_changes'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(reltuples as i64, MIN_CHANGED * 2, "the planner now knows the table's size");
    // A few more rows are not another doubling.
    sqlx::query("INSERT INTO usage_changes (account_id, version, resource_id) VALUES ('ACC-grow', 0, 'INSTANCE-y')")
        .execute(store.pool())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = store.refresh_statistics().await.unwrap();
    assert!(!again.iter().any(|t| t == "usage_changes"), "analyzed again: {again:?}");
    close(&store).await;
}
