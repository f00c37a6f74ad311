//! The page cache's view versions (migrations 0025, 0030): one new version for each transaction
//! that changes what an account's instance views show, however many rows it changed.

use openwinv_store::Backend;

mod common;
use common::{close, open};

async fn version(store: &openwinv_store::Store, account: &str) -> i64 {
    store.view_version(account).await.unwrap().account
}

#[tokio::test]
async fn a_transaction_that_changes_many_instances_moves_the_version_once_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for account in ["ACC-views-a", "ACC-views-b"] {
        sqlx::query("INSERT INTO accounts (account_id, name, created_at) VALUES ($1, $1, 0)")
            .bind(account)
            .execute(store.writer())
            .await
            .unwrap();
    }
    let insert = "INSERT INTO instances (instance_id, account_id, name, status, power, zone_id, flavor_id, \
                  image_id, username, password_sealed, ssh_keys, attach_public_ip, created_at, vcpu) \
                  VALUES ($1, $2, 'n', 'active', 'on', 'KR1-Z01', 'ss1.c1m1', 'IMG-x', 'root', '', '[]', 0, 0, 1)";
    // Five rows of one account and two of another, in one transaction.
    let mut tx = store.writer().begin().await.unwrap();
    for (i, account) in ["ACC-views-a"; 5].into_iter().chain(["ACC-views-b"; 2]).enumerate() {
        sqlx::query(insert).bind(format!("INSTANCE-v{i}")).bind(account).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let (a, b) = (version(&store, "ACC-views-a").await, version(&store, "ACC-views-b").await);
    // Then every row of both accounts changed, again in one transaction, and one row alone.
    sqlx::query("UPDATE instances SET name = 'renamed'").execute(store.writer()).await.unwrap();
    let (a2, b2) = (version(&store, "ACC-views-a").await, version(&store, "ACC-views-b").await);
    sqlx::query("UPDATE instances SET name = 'again' WHERE instance_id = 'INSTANCE-v0'")
        .execute(store.writer())
        .await
        .unwrap();
    let a3 = version(&store, "ACC-views-a").await;
    match store.backend() {
        // Bumped at commit, once per account and transaction.
        Backend::Postgres => {
            assert_eq!((a, b), (1, 1), "the inserts");
            assert_eq!((a2, b2), (2, 2), "the update of seven rows");
        }
        // SQLite's triggers run row by row (its migration 0030 changes nothing): still a new
        // version for every change.
        Backend::Sqlite => {
            assert_eq!((a, b), (5, 2), "the inserts");
            assert_eq!((a2, b2), (10, 4), "the update of seven rows");
        }
    }
    assert_eq!(a3, a2 + 1, "a later transaction moves the version again");
    assert_eq!(version(&store, "ACC-views-b").await, b2, "another account's change leaves it alone");
    close(&store).await;
}
