//! Crowds for the balancing scenarios: a behaviour for the NPC type in
//! which a share of the NPCs (chosen by id, so the choice survives
//! migration) gathers around a point that may move over time, while the rest
//! wander. Positions are a function of the entity, its position and
//! the virtual time, so a run stays a function of its seed.

use glam::Vec3;
use tessera_cellapp::behavior::motion::{step_toward, wander};
use tessera_cellapp::behavior::{CellBehavior, Ctx};

/// A gathering: where its centre is over time, and who joins.
#[derive(Clone, Debug, PartialEq)]
pub struct Crowd {
    /// Share of the NPCs that join (0 to 1).
    pub share: f32,
    /// The centre's waypoints: (seconds, x, z). Before the first the crowd
    /// does not exist; between two the centre moves in a straight line;
    /// after the last it stays.
    pub path: Vec<(f32, f32, f32)>,
    /// Members stand within this distance of the centre.
    pub radius: f32,
    /// How fast members walk to their place, metres per second.
    pub speed: f32,
}

/// A well-mixed 64-bit hash of an id.
fn hash(v: u64) -> u64 {
    let mut z = v.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Crowd {
    /// Where the centre is at `t` seconds, if the crowd exists yet.
    pub fn centre(&self, t: f32) -> Option<(f32, f32)> {
        let first = self.path.first()?;
        if t < first.0 {
            return None;
        }
        for w in self.path.windows(2) {
            let ((t0, x0, z0), (t1, x1, z1)) = (w[0], w[1]);
            if t < t1 {
                let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 1.0 };
                return Some((x0 + (x1 - x0) * f, z0 + (z1 - z0) * f));
            }
        }
        self.path.last().map(|&(_, x, z)| (x, z))
    }

    /// The crowd of `tessera bots --behavior hotspot` in a space with these
    /// bounds: every bot, around a point 30 % into the space on both axes,
    /// within 12 % of the space's side.
    pub fn hotspot(bounds: [f32; 4], speed: f32) -> Crowd {
        let [x0, z0, x1, z1] = bounds;
        let side = (x1 - x0).min(z1 - z0);
        Crowd {
            share: 1.0,
            path: vec![(0.0, x0 + 0.3 * (x1 - x0), z0 + 0.3 * (z1 - z0))],
            radius: 0.12 * side,
            speed,
        }
    }

    /// Where member `id` wants to stand at `t` seconds, if it is a member
    /// and the crowd exists.
    pub fn goal(&self, t: f32, id: u64) -> Option<(f32, f32)> {
        let (cx, cz) = self.centre(t)?;
        let (dx, dz) = self.place(id)?;
        Some((cx + dx, cz + dz))
    }

    /// Whether an entity is a member, and its place relative to the centre.
    fn place(&self, id: u64) -> Option<(f32, f32)> {
        let h = hash(id);
        let pick = (h & 0xffff) as f32 / 65536.0;
        if pick >= self.share {
            return None;
        }
        let angle = ((h >> 16) & 0xffff) as f32 / 65536.0 * std::f32::consts::TAU;
        let r = self.radius * (((h >> 32) & 0xffff) as f32 / 65536.0).sqrt();
        Some((r * angle.cos(), r * angle.sin()))
    }
}

impl CellBehavior for Crowd {
    fn tick(&self, ctx: &mut Ctx<'_>) {
        let t = ctx.now().0 as f32 / 1e6;
        let (Some((cx, cz)), Some((dx, dz))) = (self.centre(t), self.place(ctx.id().0)) else {
            let speed = ctx.def().max_speed * 0.8;
            wander(ctx, 60.0, speed);
            return;
        };
        let [x0, z0, x1, z1] = ctx.bounds();
        let goal = Vec3::new(
            (cx + dx).clamp(x0, x1),
            ctx.pos().y,
            (cz + dz).clamp(z0, z1),
        );
        if ctx.goal().is_some() {
            ctx.set_goal(None);
        }
        if ctx.pos().distance(goal) > 0.01 {
            step_toward(ctx, goal, self.speed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_centre_follows_its_waypoints() {
        let c = Crowd {
            share: 0.5,
            path: vec![(10.0, 0.0, 0.0), (20.0, 100.0, 50.0)],
            radius: 10.0,
            speed: 5.0,
        };
        assert_eq!(c.centre(5.0), None);
        assert_eq!(c.centre(10.0), Some((0.0, 0.0)));
        assert_eq!(c.centre(15.0), Some((50.0, 25.0)));
        assert_eq!(c.centre(99.0), Some((100.0, 50.0)));
        // About half the ids join, each with a place inside the radius.
        let members: Vec<_> = (0..10_000).filter_map(|id| c.place(id)).collect();
        assert!((4_500..5_500).contains(&members.len()), "{}", members.len());
        assert!(members
            .iter()
            .all(|(x, z)| (x * x + z * z).sqrt() <= 10.0 + 1e-3));
    }
}
