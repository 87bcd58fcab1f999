//! The arena on the base: loot, and guilds. A fighter's base keeps the
//! name of its guild; the guild itself is a named entity that keeps its
//! members' accounts. Both are saved.

use tessera::Value;
use tessera_game::base::{BaseBehavior, BaseCalled, BaseCaller, BaseCtx, BaseError};

/// The longest guild name.
pub const MAX_GUILD_NAME: usize = 32;

/// A fighter joins the guild `name`, leaving the one it was in.
fn join(ctx: &mut BaseCtx<'_>, name: &str) -> Result<(), BaseError> {
    let Some(account) = ctx.account() else {
        return Ok(());
    };
    let old = ctx
        .get("guild")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if old == name {
        return Ok(());
    }
    if !old.is_empty() {
        ctx.call_named("Guild", &old, "quit", vec![Value::Int(account)])?;
    }
    ctx.set("guild", Value::String(name.to_string()))?;
    ctx.call_named("Guild", name, "enlist", vec![Value::Int(account)])
}

/// A guild: its members' accounts.
pub struct Guild;

impl BaseBehavior for Guild {
    fn call(&self, ctx: &mut BaseCtx<'_>, call: &BaseCalled<'_>) {
        let Some(account) = call.arg(0).and_then(Value::as_int) else {
            return;
        };
        let mut members: Vec<Value> = ctx
            .get("members")
            .and_then(Value::as_list)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let at = members.iter().position(|m| m.as_int() == Some(account));
        match (call.name(), at) {
            ("enlist", None) => members.push(Value::Int(account)),
            ("quit", Some(i)) => {
                members.remove(i);
            }
            _ => return,
        }
        if let Err(e) = ctx.set("members", Value::List(members)) {
            // A full guild (the list's limit) takes no one more.
            tracing::warn!(error = %e, "arena: a guild's roll refused");
        }
    }
}

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
                Some(name) if !name.is_empty() && name.len() <= MAX_GUILD_NAME => join(ctx, name),
                _ => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "arena: a base call refused");
        }
    }
}
