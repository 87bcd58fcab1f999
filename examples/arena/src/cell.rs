//! The arena on the cell: fighters, monsters and healing springs.
//!
//! Every strike is a call to the struck entity's cell method `take_hit`,
//! which runs on its real wherever that is; each side keeps a ledger of the
//! damage it dealt and took (`dealt`, `taken`), so a test can check that
//! every strike landed exactly once.

use glam::Vec3;
use rand::RngExt;
use std::time::Duration;
use tessera::{EntityId, Value};
use tessera_game::cell::{
    motion, Audience, Called, CellBehavior, Ctx, GameError, Presence, TimerId, TrapId,
};

/// How close a fighter must be to strike, in metres.
pub const FIGHTER_REACH: f32 = 4.0;
/// A fighter's strike.
pub const FIGHTER_DAMAGE: i64 = 15;
/// Between a fighter's strikes.
pub const FIGHTER_COOLDOWN: Duration = Duration::from_millis(800);
/// How far a monster sees a fighter.
pub const MONSTER_SIGHT: f32 = 30.0;
/// A monster looks for prey once in this many ticks.
pub const LOOK_EVERY_TICKS: u64 = 10;
/// How close a monster must be to strike.
pub const MONSTER_REACH: f32 = 2.5;
/// A monster's strike.
pub const MONSTER_DAMAGE: i64 = 8;
/// Between a monster's strikes.
pub const MONSTER_COOLDOWN: Duration = Duration::from_millis(1500);
/// Gold for killing a monster.
pub const BOUNTY: i64 = 10;
/// How long a dead fighter waits to rise again.
pub const RESPAWN: Duration = Duration::from_secs(5);
/// The radius of a healing spring.
pub const SPRING_RADIUS: f32 = 12.0;
/// Health a fighter inside a spring regains each second.
pub const HEAL: i64 = 5;
/// A fighter's full health.
pub const FULL_HEALTH: i64 = 100;

/// How long a slain monster's corpse lies before it is gone.
pub const CORPSE: Duration = Duration::from_secs(10);

/// Timer tags.
const READY: u32 = 1;
const RISE: u32 = 2;
/// The tag of a fighter's once-a-second regeneration timer.
pub const REGEN: u32 = 3;
const ROT: u32 = 4;

/// Whether a neighbour is alive: a fighter not `dead`, a monster with
/// health left.
fn alive(n: &tessera_game::cell::Neighbor<'_>) -> bool {
    n.get("dead") != Some(&Value::Bool(true)) && n.get("health") != Some(&Value::Int(0))
}

/// An entity as the arena's methods carry it.
pub fn id_arg(id: EntityId) -> Value {
    Value::Entity(id)
}

fn id_of(v: Option<&Value>) -> Option<EntityId> {
    v.and_then(Value::as_entity)
}

/// A refusal here means the definitions no longer fit the arena's code.
fn report(what: &str, r: Result<(), GameError>) {
    if let Err(e) = r {
        tracing::warn!(error = %e, "arena: {what} refused");
    }
}

/// Counts one more of `name` by `n`.
fn add(ctx: &mut Ctx<'_>, name: &str, n: i64) -> Result<(), GameError> {
    let v = ctx.get_int(name).saturating_add(n);
    ctx.set(name, Value::Int(v))
}

/// A strike landed on `ctx`'s entity: it is counted as taken whatever
/// state the entity is in, and told to everyone who sees it. Returns the
/// health left and whether this strike was the one that killed.
fn struck(ctx: &mut Ctx<'_>, damage: i64, attacker: EntityId) -> Result<(i64, bool), GameError> {
    add(ctx, "taken", damage)?;
    let before = ctx.get_int("health");
    let after = (before - damage).max(0);
    ctx.set("health", Value::Int(after))?;
    ctx.call_client(
        Audience::All,
        "struck",
        vec![id_arg(attacker), Value::Int(damage)],
    )?;
    Ok((after, before > 0 && after == 0))
}

/// A player's fighter.
pub struct Fighter;

