//! Game code in the simulator: the arena on four cells, its bots fighting
//! monsters across lines that the balancer and the test move, over many
//! seeds. A ledger kept beside the game (its behaviours wrapped) checks
//! what the game's own properties cannot show alone: every strike was
//! applied exactly once (damage dealt equals damage received, per
//! attacker), every fighter's regeneration timer fired once per period
//! wherever it was, every spring's trap saw each entity enter and leave in
//! turn, and deaths left no orphan: one monster risen for each slain, and
//! every fighter real once with its base.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tessera::{EntityId, Value};
use tessera_arena::cell::{Fighter, Monster, Spring, REGEN};
use tessera_cellapp::Faults;
use tessera_game::cell::{Called, CellBehavior, Ctx, Presence, TimerId, TrapId};
use tessera_game::Game;
use tessera_sim::{SimConfig, SimWorld};

/// The regeneration period.
const PERIOD_US: u64 = 1_000_000;

#[derive(Default)]
struct Ledger {
    /// Damage each attacker's `dealt` says it dealt, as of its last hook.
    dealt: BTreeMap<EntityId, i64>,
    /// Damage each attacker's strikes did where they landed.
    received: BTreeMap<EntityId, i64>,
    /// When each fighter was made, and when its regeneration fired.
    regen: BTreeMap<EntityId, (u64, Vec<u64>)>,
    /// (spring, entity) pairs inside, and what broke the pairing.
    inside: BTreeSet<(EntityId, EntityId)>,
    trap_faults: Vec<String>,
    kills: u64,
}

/// A behaviour of the arena with the ledger kept around it.
struct Recorded<B> {
    inner: B,
    ledger: Arc<Mutex<Ledger>>,
}

impl<B: CellBehavior> Recorded<B> {
    fn note<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> Option<R> {
        self.ledger.lock().ok().map(|mut l| f(&mut l))
    }

    fn after(&self, ctx: &Ctx<'_>) {
        let (id, dealt) = (ctx.id(), ctx.get_int("dealt"));
        if dealt > 0 {
            self.note(|l| l.dealt.insert(id, dealt));
        }
    }
}

impl<B: CellBehavior> CellBehavior for Recorded<B> {
    fn created(&self, ctx: &mut Ctx<'_>) {
        if ctx.def().name == "Fighter" {
            let (id, at) = (ctx.id(), ctx.now().0);
            self.note(|l| l.regen.insert(id, (at, Vec::new())));
        }
        self.inner.created(ctx);
    }

    fn tick(&self, ctx: &mut Ctx<'_>) {
        self.inner.tick(ctx);
        self.after(ctx);
    }

    fn call(&self, ctx: &mut Ctx<'_>, call: &Called<'_>) {
        if call.name() == "take_hit" {
            let damage = call.arg(0).and_then(Value::as_int).unwrap_or(0);
            let attacker = call
                .arg(1)
                .and_then(Value::as_entity)
                .unwrap_or(EntityId(0));
            let killing = ctx.get_int("health") > 0 && ctx.get_int("health") <= damage;
            self.note(|l| {
                *l.received.entry(attacker).or_default() += damage;
                if killing && ctx.def().name == "Monster" {
                    l.kills += 1;
                }
            });
        }
        self.inner.call(ctx, call);
        self.after(ctx);
    }

    fn timer(&self, ctx: &mut Ctx<'_>, timer: TimerId, tag: u32) {
        if tag == REGEN && ctx.def().name == "Fighter" {
            let (id, at) = (ctx.id(), ctx.now().0);
            self.note(|l| {
                if let Some((_, fired)) = l.regen.get_mut(&id) {
                    fired.push(at);
                }
            });
        }
        self.inner.timer(ctx, timer, tag);
        self.after(ctx);
    }

    fn trap(&self, ctx: &mut Ctx<'_>, trap: TrapId, tag: u32, change: Presence) {
        let me = ctx.id();
        self.note(|l| match change {
            Presence::Entered(e) => {
                if !l.inside.insert((me, e)) {
                    l.trap_faults.push(format!("{e} entered {me}'s trap twice"));
                }
            }
            Presence::Left(e) => {
                if !l.inside.remove(&(me, e)) {
                    l.trap_faults
                        .push(format!("{e} left {me}'s trap without entering"));
                }
            }
        });
        self.inner.trap(ctx, trap, tag, change);
    }
}

/// The arena with its cell behaviours recorded into `ledger`.
fn recorded_arena(ledger: &Arc<Mutex<Ledger>>) -> Game {
    let l = || ledger.clone();
    tessera_arena::game()
        .cell(
            "Fighter",
            Recorded {
                inner: Fighter,
                ledger: l(),
            },
        )
        .cell(
            "Monster",
            Recorded {
                inner: Monster,
                ledger: l(),
            },
        )
        .cell(
            "Healer",
            Recorded {
                inner: Spring,
                ledger: l(),
            },
        )
}

