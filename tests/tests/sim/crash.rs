//! Processes killed at random steps (as `kill -9` would: the core and all
//! it held gone, whatever it had sent still arriving), across many seeds.
//! After recovery every entity exists exactly once, with the state of its
//! last backup or newer, every client is still playing and sees the truth,
//! and every row in the database reads back.

use std::collections::BTreeMap;
use tessera::{EntityId, Value};
use tessera_sim::SimWorld;

use super::four_cells;

/// The seeds each crash test runs.
const SEEDS: u64 = 500;

/// A step between 1 and 9 seconds into the run, chosen by the seed.
fn step_of(seed: u64) -> u64 {
    1_000_000 + (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) % 8_000_000
}

/// The `pings` counter (a cell property every ping call increments) of each
/// client's entity, as `values` hold it.
fn pings(w: &SimWorld, values: &BTreeMap<EntityId, Vec<Value>>) -> BTreeMap<EntityId, i64> {
    let Some(index) = w
        .defs()
        .by_name("Avatar")
        .and_then(|t| t.prop("pings"))
        .map(|p| p.index as usize)
    else {
        return BTreeMap::new();
    };
    values
        .iter()
        .map(|(e, props)| (*e, props.get(index).and_then(Value::as_int).unwrap_or(0)))
        .collect()
}

/// Every client's entity is real exactly once, its `pings` no lower than
/// its base held at the crash and no higher than the pings its client sent;
/// pongs came back at most once each, in order, and the last one did; every
/// database row reads back.
fn after_recovery(w: &SimWorld, at_crash: &BTreeMap<EntityId, i64>) -> Result<(), String> {
    w.check_single_real()?;
    if let Some(b) = &w.broken {
        return Err(b.clone());
    }
    let reals: BTreeMap<EntityId, Vec<Value>> =
        w.reals().into_iter().map(|r| (r.id, r.props)).collect();
    let now = pings(w, &reals);
    for c in w.clients.values() {
        let view = c
            .view()
            .ok_or_else(|| format!("client {} is not playing: {:?}", c.id, c.phase))?;
        let have = now
            .get(&view.me)
            .ok_or_else(|| format!("client {}'s entity {} has no real", c.id, view.me))?;
        let backed = at_crash.get(&view.me).copied().unwrap_or(0);
        if *have < backed {
            return Err(format!(
                "{}: pings {have} is older than its last backup ({backed})",
                view.me
            ));
        }
        if *have > c.pinged {
            return Err(format!(
                "{}: pings {have}, but its client sent only {}",
                view.me, c.pinged
            ));
        }
        if c.pongs.windows(2).any(|p| p[0] >= p[1]) {
            return Err(format!("client {}: a pong twice or out of order", c.id));
        }
        // Pings to a real that died are lost with it; the channel works
        // again after: the last ping, sent well after recovery, came back.
        if c.pongs.last() != Some(&c.pinged) {
            return Err(format!(
                "client {}: {} pings sent, the last pong was {:?}",
                c.id,
                c.pinged,
                c.pongs.last()
            ));
        }
    }
    for row in w.store().entities() {
        let ty = w
            .defs()
            .by_name(&row.type_name)
            .ok_or_else(|| format!("row {:?} of unknown type", row.db_id))?;
        tessera_baseapp::persist::decode(ty, row.format_version, &row.data)
            .map_err(|e| format!("row {:?} does not read back: {e}", row.db_id))?;
    }
    Ok(())
}

/// A cellapp killed at a random step: the manager notices its silence and
/// gives its area to the neighbours; the bases restore the entities that
/// were real there on the cells that now cover them. Clients stay
/// connected and their views fill again. (NPCs have no base, so those on
/// the dead cellapp are gone with it; the rest are untouched.)
/// Four cellapps and two baseapps, run to the seed's step.
fn two_baseapps_at_their_step(seed: u64) -> (SimWorld, u64) {
    let mut cfg = four_cells(seed);
    cfg.baseapps = 2;
    let mut w = SimWorld::new(&cfg);
    let at = step_of(seed);
    w.run_until(at);
    (w, at)
}

/// What every real holds now.
fn reals(w: &SimWorld) -> BTreeMap<EntityId, Vec<Value>> {
    w.reals().into_iter().map(|r| (r.id, r.props)).collect()
}

/// The entity each client plays.
fn players(w: &SimWorld) -> BTreeMap<u64, EntityId> {
    w.clients
        .iter()
        .filter_map(|(c, client)| Some((*c, client.view()?.me)))
        .collect()
}

/// What every crash test checks once the world has settled: the entities
/// against `at_crash` (see [`after_recovery`]), each client in `played`
/// still on its entity, every entity on the right cell, ghosts where they
/// belong, and each client's view the truth.
fn recovered(
    w: &SimWorld,
    at_crash: &BTreeMap<EntityId, i64>,
    played: &BTreeMap<u64, EntityId>,
) -> Result<(), String> {
    after_recovery(w, at_crash)?;
    for (c, e) in played {
        let now = w.clients[c].view().map(|v| v.me);
        if now != Some(*e) {
            return Err(format!("client {c} played {e} and now {now:?}"));
        }
    }
    w.check_placement_of_all()?;
    w.check_ghosts()?;
    w.check_views(5.0)?;
    Ok(())
}

