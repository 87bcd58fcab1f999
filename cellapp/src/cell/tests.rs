//! Cell-level checks that need the cell's private parts: the spatial index
//! is brought up to date only when a witness asks, and must then answer as
//! if it had followed every move.

use super::ghosts::{GHOST_HYSTERESIS, GHOST_ORPHAN_AFTER, GHOST_REFRESH_TICKS};
use super::*;
use crate::behavior::{motion, Ctx};
use std::path::Path;
use std::time::Duration;
use tessera::proto::app::{GhostCheck, GhostState, MAX_GHOST_STATES};

fn defs() -> Definitions {
    let text = r#"
        [types.Npc]
        max_speed = 6.0
        [types.Npc.properties]
        mood = { type = "int", flags = "OTHER_CLIENTS" }
        [types.Watcher]
        has_client = true
        aoi_radius = 50.0
        max_speed = 6.0
    "#;
    match Definitions::parse(text, Path::new("cell-tests.toml")) {
        Ok(d) => d,
        Err(e) => panic!("test definitions: {e}"),
    }
}

/// Walks to random points, as a game's wandering NPC would.
struct Wander;

impl CellBehavior for Wander {
    fn tick(&self, ctx: &mut Ctx<'_>) {
        motion::wander(ctx, 60.0, 4.8);
    }
}

fn cell(index: IndexKind) -> Cell {
    let mut behaviors = Behaviors::default();
    behaviors.register("Npc", Wander);
    let cfg = CellConfig {
        bounds: [0.0, 0.0, 300.0, 300.0],
        index,
        ..CellConfig::default()
    };
    Cell::new(
        &defs(),
        behaviors,
        cfg,
        IdBlock {
            next: 1,
            end: 1 << 30,
        },
    )
}

/// The index's answer and the brute-force one, for queries over the cell.
fn check_index(cell: &mut Cell) {
    cell.sync_index();
    assert_eq!(cell.index.len(), cell.entries.len());
    for (cx, cz, r) in [
        (150.0, 150.0, 60.0),
        (10.0, 20.0, 40.0),
        (290.0, 150.0, 80.0),
    ] {
        let center = Vec2::new(cx, cz);
        let mut found = Vec::new();
        cell.index.within(center, r, &mut found);
        let mut found: Vec<EntityId> = found
            .iter()
            .map(|k| cell.entries[k.0 as usize].id)
            .collect();
        found.sort();
        let mut truth: Vec<EntityId> = cell
            .entries
            .iter()
            .filter(|e| xz(e.pos).distance(center) <= r)
            .map(|e| e.id)
            .collect();
        truth.sort();
        assert_eq!(found, truth, "query at ({cx}, {cz}) radius {r}");
    }
}

/// Its base (app 9) creates entity `entity` of type `ty` at `pos`.
fn create(cell: &mut Cell, ty: &str, entity: EntityId, pos: [f32; 3]) {
    let type_id = defs().by_name(ty).map_or(TypeId(0), |t| t.id);
    cell.handle(
        Time(0),
        AppId(9),
        AppMsg::CreateEntity {
            entity,
            type_id,
            state: CellState {
                pos,
                yaw: 0.0,
                props: Vec::new(),
            },
            version: 0,
        },
    );
}

fn watcher(cell: &mut Cell, n: u64) {
    create(
        cell,
        "Watcher",
        EntityId((1 << 40) + n),
        [100.0 + n as f32, 0.0, 100.0],
    );
}

