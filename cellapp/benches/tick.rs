#![allow(missing_docs)]
//! One cell tick, both spatial indexes, on two workloads:
//!
//! - *dense*: 8,000 entities all moving in 2,000 × 2,000 m, 160 witnesses
//!   with AoI radius 256 m, each client's default byte budget filled and
//!   encoded to client bytes;
//! - *large*: 50,000 entities all moving in 4,000 × 4,000 m, 2,000
//!   witnesses with AoI radius 100 m.
//!
//! Run: `cargo bench -p tessera-cellapp --bench tick`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use glam::Vec3;
use rand::{RngExt, SeedableRng};
use std::path::Path;
use std::time::Duration;
use tessera::proto::app::{AppMsg, CellState};
use tessera::{AppId, Definitions, IdBlock, Time};
use tessera_cellapp::behavior::{Behaviors, CellBehavior, Ctx};
use tessera_cellapp::cell::{Cell, CellConfig};
use tessera_cellapp::index::IndexKind;
use tessera_cellapp::witness::Budget;

/// Moves every entity every tick in a straight line, bouncing off the edges.
struct Drift;

impl CellBehavior for Drift {
    fn tick(&self, ctx: &mut Ctx<'_>) {
        let [x0, z0, x1, z1] = ctx.bounds();
        let speed = ctx.def().max_speed * ctx.dt();
        let (pos, yaw) = (ctx.pos(), ctx.yaw());
        let mut dir = Vec3::new(yaw.sin(), 0.0, yaw.cos());
        let mut next = pos + dir * speed;
        if next.x < x0 || next.x > x1 || next.z < z0 || next.z > z1 {
            dir = -dir;
            next = pos + dir * speed;
        }
        let yaw = if ctx.rng().random_ratio(1, 50) {
            yaw + ctx.rng().random_range(-1.0..1.0)
        } else {
            dir.x.atan2(dir.z)
        };
        ctx.move_to(next, yaw);
    }
}

fn defs(aoi: f32) -> Definitions {
    let text = format!(
        r#"
        [types.Walker]
        max_speed = 5.0
        [types.Walker.properties]
        mood = {{ type = "int", flags = "OTHER_CLIENTS" }}
        [types.Watcher]
        has_client = true
        aoi_radius = {aoi}
        max_speed = 5.0
        [types.Watcher.properties]
        mood = {{ type = "int", flags = "OTHER_CLIENTS" }}
        "#
    );
    match Definitions::parse(&text, Path::new("bench.toml")) {
        Ok(d) => d,
        Err(e) => panic!("bench definitions: {e}"),
    }
}

struct Workload {
    name: &'static str,
    size: f32,
    entities: usize,
    witnesses: usize,
    aoi: f32,
}

fn cell(w: &Workload, index: IndexKind) -> Cell {
    let defs = defs(w.aoi);
    let mut behaviors = Behaviors::default();
    behaviors.register("Walker", Drift);
    behaviors.register("Watcher", Drift);
    let cfg = CellConfig {
        bounds: [0.0, 0.0, w.size, w.size],
        tick_hz: 10,
        index,
        // What every client gets by default.
        budget: Budget::default(),
        backup_ticks: 50,
        seed: 3,
        ghost_distance: 110.0,
        app: AppId(1),
        ..CellConfig::default()
    };
    let mut cell = Cell::new(
        &defs,
        behaviors,
        cfg,
        IdBlock {
            next: 1,
            end: 1 << 40,
        },
    );
    cell.spawn("Walker", w.entities - w.witnesses);
    let watcher = defs.by_name("Watcher").map_or(tessera::TypeId(1), |t| t.id);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for i in 0..w.witnesses {
        cell.handle(
            Time(0),
            AppId(1),
            AppMsg::CreateEntity {
                entity: tessera::EntityId((1 << 41) + i as u64),
                type_id: watcher,
                state: CellState {
                    pos: [
                        rng.random_range(0.0..w.size),
                        0.0,
                        rng.random_range(0.0..w.size),
                    ],
                    yaw: rng.random_range(0.0..std::f32::consts::TAU),
                    props: vec![],
                },
                version: 0,
            },
        );
    }
    // Warm up: every witness learns its surroundings.
    for t in 0..3 {
        cell.tick(Time(t * 100_000));
        cell.drain();
    }
    cell
}

fn ticks(c: &mut Criterion) {
    let workloads = [
        Workload {
            name: "dense",
            size: 2000.0,
            entities: 8000,
            witnesses: 160,
            aoi: 256.0,
        },
        Workload {
            name: "large",
            size: 4000.0,
            entities: 50_000,
            witnesses: 2000,
            aoi: 100.0,
        },
    ];
    for w in &workloads {
        let mut group = c.benchmark_group(format!("tick/{}", w.name));
        group.sample_size(30);
        group.measurement_time(Duration::from_secs(10));
        for index in [IndexKind::RTree, IndexKind::Grid] {
            let mut cell = cell(w, index);
            let mut now = 1_000_000u64;
            group.bench_function(BenchmarkId::from_parameter(index), |b| {
                b.iter(|| {
                    now += 100_000;
                    cell.tick(Time(now));
                    let out = cell.drain();
                    std::hint::black_box(out.len())
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, ticks);
criterion_main!(benches);