#[test]
fn a_killed_cellapp_loses_nothing_across_seeds() {
    let mut restored = 0;
    for seed in 1..=SEEDS {
        let cfg = four_cells(seed);
        let mut w = SimWorld::new(&cfg);
        let at = step_of(seed);
        w.run_until(at);
        let victim = w.cellapps()[(seed % 4) as usize];
        let held = w.backed_up();
        let at_crash = pings(&w, &held.into_iter().map(|(e, (_, p))| (e, p)).collect());
        assert!(w.crash(victim), "seed {seed}");
        // Silence is noticed after the heartbeat timeout; then recovery.
        w.run_until(at + 9_000_000);
        w.freeze();
        w.run_until(at + 12_000_000);
        assert_eq!(w.cellapps().len(), 3, "seed {seed}");
        if let Err(e) = recovered(&w, &at_crash, &BTreeMap::new()) {
            panic!("seed {seed} (killed {victim} at {at} µs): {e}");
        }
        // A restored real starts where its client is: nobody is pulled back.
        assert_eq!(w.corrected(), 0, "seed {seed}: moves corrected");
        restored += w.restored();
    }
    assert!(
        restored > SEEDS,
        "too few entities restored to mean anything: {restored} over {SEEDS} seeds"
    );
}

/// A baseapp killed at a random step: the manager notices its silence; the
/// other baseapp restores every base it held a copy of, each claims its
/// real (which lived on), and every client of the dead baseapp resumes its
/// session there with its token, as the same entity. The cell state is
/// untouched; base copies are at most a backup period old.
#[test]
fn a_killed_baseapp_loses_nothing_across_seeds() {
    let mut resumed = 0;
    let mut restored = 0;
    for seed in 1..=SEEDS {
        let (mut w, at) = two_baseapps_at_their_step(seed);
        let victim = w.baseapps()[(seed % 2) as usize];
        // Nothing of the cells dies: what the reals hold now is the floor.
        let at_crash = pings(&w, &reals(&w));
        let played = players(&w);
        assert!(w.crash(victim), "seed {seed}");
        w.run_until(at + 9_000_000);
        w.freeze();
        w.run_until(at + 12_000_000);
        assert_eq!(w.baseapps().len(), 1, "seed {seed}");
        if let Err(e) = recovered(&w, &at_crash, &played) {
            panic!("seed {seed} (killed {victim} at {at} µs): {e}");
        }
        resumed += w.resumed();
        restored += w.restored();
    }
    eprintln!("{SEEDS} seeds: {resumed} sessions resumed, {restored} bases restored");
    assert!(
        resumed > SEEDS as u32,
        "too few sessions resumed to mean anything: {resumed} over {SEEDS} seeds"
    );
}

/// The manager killed at a random step (on half the seeds while a layout
/// is on its way to the apps) and started again up to 3 s later:
/// every cell ticks on while it is down, every app comes back under its id,
/// the new manager adopts the newest layout the apps hold, and the world
/// goes on where it was: the same entities, every client playing the same
/// one, nothing older than it was, and clients who log in afterwards get
/// entities of their own.
#[test]
fn a_killed_manager_loses_nothing_across_seeds() {
    let rejoin_window = tessera_manager::manager::DEFAULT_REJOIN_WINDOW.as_micros() as u64;
    let mut downtime = 0;
    for seed in 1..=SEEDS {
        let (mut w, at) = two_baseapps_at_their_step(seed);
        let at_crash = pings(&w, &reals(&w));
        let played = players(&w);
        let ticks =
            |w: &SimWorld| -> Vec<u64> { w.cells().values().map(|c| c.stats().ticks).collect() };
        // Half the seeds kill it while a layout it just made is on its way:
        // some apps hold the new one, some the old.
        let at = if seed % 2 == 1 {
            w.move_line((seed % 3) as usize, 0.3 + (seed % 5) as f32 * 0.1);
            let at = at + 1 + seed % 15_000;
            w.run_until(at);
            at
        } else {
            at
        };
        let before = ticks(&w);
        let down = 200_000 + (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 24) % 2_800_000;
        w.crash_manager(down);
        let held = w.newest_layout();
        w.run_until(at + down);
        // Every cell ticked on (10 Hz) while the manager was down.
        let during = ticks(&w);
        let ticked = before
            .iter()
            .zip(&during)
            .all(|(b, d)| d - b >= down / 100_000 - 1);
        assert!(
            ticked,
            "seed {seed}: ticks {before:?} -> {during:?} over {down} µs"
        );
        // Just before the window closes every app is back and the layout
        // is the newest any of them held.
        w.run_until(at + down + rejoin_window - 1);
        let m = w.manager();
        assert!(m.is_rejoining(), "seed {seed}");
        assert_eq!(m.apps().len(), 6, "seed {seed}: {:?}", m.apps());
        assert_eq!(m.layout(), held.as_ref(), "seed {seed}: the layout changed");
        w.run_until(at + down + rejoin_window + 1_000_000);
        assert!(!w.manager().is_rejoining(), "seed {seed}");
        w.add_clients(4);
        w.run_until(at + down + rejoin_window + 6_000_000);
        w.freeze();
        w.run_until(at + down + rejoin_window + 9_000_000);
        assert!(
            w.refused().is_empty(),
            "seed {seed}: refused {:?}",
            w.refused()
        );
        assert_eq!(
            (w.cellapps().len(), w.baseapps().len()),
            (4, 2),
            "seed {seed}"
        );
        if let Err(e) = recovered(&w, &at_crash, &played) {
            panic!("seed {seed} (manager killed at {at} µs, down {down} µs): {e}");
        }
        downtime += down;
    }
    eprintln!(
        "{SEEDS} seeds: the manager was down {:.1} s in all",
        downtime as f64 / 1e6
    );
}