#[test]
fn an_index_left_behind_without_witnesses_answers_exactly_when_asked() {
    for kind in [IndexKind::Grid, IndexKind::RTree] {
        let mut c = cell(kind);
        c.spawn("Npc", 300);
        // Well past two reorders with nobody asking.
        for t in 1..=150u64 {
            c.tick(Time(t * 100_000));
        }
        assert!(
            c.index_sync.stale || c.index_sync.indexed_tick < 150,
            "{kind}: nothing asked, nothing kept"
        );
        c.spawn("Npc", 20);
        let gone: Vec<EntityId> = c.entries.iter().step_by(7).map(|r| r.id).collect();
        for id in gone {
            c.remove_real(id);
        }
        check_index(&mut c);
        // With a witness the index is kept every tick, through reorders.
        watcher(&mut c, 1);
        for t in 151..=300u64 {
            c.tick(Time(t * 100_000));
            if t % 37 == 0 {
                watcher(&mut c, t);
            }
            assert_eq!(
                c.index_sync.indexed_tick, c.tick,
                "{kind}: a witness asked at tick {t}"
            );
            assert!(!c.index_sync.stale);
        }
        check_index(&mut c);
    }
}

/// The first restored base to claim a real whose base died wins; a later
/// claim is refused, and nothing more from the dead baseapp is taken.
#[test]
fn a_real_whose_base_died_takes_the_first_claim_only() {
    let mut c = cell(IndexKind::Grid);
    watcher(&mut c, 1);
    let e = EntityId((1 << 40) + 1);
    let (dead, first, second) = (AppId(9), AppId(10), AppId(11));
    let claim = |base| AppMsg::Rebase {
        entity: e,
        base,
        dead,
        seq: 1 << 32,
    };
    c.handle(Time(1), first, claim(first));
    c.handle(Time(1), second, claim(second));
    let out = c.drain();
    assert!(
        out.iter()
            .any(|(to, m)| *to == first
                && matches!(m, AppMsg::Rebased { entity, .. } if *entity == e)),
        "{out:?}"
    );
    assert!(out
        .iter()
        .any(|(to, m)| *to == second && *m == AppMsg::NotRebased { entity: e }));
    let i = c.slot[&e];
    assert_eq!(c.entries[i].base, Some(first));
    assert_eq!(c.entries[i].channel.applied(), 1 << 32);
    // A channel message the dead base sent arrives late: void.
    c.handle(
        Time(2),
        dead,
        AppMsg::ToEntity {
            entity: e,
            seq: 1 << 32,
            msg: tessera::proto::app::EntityMsg::Destroy,
        },
    );
    assert!(c.slot.contains_key(&e), "the dead base cannot destroy it");
    // The client comes back: its frames number from the new base's start.
    c.handle(
        Time(3),
        first,
        AppMsg::ToEntity {
            entity: e,
            seq: 1 << 32,
            msg: tessera::proto::app::EntityMsg::Attach { out_seq: 1 << 33 },
        },
    );
    let i = c.slot[&e];
    assert_eq!(
        c.entries[i].channel.clone().number_frame(),
        (1 << 33) + 2,
        "Restored and Props queued"
    );
}

/// A claim for an entity not here goes on towards its real, or is refused
/// when there is no trace of it.
#[test]
fn a_claim_for_an_unknown_entity_is_refused() {
    let mut c = cell(IndexKind::Grid);
    c.handle(
        Time(1),
        AppId(10),
        AppMsg::Rebase {
            entity: EntityId(5),
            base: AppId(10),
            dead: AppId(9),
            seq: 0,
        },
    );
    assert_eq!(
        c.drain(),
        vec![(
            AppId(10),
            AppMsg::NotRebased {
                entity: EntityId(5)
            }
        )]
    );
}

/// A cell of app 1 in a space cut in two at x = 150 (app 2 the other side).
fn halved() -> Cell {
    let mut c = cell(IndexKind::Grid);
    let bounds = tessera::layout::Rect::new(0.0, 0.0, 300.0, 300.0);
    let layout = Layout::equal(bounds, &[AppId(1), AppId(2)]).expect("two cells");
    lay_out(&mut c, layout);
    c
}

/// The manager sends the cell `layout`.
fn lay_out(c: &mut Cell, layout: Layout) {
    c.handle(
        Time(0),
        tessera::MANAGER,
        AppMsg::Layout {
            layout,
            cells: Vec::new(),
        },
    );
}

fn ticks(c: &mut Cell, n: u64) -> Vec<(AppId, AppMsg)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let now = Time(c.ticks() * 100_000 + 100_000);
        c.tick(now);
        out.extend(c.drain());
    }
    out
}

