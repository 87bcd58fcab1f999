//! Stock movement for server-driven entities, for games to build on:
//! walking toward a point at a speed, and wandering between random points.
//! Both act through the [`Ctx`], so they move with the same deferred,
//! order-independent effects as any other game code.

use glam::Vec3;
use rand::RngExt;

use super::Ctx;

/// Takes one tick's step toward `goal` at `speed` metres per second, facing
/// the way it walks. Returns whether it has arrived.
pub fn step_toward(ctx: &mut Ctx<'_>, goal: Vec3, speed: f32) -> bool {
    let pos = ctx.pos();
    let to = Vec3::new(goal.x - pos.x, 0.0, goal.z - pos.z);
    let dist = to.length();
    let step = speed * ctx.dt();
    if dist <= step {
        if dist > 0.0 {
            ctx.move_to(Vec3::new(goal.x, pos.y, goal.z), ctx.yaw());
        }
        return true;
    }
    let dir = to / dist;
    ctx.move_to(pos + dir * step, dir.x.atan2(dir.z));
    false
}

/// Walks to random points up to `reach` metres away at `speed`, resting
/// for a tick now and then (a tenth of the time it has no goal).
pub fn wander(ctx: &mut Ctx<'_>, reach: f32, speed: f32) {
    let [x0, z0, x1, z1] = ctx.bounds();
    let pos = ctx.pos();
    let goal = match ctx.goal() {
        Some(g) => g,
        None => {
            if !ctx.rng().random_bool(0.9) {
                return;
            }
            let gx = (pos.x + ctx.rng().random_range(-reach..reach)).clamp(x0, x1);
            let gz = (pos.z + ctx.rng().random_range(-reach..reach)).clamp(z0, z1);
            let g = Vec3::new(gx, pos.y, gz);
            ctx.set_goal(Some(g));
            g
        }
    };
    if step_toward(ctx, goal, speed) {
        ctx.set_goal(None);
    }
}
