//! The arena on the base: loot and guild membership, saved with the
//! player's account.

use tessera::Value;
use tessera_game::base::{BaseBehavior, BaseCalled, BaseCaller, BaseCtx};

/// The longest guild name.
pub const MAX_GUILD_NAME: usize = 32;

/// A fighter's base.
pub struct FighterBase;

impl BaseBehavior for FighterBase {
    fn call(&self, ctx: &mut BaseCtx<'_>, call: &BaseCalled<'_>) {
        let r = match (call.name(), call.caller) {
            // Only the fighter's cell hands out loot.
            ("loot", BaseCaller::Cell) => {
                let n = call.arg(0).and_then(Value::as_int).unwrap_or(0).max(0);
                let gold = ctx.get_int("gold").saturating_add(n);
                ctx.set("gold", Value::Int(gold))
            }
            ("join_guild", _) => match call.arg(0).and_then(Value::as_str) {
                Some(name) if !name.is_empty() && name.len() <= MAX_GUILD_NAME => {
                    ctx.set("guild", Value::String(name.to_string()))
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "arena: a base call refused");
        }
    }
}