#[test]
fn a_still_real_checks_its_ghosts_now_and_then_and_sends_its_state_when_asked() {
    let mut c = halved();
    c.set_frozen(true);
    let entity = EntityId(5);
    create(&mut c, "Npc", entity, [145.0, 0.0, 150.0]);
    let creates = |out: &[(AppId, AppMsg)]| {
        out.iter()
            .filter(|(to, _)| *to == AppId(2))
            .flat_map(|(_, m)| match m {
                AppMsg::GhostCreates(states) => states.as_slice(),
                _ => &[],
            })
            .filter(|g| g.entity == entity)
            .count()
    };
    let out = ticks(&mut c, 3 * GHOST_REFRESH_TICKS);
    let checks: Vec<u64> = out
        .iter()
        .filter(|(to, _)| *to == AppId(2))
        .flat_map(|(_, m)| match m {
            AppMsg::GhostChecks(checks) => checks.as_slice(),
            _ => &[],
        })
        .filter(|k| k.entity == entity)
        .map(|k| k.digest)
        .collect();
    let moves = out
        .iter()
        .filter(|(_, m)| matches!(m, AppMsg::GhostMoves(_) | AppMsg::GhostUpdate { .. }))
        .count();
    assert_eq!(moves, 0, "it does not move");
    assert_eq!(creates(&out), 1, "its whole state goes once");
    // Checked every GHOST_REFRESH_TICKS ticks, with the digest of what its
    // ghost holds: its one property, at its default.
    let digest = GhostCheck::digest(&[&Value::Int(0)]);
    assert!(checks.len() >= 2, "{checks:?}");
    assert!(checks.iter().all(|d| *d == digest), "{checks:?}");
    // Asked by the cellapp holding the ghost, it sends the whole state,
    // once however often asked; asked by one that has no business with
    // it, or for more than a check message holds, nothing.
    c.handle(Time(0), AppId(2), AppMsg::GhostsStale(vec![entity, entity]));
    assert_eq!(creates(&c.drain()), 1);
    let flood = vec![entity; tessera::proto::app::MAX_GHOST_MOVES + 1];
    c.handle(Time(0), AppId(2), AppMsg::GhostsStale(flood));
    assert!(c.drain().is_empty());
    c.handle(Time(0), AppId(3), AppMsg::GhostsStale(vec![entity]));
    assert!(c.drain().is_empty());
}

#[test]
fn a_ghost_asks_for_the_whole_state_when_its_properties_differ_or_it_is_missing() {
    let mut c = halved();
    c.handle(Time(0), AppId(2), npc_77(1, vec![(0, Value::Int(3))]));
    let check = |entity: u64, n: u32, mood: i64| GhostCheck {
        entity: EntityId(entity),
        stamp: (1, n),
        pos: [156.0, 0.0, 150.0],
        yaw: 0.0,
        digest: GhostCheck::digest(&[&Value::Int(mood)]),
    };
    let asked = |c: &mut Cell, checks: Vec<GhostCheck>| -> Vec<EntityId> {
        c.handle(Time(0), AppId(2), AppMsg::GhostChecks(checks));
        c.drain()
            .into_iter()
            .flat_map(|(to, m)| match m {
                AppMsg::GhostsStale(list) if to == AppId(2) => list,
                _ => Vec::new(),
            })
            .collect()
    };
    // The same properties: it only moves.
    assert!(asked(&mut c, vec![check(77, 2, 3)]).is_empty());
    let x = c
        .ghosts()
        .iter()
        .find(|(s, _)| s.id == EntityId(77))
        .map(|(s, _)| s.pos.x);
    assert_eq!(x, Some(156.0));
    // Other properties, and a ghost it does not hold: both asked for.
    assert_eq!(
        asked(&mut c, vec![check(77, 3, 4), check(78, 1, 0)]),
        vec![EntityId(77), EntityId(78)]
    );
    // An older check than what it has applied: nothing.
    assert!(asked(&mut c, vec![check(77, 2, 4)]).is_empty());
    // Its property changed by an update since its digest was taken: a
    // check with the digest of the old value asks, one with the new does not.
    let update = |c: &mut Cell, n: u32, mood: i64| {
        let props = vec![(0, Value::Int(mood))];
        let (pos, yaw) = ([156.0, 0.0, 150.0], 0.0);
        let (entity, stamp) = (EntityId(77), (1, n));
        let msg = AppMsg::GhostUpdate {
            entity,
            stamp,
            pos,
            yaw,
            props,
        };
        c.handle(Time(0), AppId(2), msg);
    };
    update(&mut c, 4, 5);
    assert!(asked(&mut c, vec![check(77, 5, 5)]).is_empty());
    update(&mut c, 6, 6);
    assert_eq!(asked(&mut c, vec![check(77, 7, 5)]), vec![EntityId(77)]);
}

