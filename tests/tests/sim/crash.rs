//! Processes killed at random steps (as `kill -9` would: the core and all
//! it held gone, whatever it had sent still arriving), across many seeds.
//! After recovery every entity exists exactly once, with the state of its
//! last backup or newer, every client is still playing and sees the truth,
//! and every row in the database reads back.

use std::collections::BTreeMap;
use tessera::{EntityId, Value};
use tessera_tools::sim::SimWorld;

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
        let checked = after_recovery(&w, &at_crash)
            .and_then(|()| w.check_placement_of_all().map(|_| ()))
            .and_then(|()| w.check_ghosts())
            .and_then(|()| w.check_views(5.0).map(|_| ()));
        if let Err(e) = checked {
            panic!("seed {seed} (killed {victim} at {at} µs): {e}");
        }
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
        let mut cfg = four_cells(seed);
        cfg.baseapps = 2;
        let mut w = SimWorld::new(&cfg);
        let at = step_of(seed);
        w.run_until(at);
        let victim = w.baseapps()[(seed % 2) as usize];
        // Nothing of the cells dies: what the reals hold now is the floor.
        let reals: BTreeMap<EntityId, Vec<Value>> =
            w.reals().into_iter().map(|r| (r.id, r.props)).collect();
        let at_crash = pings(&w, &reals);
        let entities: BTreeMap<u64, EntityId> = w
            .clients
            .iter()
            .filter_map(|(c, client)| Some((*c, client.view()?.me)))
            .collect();
        assert!(w.crash(victim), "seed {seed}");
        w.run_until(at + 9_000_000);
        w.freeze();
        w.run_until(at + 12_000_000);
        assert_eq!(w.baseapps().len(), 1, "seed {seed}");
        let same = || -> Result<(), String> {
            for (c, e) in &entities {
                let now = w.clients[c].view().map(|v| v.me);
                if now != Some(*e) {
                    return Err(format!("client {c} played {e} and now {now:?}"));
                }
            }
            Ok(())
        };
        let checked = after_recovery(&w, &at_crash)
            .and_then(|()| same())
            .and_then(|()| w.check_placement_of_all().map(|_| ()))
            .and_then(|()| w.check_ghosts())
            .and_then(|()| w.check_views(5.0).map(|_| ()));
        if let Err(e) = checked {
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
