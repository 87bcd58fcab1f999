//! The cell API on real cells: timers and calls between entities across a
//! line that entities keep crossing, neighbours read through ghosts, spawn
//! and destroy, and game code that panics.

use super::super::*;
use crate::behavior::{Called, Ctx, GameError};
use std::path::Path;
use std::time::Duration;
use tessera::layout::Rect;
use tessera::proto::app::EntityMsg;

const WORLD: &str = r#"
    [types.Shuttle]
    max_speed = 100.0
    [types.Shuttle.properties]
    hits = { type = "int", flags = "CELL_PUBLIC" }
    last = { type = "int", flags = "CELL_PRIVATE" }
    disorder = { type = "int", flags = "CELL_PRIVATE" }
    fired = { type = "int", flags = "CELL_PRIVATE" }
    [types.Shuttle.methods]
    hit = { side = "cell", args = ["int"] }

    [types.Gunner]
    max_speed = 10.0
    [types.Gunner.properties]
    shots = { type = "int", flags = "CELL_PRIVATE" }
    sent = { type = "int", flags = "CELL_PRIVATE" }
    saw_hits = { type = "int", flags = "CELL_PRIVATE" }
    saw_private = { type = "bool", flags = "CELL_PRIVATE" }

    [types.Spawner]
    max_speed = 1.0
    [types.Mote]
    max_speed = 1.0

    [types.Zone]
    max_speed = 100.0
    [types.Zone.properties]
    inside = { type = "int", flags = "CELL_PRIVATE" }
    enters = { type = "int", flags = "CELL_PRIVATE" }
    wrong = { type = "int", flags = "CELL_PRIVATE" }

    [types.Hero]
    has_client = true
    aoi_radius = 50.0
    max_speed = 10.0
    [types.Hero.properties]
    by_base = { type = "int", flags = "CELL_PRIVATE" }
    pokes = { type = "int", flags = "CELL_PRIVATE" }
    [types.Hero.methods]
    secret = { side = "cell", args = [] }
    poke = { side = "cell", args = ["entity"], exposed = true }
    paid = { side = "base", args = ["int"] }

    [types.Fragile]
    max_speed = 1.0
    [types.Fragile.properties]
    n = { type = "int", flags = "CELL_PUBLIC" }
"#;

/// The timer's period.
const PERIOD: Duration = Duration::from_millis(250);

/// Stands 300 ms on one side of the line at x = 500, then 300 ms on the
/// other, and counts its timer's firings and the hits it takes (noting any
/// out of order).
struct Shuttle;

impl CellBehavior for Shuttle {
    fn created(&self, ctx: &mut Ctx<'_>) {
        ctx.move_to(Vec3::new(480.0, 0.0, 500.0), 0.0);
        assert!(ctx.add_timer(PERIOD, Some(PERIOD), 7).is_ok());
    }

    fn tick(&self, ctx: &mut Ctx<'_>) {
        let x = if (ctx.now().0 / 300_000) % 2 == 0 {
            480.0
        } else {
            520.0
        };
        ctx.move_to(Vec3::new(x, 0.0, ctx.pos().z), 0.0);
    }

    fn timer(&self, ctx: &mut Ctx<'_>, _timer: crate::behavior::TimerId, tag: u32) {
        assert_eq!(tag, 7);
        let fired = ctx.get_int("fired");
        assert!(ctx.set("fired", Value::Int(fired + 1)).is_ok());
    }

    fn call(&self, ctx: &mut Ctx<'_>, call: &Called<'_>) {
        let k = call.arg(0).and_then(Value::as_int).unwrap_or(0);
        if k <= ctx.get_int("last") {
            let d = ctx.get_int("disorder");
            assert!(ctx.set("disorder", Value::Int(d + 1)).is_ok());
        }
        let hits = ctx.get_int("hits");
        assert!(ctx.set("hits", Value::Int(hits + 1)).is_ok());
        assert!(ctx.set("last", Value::Int(k)).is_ok());
    }
}

