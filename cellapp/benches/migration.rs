#![allow(missing_docs)]
//! How many migrations one cellapp core can hand off and take in: two cell
//! cores share a two-cell layout; every tick each of 2,000 entities jumps
//! across the line, so each tick every real is offloaded and taken in on the
//! other side (with its ghosts kept up). One iteration = a tick on each core
//! plus delivering everything between them, i.e. 4,000 migrations.
//!
//! Run: `cargo bench -p tessera-cellapp --bench migration`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glam::Vec3;
use std::path::Path;
use std::time::Duration;
use tessera::layout::{Layout, Rect};
use tessera::proto::app::AppMsg;
use tessera::{AppId, Definitions, IdBlock, Time};
use tessera_cellapp::behavior::{Behaviors, CellBehavior, Ctx};
use tessera_cellapp::cell::{Cell, CellConfig};
use tessera_cellapp::index::IndexKind;

const ENTITIES: usize = 2000;

/// Jumps across x = 500 every tick, farther than the offload hysteresis
/// past it, so the real moves cell every time.
struct Shuttle;

/// How far past the line a jump lands.
const JUMP: f32 = tessera_cellapp::cell::OFFLOAD_HYSTERESIS + 4.0;

impl CellBehavior for Shuttle {
    fn tick(&self, ctx: &mut Ctx<'_>) {
        let pos = ctx.pos();
        let x = if pos.x < 500.0 {
            500.0 + JUMP
        } else {
            500.0 - JUMP
        };
        ctx.move_to(Vec3::new(x, 0.0, pos.z), ctx.yaw());
    }
}

fn cell(app: u32, defs: &Definitions, layout: &Layout, ids: IdBlock) -> Cell {
    let mut behaviors = Behaviors::default();
    behaviors.register("Walker", Shuttle);
    let cfg = CellConfig {
        bounds: [0.0, 0.0, 1000.0, 1000.0],
        index: IndexKind::Grid,
        ghost_distance: 20.0,
        app: AppId(app),
        ..CellConfig::default()
    };
    let mut c = Cell::new(defs, behaviors, cfg, ids);
    c.handle(
        Time(0),
        AppId(0),
        AppMsg::Layout {
            layout: layout.clone(),
            cells: vec![],
        },
    );
    c
}

fn exchange(a: &mut Cell, b: &mut Cell, now: Time) -> usize {
    let mut n = 0;
    for (to, msg) in a.drain() {
        if to == AppId(2) {
            b.handle(now, AppId(1), msg);
            n += 1;
        }
    }
    n
}

fn migrations(c: &mut Criterion) {
    let defs = match Definitions::parse(
        "[types.Walker]\nmax_speed = 100.0\n[types.Walker.properties]\nmood = { type = \"int\", flags = \"OTHER_CLIENTS\" }\n",
        Path::new("bench.toml"),
    ) {
        Ok(d) => d,
        Err(e) => panic!("bench definitions: {e}"),
    };
    let layout = match Layout::equal(Rect::new(0.0, 0.0, 1000.0, 1000.0), &[AppId(1), AppId(2)]) {
        Ok(l) => l,
        Err(e) => panic!("layout: {e}"),
    };
    let mut a = cell(
        1,
        &defs,
        &layout,
        IdBlock {
            next: 1,
            end: 1 << 30,
        },
    );
    let mut b = cell(
        2,
        &defs,
        &layout,
        IdBlock {
            next: 1 << 30,
            end: 1 << 31,
        },
    );
    a.spawn("Walker", ENTITIES);
    let mut now = 0u64;
    let mut group = c.benchmark_group("migration");
    group.throughput(Throughput::Elements(2 * ENTITIES as u64));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("hand_off_and_take_in", |bench| {
        bench.iter(|| {
            now += 100_000;
            a.tick(Time(now));
            exchange(&mut a, &mut b, Time(now));
            b.tick(Time(now));
            let mut back = 0;
            for (to, msg) in b.drain() {
                if to == AppId(1) {
                    a.handle(Time(now), AppId(2), msg);
                    back += 1;
                }
            }
            std::hint::black_box(back)
        })
    });
    group.finish();
    let moved = a.stats().offloads + b.stats().offloads;
    assert!(moved > 0, "nothing migrated");
    eprintln!(
        "migrations: {} offloads, {} onloads on A; reals A {} B {}",
        a.stats().offloads,
        a.stats().onloads,
        a.stats().reals,
        b.stats().reals
    );
}

criterion_group!(benches, migrations);
criterion_main!(benches);
