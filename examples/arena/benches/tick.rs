#![allow(missing_docs)]
//! One arena cell's tick: 10,000 monsters (each looking 30 m around it once
//! a second and chasing, striking and cooling down on timers) and 1,000
//! fighters with witnesses (regenerating on a timer, taking the monsters'
//! strikes), on a 2 km square. One iteration is one tick of the cell,
//! behaviours, calls, witnesses and all, with what it sends drained.
//!
//! Run: `cargo bench -p tessera-arena --bench tick`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::{RngExt, SeedableRng};
use std::time::Duration;
use tessera::proto::app::{AppMsg, CellState};
use tessera::{AppId, EntityId, IdBlock, Time};
use tessera_cellapp::cell::{Cell, CellConfig};
use tessera_cellapp::index::IndexKind;

const SIDE: f32 = 2000.0;
const MONSTERS: usize = 10_000;
const FIGHTERS: usize = 1_000;

fn cell(index: IndexKind) -> Cell {
    let game = tessera_arena::game();
    let defs = game.definitions().clone();
    let cfg = CellConfig {
        bounds: [0.0, 0.0, SIDE, SIDE],
        index,
        ghost_distance: defs.max_aoi_radius() + 10.0,
        ..CellConfig::default()
    };
    let mut cell = Cell::new(
        &defs,
        game.cell_behaviors().clone(),
        cfg,
        IdBlock {
            next: 1,
            end: 1 << 40,
        },
    );
    cell.spawn("Monster", MONSTERS);
    let fighter = defs.by_name("Fighter").map_or(tessera::TypeId(0), |t| t.id);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for i in 0..FIGHTERS {
        cell.handle(
            Time(0),
            AppId(2),
            AppMsg::CreateEntity {
                entity: EntityId((1 << 41) + i as u64),
                type_id: fighter,
                state: CellState {
                    pos: [
                        rng.random_range(0.0..SIDE),
                        0.0,
                        rng.random_range(0.0..SIDE),
                    ],
                    yaw: 0.0,
                    props: vec![],
                },
                version: 0,
            },
        );
    }
    // Warm up: every witness learns its surroundings, monsters find prey.
    for t in 1..=20 {
        cell.tick(Time(t * 100_000));
        cell.drain();
    }
    cell
}

fn ticks(c: &mut Criterion) {
    let mut group = c.benchmark_group("arena");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(15));
    for index in [IndexKind::RTree, IndexKind::Grid] {
        let mut cell = cell(index);
        let mut now = 3_000_000u64;
        group.bench_function(BenchmarkId::new("tick", index), |b| {
            b.iter(|| {
                now += 100_000;
                cell.tick(Time(now));
                std::hint::black_box(cell.drain().len())
            })
        });
        let s = cell.stats();
        eprintln!(
            "arena/{index}: {} reals ({} with witnesses), {} game panics",
            s.reals, s.witnesses, s.game_panics
        );
    }
    group.finish();
}

criterion_group!(benches, ticks);
criterion_main!(benches);
