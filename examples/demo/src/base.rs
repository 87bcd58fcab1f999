//! The demo's base behaviours.

use tessera::Value;
use tessera_game::base::{BaseBehavior, BaseCalled, BaseCtx};

/// The demo player's base: gold, added by an exposed base method and saved
/// with the account; the time of the last login.
pub struct Avatar;

impl BaseBehavior for Avatar {
    fn login(&self, ctx: &mut BaseCtx<'_>) {
        let secs = (ctx.now().0 / 1_000_000) as i64;
        if let Err(e) = ctx.set("last_login", Value::Int(secs)) {
            tracing::warn!(error = %e, "demo login hook refused");
        }
    }

    fn call(&self, ctx: &mut BaseCtx<'_>, call: &BaseCalled<'_>) {
        if call.name() != "add_gold" {
            return;
        }
        let Some(n) = call.arg(0).and_then(Value::as_int) else {
            return;
        };
        let gold = ctx.get_int("gold").saturating_add(n);
        if let Err(e) = ctx.set("gold", Value::Int(gold)) {
            tracing::warn!(error = %e, "demo add_gold refused");
        }
    }
}