/// Runs the arena for one seed, with `faults` planted: the kills and the
/// migrations, or what broke.
fn fight(seed: u64, faults: Faults) -> Result<(u64, u64), String> {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let cfg = SimConfig {
        seed,
        cellapps: 4,
        npcs: 12,
        clients: 16,
        size: 240.0,
        game: recorded_arena(&ledger),
        faults: tessera_sim::Faults {
            cell: faults,
            ..Default::default()
        },
        ..SimConfig::default()
    };
    let monsters = cfg.cellapps * cfg.npcs;
    let mut w = SimWorld::new(&cfg);
    w.run_until(6_000_000);
    w.move_line(0, 0.3);
    w.run_until(12_000_000);
    w.move_line(1, 0.7);
    w.run_until(20_000_000);
    // Nobody strikes any more; every strike on its way lands.
    w.freeze();
    w.run_until(23_000_000);
    let l = ledger.lock().map_err(|_| "the ledger is poisoned")?;

    if l.dealt.values().sum::<i64>() == 0 || l.kills == 0 {
        return Err(format!("no fight: {:?} dealt, {} kills", l.dealt, l.kills));
    }
    let attackers: BTreeSet<&EntityId> = l.dealt.keys().chain(l.received.keys()).collect();
    for a in attackers {
        let (dealt, received) = (l.dealt.get(a).copied(), l.received.get(a).copied());
        if dealt.unwrap_or(0) != received.unwrap_or(0) {
            return Err(format!(
                "strikes: {a} dealt {dealt:?} but {received:?} landed"
            ));
        }
    }
    for (id, (made, fired)) in &l.regen {
        for (k, at) in fired.iter().enumerate() {
            let due = made + (k as u64 + 1) * PERIOD_US;
            if *at < due || *at >= due + PERIOD_US {
                return Err(format!(
                    "timers: {id}'s firing {} came at {at}, due at {due}",
                    k + 1
                ));
            }
        }
        if fired.len() < 15 {
            return Err(format!("timers: {id} fired only {} times", fired.len()));
        }
    }
    if let Some(f) = l.trap_faults.first() {
        return Err(format!("traps: {f}"));
    }
    // No orphan: one living monster for every one there was, every fighter
    // real once and its base held once.
    w.check_single_real().map_err(|e| format!("orphans: {e}"))?;
    let defs = w.defs().clone();
    let type_of = |name: &str| defs.by_name(name).map(|t| t.id);
    let health = defs
        .by_name("Monster")
        .and_then(|t| t.prop("health"))
        .map_or(0, |p| p.index as usize);
    let reals = w.reals();
    let living = reals
        .iter()
        .filter(|r| Some(r.type_id) == type_of("Monster"))
        .filter(|r| r.props.get(health) != Some(&Value::Int(0)))
        .count();
    if living != monsters {
        return Err(format!(
            "orphans: {living} living monsters, {monsters} made"
        ));
    }
    let fighters: BTreeSet<EntityId> = reals
        .iter()
        .filter(|r| Some(r.type_id) == type_of("Fighter"))
        .map(|r| r.id)
        .collect();
    let mut bases = BTreeSet::new();
    for b in w.bases().values() {
        for e in b.entities() {
            if !bases.insert(e) {
                return Err(format!("orphans: {e} has two bases"));
            }
        }
    }
    if fighters != bases || fighters.len() != cfg.clients {
        return Err(format!(
            "orphans: fighters {fighters:?} but bases {bases:?}"
        ));
    }
    Ok((l.kills, w.offloads()))
}

#[test]
fn the_arena_keeps_its_books_across_seeds() {
    let (mut kills, mut migrations) = (0, 0);
    for seed in 1..=500 {
        match fight(seed, Faults::default()) {
            Ok((k, m)) => (kills, migrations) = (kills + k, migrations + m),
            Err(e) => panic!("seed {seed}: {e}\nreplay: fight({seed}, Faults::default())"),
        }
    }
    eprintln!("arena: 500 seeds, {kills} kills, {migrations} migrations");
    assert!(kills > 500, "{kills} kills over 500 seeds");
    assert!(
        migrations > 500 * 10,
        "{migrations} migrations over 500 seeds"
    );
}

/// A call dropped where it is passed on, and a timer that fires again on
/// the cell a real moves to: the books show each.
#[test]
fn the_arena_books_catch_planted_faults() {
    let plants = [
        (
            Faults {
                drop_forwarding: true,
                ..Faults::default()
            },
            "strikes:",
        ),
        (
            Faults {
                refire_timers: true,
                ..Faults::default()
            },
            "timers:",
        ),
    ];
    for (faults, check) in plants {
        let caught = (1..=20).any(|seed| fight(seed, faults).is_err_and(|e| e.starts_with(check)));
        assert!(caught, "{faults:?}: the {check} check never caught it");
    }
}
