//! Crowds: how a population (the NPCs, or the simulated clients) moves in a
//! balancing scenario. A population is split into groups by a hash of each
//! member's id (so the choice survives migration); each group has a motion
//! and a time window, and whoever is in no group, or outside its group's
//! window, wanders. Where a member wants to be is a function of its id, its
//! position and the virtual time, so a run stays a function of its seed.
//!
//! [`Crowds`] is the NPC type's cell behaviour in a scenario; the simulator
//! asks it the way for each simulated client too.

use glam::Vec3;
use tessera_cellapp::behavior::motion::{step_toward, wander};
use tessera_cellapp::behavior::{CellBehavior, Ctx};

/// How a group moves while its window is open. In a run, points and radii
/// are in metres and times (`T`) in seconds; a scenario file gives points
/// and radii as fractions of the space's side and times as
/// [`crate::scenario::When`], resolved before the run.
#[derive(Clone, Debug, PartialEq)]
pub enum Motion<T = f32> {
    /// Walks to random points nearby.
    Wander,
    /// Each member stands at its own place within `radius` of a centre that
    /// follows timed waypoints (seconds, x, z): before the first there is
    /// no centre; between two it moves in a straight line; after the last
    /// it stays. One waypoint is a gathering at a point.
    Gather {
        /// The centre's waypoints, in time order.
        track: Vec<(T, f32, f32)>,
        /// Members stand within this distance of the centre.
        radius: f32,
    },
    /// The centre walks along `points` at `pace` metres per second from the
    /// group's start (back to the first point and round again if `looped`);
    /// each member keeps its place within `radius` of it.
    Path {
        /// The path's corners, x and z.
        points: Vec<(f32, f32)>,
        /// The centre's speed, metres per second.
        pace: f32,
        /// Whether the path closes and repeats.
        looped: bool,
        /// Members keep within this distance of the centre.
        radius: f32,
    },
    /// Everyone heads for one point from where they are, stopping at a
    /// distance of their own within `radius`: a crowd closing in from every
    /// side.
    Converge {
        /// The point, x and z.
        at: (f32, f32),
        /// Members stop within this distance of it.
        radius: f32,
    },
}

/// One group of a population.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Share of the population in the group (0 to 1).
    pub share: f32,
    /// When its motion starts, seconds.
    pub from: f32,
    /// When it ends (members wander after), seconds.
    pub until: f32,
    /// Walking speed, metres per second (`None`: the type's wandering pace).
    pub speed: Option<f32>,
    /// What it does.
    pub motion: Motion,
}

/// Where a member should go now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Way {
    /// Wander, at this speed if given.
    Wander(Option<f32>),
    /// Walk to this point (x, z) at this speed if given.
    To(f32, f32, Option<f32>),
}

/// A population's groups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Crowds {
    /// The groups, each taking the next slice of the population.
    pub groups: Vec<Group>,
}

/// A well-mixed 64-bit hash of an id.
fn hash(v: u64) -> u64 {
    let mut z = v.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A member's place relative to its group's centre, within `radius`.
fn place(h: u64, radius: f32) -> (f32, f32) {
    let angle = ((h >> 16) & 0xffff) as f32 / 65536.0 * std::f32::consts::TAU;
    let r = radius * unit(h >> 32).sqrt();
    (r * angle.cos(), r * angle.sin())
}

/// 16 bits of a hash as a number in [0, 1).
fn unit(h: u64) -> f32 {
    (h & 0xffff) as f32 / 65536.0
}

impl Motion {
    /// The group's centre at `t` seconds, `start` being when it started.
    fn centre(&self, t: f32, start: f32) -> Option<(f32, f32)> {
        match self {
            Motion::Wander | Motion::Converge { .. } => None,
            Motion::Gather { track, .. } => {
                let first = track.first()?;
                if t < first.0 {
                    return None;
                }
                for w in track.windows(2) {
                    let ((t0, x0, z0), (t1, x1, z1)) = (w[0], w[1]);
                    if t < t1 {
                        let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 1.0 };
                        return Some((x0 + (x1 - x0) * f, z0 + (z1 - z0) * f));
                    }
                }
                track.last().map(|&(_, x, z)| (x, z))
            }
            Motion::Path {
                points,
                pace,
                looped,
                ..
            } => along(points, *looped, pace * (t - start).max(0.0)),
        }
    }
}