#[test]
fn a_tick_of_new_ghosts_goes_in_batches_of_at_most_the_limit() {
    let mut c = halved();
    c.set_frozen(true);
    let n = MAX_GHOST_STATES + 44;
    for k in 0..n {
        create(
            &mut c,
            "Npc",
            EntityId(100 + k as u64),
            [145.0, 0.0, (k % 300) as f32],
        );
    }
    let out = ticks(&mut c, 1);
    let batches: Vec<usize> = out
        .iter()
        .filter_map(|(to, m)| match m {
            AppMsg::GhostCreates(states) if *to == AppId(2) => Some(states.len()),
            _ => None,
        })
        .collect();
    assert_eq!(batches, vec![MAX_GHOST_STATES, 44], "{batches:?}");
    assert!(!out.iter().any(|(_, m)| matches!(m, AppMsg::GhostCreate(_))));
}

/// The whole state of the ghost of NPC 77, real on app 2 just across the
/// line, as its real's `n`-th ghost message.
fn npc_77(n: u32, props: Vec<(u16, Value)>) -> AppMsg {
    AppMsg::GhostCreate(Box::new(GhostState {
        entity: EntityId(77),
        stamp: (1, n),
        type_id: defs().by_name("Npc").map_or(TypeId(0), |t| t.id),
        real: AppId(2),
        pos: [155.0, 0.0, 150.0],
        yaw: 0.0,
        props,
    }))
}

#[test]
fn a_whole_state_puts_back_a_property_an_update_changed_since_the_last_one() {
    let mut c = halved();
    let mood = |m: i64| vec![(0u16, Value::Int(m))];
    let state = npc_77;
    let held = |c: &Cell| {
        c.ghosts()
            .into_iter()
            .find(|(s, _)| s.id == EntityId(77))
            .map(|(s, _)| s.props)
    };
    c.handle(Time(0), AppId(2), state(1, mood(3)));
    assert_eq!(held(&c), Some(vec![Value::Int(3)]));
    // The same state again: nothing to change.
    c.handle(Time(0), AppId(2), state(2, mood(3)));
    assert_eq!(held(&c), Some(vec![Value::Int(3)]));
    c.handle(
        Time(0),
        AppId(2),
        AppMsg::GhostUpdate {
            entity: EntityId(77),
            stamp: (1, 3),
            pos: [155.0, 0.0, 150.0],
            yaw: 0.0,
            props: mood(5),
        },
    );
    assert_eq!(held(&c), Some(vec![Value::Int(5)]));
    // A whole state with the properties the last one brought still writes
    // them: the update changed them in between.
    c.handle(Time(0), AppId(2), state(4, mood(3)));
    assert_eq!(held(&c), Some(vec![Value::Int(3)]));
    c.handle(Time(0), AppId(2), state(5, mood(4)));
    assert_eq!(held(&c), Some(vec![Value::Int(4)]));
}

