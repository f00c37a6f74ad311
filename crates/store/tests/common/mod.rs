//! The store a test runs on: `OPENWINV_TEST_STORE=sqlite` (the default) or `=postgres` with
//! `OPENWINV_TEST_DATABASE_URL` (asking for PostgreSQL without a URL fails the test).

use openwinv_store::Store;
use sqlx::Connection;

/// A fresh database: a SQLite file in `dir`, or a new PostgreSQL database (dropped by [`close`]).
pub async fn open(dir: &std::path::Path) -> Store {
    match std::env::var("OPENWINV_TEST_STORE").as_deref() {
        Ok("postgres") => {
            let base = std::env::var("OPENWINV_TEST_DATABASE_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .expect("OPENWINV_TEST_STORE=postgres needs OPENWINV_TEST_DATABASE_URL");
            let name = format!("owp_{}", rand::random::<u64>());
            let mut conn = sqlx::postgres::PgConnection::connect(&base).await.expect("connect to PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
            let (head, _) = base.rsplit_once('/').expect("a database URL with a path");
            Store::open(&format!("{head}/{name}")).await.expect("open the store")
        }
        Ok("sqlite") | Err(_) => {
            Store::open(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display())).await.expect("open the store")
        }
        Ok(other) => panic!("OPENWINV_TEST_STORE must be sqlite or postgres, not {other}"),
    }
}

/// Closes the store and drops its PostgreSQL database (its own only: other tests run at the
/// same time in other processes, and a database one has just created has no connection yet).
pub async fn close(store: &Store) {
    let own: Option<String> = if store.backend() == openwinv_store::Backend::Postgres {
        let (name,): (String,) =
            sqlx::query_as("SELECT current_database()::text").fetch_one(store.pool()).await.expect("database name");
        Some(name)
    } else {
        None
    };
    store.close().await;
    if let Some(name) = own {
        let base = std::env::var("OPENWINV_TEST_DATABASE_URL").unwrap();
        let mut conn = sqlx::postgres::PgConnection::connect(&base).await.expect("connect to PostgreSQL");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.expect("drop");
    }
}
