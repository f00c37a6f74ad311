//! The store's PostgreSQL connections dropped under it (the database restarted, a proxy closed
//! them): a connection idle for [`PING_WHEN_IDLE_FOR`] or more is pinged before use and
//! replaced, so every statement after that succeeds.

use openwinv_store::{Backend, PING_WHEN_IDLE_FOR};

mod common;
use common::{close, open};

/// 16 statements at once, each holding its connection for a moment: every connection of the
/// pool is used. The errors.
async fn burst(store: &openwinv_store::Store) -> Vec<String> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let pool = store.pool().clone();
        set.spawn(
            async move { sqlx::query("SELECT pg_sleep(0.02)").execute(&pool).await.err().map(|e| e.to_string()) },
        );
    }
    set.join_all().await.into_iter().flatten().collect()
}

#[tokio::test]
async fn connections_dropped_while_idle_are_replaced_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    if store.backend() == Backend::Sqlite {
        // A SQLite file has no connection to drop, and its pool never pings.
        close(&store).await;
        return;
    }
    assert_eq!(burst(&store).await, Vec::<String>::new());
    let url = std::env::var("OPENWINV_TEST_DATABASE_URL").unwrap();
    let (db,): (String,) = sqlx::query_as("SELECT current_database()::text").fetch_one(store.pool()).await.unwrap();
    let admin = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    let (dropped,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1) AS t",
    )
    .bind(&db)
    .fetch_one(&admin)
    .await
    .unwrap();
    admin.close().await;
    assert!(dropped >= 8, "the pool's connections were dropped: {dropped}");
    tokio::time::sleep(PING_WHEN_IDLE_FOR + std::time::Duration::from_millis(200)).await;
    for round in 0..3 {
        assert_eq!(burst(&store).await, Vec::<String>::new(), "round {round} after the drop");
    }
    close(&store).await;
}