/// Stands on the first cell's side and, every tick, hits every shuttle
/// within 100 m with its shot number.
struct Gunner;

impl CellBehavior for Gunner {
    fn created(&self, ctx: &mut Ctx<'_>) {
        ctx.move_to(Vec3::new(470.0, 0.0, 510.0), 0.0);
    }

    fn tick(&self, ctx: &mut Ctx<'_>) {
        let shot = ctx.get_int("shots") + 1;
        let targets: Vec<(EntityId, bool, bool)> = ctx
            .around(100.0)
            .iter()
            .filter(|n| n.type_name() == "Shuttle")
            .map(|n| (n.id, n.get("hits").is_some(), n.get("fired").is_some()))
            .collect();
        let mut sent = ctx.get_int("sent");
        for (id, public, private) in targets {
            assert!(ctx.call(id, "hit", vec![Value::Int(shot)]).is_ok());
            sent += 1;
            if public {
                assert!(ctx.set("saw_hits", Value::Int(1)).is_ok());
            }
            if private {
                assert!(ctx.set("saw_private", Value::Bool(true)).is_ok());
            }
        }
        assert!(ctx.set("shots", Value::Int(shot)).is_ok());
        assert!(ctx.set("sent", Value::Int(sent)).is_ok());
    }
}

/// The zone's trap radius.
const ZONE: f32 = 25.0;

/// A proximity trap that itself crosses the line every 1.1 s, counting
/// who is inside; an entity entering twice or leaving without entering
/// counts as `wrong`.
struct Zone;

impl CellBehavior for Zone {
    fn created(&self, ctx: &mut Ctx<'_>) {
        assert!(ctx.add_trap(ZONE, 3).is_ok());
        assert!(matches!(
            ctx.add_trap(1000.0, 3),
            Err(GameError::TrapTooWide { .. })
        ));
    }

    fn tick(&self, ctx: &mut Ctx<'_>) {
        let x = if (ctx.now().0 / 1_100_000) % 2 == 0 {
            490.0
        } else {
            510.0
        };
        ctx.move_to(Vec3::new(x, 0.0, 505.0), 0.0);
    }

    fn trap(
        &self,
        ctx: &mut Ctx<'_>,
        _trap: crate::behavior::TrapId,
        tag: u32,
        change: crate::behavior::Presence,
    ) {
        assert_eq!(tag, 3);
        let inside = ctx.get_int("inside");
        let (inside, entered) = match change {
            crate::behavior::Presence::Entered(_) => (inside + 1, 1),
            crate::behavior::Presence::Left(_) => (inside - 1, 0),
        };
        if !(0..=3).contains(&inside) {
            let w = ctx.get_int("wrong");
            assert!(ctx.set("wrong", Value::Int(w + 1)).is_ok());
        }
        let enters = ctx.get_int("enters") + entered;
        assert!(ctx.set("inside", Value::Int(inside)).is_ok());
        assert!(ctx.set("enters", Value::Int(enters)).is_ok());
    }
}

/// Counts the calls its base makes, and answers each on the base.
struct Hero;

impl CellBehavior for Hero {
    fn call(&self, ctx: &mut Ctx<'_>, call: &Called<'_>) {
        if call.name() == "poke" {
            let n = ctx.get_int("pokes") + 1;
            assert!(ctx.set("pokes", Value::Int(n)).is_ok());
            return;
        }
        assert_eq!(call.caller, crate::behavior::Caller::Base);
        let n = ctx.get_int("by_base") + 1;
        assert!(ctx.set("by_base", Value::Int(n)).is_ok());
        assert!(ctx.call_base("paid", vec![Value::Int(5)]).is_ok());
        assert!(matches!(
            ctx.call_base("secret", vec![]),
            Err(GameError::Call(_))
        ));
    }
}

