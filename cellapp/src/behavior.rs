//! Entity behaviour on the cell, in Rust: each type's logic implements
//! [`CellBehavior`] and is registered by type name. The demo world's types,
//! `Avatar` (client-driven) and `Npc` (a server-driven wanderer), live here.

use glam::Vec3;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use tessera::defs::{MethodDef, TypeDef};
use tessera::frame::encode_body;
use tessera::proto::client::ServerMsg;
use tessera::Value;

use crate::entry::Entry;

/// What a behaviour may touch besides its entity.
pub struct Ctx<'a> {
    /// The entity's type.
    pub ty: &'a TypeDef,
    /// The seeded random source of the cell.
    pub rng: &'a mut ChaCha8Rng,
    /// The space's bounds: min x, min z, max x, max z.
    pub bounds: [f32; 4],
    /// Seconds per tick.
    pub dt: f32,
    /// The current tick.
    pub tick: u64,
    /// The time of this tick.
    pub now: tessera::Time,
}

impl Ctx<'_> {
    /// Queues a call of a client method on the entity's own client.
    pub fn call_client(&self, real: &mut Entry, method: &str, args: Vec<Value>) {
        if let Some(m) = self.ty.method(method) {
            real.to_own_client.push(encode_body(&ServerMsg::Call {
                entity: real.id,
                method: m.index,
                args,
            }));
        }
    }

    /// Sets a property by name (ignored if the type has no such property).
    pub fn set(&self, real: &mut Entry, name: &str, value: Value) {
        if let Some(p) = self.ty.prop(name) {
            real.set_prop(p.index, value);
        }
    }
}

/// The cell-side logic of one entity type.
pub trait CellBehavior: Send + Sync {
    /// Called every tick for every real of the type.
    fn tick(&self, _ctx: &mut Ctx<'_>, _real: &mut Entry) {}
    /// A cell method was called (arguments already checked against the definition).
    fn call(&self, _ctx: &mut Ctx<'_>, _real: &mut Entry, _method: &MethodDef, _args: &[Value]) {}
}

/// Behaviours by type name.
#[derive(Default)]
pub struct Behaviors {
    by_name: HashMap<String, Box<dyn CellBehavior>>,
}

impl Behaviors {
    /// The demo world's behaviours.
    pub fn demo() -> Behaviors {
        let mut b = Behaviors::default();
        b.register("Avatar", Box::new(Avatar));
        b.register("Npc", Box::new(Wanderer));
        b
    }

    /// Registers a behaviour for a type name.
    pub fn register(&mut self, type_name: &str, behavior: Box<dyn CellBehavior>) {
        self.by_name.insert(type_name.to_string(), behavior);
    }

    /// The behaviour of a type, if any.
    pub fn get(&self, type_name: &str) -> Option<&dyn CellBehavior> {
        self.by_name.get(type_name).map(|b| b.as_ref())
    }
}

/// The demo player: its exposed cell methods.
pub struct Avatar;

impl CellBehavior for Avatar {
    fn call(&self, ctx: &mut Ctx<'_>, real: &mut Entry, method: &MethodDef, args: &[Value]) {
        let first = args.first().cloned();
        match (method.name.as_str(), first) {
            ("set_title", Some(v)) => ctx.set(real, "title", v),
            ("set_emote", Some(v)) => ctx.set(real, "emote", v),
            ("set_health", Some(v)) => ctx.set(real, "health", v),
            ("ping", Some(v)) => {
                let pings = ctx
                    .ty
                    .prop("pings")
                    .and_then(|p| real.props.get(p.index as usize))
                    .and_then(Value::as_int)
                    .unwrap_or(0);
                ctx.set(real, "pings", Value::Int(pings + 1));
                ctx.call_client(real, "pong", vec![v]);
            }
            _ => {}
        }
    }
}

/// A server-driven entity that walks to random points, pausing now and then,
/// and changes its mood once in a while.
pub struct Wanderer;

impl CellBehavior for Wanderer {
    fn tick(&self, ctx: &mut Ctx<'_>, real: &mut Entry) {
        let [x0, z0, x1, z1] = ctx.bounds;
        let goal = match real.goal {
            Some(g) => g,
            None => {
                // Half the time pick a nearby goal, otherwise rest for this tick.
                if ctx.rng.random_bool(0.9) {
                    let reach = 60.0;
                    let gx = (real.pos.x + ctx.rng.random_range(-reach..reach)).clamp(x0, x1);
                    let gz = (real.pos.z + ctx.rng.random_range(-reach..reach)).clamp(z0, z1);
                    let g = Vec3::new(gx, real.pos.y, gz);
                    real.goal = Some(g);
                    // The path is straight: face along it once.
                    let to = g - real.pos;
                    real.yaw = to.x.atan2(to.z);
                    g
                } else {
                    return;
                }
            }
        };
        let step = ctx.ty.max_speed * 0.8 * ctx.dt;
        let to = goal - real.pos;
        let dist = to.length();
        if dist <= step {
            real.move_to(goal, real.yaw, ctx.tick);
            real.goal = None;
        } else {
            real.move_to(real.pos + to / dist * step, real.yaw, ctx.tick);
        }
        if ctx.rng.random_ratio(1, 200) {
            let mood = ctx.rng.random_range(0..8);
            ctx.set(real, "mood", Value::Int(mood));
        }
    }
}
