//! The demo's bots: they walk the way `tessera bots --behavior` says and
//! change their emote every five seconds.

use rand::RngExt;
use tessera::Value;
use tessera_game::bot::{Bot, BotBehavior};

/// A bot that changes its emote every 50 steps, bots spread over the steps.
pub struct Emoter {
    offset: u64,
}

impl Emoter {
    /// The behaviour of bot number `n`.
    pub fn new(n: u64) -> Emoter {
        Emoter { offset: n % 50 }
    }
}

impl BotBehavior for Emoter {
    fn step(&mut self, bot: &mut Bot<'_>) {
        if bot.step() % 50 == self.offset {
            let emote = Value::Int(bot.rng().random_range(0..8));
            bot.call("set_emote", vec![emote]);
        }
    }
}