/// Spawns three motes when it is made.
struct Spawner;

impl CellBehavior for Spawner {
    fn created(&self, ctx: &mut Ctx<'_>) {
        for i in 0..3 {
            let at = ctx.pos() + Vec3::new(i as f32, 0.0, 0.0);
            assert!(ctx.spawn("Mote", at, 0.0, &[]).is_ok());
        }
        assert!(matches!(
            ctx.spawn("Nothing", ctx.pos(), 0.0, &[]),
            Err(GameError::NoSuchType(_))
        ));
    }
}

/// Lives 300 ms.
struct Mote;

impl CellBehavior for Mote {
    fn created(&self, ctx: &mut Ctx<'_>) {
        assert!(ctx.add_timer(Duration::from_millis(300), None, 0).is_ok());
    }

    fn timer(&self, ctx: &mut Ctx<'_>, _timer: crate::behavior::TimerId, _tag: u32) {
        assert_eq!(ctx.destroy(), Ok(()));
    }
}

/// Counts its ticks and steps 10 cm east each, but panics on every fifth
/// tick of the cell after asking for both.
struct Fragile;

impl CellBehavior for Fragile {
    fn tick(&self, ctx: &mut Ctx<'_>) {
        let n = ctx.get_int("n") + 1;
        assert!(ctx.set("n", Value::Int(n)).is_ok());
        let (pos, yaw) = (ctx.pos(), ctx.yaw());
        ctx.move_to(pos + glam::Vec3::X * 0.1, yaw);
        if ctx.tick() % 5 == 0 {
            panic!("a game bug");
        }
    }
}

fn defs() -> Definitions {
    match Definitions::parse(WORLD, Path::new("game-tests.toml")) {
        Ok(d) => d,
        Err(e) => panic!("test definitions: {e}"),
    }
}

fn behaviors() -> Behaviors {
    let mut b = Behaviors::default();
    b.register("Shuttle", Shuttle);
    b.register("Gunner", Gunner);
    b.register("Spawner", Spawner);
    b.register("Mote", Mote);
    b.register("Fragile", Fragile);
    b.register("Zone", Zone);
    b.register("Hero", Hero);
    b
}

fn cell(app: u32, layout: &Layout) -> Cell {
    let cfg = CellConfig {
        bounds: [0.0, 0.0, 1000.0, 1000.0],
        index: IndexKind::Grid,
        app: AppId(app),
        ..CellConfig::default()
    };
    let ids = IdBlock {
        next: u64::from(app) << 32,
        end: (u64::from(app) + 1) << 32,
    };
    let mut c = Cell::new(&defs(), behaviors(), cfg, ids);
    c.handle(
        Time(0),
        MANAGER,
        AppMsg::Layout {
            layout: layout.clone(),
            cells: vec![],
        },
    );
    c
}

/// Two cells side by side, cut at x = 500.
fn pair() -> (Cell, Cell) {
    let layout = match Layout::equal(Rect::new(0.0, 0.0, 1000.0, 1000.0), &[AppId(1), AppId(2)]) {
        Ok(l) => l,
        Err(e) => panic!("layout: {e}"),
    };
    (cell(1, &layout), cell(2, &layout))
}

/// Delivers everything between the two cells until neither has more.
fn exchange(a: &mut Cell, b: &mut Cell, now: Time) {
    loop {
        let (to_b, to_a) = (a.drain(), b.drain());
        if to_b.is_empty() && to_a.is_empty() {
            return;
        }
        for (to, msg) in to_b {
            if to == AppId(2) {
                b.handle(now, AppId(1), msg);
            }
        }
        for (to, msg) in to_a {
            if to == AppId(1) {
                a.handle(now, AppId(2), msg);
            }
        }
    }
}

