//! Tests of the PostgreSQL backend against a real server: the storage
//! contract every backend keeps (`storage::suite`), and PostgreSQL's own
//! migrations. `TESSERA_TEST_POSTGRES` names a server where these tests
//! may create schemas (`postgres://postgres@127.0.0.1:5432/postgres`);
//! each test works in a schema of its own and drops it after. Without one
//! they say so and check nothing, unless `TESSERA_POSTGRES_TESTS=required`
//! (as `.ci/run` sets), when that is a failure.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use super::super::suite::Backend;
use super::*;

const SERVER: &str = "TESSERA_TEST_POSTGRES";
const REQUIRED: &str = "TESSERA_POSTGRES_TESTS";

/// A cheap hash cost so tests run fast.
const CHEAP: HashCost = HashCost {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};

/// The server to test against, if there is one.
fn server() -> Option<String> {
    match std::env::var(SERVER) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var(REQUIRED).is_ok_and(|v| v == "required");
            assert!(
                !required,
                "{REQUIRED}=required but {SERVER} names no server"
            );
            eprintln!("skipped: no PostgreSQL server ({SERVER} is not set)");
            None
        }
    }
}

/// Runs `sql` on the server outside any test schema.
fn admin(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driven = tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
        drop(client);
        let _ = driven.await;
    });
}

/// A schema of one test's own, dropped with it.
struct Schema {
    server: String,
    name: String,
    url: String,
}

impl Schema {
    fn new(server: &str) -> Schema {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "tessera_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin(
            server,
            &format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name};"),
        );
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-c%20search_path%3D{name}");
        Schema {
            server: server.to_string(),
            name,
            url,
        }
    }

    fn connect(&self) -> Result<PgPool, StorageError> {
        PgPool::connect(&self.url, CHEAP)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        admin(
            &self.server,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE;", self.name),
        );
    }
}

/// The contract on a real server, each test in a schema of its own; a
/// second handle is a second pool, as another process would hold.
struct Postgres;

impl Backend for Postgres {
    type Guard = Schema;

    fn fresh() -> Option<(Schema, Box<dyn Storage>)> {
        let schema = Schema::new(&server()?);
        let db = schema.connect().unwrap().storage().unwrap();
        Some((schema, Box::new(db)))
    }

    fn again(schema: &Schema) -> Option<Box<dyn Storage>> {
        Some(Box::new(schema.connect().unwrap().storage().unwrap()))
    }
}

crate::storage::suite::storage_suite!(Postgres);

#[test]
fn a_newer_database_is_refused() {
    let Some(server) = server() else { return };
    let schema = Schema::new(&server);
    drop(schema.connect().unwrap());
    admin(
        &server,
        &format!(
            "UPDATE {}.tessera_schema SET version = {}",
            schema.name,
            schema::SCHEMA_VERSION + 1
        ),
    );
    match schema.connect() {
        Err(StorageError::Schema { found, supported }) => {
            assert_eq!(
                (found, supported),
                (schema::SCHEMA_VERSION + 1, schema::SCHEMA_VERSION)
            );
        }
        other => panic!("a newer schema was taken: {other:?}"),
    }
}

#[test]
fn processes_starting_at_once_migrate_once() {
    let Some(server) = server() else { return };
    let schema = Schema::new(&server);
    let pools: Vec<_> = std::thread::scope(|s| {
        let started: Vec<_> = (0..4).map(|_| s.spawn(|| schema.connect())).collect();
        started.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for p in &pools {
        assert!(p.is_ok(), "{p:?}");
    }
    let mut db = pools[0].as_ref().unwrap().storage().unwrap();
    let a = db.login("racer", "password1", true).unwrap();
    let mut other = pools[3].as_ref().unwrap().storage().unwrap();
    assert_eq!(other.login("racer", "password1", false).unwrap(), a);
}

#[test]
fn an_unreachable_server_is_named_without_its_password() {
    // Port 1 on loopback: nothing listens, so the connection is refused.
    let url = "postgres://tessera:secret@127.0.0.1:1/world";
    match PgPool::connect(url, CHEAP) {
        Err(e @ StorageError::Unreachable { .. }) => {
            let shown = e.to_string();
            assert!(shown.contains("127.0.0.1:1"), "{shown}");
            assert!(!shown.contains("secret"), "{shown}");
        }
        other => panic!("connected to nothing: {other:?}"),
    }
}

#[test]
fn a_malformed_url_is_refused() {
    match PgPool::connect("postgres://u:secret@[::1/x", CHEAP) {
        Err(e @ StorageError::BadLocation(_)) => assert!(!e.to_string().contains("secret"), "{e}"),
        other => panic!("a malformed URL was taken: {other:?}"),
    }
}