impl CellBehavior for Fighter {
    fn created(&self, ctx: &mut Ctx<'_>) {
        report(
            "regeneration",
            ctx.add_timer(Duration::from_secs(1), Some(Duration::from_secs(1)), REGEN)
                .map(drop),
        );
    }

    fn call(&self, ctx: &mut Ctx<'_>, call: &Called<'_>) {
        let r = match call.name() {
            "attack" => attack(ctx, id_of(call.arg(0))),
            "take_hit" => {
                let damage = call.arg(0).and_then(Value::as_int).unwrap_or(0).max(0);
                let attacker = id_of(call.arg(1)).unwrap_or(EntityId(0));
                if ctx.get("dead") == Some(&Value::Bool(true)) {
                    // A corpse takes the blow, and nothing happens.
                    add(ctx, "taken", damage)
                } else {
                    fighter_struck(ctx, damage, attacker)
                }
            }
            "reward" => {
                let gold = call.arg(0).cloned().unwrap_or(Value::Int(0));
                add(ctx, "kills", 1).and_then(|()| ctx.call_base("loot", vec![gold]))
            }
            "enter_zone" => add(ctx, "zones", 1),
            "leave_zone" => add(ctx, "zones", -1),
            _ => Ok(()),
        };
        report(call.name(), r);
    }

    fn timer(&self, ctx: &mut Ctx<'_>, _timer: TimerId, tag: u32) {
        let r = match tag {
            READY => ctx.set("ready", Value::Bool(true)),
            RISE => rise(ctx),
            REGEN if ctx.get_int("zones") > 0 && ctx.get("dead") != Some(&Value::Bool(true)) => {
                let health = (ctx.get_int("health") + HEAL).min(FULL_HEALTH);
                ctx.set("health", Value::Int(health))
            }
            _ => Ok(()),
        };
        report("a fighter's timer", r);
    }
}

/// A fighter strikes `target`, if it may and the target is within reach.
fn attack(ctx: &mut Ctx<'_>, target: Option<EntityId>) -> Result<(), GameError> {
    let Some(target) = target else {
        return Ok(());
    };
    if ctx.get("dead") == Some(&Value::Bool(true)) || ctx.get("ready") != Some(&Value::Bool(true)) {
        return Ok(());
    }
    let in_reach = ctx
        .entity(target)
        .is_some_and(|n| n.distance <= FIGHTER_REACH && n.type_name() != "Healer" && alive(&n));
    if !in_reach {
        return Ok(());
    }
    let me = ctx.id();
    ctx.call(
        target,
        "take_hit",
        vec![Value::Int(FIGHTER_DAMAGE), id_arg(me)],
    )?;
    add(ctx, "dealt", FIGHTER_DAMAGE)?;
    ctx.set("ready", Value::Bool(false))?;
    ctx.add_timer(FIGHTER_COOLDOWN, None, READY).map(drop)
}

fn fighter_struck(ctx: &mut Ctx<'_>, damage: i64, attacker: EntityId) -> Result<(), GameError> {
    let (_, killed) = struck(ctx, damage, attacker)?;
    if killed {
        ctx.set("dead", Value::Bool(true))?;
        ctx.call_client(Audience::All, "died", vec![])?;
        ctx.add_timer(RESPAWN, None, RISE)?;
    }
    Ok(())
}

/// A dead fighter rises where it fell, with full health.
fn rise(ctx: &mut Ctx<'_>) -> Result<(), GameError> {
    ctx.set("dead", Value::Bool(false))?;
    ctx.set("health", Value::Int(FULL_HEALTH))
}

/// A monster: it chases the nearest living fighter it sees and strikes it
/// on a cooldown, or wanders. Killed, it pays the killer, another monster
/// rises somewhere in the space, and its corpse lies for a while (taking
/// any blow still on its way) before it is gone.
pub struct Monster;