fn prop(defs: &Definitions, cells: [&Cell; 2], ty: &str, name: &str) -> Vec<Value> {
    let Some(t) = defs.by_name(ty) else {
        return Vec::new();
    };
    let Some(p) = t.prop(name) else {
        return Vec::new();
    };
    cells
        .iter()
        .flat_map(|c| c.snapshot())
        .filter(|s| s.type_id == t.id)
        .filter_map(|s| s.props.get(p.index as usize).cloned())
        .collect()
}

fn ints(values: Vec<Value>) -> Vec<i64> {
    values.iter().filter_map(Value::as_int).collect()
}

#[test]
fn timers_and_calls_follow_entities_across_the_line() {
    let (mut a, mut b) = pair();
    a.spawn("Gunner", 1);
    a.spawn("Shuttle", 2);
    let ticks = 200u64;
    for t in 1..=ticks {
        let now = Time(t * 100_000);
        a.tick(now);
        exchange(&mut a, &mut b, now);
        b.tick(now);
        exchange(&mut a, &mut b, now);
    }
    let d = defs();
    let cells = [&a, &b];
    assert!(
        a.stats().offloads > 20 && b.stats().offloads > 20,
        "the shuttles crossed: {:?} {:?}",
        a.stats(),
        b.stats()
    );
    // Every shot landed once, in order.
    let sent: i64 = ints(prop(&d, cells, "Gunner", "sent")).iter().sum();
    let hits = ints(prop(&d, cells, "Shuttle", "hits"));
    assert_eq!(hits.len(), 2, "two shuttles, each real once");
    assert_eq!(hits.iter().sum::<i64>(), sent);
    assert!(sent > 300, "{sent} shots");
    assert_eq!(ints(prop(&d, cells, "Shuttle", "disorder")), vec![0, 0]);
    // Made at time 0 with a 250 ms period, over 20 s: 80 firings each,
    // whichever cell they fell due on.
    assert_eq!(ints(prop(&d, cells, "Shuttle", "fired")), vec![80, 80]);
    // The gunner read what ghosts carry, and only that.
    assert_eq!(ints(prop(&d, cells, "Gunner", "saw_hits")), vec![1]);
    assert_eq!(
        prop(&d, cells, "Gunner", "saw_private"),
        vec![Value::Bool(false)]
    );
}

#[test]
fn trap_enters_and_leaves_pair_up_while_everyone_crosses_the_line() {
    let (mut a, mut b) = pair();
    a.spawn("Gunner", 1);
    a.spawn("Shuttle", 2);
    a.spawn("Zone", 1);
    for t in 1..=150u64 {
        let now = Time(t * 100_000);
        a.tick(now);
        exchange(&mut a, &mut b, now);
        b.tick(now);
        exchange(&mut a, &mut b, now);
    }
    // One more look where nothing moves: the trap's count is the truth.
    let now = Time(150 * 100_000);
    a.tick(now);
    exchange(&mut a, &mut b, now);
    b.tick(now);
    exchange(&mut a, &mut b, now);
    let d = defs();
    let cells = [&a, &b];
    let zone_type = d.by_name("Zone").map(|t| t.id);
    let all: Vec<EntitySnapshot> = cells.iter().flat_map(|c| c.snapshot()).collect();
    let zone = all
        .iter()
        .find(|s| Some(s.type_id) == zone_type)
        .map(|s| s.pos)
        .expect("the zone is real somewhere");
    let truth = all
        .iter()
        .filter(|s| Some(s.type_id) != zone_type)
        .filter(|s| xz(s.pos).distance(xz(zone)) <= ZONE)
        .count() as i64;
    assert_eq!(ints(prop(&d, cells, "Zone", "wrong")), vec![0]);
    assert_eq!(ints(prop(&d, cells, "Zone", "inside")), vec![truth]);
    assert!(
        ints(prop(&d, cells, "Zone", "enters"))[0] > 20,
        "entities came and went"
    );
    assert_eq!(a.stats().game_panics + b.stats().game_panics, 0);
}

