//! Rows written by an earlier release mean the same after the migrations of this one, on the
//! store this run tests (`OPENWINV_TEST_STORE=sqlite`, the default, or `=postgres` with
//! `OPENWINV_TEST_DATABASE_URL`).

use std::borrow::Cow;

use openwinv_store::Store;
use sqlx::migrate::Migrator;

mod common;

/// The migrations of this release up to and including `last`.
fn up_to(migrator: Migrator, last: i64) -> Migrator {
    let kept: Vec<_> = migrator.migrations.iter().filter(|m| m.version <= last).cloned().collect();
    Migrator { migrations: Cow::Owned(kept), ..migrator }
}

/// Operations as a release before `place` wrote them: (id, kind, status, step, undoing, waited_step).
const ROWS: &[(&str, &str, &str, i64, i64, i64)] = &[
    // Forward at create_machine (index 1 then) with its delay waited for.
    ("OP-forward", "instance.create", "running", 1, 0, 1),
    // Undoing, next undo create_volumes (index 2 then), no delay waited.
    ("OP-undoing", "instance.create", "running", 2, 1, -1),
    // Done: nothing to move.
    ("OP-done", "instance.create", "succeeded", 7, 0, 6),
    ("OP-undone", "instance.create", "running", -1, 1, -1),
    // Another kind's steps did not change.
    ("OP-start", "instance.start", "running", 1, 0, 0),
];

#[tokio::test]
async fn create_operations_in_flight_keep_their_step_when_place_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let (url, pg) = common::fresh_url(dir.path()).await;

    // The database as the release before wrote it: migrations up to 0020, then its rows.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
    let before =
        if pg.is_some() { sqlx::migrate!("./migrations/postgres") } else { sqlx::migrate!("./migrations/sqlite") };
    up_to(before, 20).run(&pool).await.expect("the earlier release's migrations");
    sqlx::query("INSERT INTO accounts (account_id, name, enabled, created_at) VALUES ('ACC-1', 'acme', 1, 0)")
        .execute(&pool)
        .await
        .unwrap();
    for (id, kind, status, step, undoing, waited) in ROWS {
        sqlx::query(
            "INSERT INTO operations (operation_id, account_id, kind, resource_id, status, step, undoing, params, \
             waited_step, next_run_at, created_at) VALUES ($1, 'ACC-1', $2, 'INSTANCE-1', $3, $4, $5, '{}', $6, 0, 0)",
        )
        .bind(id)
        .bind(kind)
        .bind(status)
        .bind(step)
        .bind(undoing)
        .bind(waited)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    // This release opens it: the rest of the migrations run.
    let store = Store::open(&url).await.expect("open the store");
    store.close().await;
    let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
    // 0021 moves every running create one step on (`place` came first), 0024 those at or past
    // index 2 once more (`set_peers` came after `allocate_addresses`).
    let expected: &[(&str, i64, i64)] =
        &[("OP-forward", 3, 3), ("OP-undoing", 4, -1), ("OP-done", 7, 6), ("OP-undone", -1, -1), ("OP-start", 1, 0)];
    for (id, step, waited) in expected {
        let got: (i64, i64) = sqlx::query_as("SELECT step, waited_step FROM operations WHERE operation_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(got, (*step, *waited), "{id}");
    }
    pool.close().await;
    if let Some((base, name)) = pg {
        common::drop_database(&base, &name).await;
    }
}
