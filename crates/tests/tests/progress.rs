//! The store's batched progress save (the engine's group commit): every row of a batch is written
//! only while its writer holds the lease, a lost lease is reported per row, a park gives way to a
//! permit that arrived meanwhile, and the largest batch goes through in one statement. Runs on the
//! store this test run uses (SQLite or PostgreSQL).

use openwinv_store::operations::{MAX_PROGRESS_BATCH, PARKED, RUNNING, SUCCEEDED};
use openwinv_store::{NewOperation, Progress, Store};
use openwinv_tests::TestDatabase;

async fn store_with_operations(n: usize) -> (TestDatabase, Store, Vec<String>) {
    let db = TestDatabase::new().await;
    let store = Store::open(&db.url).await.expect("open store");
    let account = store.create_account("progress", 0).await.expect("account");
    let ids: Vec<String> = (0..n).map(|i| format!("OP-progress-{i:04}")).collect();
    let mut conn = store.writer().acquire().await.expect("connection");
    for id in &ids {
        let op = NewOperation {
            operation_id: id,
            account_id: &account.account_id,
            kind: "instance.start",
            resource_id: "INSTANCE-progress",
            params: "{}",
            now_ms: 1_000,
        };
        openwinv_store::operations::insert_operation(&mut conn, &op).await.expect("insert operation");
    }
    drop(conn);
    (db, store, ids)
}

fn progress(id: &str, step: i64) -> Progress {
    Progress {
        operation_id: id.into(),
        status: RUNNING.to_owned(),
        step,
        undoing: 0,
        params: format!(r#"{{"step":{step},"name":"서버-{step}"}}"#),
        error: None,
        attempts: 0,
        waited_step: -1,
        permits_used: 0,
        next_run_at: 2_000,
        finished_at: None,
        lease_until: Some(9_000),
    }
}

#[tokio::test]
async fn a_batch_writes_only_the_rows_whose_lease_its_writer_holds() {
    let (_db, store, ids) = store_with_operations(3).await;
    let claimed = store.claim_operations("WORKER-a", 1_000, 5_000, 1_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    // Another worker took the second one over (its lease had expired, say).
    let mut conn = store.writer().acquire().await.unwrap();
    sqlx::query("UPDATE operations SET lease_owner = 'WORKER-b' WHERE operation_id = $1")
        .bind(&ids[1])
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    let mut last = progress(&ids[2], 4);
    last.status = SUCCEEDED.to_owned();
    last.error = Some("없음 'quoted' \"text\"".to_owned());
    last.finished_at = Some(77);
    last.lease_until = None;
    let mut saved = store.save_progress("WORKER-a", &[progress(&ids[0], 1), progress(&ids[1], 1), last]).await.unwrap();
    saved.sort();
    assert_eq!(saved, vec![ids[0].clone(), ids[2].clone()], "the row another worker owns is not written");

    let first = store.operation(&ids[0]).await.unwrap().unwrap();
    assert_eq!((first.step, first.status.as_str(), first.next_run_at), (1, RUNNING, 2_000));
    assert_eq!(first.params, r#"{"step":1,"name":"서버-1"}"#);
    assert_eq!((first.lease_owner.as_deref(), first.lease_until), (Some("WORKER-a"), Some(9_000)));

    let taken = store.operation(&ids[1]).await.unwrap().unwrap();
    assert_eq!((taken.step, taken.params.as_str()), (0, "{}"), "untouched");
    assert_eq!(taken.lease_owner.as_deref(), Some("WORKER-b"));

    let done = store.operation(&ids[2]).await.unwrap().unwrap();
    assert_eq!((done.step, done.status.as_str(), done.finished_at), (4, SUCCEEDED, Some(77)));
    assert_eq!(done.error.as_deref(), Some("없음 'quoted' \"text\""));
    // A finished operation keeps the name of its last owner; only a running one gives it up.
    assert_eq!((done.lease_owner.as_deref(), done.lease_until), (Some("WORKER-a"), None));
}

#[tokio::test]
async fn a_park_gives_way_to_a_permit_and_a_released_lease_frees_the_operation() {
    let (_db, store, ids) = store_with_operations(2).await;
    store.claim_operations("WORKER-a", 1_000, 5_000, 1_000, 10).await.unwrap();
    // The operator granted a step while the worker was deciding to park the first operation.
    assert!(store.grant_permit(&ids[0]).await.unwrap());
    let mut park = progress(&ids[0], 1);
    park.next_run_at = PARKED;
    park.lease_until = None;
    let mut release = progress(&ids[1], 1);
    release.next_run_at = 3_000;
    release.lease_until = None;
    let saved = store.save_progress("WORKER-a", &[park, release]).await.unwrap();
    assert_eq!(saved.len(), 2);

    let parked = store.operation(&ids[0]).await.unwrap().unwrap();
    assert_eq!((parked.next_run_at, parked.permits), (0, 1), "the permit wins over the park");
    assert_eq!(parked.lease_owner, None);
    let released = store.operation(&ids[1]).await.unwrap().unwrap();
    assert_eq!((released.next_run_at, released.lease_owner, released.lease_until), (3_000, None, None));
    // Free again: another worker may claim it once it is due.
    let again = store.claim_operations("WORKER-b", 1_000, 5_000, 3_000, 10).await.unwrap();
    assert_eq!(again.len(), 2);
}

#[tokio::test]
async fn the_largest_batch_is_written_in_one_call() {
    let (_db, store, ids) = store_with_operations(MAX_PROGRESS_BATCH).await;
    let claimed = store.claim_operations("WORKER-a", 1_000, 5_000, 1_000, MAX_PROGRESS_BATCH as i64).await.unwrap();
    assert_eq!(claimed.len(), MAX_PROGRESS_BATCH);
    let batch: Vec<Progress> = ids.iter().enumerate().map(|(i, id)| progress(id, i as i64 % 7)).collect();
    let saved = store.save_progress("WORKER-a", &batch).await.unwrap();
    assert_eq!(saved.len(), MAX_PROGRESS_BATCH);
    for (i, id) in ids.iter().enumerate().step_by(37) {
        let op = store.operation(id).await.unwrap().unwrap();
        assert_eq!(op.step, i as i64 % 7, "{id}");
    }
    assert!(store.save_progress("WORKER-a", &[]).await.unwrap().is_empty());
}