#[test]
fn spawned_entities_live_and_die_by_their_own_timers() {
    let (mut a, _) = pair();
    a.spawn("Spawner", 1);
    assert_eq!(a.stats().reals, 4, "the spawner and its three motes");
    for t in 1..=2u64 {
        a.tick(Time(t * 100_000));
    }
    assert_eq!(a.stats().reals, 4, "not yet");
    a.tick(Time(300_000));
    assert_eq!(a.stats().reals, 1, "the motes destroyed themselves");
}

#[test]
fn a_panicking_hook_fails_alone() {
    let (mut a, b) = pair();
    a.spawn("Fragile", 2);
    let before = a.snapshot();
    for t in 1..=12u64 {
        a.tick(Time(t * 100_000));
    }
    // Ticks 5 and 10 panicked and what they asked for was dropped, their
    // steps too; the cell ticked on, and so did the entities.
    assert_eq!(a.stats().game_panics, 4, "two entities, two panics each");
    assert_eq!(a.stats().ticks, 12);
    let n = ints(prop(&defs(), [&a, &b], "Fragile", "n"));
    assert_eq!(n, vec![10, 10]);
    for (was, is) in before.iter().zip(a.snapshot()) {
        assert_eq!(was.id, is.id);
        assert!((is.pos.x - was.pos.x - 1.0).abs() < 1e-3, "{was:?} {is:?}");
    }
}

#[test]
fn a_base_calls_any_cell_method_and_the_cell_calls_its_base() {
    let (mut a, b) = pair();
    let d = defs();
    let hero = d.by_name("Hero").expect("Hero");
    let (secret, paid) = (
        hero.method("secret").map_or(0, |m| m.index),
        hero.method("paid").map_or(0, |m| m.index),
    );
    let base = AppId(9);
    let e = EntityId(77);
    a.handle(
        Time(0),
        base,
        AppMsg::CreateEntity {
            entity: e,
            type_id: hero.id,
            state: CellState {
                pos: [100.0, 0.0, 100.0],
                yaw: 0.0,
                props: vec![],
            },
            version: 0,
        },
    );
    a.drain();
    let on_channel = |seq, msg| AppMsg::ToEntity {
        entity: e,
        seq,
        msg,
    };
    // From its client, a method that is not exposed is refused...
    a.handle(
        Time(1),
        base,
        on_channel(
            0,
            EntityMsg::Call {
                method: secret,
                args: vec![],
            },
        ),
    );
    // ...from game code on its base, it runs.
    a.handle(
        Time(2),
        base,
        on_channel(
            1,
            EntityMsg::BaseCall {
                method: secret,
                args: vec![],
            },
        ),
    );
    assert_eq!(ints(prop(&d, [&a, &b], "Hero", "by_base")), vec![1]);
    assert_eq!(
        a.drain(),
        vec![(
            base,
            AppMsg::ToBase {
                entity: e,
                method: paid,
                args: vec![Value::Int(5)]
            }
        )]
    );
    // A client may name itself, or what it has been shown; anything else
    // costs it its connection (the base is told why).
    let poke = hero.method("poke").map_or(0, |m| m.index);
    let named = |e: EntityId| vec![Value::Entity(e)];
    a.handle(
        Time(3),
        base,
        on_channel(
            2,
            EntityMsg::Call {
                method: poke,
                args: named(e),
            },
        ),
    );
    a.handle(
        Time(4),
        base,
        on_channel(
            3,
            EntityMsg::Call {
                method: poke,
                args: named(EntityId(4242)),
            },
        ),
    );
    assert_eq!(ints(prop(&d, [&a, &b], "Hero", "pokes")), vec![1]);
    assert_eq!(
        a.drain(),
        vec![(
            base,
            AppMsg::UnseenEntity {
                entity: e,
                method: poke,
                named: EntityId(4242)
            }
        )]
    );
}