/// The point `dist` metres along a path of corners (round again if
/// `looped`, else stopping at its end).
fn along(points: &[(f32, f32)], looped: bool, dist: f32) -> Option<(f32, f32)> {
    let first = *points.first()?;
    let mut legs: Vec<((f32, f32), (f32, f32))> = points.windows(2).map(|w| (w[0], w[1])).collect();
    if looped {
        legs.push((*points.last()?, first));
    }
    let total: f32 = legs.iter().map(|(a, b)| length(*a, *b)).sum();
    if total <= 0.0 {
        return Some(first);
    }
    let mut left = if looped { dist % total } else { dist };
    for (a, b) in &legs {
        let l = length(*a, *b);
        if left <= l {
            let f = if l > 0.0 { left / l } else { 0.0 };
            return Some((a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f));
        }
        left -= l;
    }
    points.last().copied()
}

fn length(a: (f32, f32), b: (f32, f32)) -> f32 {
    ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt()
}

impl Crowds {
    /// One group of the whole population gathering at a point from the
    /// start: the crowd of `tessera bots --behavior hotspot` in a space with
    /// these bounds, around a point 30 % into the space on both axes,
    /// within 12 % of the space's side.
    pub fn hotspot(bounds: [f32; 4], speed: f32) -> Crowds {
        let [x0, z0, x1, z1] = bounds;
        let side = (x1 - x0).min(z1 - z0);
        let at = (x0 + 0.3 * (x1 - x0), z0 + 0.3 * (z1 - z0));
        Crowds::gathering(1.0, 0.0, at, 0.12 * side, speed)
    }

    /// A share of the population gathering within `radius` of `at` from
    /// `from` seconds, walking there at `speed`.
    pub fn gathering(share: f32, from: f32, at: (f32, f32), radius: f32, speed: f32) -> Crowds {
        Crowds {
            groups: vec![Group {
                share,
                from,
                until: f32::INFINITY,
                speed: Some(speed),
                motion: Motion::Gather {
                    track: vec![(from, at.0, at.1)],
                    radius,
                },
            }],
        }
    }

    /// The group member `id` is in, if any, and its hash.
    fn group(&self, id: u64) -> Option<(&Group, u64)> {
        let h = hash(id);
        let pick = unit(h);
        let mut upto = 0.0;
        for g in &self.groups {
            upto += g.share;
            if pick < upto {
                return Some((g, h));
            }
        }
        None
    }

    /// Where member `id`, standing at `pos` (x, z), should go at `t`
    /// seconds.
    pub fn way(&self, t: f32, id: u64, pos: (f32, f32)) -> Way {
        let Some((g, h)) = self.group(id) else {
            return Way::Wander(None);
        };
        if t < g.from || t >= g.until {
            return Way::Wander(None);
        }
        let to = |(x, z): (f32, f32)| Way::To(x, z, g.speed);
        match &g.motion {
            Motion::Wander => Way::Wander(g.speed),
            Motion::Gather { radius, .. } | Motion::Path { radius, .. } => {
                match g.motion.centre(t, g.from) {
                    Some((cx, cz)) => {
                        let (dx, dz) = place(h, *radius);
                        to((cx + dx, cz + dz))
                    }
                    None => Way::Wander(None),
                }
            }
            Motion::Converge { at, radius } => {
                let (dx, dz) = (pos.0 - at.0, pos.1 - at.1);
                let d = (dx * dx + dz * dz).sqrt();
                let stop = radius * unit(h >> 32).sqrt();
                if d <= stop || d <= 1e-3 {
                    to(pos)
                } else {
                    to((at.0 + dx / d * stop, at.1 + dz / d * stop))
                }
            }
        }
    }

    /// Where member `id` wants to stand at `t` seconds, if it is in a
    /// group whose motion has a place for it then.
    pub fn goal(&self, t: f32, id: u64, pos: (f32, f32)) -> Option<(f32, f32)> {
        match self.way(t, id, pos) {
            Way::To(x, z, _) => Some((x, z)),
            Way::Wander(_) => None,
        }
    }
}

impl CellBehavior for Crowds {
    fn tick(&self, ctx: &mut Ctx<'_>) {
        let t = ctx.now().0 as f32 / 1e6;
        let pos = ctx.pos();
        let pace = ctx.def().max_speed * 0.8;
        match self.way(t, ctx.id().0, (pos.x, pos.z)) {
            Way::Wander(speed) => wander(ctx, 60.0, speed.unwrap_or(pace)),
            Way::To(x, z, speed) => {
                let [x0, z0, x1, z1] = ctx.bounds();
                let goal = Vec3::new(x.clamp(x0, x1), pos.y, z.clamp(z0, z1));
                if ctx.goal().is_some() {
                    ctx.set_goal(None);
                }
                if pos.distance(goal) > 0.01 {
                    step_toward(ctx, goal, speed.unwrap_or(pace));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
