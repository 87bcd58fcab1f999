//! The arena's bots: each walks to the nearest living monster it sees and
//! strikes it once a second when in reach, retreats to a spring when hurt,
//! and joins one of five guilds early on.

use tessera::view::Seen;
use tessera::{EntityId, Value};
use tessera_game::bot::{Bot, BotBehavior};

use crate::cell::{id_arg, FIGHTER_REACH};

/// A bot playing a fighter.
pub struct Brawler {
    n: u64,
}

impl Brawler {
    /// The behaviour of bot number `n`.
    pub fn new(n: u64) -> Brawler {
        Brawler { n }
    }
}

fn distance(a: [f32; 2], s: &Seen) -> f32 {
    let (dx, dz) = (s.pos[0] - a[0], s.pos[2] - a[1]);
    (dx * dx + dz * dz).sqrt()
}

impl BotBehavior for Brawler {
    fn step(&mut self, bot: &mut Bot<'_>) {
        if bot.step() == 20 {
            let guild = format!("guild{}", self.n % 5);
            bot.call("join_guild", vec![Value::String(guild)]);
        }
        let me = bot.pos();
        let health = bot.prop("health").and_then(Value::as_int).unwrap_or(100);
        let nearest = |kind: &str| -> Option<(EntityId, [f32; 3], f32)> {
            bot.seen()
                .filter(|(_, _, t)| t.name == kind)
                .filter(|(id, _, _)| bot.prop_of(*id, "health").and_then(Value::as_int) != Some(0))
                .map(|(id, s, _)| (id, s.pos, distance(me, s)))
                .min_by(|a, b| a.2.total_cmp(&b.2))
        };
        let spring = nearest("Healer");
        let monster = nearest("Monster");
        let target = if health < 40 {
            spring.or(monster)
        } else {
            monster
        };
        let Some((id, at, d)) = target else {
            return;
        };
        // Stop just short of it.
        if d > FIGHTER_REACH * 0.6 {
            bot.walk_to(at[0], at[2]);
        } else {
            bot.walk_to(me[0], me[1]);
        }
        let is_monster = monster.is_some_and(|m| m.0 == id);
        if is_monster && d <= FIGHTER_REACH && bot.step() % 10 == self.n % 10 {
            bot.call("attack", vec![id_arg(id)]);
        }
    }
}
