//! The demo's cell behaviours.

use rand::RngExt;
use tessera::Value;
use tessera_game::cell::{motion, Audience, Called, CellBehavior, Ctx};

/// The demo player: its exposed cell methods set what others see, and a
/// ping is answered on its own client.
pub struct Avatar;

impl CellBehavior for Avatar {
    fn call(&self, ctx: &mut Ctx<'_>, call: &Called<'_>) {
        let Some(v) = call.arg(0).cloned() else {
            return;
        };
        let done = match call.name() {
            "set_title" => ctx.set("title", v),
            "set_emote" => ctx.set("emote", v),
            "set_health" => ctx.set("health", v),
            "ping" => {
                let pings = ctx.get_int("pings");
                ctx.set("pings", Value::Int(pings + 1))
                    .and_then(|()| ctx.call_client(Audience::Own, "pong", vec![v]))
            }
            _ => Ok(()),
        };
        if let Err(e) = done {
            // The arguments were checked against the definitions, so this
            // is a definitions file that no longer fits the demo's code.
            tracing::warn!(error = %e, "demo call refused");
        }
    }
}

/// A server-driven entity that walks to random points, pausing now and
/// then, and changes its mood once in a while.
pub struct Npc;

impl CellBehavior for Npc {
    fn tick(&self, ctx: &mut Ctx<'_>) {
        let speed = ctx.def().max_speed * 0.8;
        motion::wander(ctx, 60.0, speed);
        if ctx.rng().random_ratio(1, 200) {
            let mood = ctx.rng().random_range(0..8);
            let _ = ctx.set("mood", Value::Int(mood));
        }
    }
}
