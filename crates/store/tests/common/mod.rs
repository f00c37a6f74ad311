//! The store a test runs on: `OPENWINV_TEST_STORE=sqlite` (the default) or `=postgres` with
//! `OPENWINV_TEST_DATABASE_URL` (asking for PostgreSQL without a URL fails the test).

use openwinv_store::Store;
use sqlx::Connection;

/// A fresh, empty database: a SQLite file in `dir`, or a new PostgreSQL database. Returns its URL
/// and, on PostgreSQL, the server's URL and the database's name (to drop it: [`drop_database`]).
#[allow(dead_code)] // not every test file uses every helper
pub async fn fresh_url(dir: &std::path::Path) -> (String, Option<(String, String)>) {
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
            (format!("{head}/{name}"), Some((base, name)))
        }
        Ok("sqlite") | Err(_) => (format!("sqlite://{}?mode=rwc", dir.join("t.db").display()), None),
        Ok(other) => panic!("OPENWINV_TEST_STORE must be sqlite or postgres, not {other}"),
    }
}

/// Drops a PostgreSQL database made by [`fresh_url`], with whatever is still connected to it.
#[allow(dead_code)]
pub async fn drop_database(base: &str, name: &str) {
    let mut conn = sqlx::postgres::PgConnection::connect(base).await.expect("connect to PostgreSQL");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.expect("drop");
}

/// A store on a fresh database ([`fresh_url`]; dropped by [`close`]).
#[allow(dead_code)]
pub async fn open(dir: &std::path::Path) -> Store {
    Store::open(&fresh_url(dir).await.0).await.expect("open the store")
}

/// Closes the store and drops its PostgreSQL database (its own only: other tests run at the
/// same time in other processes, and a database one has just created has no connection yet).
#[allow(dead_code)]
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
        drop_database(&std::env::var("OPENWINV_TEST_DATABASE_URL").unwrap(), &name).await;
    }
}
