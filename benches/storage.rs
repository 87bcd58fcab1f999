#![allow(missing_docs)]
//! Storage throughput, SQLite against PostgreSQL, as a manager and a
//! baseapp use them (one handle, one thread):
//!
//! - *saves*: batches of 100 changed entities of 200 bytes each, one
//!   transaction a batch, as a baseapp's storage thread writes them;
//! - *logins*: an existing account's login with argon2id at its default
//!   cost (19 MiB, 2 passes), as one of the manager's account threads
//!   checks it; and the same at the lowest cost, which leaves the
//!   database's own part.
//!
//! SQLite runs in a temporary file (WAL, `synchronous=FULL`). PostgreSQL
//! runs where `TESSERA_TEST_POSTGRES` says, in a schema of its own; without
//! it the PostgreSQL rows are skipped.
//!
//! Run: `TESSERA_TEST_POSTGRES=postgres://… cargo bench -p tessera --bench storage`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tessera::storage::{HashCost, Location, Storage, StoredEntity};

const BATCH: usize = 100;
const ROWS: usize = 1_000;

/// The backends to measure: a name, and a way to open a handle with a cost.
fn backends(dir: &std::path::Path) -> Vec<(&'static str, Location)> {
    let mut out = vec![("sqlite", Location::Sqlite(dir.join("bench.db")))];
    match std::env::var("TESSERA_TEST_POSTGRES") {
        Ok(server) if !server.is_empty() => {
            let schema = format!("tessera_bench_{}", std::process::id());
            fresh_schema(&server, &schema);
            let sep = if server.contains('?') { '&' } else { '?' };
            out.push((
                "postgres",
                Location::Postgres(format!("{server}{sep}options=-c%20search_path%3D{schema}")),
            ));
        }
        _ => eprintln!("postgres skipped: TESSERA_TEST_POSTGRES is not set"),
    }
    out
}

fn fresh_schema(server: &str, schema: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .expect("the server answers");
        let driven = tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
            ))
            .await
            .expect("schema");
        drop(client);
        let _ = driven.await;
    });
}

fn handle(location: &Location, cost: HashCost) -> Box<dyn Storage> {
    location
        .connect(cost)
        .and_then(|db| db.handle())
        .expect("the database opens")
}

const CHEAPEST: HashCost = HashCost {
    memory_kib: 8,
    iterations: 1,
    parallelism: 1,
};

fn saves(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("saves");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(10));
    for (name, location) in backends(dir.path()) {
        let mut db = handle(&location, CHEAPEST);
        let rows: Vec<StoredEntity> = (0..ROWS)
            .map(|i| {
                let id = db.create_entity("Avatar", 1, &[0; 200]).expect("entity");
                StoredEntity {
                    db_id: id,
                    type_name: "Avatar".into(),
                    format_version: 1,
                    data: vec![i as u8; 200],
                    fence: 0,
                }
            })
            .collect();
        let mut next = 0;
        group.bench_function(BenchmarkId::new("batch of 100", name), |b| {
            b.iter(|| {
                let batch = &rows[next..next + BATCH];
                next = (next + BATCH) % ROWS;
                db.save_entities(batch).expect("saved")
            })
        });
    }
    group.finish();
}

fn logins(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("logins");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for (name, location) in backends(dir.path()) {
        for (cost_name, cost) in [
            ("argon2 default", HashCost::default()),
            ("argon2 cheapest", CHEAPEST),
        ] {
            let mut db = handle(&location, cost);
            let user = format!("bench_{}", cost.memory_kib);
            db.login(&user, "bench-password", true).expect("account");
            group.bench_function(BenchmarkId::new(cost_name, name), |b| {
                b.iter(|| db.login(&user, "bench-password", false).expect("login"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, saves, logins);
criterion_main!(benches);