#[test]
fn a_ghost_no_real_refreshes_is_dropped() {
    let mut c = halved();
    let g = |n: u32| npc_77(n, Vec::new());
    let held = |c: &Cell| c.ghosts().iter().any(|(s, _)| s.id == EntityId(77));
    c.handle(Time(0), AppId(2), g(1));
    // Refreshed in time, it stays.
    for n in 2..6 {
        ticks(&mut c, GHOST_REFRESH_TICKS);
        assert!(held(&c), "refreshed ghost dropped");
        c.handle(Time(0), AppId(2), g(n));
    }
    // Forgotten by its real, it goes, and a late message does not bring
    // it back.
    let period = Duration::from_secs(1) / u32::from(CellConfig::default().tick_hz);
    let orphaned =
        GHOST_ORPHAN_AFTER.as_micros() / period.as_micros() + GHOST_REFRESH_TICKS as u128;
    ticks(&mut c, orphaned as u64 + 1);
    assert!(!held(&c), "an orphaned ghost stays");
    c.handle(Time(0), AppId(2), g(5));
    assert!(!held(&c), "an old create brought it back");
}

/// A real walks toward the other cellapp's cell and back, a little each
/// tick, and that cell's line moves under it: its ghost there must come
/// the tick it is within the ghost distance and go the tick it is farther
/// than the distance a ghost is kept to, however long the ghosting pass
/// has left it alone (its leeway) before.
#[test]
fn a_ghost_comes_and_goes_the_tick_its_real_crosses_the_distances() {
    let mut c = halved();
    c.set_frozen(true);
    let entity = EntityId(5);
    let z = 150.0;
    create(&mut c, "Npc", entity, [5.35, 0.0, z]);
    let (near, keep) = (
        c.cfg.ghost_distance,
        c.cfg.ghost_distance + GHOST_HYSTERESIS,
    );
    let other = |c: &Cell| {
        c.cells
            .iter()
            .find(|v| v.app == AppId(2))
            .map(|v| v.rect)
            .expect("the other cellapp's cell")
    };
    let move_line = |c: &mut Cell, to: f32| {
        let mut layout = c.layout().cloned().expect("a layout");
        let line = layout.lines()[0].line;
        layout.move_line(line, to).expect("the line moves");
        lay_out(c, layout);
    };
    // Where the real stands each tick (x; 0.7 m steps that never land on
    // a line), and where the line between the cells goes before it.
    let mut walk: Vec<(f32, Option<f32>)> = Vec::new();
    let out_to = |from: usize, to: usize| (from..=to).map(|k| 5.35 + 0.7 * k as f32);
    walk.extend(out_to(0, 57).map(|x| (x, None)));
    // Standing at 45.25 m, its ghost made (the line is at 150): the line
    // moves to 200, so it is 155 m from the other cell, beyond the 130 m
    // a ghost is kept to, without itself moving.
    walk.push((45.25, Some(200.0)));
    walk.extend(out_to(57, 192).map(|x| (x, None)));
    walk.extend(out_to(0, 192).rev().map(|x| (x, None)));
    walk.push((5.35, Some(150.0)));
    walk.extend(out_to(0, 60).map(|x| (x, None)));
    let mut held = false;
    let (mut made, mut dropped) = (0, 0);
    for (x, line) in walk {
        if let Some(to) = line {
            move_line(&mut c, to);
        }
        let i = c.slot[&entity];
        let tick = c.ticks();
        c.entries[i].move_to(Vec3::new(x, 0.0, z), 0.0, tick);
        ticks(&mut c, 1);
        let other = other(&c);
        if !held && other.grow(near).holds(x, z) {
            held = true;
            made += 1;
        } else if held && !other.grow(keep).holds(x, z) {
            held = false;
            dropped += 1;
        }
        let i = c.slot[&entity];
        assert!(!c.entries[i].is_ghost(), "still real at {x}");
        assert_eq!(
            c.entries[i].haunts.contains(&AppId(2)),
            held,
            "at x = {x}, the other cell at {other:?}"
        );
    }
    // The walk made and dropped its ghost more than once.
    assert!(made >= 3 && dropped >= 2, "made {made}, dropped {dropped}");
}