impl CellBehavior for Monster {
    fn tick(&self, ctx: &mut Ctx<'_>) {
        if ctx.get_int("health") == 0 {
            return;
        }
        // It looks around once a second (monsters spread over the ticks);
        // in between it follows the prey it chose.
        let looks = (ctx.tick() + ctx.id().0).is_multiple_of(LOOK_EVERY_TICKS);
        let chosen = id_of(ctx.get("prey"));
        let mut prey = chosen
            .and_then(|p| ctx.entity(p))
            .filter(|n| alive(n) && n.distance <= MONSTER_SIGHT * 1.5)
            .map(|n| (n.id, n.pos, n.distance));
        if prey.is_none() && (looks || chosen.is_some()) {
            prey = ctx
                .around(MONSTER_SIGHT)
                .iter()
                .find(|n| n.type_name() == "Fighter" && alive(n))
                .map(|n| (n.id, n.pos, n.distance));
        }
        let prey_id = prey.map_or(EntityId(0), |p| p.0);
        if chosen.unwrap_or(EntityId(0)) != prey_id {
            report("a monster's prey", ctx.set("prey", id_arg(prey_id)));
        }
        let speed = ctx.def().max_speed;
        let Some((fighter, at, distance)) = prey else {
            motion::wander(ctx, 40.0, speed * 0.5);
            return;
        };
        if ctx.goal().is_some() {
            ctx.set_goal(None);
        }
        if distance > MONSTER_REACH {
            motion::step_toward(ctx, at, speed);
        } else if ctx.get("ready") == Some(&Value::Bool(true)) {
            let me = ctx.id();
            let r = ctx
                .call(
                    fighter,
                    "take_hit",
                    vec![Value::Int(MONSTER_DAMAGE), id_arg(me)],
                )
                .and_then(|()| add(ctx, "dealt", MONSTER_DAMAGE))
                .and_then(|()| ctx.set("ready", Value::Bool(false)))
                .and_then(|()| ctx.add_timer(MONSTER_COOLDOWN, None, READY).map(drop));
            report("a monster's strike", r);
        }
    }

    fn call(&self, ctx: &mut Ctx<'_>, call: &Called<'_>) {
        if call.name() != "take_hit" {
            return;
        }
        let damage = call.arg(0).and_then(Value::as_int).unwrap_or(0).max(0);
        let attacker = id_of(call.arg(1)).unwrap_or(EntityId(0));
        let r = struck(ctx, damage, attacker).and_then(|(_, killed)| {
            if !killed {
                return Ok(());
            }
            // The killer is within reach, so this cell holds it.
            ctx.call(attacker, "reward", vec![Value::Int(BOUNTY)])?;
            let [x0, z0, x1, z1] = ctx.bounds();
            let x = ctx.rng().random_range(x0..=x1);
            let z = ctx.rng().random_range(z0..=z1);
            ctx.spawn("Monster", Vec3::new(x, 0.0, z), 0.0, &[])?;
            ctx.add_timer(CORPSE, None, ROT).map(drop)
        });
        report("a monster's death", r);
    }

    fn timer(&self, ctx: &mut Ctx<'_>, _timer: TimerId, tag: u32) {
        match tag {
            READY => report("a monster's cooldown", ctx.set("ready", Value::Bool(true))),
            ROT => report("a corpse", ctx.destroy()),
            _ => {}
        }
    }
}

/// A healing spring: a proximity trap that tells each fighter as it comes
/// in and goes out; fighters inside heal by themselves.
pub struct Spring;

impl CellBehavior for Spring {
    fn created(&self, ctx: &mut Ctx<'_>) {
        report("a spring", ctx.add_trap(SPRING_RADIUS, 0).map(drop));
    }

    fn trap(&self, ctx: &mut Ctx<'_>, _trap: TrapId, _tag: u32, change: Presence) {
        let (who, method) = match change {
            Presence::Entered(e) => (e, "enter_zone"),
            Presence::Left(e) => (e, "leave_zone"),
        };
        // Whoever walks out is still near enough for this cell to hold it;
        // one that logged out is gone, and needs telling nothing.
        if ctx.entity(who).is_some_and(|n| n.type_name() == "Fighter") {
            report("a spring", ctx.call(who, method, vec![]));
        }
    }
}
