//! Stock movement for server-driven entities, for games to build on:
//! walking toward a point at a speed, and wandering between random points.
//! Both act through the [`Ctx`], so they move with the same deferred,
//! order-independent effects as any other game code.

use glam::Vec3;
use rand::RngExt;

use super::Ctx;

/// The yaw of a direction (x, z): `x.atan2(z)` to within 2e-5 radians, a
/// fifth of what the wire's two-byte yaw can tell apart, at a fraction of
/// its cost (every walker computes it every tick).
pub fn facing(x: f32, z: f32) -> f32 {
    use std::f32::consts::{FRAC_PI_2, PI};
    let (ax, az) = (x.abs(), z.abs());
    if ax == 0.0 && az == 0.0 {
        return 0.0;
    }
    // atan of the smaller over the larger, in [0, 1], by a minimax
    // polynomial in t².
    let t = ax.min(az) / ax.max(az);
    let t2 = t * t;
    let mut a = t
        * (0.999_977_26
            + t2 * (-0.332_623_47
                + t2 * (0.193_543_46
                    + t2 * (-0.116_432_87 + t2 * (0.052_653_32 + t2 * -0.011_721_2)))));
    if ax > az {
        a = FRAC_PI_2 - a;
    }
    if z < 0.0 {
        a = PI - a;
    }
    if x < 0.0 {
        -a
    } else {
        a
    }
}

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
    // Facing from `to` itself (its direction is `dir`'s), so that it need
    // not wait for the square root and the division.
    let yaw = facing(to.x, to.z);
    let dir = to / dist;
    ctx.move_to(pos + dir * step, yaw);
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

#[cfg(test)]
mod tests {
    use super::facing;

    #[test]
    fn facing_is_atan2_to_within_two_hundred_thousandths() {
        let mut worst = 0.0f32;
        for i in 0..100_000 {
            let angle = i as f32 / 100_000.0 * std::f32::consts::TAU - std::f32::consts::PI;
            for r in [1e-3f32, 1.0, 250.0] {
                let (x, z) = (r * angle.sin(), r * angle.cos());
                let d = (facing(x, z) - x.atan2(z)).abs();
                // ±π are the same facing.
                worst = worst.max(d.min((d - std::f32::consts::TAU).abs()));
            }
        }
        assert!(worst < 2e-5, "{worst}");
        assert_eq!(facing(0.0, 0.0), 0.0);
        assert_eq!(facing(0.0, 1.0), 0.0);
        assert!((facing(1.0, 0.0) - std::f32::consts::FRAC_PI_2).abs() < 1e-6);
    }
}
